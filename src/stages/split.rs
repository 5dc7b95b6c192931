//! `mode split`: idx files, an image folder or a Parquet table → `splits/{train,pool,test}.parquet`
//! (and `splits/sources.parquet` for folders and tables), with optional fault injection (see
//! [`crate::engine::split`] for the plan and the ids).

use super::Ctx;
use crate::artifacts::io::{GroupFile, write_together};
use crate::artifacts::layout::{sources_file, split_file};
use crate::artifacts::{Artifact, Split};
use crate::engine::split::{SplitPlan, make, source_rows};
use crate::sources::load;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Counts reported by the split.
pub struct SplitReport {
    pub train: usize,
    pub pool: usize,
    pub test: usize,
    pub holdout: usize,
    pub plan: SplitPlan,
    pub out: PathBuf,
}

/// Where `mode split` reads from and writes to.
pub struct SplitArgs {
    pub idx_dir: Option<PathBuf>,
    pub out: PathBuf,
}

impl std::fmt::Display for SplitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "split: train {} / pool {} / test {} / holdout {} rows → {} (skew moved {}, cap moved {}, labels flipped {})",
            self.train,
            self.pool,
            self.test,
            self.holdout,
            self.out.display(),
            self.plan.skew_moved,
            self.plan.cap_moved,
            self.plan.flipped
        )
    }
}

/// Read the source, plan the split and write the split files (and, for image folders and
/// tables, the sources table) into `out`, together: each is staged under a temporary name and
/// all are renamed into place only when every one is complete.
pub fn run(ctx: &Ctx, a: &SplitArgs) -> Result<SplitReport> {
    let p = &ctx.pipeline;
    let src = load(p, a.idx_dir.as_deref())?;
    let splits = make(p, &src)?;
    let sources = src.has_sources().then(|| source_rows(&src, &splits));
    drop(src); // the splits hold copies; free the whole set before the writers allocate
    let mut files: Vec<GroupFile> = splits
        .each()
        .into_iter()
        .map(|(split, s)| -> GroupFile {
            (
                split_file(&a.out, split),
                Box::new(move |f: &Path| s.write(f)),
            )
        })
        .collect();
    if let Some(rows) = &sources {
        files.push((
            sources_file(&a.out),
            Box::new(move |f: &Path| rows.write(f)),
        ));
    }
    write_together(files)?;
    // Files of an earlier split that this one does not make.
    for (stale, made) in [
        (split_file(&a.out, Split::Holdout), splits.holdout.is_some()),
        (sources_file(&a.out), sources.is_some()),
    ] {
        if !made && stale.exists() {
            std::fs::remove_file(&stale)?;
        }
    }
    Ok(SplitReport {
        train: splits.train.len(),
        pool: splits.pool.len(),
        test: splits.test.len(),
        holdout: splits.holdout.as_ref().map_or(0, |h| h.len()),
        plan: splits.plan,
        out: a.out.clone(),
    })
}
