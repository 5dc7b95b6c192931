//! `mode report`: `report/index.html` with PNG figures beside it — self-contained, opens from
//! disk, no JavaScript.

use crate::analysis::distance::{rank_order, score_rows};
use crate::artifacts::{
    self, LayerRow, Layout, MetricRow, Samples, SummaryRow, SweepSummaryRow, Table, TensorFile,
};
use crate::config::{Metric, Pipeline};
use crate::plots::{self, Series, Tile};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub struct ReportArgs {
    /// The MODE arm whose analysis is shown (layers, heat maps).
    pub arm: String,
    /// The HC_i − HC_k pair shown.
    pub pair: (u16, u16),
    pub out: PathBuf,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><tr>");
    for h in head {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s += "</tr>";
    for r in rows {
        s += "<tr>";
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s += "</tr>";
    }
    s + "</table>"
}

fn img(file: &str, alt: &str) -> String {
    format!("<p><img src=\"{file}\" alt=\"{}\"></p>", esc(alt))
}

/// Stage wall times from `timings.log` (stage, seconds per line): (stage, runs, total, mean).
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

/// Pearson correlation of two equally long vectors (0 when either is constant).
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
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

pub fn run(p: &Pipeline, layout: &Layout, a: &ReportArgs) -> Result<PathBuf> {
    let out = &a.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let iter1 = layout.iter_dir(&a.arm, 1);
    if !iter1.join(artifacts::HEATMAPS).exists() {
        bail!(
            "{}: no heat maps for arm {} (run `make all`, or pass --arm with an arm that has run)",
            iter1.display(),
            a.arm
        );
    }
    let test = Samples::read(&layout.split("test"))?;
    let pool = Samples::read(&layout.split("pool"))?;
    let (h, w) = (test.meta.height, test.meta.width);
    let classes = test.meta.classes;
    let name_of = |l: u16| {
        test.meta
            .class_names
            .get(l as usize)
            .cloned()
            .unwrap_or_else(|| l.to_string())
    };
    let mut html = String::new();
    let arch = crate::model::read_architecture(&layout.initial_dir().join(artifacts::MODEL))?;

    // ---- header
    let _ = write!(
        html,
        "<h1>mode report — {}</h1><p>MODE (Ma et al., FSE 2018) on <b>{}</b> ({}×{}, {} classes): model {}; seed {}.</p>",
        esc(&p.name),
        esc(&test.meta.dataset),
        h,
        w,
        classes,
        esc(&arch.describe()),
        p.seed
    );
    let params = vec![
        vec!["θ (underfit)".into(), p.mode.theta.to_string()],
        vec!["γ (overfit gap)".into(), p.mode.gamma.to_string()],
        vec!["α (targeted share)".into(), p.mode.alpha.to_string()],
        vec!["batch".into(), p.mode.batch.to_string()],
        vec!["iterations".into(), p.mode.max_iter.to_string()],
        vec!["layer threshold".into(), p.layers.threshold.to_string()],
        vec!["heat-map space".into(), p.heatmap.space.as_str().into()],
        vec!["shown arm".into(), a.arm.clone()],
        vec![
            "train / retrain epochs".into(),
            format!("{} / {}", p.train.epochs, p.retrain.epochs),
        ],
    ];
    html += &table(&["parameter", "value"], &params);
    let times = stage_times(&layout.root.join("timings.log"));
    if !times.is_empty() {
        html += "<h3>Wall time per stage</h3>";
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
        html += &table(&["stage", "runs", "total", "mean"], &rows);
    }

    // ---- 1. layers
    let layers = LayerRow::read(&iter1.join(artifacts::LAYERS))?;
    let fwd: Vec<&LayerRow> = layers.iter().filter(|r| r.direction == "forward").collect();
    let names: Vec<String> = fwd.iter().map(|r| r.layer.clone()).collect();
    let target = fwd.iter().position(|r| r.is_target).unwrap_or(0);
    html += "<h2>1. Layer selection (model of iteration 0)</h2>";
    let acc: Vec<(f64, f64)> = fwd
        .iter()
        .enumerate()
        .map(|(i, r)| (i as f64, r.probe_accuracy))
        .collect();
    plots::line_png(
        &out.join("layers_accuracy.png"),
        "feature-model (probe) test accuracy per layer",
        "layer",
        "accuracy",
        &[Series {
            name: "probe accuracy".into(),
            points: acc.clone(),
            color: plots::palette(0),
            dashed: false,
        }],
        &names,
        &[(
            target as f64,
            acc[target].1,
            format!("  target: {}", names[target]),
        )],
        (760, 380),
        plotters::chart::SeriesLabelPosition::LowerRight,
    )?;
    html += &img("layers_accuracy.png", "probe accuracy per layer");
    if fwd.iter().all(|r| r.bhattacharyya.is_some()) {
        let bh: Vec<(f64, f64)> = fwd
            .iter()
            .enumerate()
            .map(|(i, r)| (i as f64, r.bhattacharyya.unwrap_or(0.0)))
            .collect();
        let thr: Vec<(f64, f64)> = (0..fwd.len())
            .map(|i| (i as f64, p.layers.threshold))
            .collect();
        plots::line_png(
            &out.join("layers_bhattacharyya.png"),
            "Bhattacharyya distance to the previous layer (first: to uniform)",
            "layer",
            "distance",
            &[
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
            &names,
            &[(
                target as f64,
                bh[target].1,
                format!("  target: {}", names[target]),
            )],
            (760, 380),
            plotters::chart::SeriesLabelPosition::UpperRight,
        )?;
        html += &img(
            "layers_bhattacharyya.png",
            "Bhattacharyya distance per layer",
        );
    }
    let rows: Vec<Vec<String>> = layers
        .iter()
        .map(|r| {
            vec![
                r.direction.clone(),
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
    html += &table(
        &[
            "direction",
            "layer",
            "width",
            "probe accuracy",
            "Bhattacharyya",
            "",
        ],
        &rows,
    );

    // ---- 2. heat maps
    let maps = artifacts::read_heatmaps(&iter1.join(artifacts::HEATMAPS))?;
    let get = |l: u16, kind: &str| {
        maps.iter()
            .find(|m| m.label == l && m.kind == kind && m.other.is_none())
    };
    let space = maps.first().map(|m| m.space.clone()).unwrap_or_default();
    let layer = maps.first().map(|m| m.layer.clone()).unwrap_or_default();
    let kinds = ["HC", "HM", "HW", "DH_CM", "DH_CW"];
    let _ = write!(
        html,
        "<h2>2. Heat maps ({} space; inputs split by the {} layer's predictions)</h2><p>HC: correctly classified; HM: other labels predicted as the label (false positives); HW: the label's inputs predicted otherwise (false negatives); DH_CM = HC − HM, DH_CW = HC − HW (blue negative, red positive). n = group size.</p>",
        esc(&space),
        esc(&layer)
    );
    let mut tiles = Vec::new();
    let mut row_titles = Vec::new();
    for l in 0..classes as u16 {
        row_titles.push(format!("label {}", name_of(l)));
        for k in kinds {
            if let Some(m) = get(l, k) {
                tiles.push(Tile {
                    values: m.values.clone(),
                    caption: format!("{k} n={}", m.n),
                    signed: k.starts_with("DH"),
                });
            }
        }
    }
    let (pi, pk) = a.pair;
    let pair = maps
        .iter()
        .find(|m| m.kind == "DH_CC" && m.label == pi && m.other == Some(pk));
    if space == "input" {
        plots::grid_png(
            &out.join("heatmaps.png"),
            &tiles,
            (h, w),
            kinds.len(),
            3,
            &row_titles,
        )?;
        html += &img("heatmaps.png", "heat maps per label");
        if let Some(m) = pair {
            let t = [
                Tile {
                    values: get(pi, "HC").map(|x| x.values.clone()).unwrap_or_default(),
                    caption: format!("HC {pi}"),
                    signed: false,
                },
                Tile {
                    values: get(pk, "HC").map(|x| x.values.clone()).unwrap_or_default(),
                    caption: format!("HC {pk}"),
                    signed: false,
                },
                Tile {
                    values: m.values.clone(),
                    caption: format!("HC{pi} − HC{pk}"),
                    signed: true,
                },
            ];
            plots::grid_png(&out.join("pair.png"), &t, (h, w), 3, 6, &[])?;
            let _ = write!(
                html,
                "<h3>HC<sub>{pi}</sub> − HC<sub>{pk}</sub> (choose with --pair i,k)</h3>"
            );
            html += &img("pair.png", "pair difference");
        }
    } else {
        let strips: Vec<Tile> = (0..classes as u16)
            .flat_map(|l| {
                kinds.iter().filter_map(move |k| {
                    get(l, k).map(|m| Tile {
                        values: m.values.clone(),
                        caption: format!("{l} {k} n={}", m.n),
                        signed: true,
                    })
                })
            })
            .collect();
        plots::strips_png(&out.join("heatmaps.png"), &strips, 14)?;
        html += &img(
            "heatmaps.png",
            "feature-space heat maps as per-neuron strips",
        );
        if let Some(m) = pair {
            plots::strips_png(
                &out.join("pair.png"),
                &[Tile {
                    values: m.values.clone(),
                    caption: format!("HC{pi} − HC{pk}"),
                    signed: true,
                }],
                14,
            )?;
            html += &img("pair.png", "pair difference");
        }
    }

    // ---- 3. misclassified test images
    let pred = TensorFile::read(&layout.initial_dir().join(artifacts::PREDICTIONS))?;
    let (ids, labels, predicted, conf) = (
        pred.u32("id")?,
        pred.u16("label")?,
        pred.u16("predicted")?,
        pred.f32("confidence")?,
    );
    let pos: std::collections::HashMap<u32, usize> = test
        .ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let mut wrong: Vec<usize> = (0..ids.len())
        .filter(|&i| labels[i] != predicted[i])
        .collect();
    wrong.sort_by(|&x, &y| conf[y].total_cmp(&conf[x]).then(x.cmp(&y)));
    let tiles: Vec<Tile> = wrong
        .iter()
        .take(30)
        .filter_map(|&i| pos.get(&ids[i]).map(|&r| (i, r)))
        .map(|(i, r)| Tile {
            values: test.pixels.row(r).to_vec(),
            caption: format!(
                "{}→{} {:.2}",
                name_of(labels[i]),
                name_of(predicted[i]),
                conf[i]
            ),
            signed: false,
        })
        .collect();
    let _ = write!(
        html,
        "<h2>3. Misclassified test images (initial model)</h2><p>{} of {} test images are misclassified; the 30 most confident mistakes, captioned true→predicted confidence.</p>",
        wrong.len(),
        ids.len()
    );
    if !tiles.is_empty() {
        plots::grid_png(&out.join("misclassified.png"), &tiles, (h, w), 10, 3, &[])?;
        html += &img("misclassified.png", "misclassified test images");
    }

    // ---- 4. most and least similar pool images per metric
    html += "<h2>4. Most and least similar pool images per metric</h2><p>For every label, its pool images scored against the label's HC heat map: the 5 most similar (left) and the 5 least similar (right). Rank 1 = most similar: largest dot product, smallest distance for the other metrics.</p>";
    if space == "input" {
        for metric in Metric::ALL {
            let mut tiles = Vec::new();
            let mut titles = Vec::new();
            for l in 0..classes as u16 {
                let Some(hc) = get(l, "HC") else { continue };
                let rows: Vec<usize> = (0..pool.len()).filter(|&i| pool.labels[i] == l).collect();
                if rows.is_empty() {
                    continue;
                }
                let x = pool.pixels.select(ndarray::Axis(0), &rows);
                let sc = score_rows(x.view(), &hc.values, metric, p.select.minkowski_p);
                let order = rank_order(&sc, metric);
                let n = order.len();
                let pick: Vec<(usize, String)> = order
                    .iter()
                    .take(5)
                    .enumerate()
                    .map(|(r, &k)| (k, format!("#{}", r + 1)))
                    .chain(
                        order
                            .iter()
                            .enumerate()
                            .skip(n.saturating_sub(5).max(5.min(n)))
                            .map(|(r, &k)| (k, format!("#{}", r + 1))),
                    )
                    .collect();
                titles.push(format!("label {}", name_of(l)));
                for (k, cap) in pick {
                    tiles.push(Tile {
                        values: x.row(k).to_vec(),
                        caption: cap,
                        signed: false,
                    });
                }
                while tiles.len() % 10 != 0 {
                    tiles.push(Tile {
                        values: vec![1.0; h * w],
                        caption: String::new(),
                        signed: false,
                    });
                }
            }
            let file = format!("similar_{}.png", metric.as_str());
            plots::grid_png(&out.join(&file), &tiles, (h, w), 10, 2, &titles)?;
            let _ = write!(html, "<h3>{}</h3>", metric.as_str());
            html += &img(
                &file,
                &format!("most and least similar pool images, {}", metric.as_str()),
            );
        }
    } else {
        html += "<p>(Shown for input-space heat maps only: feature-space maps cannot be drawn as images.)</p>";
    }

    // ---- 5. accuracy over iterations, per label, tables
    let mut metrics = Vec::new();
    for f in crate::stages::summary::metric_files(layout)? {
        metrics.extend(MetricRow::read(&f)?);
    }
    let overall: Vec<&MetricRow> = metrics.iter().filter(|r| r.scope == "overall").collect();
    let initial = overall
        .iter()
        .find(|r| r.iteration == 0)
        .map(|r| r.accuracy)
        .unwrap_or(f64::NAN);
    let mut arms: Vec<String> = overall
        .iter()
        .filter(|r| r.iteration > 0)
        .map(|r| r.arm.clone())
        .collect();
    arms.sort();
    arms.dedup();
    let series_of = |arm: &str, i: usize| -> Series {
        let mut pts: Vec<(f64, f64)> = vec![(0.0, initial)];
        let mut rows: Vec<&&MetricRow> = overall.iter().filter(|r| r.arm == arm).collect();
        rows.sort_by_key(|r| r.iteration);
        pts.extend(rows.iter().map(|r| (r.iteration as f64, r.accuracy)));
        Series {
            name: arm.into(),
            points: pts,
            color: if arm == "random" {
                RGBColor(0, 0, 0)
            } else {
                plots::palette(i)
            },
            dashed: arm != "random" && !arm.starts_with("mode-"),
        }
    };
    use plotters::style::RGBColor;
    html += "<h2>5. Accuracy per iteration, every arm against the control (black)</h2>";
    let iters: Vec<String> = (0..=p.mode.max_iter).map(|k| k.to_string()).collect();
    for (file, title, pick) in [
        (
            "accuracy_ls.png",
            "with layer selection (and baselines)",
            true,
        ),
        ("accuracy_nols.png", "without layer selection", false),
    ] {
        let chosen: Vec<Series> = arms
            .iter()
            .filter(|a| *a == "random" || (a.ends_with("-nols") != pick))
            .enumerate()
            .map(|(i, a)| series_of(a, i))
            .collect();
        if chosen.len() > 1 {
            plots::line_png(
                &out.join(file),
                &format!("test accuracy, {title}"),
                "iteration",
                "accuracy",
                &chosen,
                &iters,
                &[],
                (1000, 520),
                plotters::chart::SeriesLabelPosition::LowerRight,
            )?;
            html += &img(file, title);
        }
    }
    // per label before / after
    let label_acc = |arm: &str, it: u32| -> Vec<f64> {
        (0..classes as u16)
            .map(|l| {
                metrics
                    .iter()
                    .find(|r| r.arm == arm && r.iteration == it && r.label == Some(l))
                    .map_or(f64::NAN, |r| r.accuracy)
            })
            .collect()
    };
    let last = p.mode.max_iter as u32;
    let cats: Vec<String> = (0..classes as u16).map(name_of).collect();
    let mut groups = vec![("initial".to_string(), label_acc("initial", 0))];
    if arms.contains(&a.arm) {
        groups.push((format!("{} after {last}", a.arm), label_acc(&a.arm, last)));
    }
    if arms.iter().any(|x| x == "random") {
        groups.push((format!("random after {last}"), label_acc("random", last)));
    }
    plots::bars_png(
        &out.join("per_label.png"),
        "per-label test accuracy before and after",
        &cats,
        &groups,
        (1000, 420),
    )?;
    html += "<h3>Per-label accuracy before and after</h3>";
    html += &img("per_label.png", "per-label accuracy");
    let summary_path = layout.root.join("summary.parquet");
    if summary_path.exists() {
        let s = SummaryRow::read(&summary_path)?;
        for (title, ls) in [
            ("Table 1 — with layer selection", true),
            ("Table 2 — without layer selection", false),
        ] {
            let rows: Vec<Vec<String>> = s
                .iter()
                .filter(|r| r.layer_select == ls)
                .map(|r| {
                    vec![
                        r.arm.clone(),
                        format!("{:.4}", r.initial_acc),
                        format!("{:.4}", r.final_acc),
                        format!("{:.4}", r.control_acc),
                        r.finished_early.to_string(),
                        format!("{:+.4}", r.diff_i_f),
                        format!("{:+.4}", r.diff_f_c),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                let _ = write!(html, "<h3>{title}</h3>");
                html += &table(
                    &[
                        "arm",
                        "initial acc",
                        "final acc",
                        "control acc",
                        "finished early",
                        "diff I−F",
                        "diff F−C",
                    ],
                    &rows,
                );
            }
        }
    }
    let sweep_path = layout.root.join("sweep_summary.parquet");
    if sweep_path.exists() {
        let s = SweepSummaryRow::read(&sweep_path)?;
        let seeds = s.first().map_or(0, |r| r.seeds);
        let _ = write!(html, "<h2>Sweep over {seeds} seeds</h2>");
        let forest: Vec<(String, f64, f64, f64)> = s
            .iter()
            .filter_map(|r| Some((r.arm.clone(), r.mean_delta?, r.ci_low?, r.ci_high?)))
            .collect();
        if !forest.is_empty() {
            plots::forest_png(
                &out.join("forest.png"),
                "Δ final accuracy vs the random control",
                &forest,
            )?;
            html += &img("forest.png", "forest plot");
        }
        let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:+.4}"));
        let rows: Vec<Vec<String>> = s
            .iter()
            .map(|r| {
                vec![
                    r.arm.clone(),
                    format!("{:.4}", r.mean_initial),
                    format!("{:.4}", r.mean_final),
                    f(r.mean_delta),
                    match (r.ci_low, r.ci_high) {
                        (Some(a), Some(b)) => format!("[{a:+.4}, {b:+.4}]"),
                        _ => "–".into(),
                    },
                    r.t_p.map_or("–".into(), |v| format!("{v:.3}")),
                    r.wilcoxon_p.map_or("–".into(), |v| format!("{v:.3}")),
                    format!("{}/{}/{}", r.wins, r.losses, r.ties),
                    format!("{}/{}", r.lifted, r.faulty_labels),
                ]
            })
            .collect();
        html += &table(
            &[
                "arm",
                "mean initial",
                "mean final",
                "Δ vs control",
                "95% CI",
                "t-test p",
                "Wilcoxon p",
                "W/L/T",
                "faulty labels lifted past θ",
            ],
            &rows,
        );
    }

    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mode report — {}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #bbb;padding:2px 8px;font-size:13px;text-align:right}}th{{background:#eee}}img{{max-width:100%;border:1px solid #ddd}}h2{{border-bottom:2px solid #ccc;margin-top:1.6em}}</style></head><body>{}</body></html>\n",
        esc(&p.name),
        html
    );
    let index = out.join("index.html");
    artifacts::write_atomic(&index, |mut f| {
        use std::io::Write;
        f.write_all(page.as_bytes())?;
        Ok(())
    })?;
    Ok(index)
}
