//! `mode summary`: the seed's tables from every arm's metrics → `summary.parquet`.
//!
//! One row per arm other than the control (`random`): initial accuracy (the shared initial
//! model), final accuracy (the arm's last iteration), control accuracy (the `random` arm's last
//! iteration), whether the arm finished early, `diff_i_f` = initial − final and
//! `diff_f_c` = final − control (the seed's column names, signs as written: a MODE gain shows
//! as a negative diff_i_f and a positive diff_f_c).

use crate::artifacts::{self, Layout, MetricRow, SummaryRow, Table};
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Split an arm name `mode-<metric>[-nols]`, `label-random[-nols]`, `uncertainty[-nols]`.
pub fn parse_arm(arm: &str) -> (String, bool) {
    let (base, ls) = match arm.strip_suffix("-nols") {
        Some(b) => (b, false),
        None => (arm, true),
    };
    (base.strip_prefix("mode-").unwrap_or(base).to_string(), ls)
}

/// Every metrics file of a pipeline's output: `initial/` and `runs/<arm>/iter-<k>/`.
pub fn metric_files(layout: &Layout) -> Result<Vec<PathBuf>> {
    let mut files = vec![layout.initial_dir().join(artifacts::METRICS)];
    let runs = layout.root.join("runs");
    if runs.is_dir() {
        for arm in std::fs::read_dir(&runs)? {
            let arm = arm?.path();
            if !arm.is_dir() {
                continue;
            }
            for it in std::fs::read_dir(&arm)? {
                let f = it?.path().join(artifacts::METRICS);
                if f.is_file() {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Summarise metric rows (pure).
pub fn summarise(rows: &[MetricRow], control: &str) -> Result<Vec<SummaryRow>> {
    let overall: Vec<&MetricRow> = rows.iter().filter(|r| r.scope == "overall").collect();
    let Some(initial) = overall.iter().find(|r| r.iteration == 0) else {
        bail!("no initial (iteration 0) metrics: run `mode evaluate` on the initial model");
    };
    let mut last: BTreeMap<&str, &MetricRow> = BTreeMap::new();
    let mut early: BTreeMap<&str, bool> = BTreeMap::new();
    for r in overall.iter().filter(|r| r.iteration > 0) {
        let e = last.entry(&r.arm).or_insert(r);
        if r.iteration > e.iteration {
            *e = r;
        }
        *early.entry(&r.arm).or_default() |= r.finished_early;
    }
    let control_acc = last.get(control).map_or(f64::NAN, |r| r.accuracy);
    Ok(last
        .iter()
        .filter(|(a, _)| **a != control)
        .map(|(arm, r)| {
            let (metric, layer_select) = parse_arm(arm);
            SummaryRow {
                arm: arm.to_string(),
                metric,
                layer_select,
                iterations: r.iteration,
                initial_acc: initial.accuracy,
                final_acc: r.accuracy,
                control_acc,
                finished_early: early[arm],
                diff_i_f: initial.accuracy - r.accuracy,
                diff_f_c: r.accuracy - control_acc,
            }
        })
        .collect())
}

/// The rows as the seed's table, in Markdown.
pub fn markdown(rows: &[SummaryRow]) -> String {
    let mut s = String::from(
        "| arm | metric | layer sel. | initial acc | final acc | control acc | finished early | diff I−F | diff F−C |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.4} | {} | {:+.4} | {:+.4} |\n",
            r.arm,
            r.metric,
            r.layer_select,
            r.initial_acc,
            r.final_acc,
            r.control_acc,
            r.finished_early,
            r.diff_i_f,
            r.diff_f_c
        );
    }
    s
}

pub fn run(layout: &Layout, out: &Path) -> Result<Vec<SummaryRow>> {
    let mut rows = Vec::new();
    for f in metric_files(layout)? {
        rows.extend(MetricRow::read(&f)?);
    }
    let summary = summarise(&rows, "random")?;
    SummaryRow::write(out, &summary)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(arm: &str, it: u32, acc: f64, early: bool) -> MetricRow {
        MetricRow {
            pipeline: "p".into(),
            seed: 1,
            arm: arm.into(),
            iteration: it,
            scope: "overall".into(),
            label: None,
            accuracy: acc,
            loss: 0.0,
            n: 10,
            finished_early: early,
        }
    }

    #[test]
    fn table_one_row() {
        let rows = vec![
            m("initial", 0, 0.90, false),
            m("mode-dot", 1, 0.91, false),
            m("mode-dot", 2, 0.93, true),
            m("random", 1, 0.91, false),
            m("random", 2, 0.92, false),
            m("mode-dot-nols", 1, 0.89, false),
        ];
        let s = summarise(&rows, "random").unwrap();
        assert_eq!(s.len(), 2);
        let d = &s[0];
        assert_eq!(
            (d.arm.as_str(), d.metric.as_str(), d.layer_select),
            ("mode-dot", "dot", true)
        );
        assert!((d.diff_i_f - (0.90 - 0.93)).abs() < 1e-12);
        assert!((d.diff_f_c - (0.93 - 0.92)).abs() < 1e-12);
        assert!(d.finished_early);
        assert!(!s[1].layer_select);
    }
}
