//! One module per command, each with one `run` that takes checked inputs and returns a report
//! that prints its own one-line summary. The loop's stages call the engine's steps over a
//! file store; the runners call the same steps over a memory store.

pub mod ablate;
pub mod debug;
pub mod evaluate;
pub mod experiment;
pub mod heatmap;
pub mod info;
pub mod layers;
pub mod probe;
pub mod report;
pub mod retrain;
pub mod select;
pub mod split;
pub mod summary;
pub mod sweep;
pub mod train;

use crate::arm::Arm;
use crate::artifacts::Layout;
use crate::config::Pipeline;
use crate::engine::{Step, Store, runs};

/// What every command runs with: the checked pipeline and the output layout.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub pipeline: Pipeline,
    pub layout: Layout,
}

/// One iteration of one arm, as the loop's stage commands address it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub arm: Arm,
    pub k: u32,
}

/// Whether a stage command is the first of its iteration (which may start a new run at
/// iteration 1) or follows one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    First,
    Later,
}

impl Ctx {
    /// A file store over the layout, and the step of `at` — after checking that the arm's run
    /// folder belongs to these settings.
    pub fn step(&self, at: At, stage: Stage) -> anyhow::Result<(Store, Step)> {
        let first = stage == Stage::First;
        if at.k == 0 || at.k > self.pipeline.mode.max_iter as u32 {
            anyhow::bail!(
                "--iteration {} is out of range: 1 to mode.max_iter = {}",
                at.k,
                self.pipeline.mode.max_iter
            );
        }
        let store = Store::files(self.layout.clone());
        if at.k == 1 && first {
            runs::check_foundation(&store, &self.pipeline)?;
        }
        let step = Step::new(&self.layout, &self.pipeline, at.arm, at.k);
        runs::begin_stage(&store, &step, first)?;
        Ok((store, step))
    }
}
