//! `mode report`: `report/index.html` with PNG figures beside it — self-contained, opens from
//! disk, no JavaScript.
//!
//! [`run`] loads what every figure group reads once ([`Inputs`]), then asks each group for its
//! part of the page (each writes its own PNGs): the header, the layer selection, the heat maps,
//! misclassified and most/least similar images, accuracy over the iterations, and the tables.
//! Runs that did not finish, and a sweep made with other settings, are flagged on the page.

mod accuracy;
mod examples;
mod header;
mod heatmaps;
mod html;
mod layers;
mod tables;
mod verdict;

use super::Ctx;
use crate::arm::Arm;
use crate::artifacts::{
    Artifact, Heatmaps, IterDir, Layout, MetricRow, Samples, Split, write_bytes,
};
use crate::config::Pipeline;
use crate::engine::summary::{ArmRun, arm_runs};
use crate::vocab::Space;
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ReportArgs {
    /// The MODE arm whose analysis is shown (layers, heat maps).
    pub arm: Arm,
    /// The HC_i − HC_k pair shown.
    pub pair: (u16, u16),
    /// The folder of `index.html` and its figures.
    pub out: PathBuf,
}

/// What `mode report` wrote: the page that opens the report.
pub struct ReportWritten {
    pub index: PathBuf,
}

impl std::fmt::Display for ReportWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "report: {}", self.index.display())
    }
}

/// Write the report's figures and `index.html` (atomically) into `a.out`.
/// The folder appears whole or not at all: it is written beside its place and renamed into
/// place when complete, so a failure (a full disk) leaves the previous report as it was.
pub fn run(ctx: &Ctx, a: &ReportArgs) -> Result<ReportWritten> {
    crate::artifacts::io::replace_dir(&a.out, |stage| {
        let staged = ReportArgs {
            out: stage.to_path_buf(),
            ..a.clone()
        };
        write_into(ctx, &staged)
    })?;
    Ok(ReportWritten {
        index: Layout::report_index(&a.out),
    })
}

fn write_into(ctx: &Ctx, a: &ReportArgs) -> Result<()> {
    let cx = Inputs::load(ctx, a)?;
    // The answer first, then how it came about, then the details.
    let body = [
        header::title(&cx)?,
        verdict::section(&cx)?,
        accuracy::section(&cx)?,
        verdict::batches(&cx)?,
        layers::section(&cx)?,
        heatmaps::section(&cx)?,
        examples::misclassified(&cx)?,
        examples::similar(&cx)?,
        tables::seed_tables(&cx)?,
        tables::sweep(&cx)?,
        tables::ablation(&cx)?,
        header::details(&cx)?,
    ]
    .concat();
    let index = Layout::report_index(&a.out);
    write_bytes(&index, html::page(&ctx.pipeline.name, &body).as_bytes())
}

/// What the figure groups share, loaded once.
struct Inputs<'a> {
    p: &'a Pipeline,
    layout: &'a Layout,
    args: &'a ReportArgs,
    /// The test split: the dataset's facts and the images of the mistakes.
    test: Samples,
    /// The bug-fix pool: the images of the selections and of the similarity figure.
    pool: Samples,
    /// The shown arm's first iteration: its analysis of the initial model.
    iter1: IterDir,
    /// The heat maps of that iteration.
    maps: Heatmaps,
    /// Every arm's run made with these settings (incomplete ones included, by their status).
    runs: Vec<ArmRun>,
    /// The metrics rows of the initial model and of every complete iteration of every run.
    metrics: Vec<MetricRow>,
}

