//! Section 1: the layer selection on the initial model (probe accuracy and Bhattacharyya
//! distance per layer, the target layer marked).

use super::Inputs;
use super::html::{img, table};
use crate::artifacts::{Artifact, LayerRow};
use crate::plots::{self, Series};
use crate::vocab::Direction;
use anyhow::{Result, bail};

pub(super) fn section(cx: &Inputs) -> Result<String> {
    let layers = Vec::<LayerRow>::read(&cx.iter1.layers())?;
    let fwd: Vec<&LayerRow> = layers
        .iter()
        .filter(|r| r.direction == Direction::Forward)
        .collect();
    if fwd.is_empty() {
        bail!("{}: no forward layer rows", cx.iter1.layers().display());
    }
    let names: Vec<String> = fwd.iter().map(|r| r.layer.clone()).collect();
    let target = fwd.iter().position(|r| r.is_target).unwrap_or(0);
    let mark = |y: f64| vec![(target as f64, y, format!("  target: {}", names[target]))];
    let mut html = String::from("<h2>Layer selection (model of iteration 0)</h2>");

    let acc: Vec<(f64, f64)> = fwd
        .iter()
        .enumerate()
        .map(|(i, r)| (i as f64, r.probe_accuracy))
        .collect();
    let file = cx.figure("layers_accuracy");
    plots::line_png(
        &file,
        &plots::LineChart {
            title: "feature-model (probe) test accuracy per layer",
            x_desc: "layer",
            y_desc: "accuracy",
            series: &[Series {
                name: "probe accuracy".into(),
                points: acc.clone(),
                color: plots::palette(0),
                dashed: false,
            }],
            x_names: &names,
            marks: &mark(acc[target].1),
        },
        (900, 380),
    )?;
    html += &img(&file, "probe accuracy per layer");

    if let Some(bh) = fwd
        .iter()
        .enumerate()
        .map(|(i, r)| r.bhattacharyya.map(|b| (i as f64, b)))
        .collect::<Option<Vec<(f64, f64)>>>()
    {
        let thr: Vec<(f64, f64)> = (0..fwd.len())
            .map(|i| (i as f64, cx.p.layers.threshold))
            .collect();
        let file = cx.figure("layers_bhattacharyya");
        plots::line_png(
            &file,
            &plots::LineChart {
                title: "Bhattacharyya distance to the previous layer (first: to uniform)",
                x_desc: "layer",
                y_desc: "distance",
                series: &[
                    Series {
                        name: "distance".into(),
                        points: bh.clone(),
                        color: plots::palette(1),
                        dashed: false,
                    },
                    Series {
                        name: "threshold".into(),
                        points: thr,
                        color: plots::palette(7),
                        dashed: true,
                    },
                ],
                x_names: &names,
                marks: &mark(bh[target].1),
            },
            (900, 380),
        )?;
        html += &img(&file, "Bhattacharyya distance per layer");
    }
    html += &layer_table(&layers);
    Ok(html)
}

fn layer_table(layers: &[LayerRow]) -> String {
    let rows: Vec<Vec<String>> = layers
        .iter()
        .map(|r| {
            vec![
                r.direction.to_string(),
                r.layer.clone(),
                r.width.to_string(),
                format!("{:.4}", r.probe_accuracy),
                r.bhattacharyya.map_or("–".into(), |b| format!("{b:.4}")),
                if r.is_target {
                    "target".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    table(
        &[
            "direction",
            "layer",
            "width",
            "probe accuracy",
            "Bhattacharyya",
            "",
        ],
        &rows,
    )
}
