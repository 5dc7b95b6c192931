//! Section 5: overall test accuracy per iteration for every arm against the control, and
//! per-label accuracy before and after.

use super::Inputs;
use super::header::is_flagged;
use super::html::img;
use crate::arm::{CONTROL, Strategy};
use crate::artifacts::MetricRow;
use crate::engine::summary::ArmRun;
use crate::plots::{self, Series};
use crate::vocab::Scope;
use anyhow::Result;
use plotters::style::RGBColor;

pub(super) fn section(cx: &Inputs) -> Result<String> {
    let mut html = String::from(
        "<h2>Δ vs the control per iteration</h2><p>Each arm's test accuracy minus the random control's at the same iteration, in points (×100); iteration 0 is the shared initial model.</p>",
    );
    html += &per_iteration(cx)?;
    html += &per_label(cx)?;
    Ok(html)
}

/// The overall test accuracy of the initial model (NaN when its row is missing).
pub(super) fn initial_accuracy(metrics: &[MetricRow]) -> f64 {
    metrics
        .iter()
        .find(|r| r.scope == Scope::Overall && r.iteration == 0)
        .map_or(f64::NAN, |r| r.accuracy)
}

/// Per-label test accuracy of `arm` at `iteration` (`None`: the initial model, iteration 0),
/// NaN for a label without a row.
pub(super) fn label_acc(
    metrics: &[MetricRow],
    arm: Option<&str>,
    iteration: u32,
    classes: u16,
) -> Vec<f64> {
    (0..classes)
        .map(|l| {
            metrics
                .iter()
                .find(|r| {
                    r.scope == Scope::Label
                        && r.label == Some(l)
                        && r.iteration == iteration
                        && arm.is_none_or(|a| r.arm == a)
                })
                .map_or(f64::NAN, |r| r.accuracy)
        })
        .collect()
}

/// An arm's accuracy line: the initial model at 0, then each complete iteration. The control
/// is solid black, MODE arms solid, the other baselines dashed; a run that did not go as
/// planned says so in the legend.
fn series_of(cx: &Inputs, run: &ArmRun, initial: f64, i: usize) -> Series {
    let name = run.arm.to_string();
    let mut rows: Vec<&MetricRow> = cx
        .metrics
        .iter()
        .filter(|r| r.arm == name && r.scope == Scope::Overall && r.iteration > 0)
        .collect();
    rows.sort_by_key(|r| r.iteration);
    let mut points = vec![(0.0, initial)];
    points.extend(rows.iter().map(|r| (r.iteration as f64, r.accuracy)));
    let status = run.manifest.status;
    Series {
        name: if is_flagged(status) {
            format!("{name} ({status})")
        } else {
            name
        },
        points,
        color: if run.arm.is_control() {
            RGBColor(0, 0, 0)
        } else {
            plots::palette(i)
        },
        dashed: !run.arm.is_control() && !matches!(run.arm.strategy, Strategy::Mode(_)),
    }
}

/// The arm families drawn as small multiples: a handful of lines each, distinct colours.
const FAMILIES: [(&str, &str); 3] = [
    ("delta_mode_ls", "MODE with layer selection"),
    ("delta_mode_nols", "MODE without layer selection"),
    ("delta_baselines", "baselines"),
];

fn family_of(arm: crate::arm::Arm) -> Option<usize> {
    match arm.strategy {
        _ if arm.is_control() => None,
        Strategy::Mode(_) if arm.layer_select => Some(0),
        Strategy::Mode(_) => Some(1),
        _ => Some(2),
    }
}

