//! `mode sweep`: many seeds × every arm, in one process, with paired statistics.
//!
//! Seed i uses master seed `seed + i` for everything — split, weights, shuffling, selection —
//! (the pipeline's explicit `split.seed` / `model.seed` are ignored so that each seed really
//! re-splits and re-trains). Every arm starts from that seed's initial model; the control is
//! `random`. Only the summaries are kept unless `--keep-artifacts` is given, which writes each
//! seed's full output under `sweep/seed-<s>/`.

use crate::analysis::stats::{paired_t, wilcoxon};
use crate::artifacts::{Layout, SweepRow, SweepSummaryRow, Table};
use crate::config::Pipeline;
use crate::model;
use crate::stages::evaluate::{EvalTag, metric_rows};
use crate::stages::experiment::{IterRecord, Shared, run_arms};
use crate::stages::summary::parse_arm;
use crate::stages::{layers, split};
use anyhow::{Result, bail};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

pub const CONTROL: &str = "random";

/// What one seed yields: its sweep rows, and the initial and final per-label accuracies.
struct SeedResult {
    rows: Vec<SweepRow>,
    initial_label_acc: Vec<f64>,
    final_label_acc: Vec<(String, Vec<f64>)>,
}

/// One seed: split, train, run every arm.
fn one_seed(
    q: &Pipeline,
    src: &split::Source,
    arms: &[String],
    keep: Option<&Layout>,
) -> Result<SeedResult> {
    let t0 = Instant::now();
    let s = split::make(q, src)?;
    let (net, arch, _) = crate::stages::train::fit_fresh(q, &s.train)?;
    let ih = if q.layers.enabled {
        Some(layers::input_head(q, &s.train, None)?)
    } else {
        None
    };
    let probs = model::predict(&net, &s.test.pixels, arch.classes)?;
    let tag = EvalTag {
        arm: "initial".into(),
        iteration: 0,
        finished_early: false,
    };
    let initial = metric_rows(q, &tag, &s.test.labels, &probs, arch.classes);
    if let Some(l) = keep {
        let kv = BTreeMap::new();
        s.train.write(&l.split("train"), &kv)?;
        s.pool.write(&l.split("pool"), &kv)?;
        s.test.write(&l.split("test"), &kv)?;
        net.save(&arch, &l.initial_dir().join(crate::artifacts::MODEL))?;
        crate::artifacts::MetricRow::write(
            &l.initial_dir().join(crate::artifacts::METRICS),
            &initial,
        )?;
    }
    let initial_secs = t0.elapsed().as_secs_f64();
    let shared = Shared {
        train: &s.train,
        pool: &s.pool,
        test: &s.test,
        initial: &net,
        arch: &arch,
        input_head: ih.as_ref(),
    };
    let records = run_arms(q, &shared, arms, keep)?;
    let initial_label_acc: Vec<f64> = initial[1..].iter().map(|r| r.accuracy).collect();
    let last = q.mode.max_iter as u32;
    let final_label_acc = records
        .iter()
        .filter(|r| r.iteration == last)
        .map(|r| (r.arm.clone(), r.label_acc.clone()))
        .collect();
    let mut rows = Vec::new();
    for arm in arms {
        let (metric, layer_select) = parse_arm(arm);
        rows.push(SweepRow {
            seed: q.seed as i64,
            arm: arm.clone(),
            metric: metric.clone(),
            layer_select,
            iteration: 0,
            accuracy: initial[0].accuracy,
            target_label: None,
            target_acc: None,
            finished_early: false,
            seconds: initial_secs,
        });
        for r in records.iter().filter(|r| &r.arm == arm) {
            rows.push(to_row(q.seed, &metric, layer_select, r));
        }
    }
    Ok(SeedResult {
        rows,
        initial_label_acc,
        final_label_acc,
    })
}

fn to_row(seed: u64, metric: &str, layer_select: bool, r: &IterRecord) -> SweepRow {
    SweepRow {
        seed: seed as i64,
        arm: r.arm.clone(),
        metric: metric.into(),
        layer_select,
        iteration: r.iteration,
        accuracy: r.accuracy,
        target_label: r.target,
        target_acc: r.target.map(|l| r.label_acc[l as usize]),
        finished_early: r.finished_early,
        seconds: r.seconds,
    }
}

