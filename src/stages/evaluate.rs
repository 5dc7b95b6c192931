//! `mode evaluate`: model + split → `metrics.parquet` (long format) and `predictions.parquet`.

use crate::artifacts::{self, MetricRow, Samples, Table};
use crate::config::Pipeline;
use crate::model::{self, Mlp};
use anyhow::Result;
use std::path::Path;

/// Who is being evaluated: the arm and iteration recorded in the metrics.
#[derive(Debug, Clone)]
pub struct EvalTag {
    pub arm: String,
    pub iteration: u32,
    pub finished_early: bool,
}

/// Overall and per-label accuracy and mean cross-entropy. Pure.
pub fn metric_rows(
    p: &Pipeline,
    tag: &EvalTag,
    labels: &[u16],
    probs: &ndarray::Array2<f32>,
    classes: usize,
) -> Vec<MetricRow> {
    let losses = model::cross_entropy(probs, labels);
    let predicted: Vec<usize> = probs
        .rows()
        .into_iter()
        .map(|r| artifacts::argmax(r.iter().copied()))
        .collect();
    let row = |scope: &str, label: Option<u16>, idx: &mut dyn Iterator<Item = usize>| {
        let (mut n, mut correct, mut loss) = (0u32, 0u32, 0.0f64);
        for i in idx {
            n += 1;
            correct += (predicted[i] == labels[i] as usize) as u32;
            loss += losses[i];
        }
        let d = n.max(1) as f64;
        MetricRow {
            pipeline: p.name.clone(),
            seed: p.seed as i64,
            arm: tag.arm.clone(),
            iteration: tag.iteration,
            scope: scope.into(),
            label,
            accuracy: correct as f64 / d,
            loss: loss / d,
            n,
            finished_early: tag.finished_early,
        }
    };
    let mut rows = vec![row("overall", None, &mut (0..labels.len()))];
    for c in 0..classes as u16 {
        rows.push(row(
            "label",
            Some(c),
            &mut (0..labels.len()).filter(|&i| labels[i] == c),
        ));
    }
    rows
}

pub fn run(
    p: &Pipeline,
    model_path: &Path,
    data: &Path,
    out_dir: &Path,
    tag: &EvalTag,
) -> Result<f64> {
    let (net, arch) = Mlp::load(model_path, &model::device(false))?;
    let samples = Samples::read(data)?;
    let probs = model::predict(&net, &samples.pixels, arch.classes)?;
    let rows = metric_rows(p, tag, &samples.labels, &probs, arch.classes);
    artifacts::write_predictions(
        &out_dir.join(artifacts::PREDICTIONS),
        &samples.ids,
        &samples.labels,
        &probs,
    )?;
    MetricRow::write(&out_dir.join(artifacts::METRICS), &rows)?;
    Ok(rows[0].accuracy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_label_accuracy() {
        let probs = ndarray::arr2(&[[0.9f32, 0.1], [0.2, 0.8], [0.6, 0.4]]);
        let tag = EvalTag {
            arm: "a".into(),
            iteration: 0,
            finished_early: false,
        };
        let rows = metric_rows(&Pipeline::default(), &tag, &[0, 1, 1], &probs, 2);
        assert_eq!(rows.len(), 3);
        assert!((rows[0].accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(
            (rows[1].label, rows[1].accuracy, rows[1].n),
            (Some(0), 1.0, 1)
        );
        assert_eq!(
            (rows[2].label, rows[2].accuracy, rows[2].n),
            (Some(1), 0.5, 2)
        );
    }
}