/// Δ vs the control per iteration, in points: every arm's accuracy minus the control's at the
/// same iteration (0 = the shared initial model), one chart per arm family.
fn per_iteration(cx: &Inputs) -> Result<String> {
    let initial = initial_accuracy(&cx.metrics);
    let iters: Vec<String> = (0..=cx.p.mode.max_iter).map(|k| k.to_string()).collect();
    let Some(control) = cx.runs.iter().find(|r| r.arm.is_control()) else {
        return Ok("<p>(The control has not run: no chart.)</p>".into());
    };
    let control = series_of(cx, control, initial, 0);
    let at = |s: &Series, x: f64| s.points.iter().find(|p| p.0 == x).map(|p| p.1);
    let mut html = String::new();
    for (f, (name, title)) in FAMILIES.iter().enumerate() {
        let chosen: Vec<Series> = cx
            .runs
            .iter()
            .filter(|r| family_of(r.arm) == Some(f))
            .enumerate()
            .map(|(i, r)| {
                let mut s = series_of(cx, r, initial, i);
                s.points = s
                    .points
                    .iter()
                    .filter_map(|&(x, y)| at(&control, x).map(|c| (x, 100.0 * (y - c))))
                    .collect();
                s.dashed = false;
                s
            })
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let mut all = chosen;
        all.push(Series {
            name: "control (random)".into(),
            points: control.points.iter().map(|&(x, _)| (x, 0.0)).collect(),
            color: RGBColor(0, 0, 0),
            dashed: true,
        });
        let file = cx.figure(name);
        plots::line_png(
            &file,
            &plots::LineChart {
                title: &format!("Δ test accuracy vs the control, points — {title}"),
                x_desc: "iteration",
                y_desc: "Δ (points)",
                series: &all,
                x_names: &iters,
                marks: &[],
            },
            (1000, 400),
        )?;
        html += &img(&file, title);
    }
    Ok(html)
}

fn per_label(cx: &Inputs) -> Result<String> {
    let classes = cx.test.meta.classes as u16;
    let cats: Vec<String> = cx.labels().map(|l| cx.name_of(l)).collect();
    let mut groups = vec![(
        crate::engine::train::INITIAL.to_string(),
        label_acc(&cx.metrics, None, 0, classes),
    )];
    let mut shown = vec![cx.args.arm];
    if cx.args.arm != CONTROL {
        shown.push(CONTROL);
    }
    for arm in shown {
        if let Some(run) = cx.run_of(arm) {
            let (name, k) = (arm.to_string(), run.manifest.completed);
            groups.push((
                format!("{name} after {k}"),
                label_acc(&cx.metrics, Some(&name), k, classes),
            ));
        }
    }
    let file = cx.figure("per_label");
    plots::bars_png(
        &file,
        "per-label test accuracy before and after",
        &cats,
        &groups,
        (1000, 420),
    )?;
    Ok(String::from("<h3>Per-label accuracy before and after</h3>")
        + &img(&file, "per-label accuracy"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::IterStatus;

    fn row(arm: &str, iteration: u32, label: Option<u16>, accuracy: f64) -> MetricRow {
        MetricRow {
            pipeline: "p".into(),
            seed: 1,
            arm: arm.into(),
            iteration,
            scope: if label.is_some() {
                Scope::Label
            } else {
                Scope::Overall
            },
            label,
            accuracy,
            loss: 0.0,
            n: 1,
            finished_early: false,
            status: IterStatus::Ran,
        }
    }

    #[test]
    fn per_label_picks_arm_and_iteration() {
        let m = vec![
            row("initial", 0, None, 0.8),
            row("initial", 0, Some(0), 0.7),
            row("initial", 0, Some(1), 0.9),
            row("mode-dot", 1, Some(0), 0.75),
            row("mode-dot", 2, Some(0), 0.78),
            row("mode-dot", 2, Some(1), 0.88),
            row("random", 2, Some(0), 0.71),
        ];
        assert_eq!(label_acc(&m, None, 0, 2), [0.7, 0.9]);
        assert_eq!(label_acc(&m, Some("mode-dot"), 2, 2), [0.78, 0.88]);
        let r = label_acc(&m, Some("random"), 2, 2);
        assert_eq!(r[0], 0.71);
        assert!(r[1].is_nan(), "no row: NaN");
        assert_eq!(initial_accuracy(&m), 0.8);
        assert!(initial_accuracy(&m[1..]).is_nan());
    }
}
