//! `mode train`: the initial model, trained on a Parquet of samples (or continued from a
//! model with `--init`).

use super::Ctx;
use crate::artifacts::{Artifact, IterDir, Samples, Split};
use crate::engine::train::{fit_initial, log_rows};
use crate::model::{EpochStats, Net};
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

pub struct TrainArgs {
    /// Samples to train on.
    pub data: PathBuf,
    /// Continue training this model instead of starting from fresh weights.
    pub init: Option<PathBuf>,
    /// Output folder for the model and its train log.
    pub out: IterDir,
}

pub struct TrainReport {
    pub samples: usize,
    pub epochs: Vec<EpochStats>,
    pub out: PathBuf,
}

impl std::fmt::Display for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = self.epochs.last();
        write!(
            f,
            "train: {} samples, {} epochs, final loss {:.4}, train accuracy {:.4} → {}",
            self.samples,
            self.epochs.len(),
            last.map_or(f64::NAN, |e| e.loss),
            last.map_or(f64::NAN, |e| e.accuracy),
            self.out.display()
        )
    }
}

/// Train and write `model.safetensors` and `train_log.parquet` into the output folder.
pub fn run(ctx: &Ctx, a: &TrainArgs) -> Result<TrainReport> {
    let p = &ctx.pipeline;
    let samples = Samples::read(&a.data)?;
    if samples.is_empty() {
        bail!("{}: no samples to train on", a.data.display());
    }
    // The layout's own train split must have been made with these settings.
    if a.data == ctx.layout.split(Split::Train)
        && let Some(h) = samples.info.get(crate::artifacts::keys::SETTINGS_KEY)
        && *h != p.splits_fingerprint()
    {
        bail!(
            "{}: the splits were made with other settings; run `mode split` again (make all does)",
            a.data.display()
        );
    }
    let steps = (samples.len().div_ceil(p.train.batch_size) * p.train.epochs) as u64;
    let bar = crate::progress::bar(steps, "train");
    let progress = |done: usize, _| bar.set_position(done as u64);
    let init = match &a.init {
        None => None,
        Some(path) => {
            let net = Net::read(path)?;
            net.check_pipeline(p, path)?;
            net.check_data(&samples.meta, &a.data)?;
            Some(net)
        }
    };
    let (net, epochs, state) = fit_initial(p, &samples, init, progress)?;
    bar.finish_and_clear();
    for e in &epochs {
        tracing::info!(
            "epoch {}/{}: loss {:.4}, accuracy {:.4}, {:.2} s",
            e.epoch,
            p.train.epochs,
            e.loss,
            e.accuracy,
            e.seconds
        );
    }
    // All three or none (a full disk leaves the previous files); the model last: it is the
    // file make watches, so a run killed in between is redone.
    let log = log_rows(&epochs);
    crate::artifacts::io::write_together(vec![
        (a.out.train_log(), Box::new(|p: &Path| log.write(p))),
        (a.out.optimizer(), Box::new(|p: &Path| state.write(p))),
        (a.out.model(), Box::new(|p: &Path| net.write(p))),
    ])?;
    Ok(TrainReport {
        samples: samples.len(),
        epochs,
        out: a.out.path().to_path_buf(),
    })
}
