//! `mode retrain`: continue training the current model on the selected batch.
//!
//! The batch's ids are looked up in the bug-fix pool split; training uses the `[retrain]`
//! section. An empty batch (the arm finished early) copies the model unchanged.

use crate::artifacts::{self, BatchRow, Samples, Table, TrainLogRow};
use crate::config::{Pipeline, derive_seed};
use crate::stages::train::train_samples;
use anyhow::{Context, Result};
use std::path::Path;

/// The shuffling seed of one arm's retraining at one iteration.
pub fn shuffle_seed(p: &Pipeline, arm: &str, iteration: u32) -> u64 {
    derive_seed(p.seed, &format!("retrain/{arm}/{iteration}"))
}

pub struct RetrainReport {
    pub samples: usize,
    pub seconds: f64,
}

pub fn run(
    p: &Pipeline,
    model: &Path,
    batch: &Path,
    splits_dir: &Path,
    out_dir: &Path,
) -> Result<RetrainReport> {
    let t0 = std::time::Instant::now();
    let rows = BatchRow::read(batch)?;
    if rows.is_empty() {
        let dst = out_dir.join(artifacts::MODEL);
        artifacts::write_atomic(&dst, |mut f| {
            let mut src = std::fs::File::open(model)
                .with_context(|| format!("cannot open {}", model.display()))?;
            std::io::copy(&mut src, &mut f)?;
            Ok(())
        })?;
        TrainLogRow::write(&out_dir.join(artifacts::TRAIN_LOG), &[])?;
        return Ok(RetrainReport {
            samples: 0,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    let ids: Vec<u32> = rows.iter().map(|r| r.id).collect();
    let (arm, iteration) = (&rows[0].arm, rows[0].iteration);
    let pool = Samples::read(&splits_dir.join("pool.parquet"))?;
    let samples = pool.take_ids(&ids, &batch.display().to_string())?;
    let seed = shuffle_seed(p, arm, iteration);
    let r = train_samples(p, &samples, Some(model), &p.retrain, seed, out_dir)?;
    Ok(RetrainReport {
        samples: r.samples,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
