//! The iteration engine: one set of step functions — probe, layers, heatmap, select,
//! retrain, evaluate — over a [`Store`] (files for the stage commands, memory for the
//! in-process runners). Each step reads its inputs from the store by their layout paths and
//! puts its outputs there, so `mode experiment` writes exactly what the make chain writes.

pub mod grid;
pub mod heatmap;
pub mod layers;
pub mod probe;
pub mod runner;
pub mod runs;
pub mod select;
pub mod shard;
pub mod split;
pub mod store;
pub mod summary;
pub mod train;

pub use store::Store;

use crate::arm::Arm;
use crate::artifacts::{IterDir, Layout, Split};
use crate::config::{AnalysisSplit, Pipeline};
use crate::vocab::Space;
use std::path::PathBuf;

/// One iteration of one arm: its effective pipeline and its folders.
#[derive(Debug, Clone)]
pub struct Step {
    /// The arm's effective pipeline ([`Arm::pipeline`]).
    pub p: Pipeline,
    pub arm: Arm,
    /// 1-based.
    pub k: u32,
    /// This iteration's folder: the analysis of the previous model, the selection, the new
    /// model and its metrics.
    pub dir: IterDir,
    /// The previous model's folder (the initial model for k = 1).
    pub prev: IterDir,
    pub layout: Layout,
}

impl Step {
    /// Iteration `k` (≥ 1) of `arm` under `layout`, with the arm's effective pipeline.
    pub fn new(layout: &Layout, base: &Pipeline, arm: Arm, k: u32) -> Step {
        let name = arm.to_string();
        Step {
            p: arm.pipeline(base),
            arm,
            k,
            dir: layout.iter(&name, k),
            prev: layout.iter(&name, k - 1),
            layout: layout.clone(),
        }
    }

    pub fn arm_name(&self) -> String {
        self.arm.to_string()
    }

    /// The pool before this iteration's selection.
    pub fn pool_before(&self) -> PathBuf {
        if self.k == 1 {
            self.layout.split(Split::Pool)
        } else {
            self.prev.pool()
        }
    }

    /// Whether this iteration analyses the previous model (probe → layers → heatmap).
    pub fn analyses(&self) -> bool {
        self.arm.strategy.needs_diagnosis()
    }

    /// The split the layer selection, the diagnosis and the heat maps look at
    /// (`heatmap.split`): test (the seed), train, or the holdout.
    pub fn analysis_split(&self) -> Split {
        match self.p.heatmap.split {
            AnalysisSplit::Test => Split::Test,
            AnalysisSplit::Train => Split::Train,
            AnalysisSplit::Holdout => Split::Holdout,
        }
    }

    /// The splits the probe records: train and test, the holdout when the analysis looks at
    /// it, and the pool when the strategy or feature-space heat maps need its states.
    pub fn probe_splits(&self) -> Vec<Split> {
        let mut v = vec![Split::Train, Split::Test];
        if self.analysis_split() == Split::Holdout {
            v.push(Split::Holdout);
        }
        if self.arm.strategy.needs_pool_states() || self.p.heatmap.space == Space::Feature {
            v.push(Split::Pool);
        }
        v
    }
}

#[cfg(test)]
mod protocol_tests;
#[cfg(test)]
mod tests;