impl<'a> Inputs<'a> {
    fn load(ctx: &'a Ctx, a: &'a ReportArgs) -> Result<Inputs<'a>> {
        let layout = &ctx.layout;
        let runs = arm_runs(layout, &ctx.pipeline, true)?;
        let iter1 = layout.iter(&a.arm.to_string(), 1);
        if !iter1.heatmaps().exists() {
            bail!(
                "{}: no heat maps for arm {} (run `make all`, or pass --arm with a MODE arm that has run)",
                iter1.path().display(),
                a.arm
            );
        }
        let maps = Heatmaps::read(&iter1.heatmaps())?;
        let (test, pool) = rayon::join(
            || Samples::read(&layout.split(Split::Test)),
            || Samples::read(&layout.split(Split::Pool)),
        );
        let (test, pool) = (test?, pool?);
        let metrics = read_metrics(layout, &runs)?;
        Ok(Inputs {
            p: &ctx.pipeline,
            layout,
            args: a,
            test,
            pool,
            iter1,
            maps,
            runs,
            metrics,
        })
    }

    /// The path of a figure of the report.
    fn figure(&self, name: &str) -> PathBuf {
        Layout::figure(&self.args.out, name)
    }

    /// A label's class name (or its number).
    fn name_of(&self, label: u16) -> String {
        self.test.meta.class_name(label)
    }

    /// Every label of the dataset.
    fn labels(&self) -> std::ops::Range<u16> {
        0..self.test.meta.classes as u16
    }

    /// The height and width an image is drawn at: its channels (C × H × W) stacked top to
    /// bottom, each in gray.
    fn shape(&self) -> (usize, usize) {
        let m = &self.test.meta;
        (m.channels * m.height, m.width)
    }

    /// Where the shown heat maps live (the pipeline's setting when the file holds none).
    fn space(&self) -> Space {
        self.maps
            .rows
            .first()
            .map_or(self.p.heatmap.space, |m| m.space)
    }

    fn run_of(&self, arm: Arm) -> Option<&ArmRun> {
        self.runs.iter().find(|r| r.arm == arm)
    }
}

/// The initial model's metrics and those of every complete iteration of every run.
fn read_metrics(layout: &Layout, runs: &[ArmRun]) -> Result<Vec<MetricRow>> {
    // A `mode debug` loop has no initial model of ours.
    let initial = layout.initial().metrics();
    let mut rows = if initial.exists() {
        Vec::<MetricRow>::read(&initial)?
    } else {
        Vec::new()
    };
    for r in runs {
        let arm = r.arm.to_string();
        for k in 1..=r.manifest.completed {
            rows.extend(Vec::<MetricRow>::read(&layout.iter(&arm, k).metrics())?);
        }
    }
    Ok(rows)
}

/// Stage wall times from the timings log (stage, seconds per line): (stage, runs, total).
pub fn stage_times(path: &Path) -> Vec<(String, usize, f64)> {
    let mut m: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines() {
            let mut it = line.split('\t');
            if let (Some(stage), Some(secs)) =
                (it.next(), it.next().and_then(|s| s.parse::<f64>().ok()))
            {
                let e = m.entry(stage.to_string()).or_default();
                e.0 += 1;
                e.1 += secs;
            }
        }
    }
    m.into_iter().map(|(k, (n, t))| (k, n, t)).collect()
}

/// Pearson correlation of two equally long vectors (0 when either is constant or empty).
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    if a.is_empty() {
        return 0.0;
    }
    let n = a.len() as f64;
    let (ma, mb) = (
        a.iter().map(|&x| x as f64).sum::<f64>() / n,
        b.iter().map(|&x| x as f64).sum::<f64>() / n,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_values() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((correlation(&a, &[2.0, 4.0, 6.0, 8.0]) - 1.0).abs() < 1e-12);
        assert!((correlation(&a, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(correlation(&a, &[5.0; 4]), 0.0, "constant: 0");
        assert_eq!(correlation(&[], &[]), 0.0, "empty: 0");
        let r = correlation(&[1.0, 0.0, 1.0, 0.0], &[1.0, 0.0, 0.0, 0.0]);
        assert!((r - 1.0 / 3f64.sqrt()).abs() < 1e-12, "{r}");
    }

    #[test]
    fn stage_times_sum_per_stage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.log");
        std::fs::write(&p, "train\t1.5\nsplit\t0.5\ntrain\t2.5\nbroken line\n").unwrap();
        assert_eq!(
            stage_times(&p),
            vec![("split".into(), 1, 0.5), ("train".into(), 2, 4.0)]
        );
        assert!(stage_times(&dir.path().join("none")).is_empty());
    }

    #[test]
    fn report_line() {
        let index = Layout::report_index(Path::new("out"));
        assert_eq!(
            ReportWritten { index }.to_string(),
            "report: out/index.html"
        );
    }
}
