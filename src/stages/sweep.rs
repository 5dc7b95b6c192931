//! `mode sweep`: many seeds × every arm, in one process, with paired statistics.
//!
//! Seed i uses master seed `seed + i` for everything — split, weights, shuffling, selection —
//! (a pipeline's explicit `split.seed` / `model.seed` are ignored so that each seed really
//! re-splits and re-trains). Every arm starts from that seed's initial model and runs the
//! same steps as `mode experiment`, in memory ([`crate::engine::grid`]); the control is
//! `random`. Only the summaries are kept unless `--keep-artifacts` writes each seed's files
//! under `sweep/seed-<s>/`.
//!
//! `--shard I/N` runs only shard I's seeds and writes them as a part; `--merge` turns the
//! parts into the same files as one run (see [`crate::engine::shard`]).

use super::Ctx;
use crate::arm::{Arm, CONTROL};
use crate::artifacts::io::write_together;
use crate::artifacts::{Artifact, Grid, SweepSummaryRow, Unit, write_bytes};
use crate::config::Pipeline;
use crate::engine::grid::{self, Gathered, GridRun, SWEEP_KIND, SeedResult};
use crate::engine::shard::{self, Outcome, Plan};
use crate::vocab::IterStatus;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct SweepArgs {
    pub seeds: usize,
    pub arms: Vec<Arm>,
    pub idx_dir: Option<PathBuf>,
    pub keep: bool,
    /// Every seed here, one shard's seeds as a part, or a merge of the parts.
    pub plan: Plan,
}

pub struct SweepReport {
    pub seeds: usize,
    pub arms: usize,
    pub iterations: usize,
    pub summary: Vec<SweepSummaryRow>,
    pub seconds: f64,
    pub out: PathBuf,
    /// How many parts were merged (0: the seeds ran here).
    pub merged: usize,
}

impl std::fmt::Display for SweepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.merged > 0 {
            format!(" merged from {} shards", self.merged)
        } else {
            String::new()
        };
        write!(
            f,
            "sweep: {} seeds × {} arms × {} iterations{how} in {:.1} s → {}\n\n{}",
            self.seeds,
            self.arms,
            self.iterations,
            self.seconds,
            self.out.display(),
            grid::markdown(&self.summary)
        )
    }
}

/// The sweep's grid: its seeds × arms, one setting (the pipeline as given).
pub fn grid(p: &Pipeline, seeds: usize, arms: &[Arm]) -> Grid {
    Grid {
        kind: SWEEP_KIND.into(),
        pipeline: p.fingerprint(),
        initial: p.initial_fingerprint(),
        first_seed: p.seed,
        seeds,
        arms: arms.iter().map(|a| a.to_string()).collect(),
        settings: vec![shard::BASE.into()],
    }
}

/// Run the seeds (all, or a shard's); write `sweep.parquet`, `sweep_summary.parquet` and `.md`
/// and the sweep's manifest into the root — or, for a shard, its part; or merge the parts.
pub fn run(ctx: &Ctx, a: &SweepArgs) -> Result<Outcome<SweepReport>> {
    let (p, layout) = (&ctx.pipeline, &ctx.layout);
    if a.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if !a.arms.contains(&CONTROL) {
        bail!("the sweep compares against the control arm `{CONTROL}`: include it in --arms");
    }
    let t0 = Instant::now();
    let grid = grid(p, a.seeds, &a.arms);
    let last = p.mode.max_iter as u32;
    grid::run_plan(
        layout,
        &grid,
        a.plan,
        t0,
        |units| {
            let src = crate::sources::load(p, a.idx_dir.as_deref())?;
            let g = GridRun {
                grid: &grid,
                pipelines: std::slice::from_ref(p),
                arms: &a.arms,
                src: &src,
                keep: a.keep,
            };
            grid::run_units(layout, &g, units, "sweep")
        },
        |_, r| shard::part_rows(shard::BASE, last, r),
        |results, merged| finish(ctx, a, results, t0, merged),
    )
}

/// Every seed's result (in seed order) → the sweep's rows, summaries and manifest, written
/// together: the one code path of a one-machine run and of a merge.
fn finish(
    ctx: &Ctx,
    a: &SweepArgs,
    results: Vec<(Unit, SeedResult)>,
    t0: Instant,
    merged: usize,
) -> Result<SweepReport> {
    let (p, layout) = (&ctx.pipeline, &ctx.layout);
    let mut gathered = Gathered::default();
    let mut m = grid::sweep_manifest(p, a.seeds, &a.arms);
    for (u, r) in results {
        gathered.add(p.seed as i64 + u.seed as i64, r);
        m.complete(u.seed as u32 + 1, IterStatus::Ran);
    }
    let summary = grid::arm_summaries(&gathered.runs(p.mode.theta));
    let rows = gathered.rows;
    let md = grid::markdown(&summary);
    write_together(vec![
        (layout.sweep(), Box::new(|f: &Path| rows.write(f))),
        (
            layout.sweep_summary(),
            Box::new(|f: &Path| summary.write(f)),
        ),
        (
            layout.sweep_markdown(),
            Box::new(|f: &Path| write_bytes(f, md.as_bytes())),
        ),
        (layout.sweep_manifest(), Box::new(|f: &Path| m.write(f))),
    ])?;
    Ok(SweepReport {
        seeds: a.seeds,
        arms: a.arms.len(),
        iterations: p.mode.max_iter,
        summary,
        seconds: t0.elapsed().as_secs_f64(),
        out: layout.sweep_summary(),
        merged,
    })
}
