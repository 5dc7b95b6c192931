//! Sections 3 and 4: the initial model's most confident mistakes on the test split, and per
//! metric the pool images most and least similar to each label's HC heat map.

use super::Inputs;
use super::html::img;
use crate::analysis::distance::{rank_order, score_rows};
use crate::artifacts::{Artifact, Predictions, Samples};
use crate::plots::{self, Tile};
use crate::vocab::{MapKind, Metric, Space};
use anyhow::Result;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Mistakes shown.
const MISTAKES: usize = 30;
/// Most and least similar images shown per label and metric.
const EXTREMES: usize = 5;

/// The rows whose prediction is wrong, most confident first (ties: in row order).
pub(super) fn mistakes_by_confidence(
    labels: &[u16],
    predicted: &[u16],
    conf: &[f32],
) -> Vec<usize> {
    let mut wrong: Vec<usize> = (0..labels.len())
        .filter(|&i| labels[i] != predicted[i])
        .collect();
    wrong.sort_by(|&x, &y| conf[y].total_cmp(&conf[x]).then(x.cmp(&y)));
    wrong
}

/// The first `k` and the last `k` entries of a ranking (no entry twice), each with its rank
/// (1 = most similar): `(row, rank)`.
pub(super) fn extremes(order: &[usize], k: usize) -> Vec<(usize, usize)> {
    let n = order.len();
    let head = n.min(k);
    let tail_from = n.saturating_sub(k).max(head);
    let ranked = || order.iter().enumerate().map(|(r, &i)| (i, r + 1));
    ranked()
        .take(head)
        .chain(ranked().skip(tail_from))
        .collect()
}

pub(super) fn misclassified(cx: &Inputs) -> Result<String> {
    // The initial model's predictions; a `mode debug` loop's first model otherwise.
    let initial = cx.layout.initial().predictions();
    let pred = Predictions::read(&if initial.exists() {
        initial
    } else {
        cx.iter1.predictions()
    })?;
    let (predicted, conf) = (pred.predicted(), pred.confidence());
    let wrong = mistakes_by_confidence(&pred.labels, &predicted, &conf);
    let test = &cx.test;
    let pos: HashMap<u32, usize> = test
        .ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let tiles: Vec<Tile> = wrong
        .iter()
        .take(MISTAKES)
        .filter_map(|&i| pos.get(&pred.ids[i]).map(|&r| (i, r)))
        .map(|(i, r)| Tile {
            values: test.pixels.row(r).to_vec(),
            caption: format!(
                "{}→{} {:.2}",
                cx.name_of(pred.labels[i]),
                cx.name_of(predicted[i]),
                conf[i]
            ),
            signed: false,
        })
        .collect();
    let mut html = String::new();
    let _ = write!(
        html,
        "<h2>Misclassified test images (initial model)</h2><p>{} of {} test images are misclassified; the {MISTAKES} most confident mistakes, captioned true→predicted confidence.</p>",
        wrong.len(),
        pred.ids.len()
    );
    if !tiles.is_empty() {
        let file = cx.figure("misclassified");
        plots::grid_png(&file, &tiles, cx.shape(), 10, 3, &[])?;
        html += &img(&file, "misclassified test images");
    }
    Ok(html)
}

pub(super) fn similar(cx: &Inputs) -> Result<String> {
    let mut html = format!(
        "<h2>Most and least similar pool images</h2><p>For every label, its pool images scored against the label's HC heat map with the shown arm's metric: the {EXTREMES} most similar (left) and the {EXTREMES} least similar (right). Rank 1 = most similar: largest dot product, smallest distance for the other metrics.</p>"
    );
    if cx.space() != Space::Input {
        html += "<p>(Shown for input-space heat maps only: feature-space maps cannot be drawn as images.)</p>";
        return Ok(html);
    }
    // The shown arm's metric only (every metric's page was 14 600 pixels long).
    let metric = match cx.args.arm.strategy {
        crate::arm::Strategy::Mode(m) => m,
        _ => cx.p.select.metric,
    };
    html += &similar_for(cx, &cx.pool, metric)?;
    Ok(html)
}

/// One metric's figure: a row per label, its most and least similar pool images.
fn similar_for(cx: &Inputs, pool: &Samples, metric: Metric) -> Result<String> {
    let (h, w) = cx.shape();
    let cols = 2 * EXTREMES;
    let mut tiles = Vec::new();
    let mut titles = Vec::new();
    for l in cx.labels() {
        let Some(hc) = cx.maps.get(l, MapKind::Hc) else {
            continue;
        };
        let rows: Vec<usize> = (0..pool.len()).filter(|&i| pool.labels[i] == l).collect();
        if rows.is_empty() {
            continue;
        }
        let x = pool.pixels.select(ndarray::Axis(0), &rows);
        let scores = score_rows(x.view(), &hc.values, metric, cx.p.select.minkowski_p);
        let order = rank_order(&scores, metric);
        titles.push(format!("label {}", cx.name_of(l)));
        for (k, rank) in extremes(&order, EXTREMES) {
            tiles.push(Tile {
                values: x.row(k).to_vec(),
                caption: format!("#{rank}"),
                signed: false,
            });
        }
        while tiles.len() % cols != 0 {
            tiles.push(Tile {
                values: vec![1.0; h * w],
                caption: String::new(),
                signed: false,
            });
        }
    }
    let file = cx.figure(&format!("similar_{metric}"));
    plots::grid_png(&file, &tiles, (h, w), cols, 2, &titles)?;
    Ok(format!("<h3>{metric}</h3>")
        + &img(
            &file,
            &format!("most and least similar pool images, {metric}"),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_never_overlap() {
        let order: Vec<usize> = (100..112).collect();
        let e = extremes(&order, 5);
        assert_eq!(e.len(), 10);
        assert_eq!(e[0], (100, 1));
        assert_eq!(e[4], (104, 5));
        assert_eq!(e[5], (107, 8));
        assert_eq!(e[9], (111, 12));
        let short = extremes(&[7, 8, 9], 5);
        assert_eq!(short, vec![(7, 1), (8, 2), (9, 3)], "each row once");
        let seven = extremes(&[0, 1, 2, 3, 4, 5, 6], 5);
        assert_eq!(
            seven.iter().map(|p| p.1).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 7]
        );
        assert!(extremes(&[], 5).is_empty());
    }

    #[test]
    fn mistakes_most_confident_first() {
        let labels = [0, 1, 2, 3, 4];
        let predicted = [0, 2, 1, 3, 0];
        let conf = [0.9, 0.6, 0.8, 0.99, 0.6];
        assert_eq!(
            mistakes_by_confidence(&labels, &predicted, &conf),
            [2, 1, 4]
        );
        assert!(mistakes_by_confidence(&[1], &[1], &[0.5]).is_empty());
    }
}
