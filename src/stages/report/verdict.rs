//! The page's first screen: the answer — which labels are buggy, at which layer and decided by
//! whom (with the model's and the feature model's accuracy per label), the checks that fired,
//! and the arms ranked by Δ vs the control in points (a sweep's intervals when there is one)
//! — then what each iteration selected.

use super::Inputs;
use super::html::{esc, img, table, warn};
use crate::analysis::verdict::Verdict;
use crate::artifacts::{Artifact, BatchRow, MetricRow};
use crate::plots::{self, Tile};
use crate::vocab::{Origin, Scope};
use anyhow::Result;
use std::collections::HashMap;
use std::fmt::Write as _;

/// The verdict of the runs on the page: the shown arm's first diagnosis, and the arms against
/// the control when it ran (a `mode debug` loop has no control: the diagnosis alone).
fn load(cx: &Inputs) -> Result<Option<Verdict>> {
    let initial = cx
        .metrics
        .iter()
        .find(|r: &&MetricRow| r.scope == Scope::Overall && r.iteration == 0)
        .map_or(f64::NAN, |r| r.accuracy);
    let rows = if cx.runs.iter().any(|r| r.arm.is_control()) {
        crate::engine::summary::summary_rows(initial, &cx.runs)?
    } else {
        Vec::new()
    };
    crate::engine::summary::load_verdict(cx.layout, cx.p, cx.args.arm, &cx.runs, &rows)
}

pub(super) fn section(cx: &Inputs) -> Result<String> {
    let Some(v) = load(cx)? else {
        return Ok(warn(
            "No verdict yet: the shown arm has no diagnosis of the initial model (make all, or mode debug, makes one).",
        ));
    };
    let mut html = String::from("<h2>The answer</h2>");
    let faulty = v.faulty();
    let _ = write!(
        html,
        "<p class=\"verdict\"><b>{}</b> — θ = {:.3}; target layer <b>{}</b>; decided by {}.</p>",
        if faulty.is_empty() {
            "No label is faulty".to_string()
        } else {
            format!("Faulty labels: {}", esc(&faulty.join(", ")))
        },
        v.theta,
        esc(&v.target),
        esc(&v.decided())
    );
    for n in &v.notes {
        html += &warn(n);
    }
    html += &arms(cx, &v)?;
    html += &label_table(&v);
    Ok(html)
}

/// The best arm and the forest plot of every arm's Δ vs the control.
fn arms(cx: &Inputs, v: &Verdict) -> Result<String> {
    let mut html = String::new();
    let best = v.arms.first();
    if let Some(b) = best {
        let _ = write!(
            html,
            "<p><b>Best selection: {}</b> ({} points vs the random control{}); initial accuracy {:.4}, control final {:.4}.</p>",
            esc(&b.arm),
            esc(&Verdict::delta_text(b)),
            v.seeds.map_or(", this run".to_string(), |s| format!(
                ", mean over {s} seeds"
            )),
            v.initial,
            v.control
        );
    }
    let rows: Vec<(String, f64, f64, f64)> = v
        .arms
        .iter()
        .map(|a| match a.sweep {
            Some((m, lo, hi, _)) => (a.arm.clone(), m, lo, hi),
            None => (a.arm.clone(), a.delta, a.delta, a.delta),
        })
        .collect();
    if !rows.is_empty() {
        let file = cx.figure("verdict");
        plots::forest_png_with(
            &file,
            "Δ final test accuracy vs the random control, points (best first)",
            if v.seeds.is_some() {
                "points (mean over seeds, 95% interval)"
            } else {
                "points (this run)"
            },
            &rows,
        )?;
        html += &img(&file, "arms ranked by Δ vs the control");
    }
    Ok(html)
}

/// The table of the labels: the model's and the feature model's accuracy, and which are
/// faulty.
fn label_table(v: &Verdict) -> String {
    let mut html = String::new();
    let labels: Vec<Vec<String>> = v
        .labels
        .iter()
        .map(|l| {
            vec![
                format!("{}{}", if l.faultiest { "⚠ " } else { "" }, l.name),
                format!("{:.3}", l.model_acc),
                format!("{:.3}", l.target_acc),
                match l.action {
                    crate::vocab::Action::FixUnderfit => "underfit".into(),
                    crate::vocab::Action::FixOverfit => "overfit".into(),
                    crate::vocab::Action::None => String::new(),
                },
            ]
        })
        .collect();
    let _ = write!(
        html,
        "<h3>Per label (initial model, {})</h3>",
        esc(&v.shown)
    );
    let feature = format!("feature model at {}", v.target);
    html += &table(&["label", "model accuracy", &feature, "faulty"], &labels);
    html
}

/// What the shown arm selected at each iteration: its targeted samples first.
pub(super) fn batches(cx: &Inputs) -> Result<String> {
    const SHOWN: usize = 12;
    let arm = cx.args.arm.to_string();
    let Some(run) = cx.run_of(cx.args.arm) else {
        return Ok(String::new());
    };
    let pool = &cx.pool;
    let row_of: HashMap<u32, usize> = pool
        .ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let mut tiles = Vec::new();
    let mut titles = Vec::new();
    for k in 1..=run.manifest.completed {
        let batch = Vec::<BatchRow>::read(&cx.layout.iter(&arm, k).batch())?;
        let targeted: Vec<&BatchRow> = batch
            .iter()
            .filter(|b| b.origin == Origin::Targeted)
            .collect();
        let label = targeted.first().map_or("none targeted".to_string(), |b| {
            format!("label {}", cx.name_of(b.label))
        });
        titles.push(format!("iter {k}: {label}"));
        let chosen: Vec<&BatchRow> = targeted
            .iter()
            .copied()
            .chain(batch.iter().filter(|b| b.origin == Origin::Random))
            .take(SHOWN)
            .collect();
        for i in 0..SHOWN {
            tiles.push(
                match chosen
                    .get(i)
                    .and_then(|b| row_of.get(&b.id).map(|&r| (b, r)))
                {
                    Some((b, r)) => Tile {
                        values: pool.pixels.row(r).to_vec(),
                        caption: format!(
                            "{}{}",
                            cx.name_of(b.label),
                            if b.origin == Origin::Targeted {
                                " ◆"
                            } else {
                                ""
                            }
                        ),
                        signed: false,
                    },
                    None => Tile {
                        values: vec![1.0; pool.pixels.ncols()],
                        caption: String::new(),
                        signed: false,
                    },
                },
            );
        }
    }
    if tiles.is_empty() {
        return Ok(String::new());
    }
    let file = cx.figure("batches");
    plots::grid_png(&file, &tiles, cx.shape(), SHOWN, 2, &titles)?;
    Ok(format!(
        "<h2>What {} selected</h2><p>Per iteration, the first {SHOWN} samples of its batch: the targeted share first (◆), then the random share.</p>",
        esc(&arm)
    ) + &img(&file, "the selected batches"))
}