/// Per-arm statistics against the control (pure).
pub fn summarise(
    rows: &[SweepRow],
    final_label_acc: &BTreeMap<(i64, String), Vec<f64>>,
    initial_label_acc: &BTreeMap<i64, Vec<f64>>,
    theta: f64,
) -> Vec<SweepSummaryRow> {
    let last_iter = rows.iter().map(|r| r.iteration).max().unwrap_or(0);
    let final_of = |arm: &str, seed: i64| {
        rows.iter()
            .find(|r| r.arm == arm && r.seed == seed && r.iteration == last_iter)
            .map(|r| r.accuracy)
    };
    let mut arms: Vec<String> = rows.iter().map(|r| r.arm.clone()).collect();
    arms.sort();
    arms.dedup();
    let seeds: Vec<i64> = initial_label_acc.keys().copied().collect();
    let mut out = Vec::new();
    for arm in &arms {
        let (metric, layer_select) = parse_arm(arm);
        let mut finals = Vec::new();
        let mut deltas = Vec::new();
        let mut initials = Vec::new();
        let (mut faulty, mut lifted) = (0u32, 0u32);
        for &s in &seeds {
            let Some(f) = final_of(arm, s) else { continue };
            finals.push(f);
            if let Some(r) = rows
                .iter()
                .find(|r| &r.arm == arm && r.seed == s && r.iteration == 0)
            {
                initials.push(r.accuracy);
            }
            if let Some(c) = final_of(CONTROL, s) {
                deltas.push(f - c);
            }
            if let (Some(init), Some(fin)) = (
                initial_label_acc.get(&s),
                final_label_acc.get(&(s, arm.clone())),
            ) {
                for (a0, a1) in init.iter().zip(fin) {
                    if *a0 < theta {
                        faulty += 1;
                        lifted += (*a1 >= theta) as u32;
                    }
                }
            }
        }
        let mean = |v: &[f64]| {
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let is_control = arm == CONTROL;
        let t = paired_t(&deltas);
        let (_, wp) = wilcoxon(&deltas);
        let opt = |x: f64| {
            if is_control || x.is_nan() {
                None
            } else {
                Some(x)
            }
        };
        out.push(SweepSummaryRow {
            arm: arm.clone(),
            metric,
            layer_select,
            seeds: finals.len() as u32,
            mean_initial: mean(&initials),
            mean_final: mean(&finals),
            mean_delta: opt(t.mean),
            ci_low: opt(t.ci_low),
            ci_high: opt(t.ci_high),
            t_p: opt(t.p),
            wilcoxon_p: if is_control || deltas.is_empty() {
                None
            } else {
                Some(wp)
            },
            wins: if is_control {
                0
            } else {
                deltas.iter().filter(|d| **d > 1e-12).count() as u32
            },
            losses: if is_control {
                0
            } else {
                deltas.iter().filter(|d| **d < -1e-12).count() as u32
            },
            ties: if is_control {
                0
            } else {
                deltas.iter().filter(|d| d.abs() <= 1e-12).count() as u32
            },
            faulty_labels: faulty,
            lifted,
        });
    }
    out
}

/// The summary as a Markdown table.
pub fn markdown(rows: &[SweepSummaryRow]) -> String {
    let f = |x: Option<f64>, prec: usize| x.map_or("–".to_string(), |v| format!("{v:+.prec$}"));
    let p = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.3}"));
    let mut s = String::from(
        "| arm | seeds | mean initial | mean final | Δ vs control | 95% CI | t-test p | Wilcoxon p | W/L/T | faulty labels lifted past θ |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {:.4} | {:.4} | {} | {} | {} | {} | {}/{}/{} | {}/{} ({:.0}%) |\n",
            r.arm,
            r.seeds,
            r.mean_initial,
            r.mean_final,
            f(r.mean_delta, 4),
            match (r.ci_low, r.ci_high) {
                (Some(a), Some(b)) => format!("[{a:+.4}, {b:+.4}]"),
                _ => "–".into(),
            },
            p(r.t_p),
            p(r.wilcoxon_p),
            r.wins,
            r.losses,
            r.ties,
            r.lifted,
            r.faulty_labels,
            if r.faulty_labels == 0 {
                0.0
            } else {
                100.0 * r.lifted as f64 / r.faulty_labels as f64
            }
        );
    }
    s
}

pub struct SweepOutput {
    pub rows: Vec<SweepRow>,
    pub summary: Vec<SweepSummaryRow>,
    pub seconds: f64,
}

/// Run `seeds` seeds of every arm; write `sweep.parquet`, `sweep_summary.parquet` and
/// `sweep_summary.md` into `layout.root`.
pub fn run(
    p: &Pipeline,
    layout: &Layout,
    seeds: usize,
    arms: &[String],
    idx_dir: Option<&Path>,
    keep: bool,
) -> Result<SweepOutput> {
    if seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    if !arms.iter().any(|a| a == CONTROL) {
        bail!("the sweep compares against the control arm `{CONTROL}`: include it in --arms");
    }
    let t0 = Instant::now();
    let src = split::load(p, idx_dir)?;
    let bar = crate::progress::bar(seeds as u64, "sweep");
    let mut rows = Vec::new();
    let mut initial_acc = BTreeMap::new();
    let mut final_acc = BTreeMap::new();
    for i in 0..seeds {
        let mut q = p.clone();
        q.seed = p.seed + i as u64;
        q.split.seed = None;
        q.model.seed = None;
        let keep_layout =
            keep.then(|| Layout::new(layout.root.join("sweep").join(format!("seed-{}", q.seed))));
        let ts = Instant::now();
        let r = one_seed(&q, &src, arms, keep_layout.as_ref())?;
        tracing::info!(
            "sweep: seed {} done in {:.1} s (initial accuracy {:.4})",
            q.seed,
            ts.elapsed().as_secs_f64(),
            r.rows.first().map_or(f64::NAN, |x| x.accuracy)
        );
        initial_acc.insert(q.seed as i64, r.initial_label_acc);
        for (arm, acc) in r.final_label_acc {
            final_acc.insert((q.seed as i64, arm), acc);
        }
        rows.extend(r.rows);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary = summarise(&rows, &final_acc, &initial_acc, p.mode.theta);
    SweepRow::write(&layout.root.join("sweep.parquet"), &rows)?;
    SweepSummaryRow::write(&layout.root.join("sweep_summary.parquet"), &summary)?;
    let md = markdown(&summary);
    crate::artifacts::write_atomic(&layout.root.join("sweep_summary.md"), |mut f| {
        use std::io::Write;
        f.write_all(md.as_bytes())?;
        Ok(())
    })?;
    Ok(SweepOutput {
        rows,
        summary,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
