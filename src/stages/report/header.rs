//! The page's header: dataset, model, parameters, every arm's run status and stage times.

use super::html::{esc, flag, table, warn};
use super::{Inputs, stage_times};
use crate::artifacts::Artifact;
use crate::model::Net;
use crate::vocab::RunStatus;
use anyhow::Result;
use std::fmt::Write as _;

/// Whether a run status means the arm did not get through all its iterations as planned.
pub(super) fn is_flagged(s: RunStatus) -> bool {
    !matches!(s, RunStatus::Complete | RunStatus::FinishedEarly)
}

/// The page's title line: the dataset and the model.
pub(super) fn title(cx: &Inputs) -> Result<String> {
    let (p, meta) = (cx.p, &cx.test.meta);
    let model = cx.layout.initial().model();
    let described = if model.exists() {
        Net::read(&model)?.arch.describe()
    } else {
        // A `mode debug` loop: the user's own model, named in its activations.
        crate::artifacts::tensor::read_metadata(&cx.iter1.activations("test"))
            .ok()
            .and_then(|m| m.get(crate::artifacts::keys::MODEL_KEY).cloned())
            .map_or_else(|| "the user's model".to_string(), |m| format!("{m} (ONNX)"))
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<h1>mode report — {}</h1><p>MODE (Ma et al., FSE 2018) on <b>{}</b> ({}×{}, {} classes): model {}; seed {}.</p>",
        esc(&p.name),
        esc(&meta.dataset),
        meta.height,
        meta.width,
        meta.classes,
        esc(&described),
        p.seed
    );
    Ok(html)
}

/// The details at the end of the page: parameters, protocol keys, runs, wall times.
pub(super) fn details(cx: &Inputs) -> Result<String> {
    let p = cx.p;
    let mut html = String::from("<h2>Details</h2>");
    let params: Vec<Vec<String>> = [
        ("θ (underfit)", p.mode.theta.to_string()),
        ("γ (overfit gap)", p.mode.gamma.to_string()),
        ("α (targeted share)", p.mode.alpha.to_string()),
        ("batch", p.mode.batch.to_string()),
        ("iterations", p.mode.max_iter.to_string()),
        ("layer threshold", p.layers.threshold.to_string()),
        ("heat-map space", p.heatmap.space.to_string()),
        ("shown arm", cx.args.arm.to_string()),
        (
            "train / retrain epochs",
            format!("{} / {}", p.train.epochs, p.retrain.epochs),
        ),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_string(), v])
    .collect();
    html += &table(&["parameter", "value"], &params);
    html += &protocol(cx);
    html += &run_statuses(cx);
    html += &wall_times(cx);
    Ok(html)
}

/// The protocol keys of the loop (the seed's values unmarked, others marked).
fn protocol(cx: &Inputs) -> String {
    let p = cx.p;
    let seed = crate::config::Pipeline::default();
    let keys: Vec<(&str, String, String)> = vec![
        (
            "select.random_fill",
            p.select.random_fill.to_string(),
            seed.select.random_fill.to_string(),
        ),
        (
            "select.underfit_kind / overfit_kind",
            format!("{} / {}", p.select.underfit_kind, p.select.overfit_kind),
            format!(
                "{} / {}",
                seed.select.underfit_kind, seed.select.overfit_kind
            ),
        ),
        (
            "select.empty_map",
            p.select.empty_map.to_string(),
            seed.select.empty_map.to_string(),
        ),
        (
            "select.order",
            p.select.order.to_string(),
            seed.select.order.to_string(),
        ),
        (
            "select.targets",
            p.select.targets.to_string(),
            seed.select.targets.to_string(),
        ),
        (
            "retrain.optimizer",
            p.retrain.optimizer.to_string(),
            seed.retrain.optimizer.to_string(),
        ),
        (
            "retrain.data",
            p.retrain.data.to_string(),
            seed.retrain.data.to_string(),
        ),
        (
            "retrain.init",
            p.retrain.init.to_string(),
            seed.retrain.init.to_string(),
        ),
        (
            "heatmap.space / split",
            format!("{} / {}", p.heatmap.space, p.heatmap.split),
            format!("{} / {}", seed.heatmap.space, seed.heatmap.split),
        ),
        (
            "mode.on_finish",
            p.mode.on_finish.to_string(),
            seed.mode.on_finish.to_string(),
        ),
        (
            "layers.force_target",
            p.layers.force_target.clone().unwrap_or_else(|| "–".into()),
            "–".into(),
        ),
        (
            "mode.diagnosis",
            p.mode.diagnosis.to_string(),
            crate::config::DiagnosisBy::TargetLayer.to_string(),
        ),
    ];
    let rows: Vec<Vec<String>> = keys
        .into_iter()
        .map(|(k, v, s)| {
            let differs = v != s;
            vec![k.to_string(), flag(&v, differs), s]
        })
        .collect();
    String::from("<h3>Protocol (⚠ = differs from the seed's loop)</h3>")
        + &table(&["key", "this run", "the seed's loop"], &rows)
}

/// Every arm's run: iterations complete of planned, and its status (flagged unless it ran to
/// the end).
fn run_statuses(cx: &Inputs) -> String {
    let mut html = String::from("<h3>Runs</h3>");
    let rows: Vec<Vec<String>> = cx
        .runs
        .iter()
        .map(|r| {
            let m = &r.manifest;
            vec![
                r.arm.to_string(),
                format!("{} / {}", m.completed, m.planned),
                flag(m.status.as_str(), is_flagged(m.status)),
            ]
        })
        .collect();
    html += &table(&["arm", "iterations", "status"], &rows);
    let bad: Vec<String> = cx
        .runs
        .iter()
        .filter(|r| is_flagged(r.manifest.status))
        .map(|r| format!("{} ({})", r.arm, r.manifest.status))
        .collect();
    if !bad.is_empty() {
        html += &warn(&format!(
            "Not every run ran as planned: {}. interrupted = fewer iterations complete than planned (numbers below are from the last complete one); pool_exhausted = the pool held fewer samples than a batch asks for.",
            bad.join(", ")
        ));
    }
    html
}

fn wall_times(cx: &Inputs) -> String {
    let times = stage_times(&cx.layout.timings());
    if times.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = times
        .iter()
        .map(|(s, n, t)| {
            vec![
                s.clone(),
                n.to_string(),
                format!("{t:.2} s"),
                format!("{:.2} s", t / *n as f64),
            ]
        })
        .collect();
    String::from("<h3>Wall time per stage</h3>")
        + &table(&["stage", "runs", "total", "mean"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flagged_statuses() {
        assert!(!is_flagged(RunStatus::Complete));
        assert!(!is_flagged(RunStatus::FinishedEarly));
        assert!(is_flagged(RunStatus::PoolExhausted));
        assert!(is_flagged(RunStatus::Interrupted));
    }
}
