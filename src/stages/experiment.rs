//! `mode experiment`: every arm's loop in one process, arms in parallel — the same steps as
//! the make chain over a memory store written through to disk, so both write the same files.
//! Rerun after an interruption, it resumes each arm after its last complete iteration.

use super::Ctx;
use crate::arm::Arm;
use crate::artifacts::{Samples, Split};
use crate::engine::runner::{IterRecord, run_arms};
use crate::engine::{Store, layers, runs};
use anyhow::Result;

pub struct ExperimentArgs {
    pub arms: Vec<Arm>,
}

pub struct ExperimentReport {
    pub arms: usize,
    pub iterations: usize,
    pub records: Vec<IterRecord>,
    pub runs: std::path::PathBuf,
}

impl std::fmt::Display for ExperimentReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = |arm: Arm| {
            self.records
                .iter()
                .filter(|r| r.arm == arm)
                .max_by_key(|r| r.iteration)
                .map(|r| r.accuracy)
        };
        write!(
            f,
            "experiment: {} arms × {} iterations → {}",
            self.arms,
            self.iterations,
            self.runs.display()
        )?;
        if let Some(c) = last(crate::arm::CONTROL) {
            write!(f, " (control final accuracy {c:.4})")?;
        }
        Ok(())
    }
}

pub fn run(ctx: &Ctx, a: &ExperimentArgs) -> Result<ExperimentReport> {
    let store = Store::memory(ctx.layout.clone(), true);
    runs::check_foundation(&store, &ctx.pipeline)?;
    if ctx.pipeline.layers.enabled
        && a.arms
            .iter()
            .any(|arm| arm.layer_select && arm.strategy.needs_diagnosis())
    {
        // The input feature model (one thread, about a second on MNIST) while another thread
        // reads the pool and test splits that every arm's first step needs.
        let prefetch = || -> Result<()> {
            for split in [Split::Pool, Split::Test] {
                store.get::<Samples>(&ctx.layout.split(split))?;
            }
            Ok(())
        };
        let (head, read) = rayon::join(|| layers::input_head(&store, &ctx.pipeline), prefetch);
        head?;
        read?;
    }
    let records = run_arms(&store, &ctx.pipeline, &a.arms)?;
    Ok(ExperimentReport {
        arms: a.arms.len(),
        iterations: ctx.pipeline.mode.max_iter,
        records,
        runs: ctx.layout.runs_dir(),
    })
}
