//! `mode train`: train (or, with an initial model, continue training) on a Parquet of samples.

use crate::artifacts::{self, Samples, Table, TrainLogRow};
use crate::config::{Pipeline, TrainConfig};
use crate::model::{self, Architecture, Mlp};
use anyhow::{Result, bail};
use std::path::Path;

pub struct TrainReport {
    pub samples: usize,
    pub epochs: Vec<model::EpochStats>,
    pub seconds: f64,
}

/// Train on `samples` starting from `init` (or fresh Keras-style weights) and write
/// `<out_dir>/model.safetensors` and `<out_dir>/train_log.parquet`.
pub fn train_samples(
    p: &Pipeline,
    samples: &Samples,
    init: Option<&Path>,
    cfg: &TrainConfig,
    shuffle_seed: u64,
    out_dir: &Path,
) -> Result<TrainReport> {
    let t0 = std::time::Instant::now();
    let device = model::device(true);
    let (net, arch) = match init {
        Some(path) => {
            let (net, arch) = Mlp::load(path, &device)?;
            if arch.inputs() != samples.meta.features() || arch.classes < samples.meta.classes {
                bail!(
                    "{}: model expects {} inputs and {} classes, the samples have {} and {}",
                    path.display(),
                    arch.inputs(),
                    arch.classes,
                    samples.meta.features(),
                    samples.meta.classes
                );
            }
            (net, arch)
        }
        None => {
            let m = &samples.meta;
            let arch = Architecture::mlp(m.height, m.width, m.classes, &p.model.hidden);
            (Mlp::init(&arch, p.model_seed(), &device), arch)
        }
    };
    let steps = (samples.len().div_ceil(cfg.batch_size) * cfg.epochs) as u64;
    let bar = crate::progress::bar(steps, "train");
    let (net, epochs) = model::fit(
        net,
        &samples.pixels,
        &samples.labels,
        cfg,
        shuffle_seed,
        |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    for e in &epochs {
        tracing::info!(
            "epoch {}/{}: loss {:.4}, accuracy {:.4}, {:.2} s",
            e.epoch,
            cfg.epochs,
            e.loss,
            e.accuracy,
            e.seconds
        );
    }
    net.save(&arch, &out_dir.join(artifacts::MODEL))?;
    TrainLogRow::write(&out_dir.join(artifacts::TRAIN_LOG), &log_rows(&epochs))?;
    Ok(TrainReport {
        samples: samples.len(),
        epochs,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The rows of `train_log.parquet` for these epochs.
pub fn log_rows(epochs: &[model::EpochStats]) -> Vec<TrainLogRow> {
    epochs
        .iter()
        .map(|e| TrainLogRow {
            epoch: e.epoch as u32,
            loss: e.loss,
            accuracy: e.accuracy,
            seconds: e.seconds,
        })
        .collect()
}

/// A fresh model (the pipeline's architecture and weight seed) trained on `samples` with the
/// `[train]` section, shuffled from the pipeline's "train" stream — what `mode train` does.
pub fn fit_fresh(
    p: &Pipeline,
    samples: &Samples,
) -> Result<(Mlp, Architecture, Vec<model::EpochStats>)> {
    let m = &samples.meta;
    let arch = Architecture::mlp(m.height, m.width, m.classes, &p.model.hidden);
    let net = Mlp::init(&arch, p.model_seed(), &model::device(true));
    let seed = crate::config::derive_seed(p.seed, "train");
    let (net, epochs) = model::fit(
        net,
        &samples.pixels,
        &samples.labels,
        &p.train,
        seed,
        |_, _| {},
    )?;
    Ok((net, arch, epochs))
}

/// `mode train --data FILE [--init MODEL] --out DIR`.
pub fn run(p: &Pipeline, data: &Path, init: Option<&Path>, out_dir: &Path) -> Result<TrainReport> {
    let samples = Samples::read(data)?;
    if samples.is_empty() {
        bail!("{}: no samples to train on", data.display());
    }
    let seed =
        crate::config::derive_seed(p.seed, if init.is_some() { "continue" } else { "train" });
    train_samples(p, &samples, init, &p.train, seed, out_dir)
}
