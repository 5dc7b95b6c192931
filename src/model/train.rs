//! Training one model (a fleet of one, see [`super::fleet`]) and the figures it reports.

use super::adam::OptimState;
use super::fleet::{self, Job};
use super::net::Net;
use anyhow::Result;
use ndarray::Array2;

/// One epoch's figures.
#[derive(Debug, Clone, Copy)]
pub struct EpochStats {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub seconds: f64,
}

/// Train the job's `net` with Adam (Keras' form) on its `x`/`y`, shuffling each epoch from its
/// `seed`, continuing from Adam's `state` when given (Keras' `fit` on a compiled model again).
/// `on_step(done, total)` reports progress in batches. A non-finite loss stops training with
/// an error. Returns the trained model, the epochs' figures and Adam's state.
pub fn fit(
    job: Job,
    on_step: impl Fn(usize, usize) + Sync,
) -> Result<(Net, Vec<EpochStats>, OptimState)> {
    let t = fleet::fit_all(vec![job], &on_step)
        .pop()
        .expect("one result")?;
    Ok((t.net, t.epochs, t.state))
}

/// Per-sample cross-entropy of probabilities against labels.
pub fn cross_entropy(probs: &Array2<f32>, labels: &[u16]) -> Vec<f64> {
    probs
        .rows()
        .into_iter()
        .zip(labels)
        .map(|(r, &l)| -(r[l as usize].max(1e-7) as f64).ln())
        .collect()
}
