//! The MODE loop for many arms in one process: `mode experiment` and the engine of
//! `mode sweep`.
//!
//! Each arm runs the same stage functions as the per-stage commands — probe, layers,
//! heatmap, select, retrain, evaluate — in memory, sharing the splits, the initial model and
//! the input feature model, and (for iteration 1, where every arm analyses the same initial
//! model) the analysis itself. Arms run in parallel (rayon). With an output layout, every
//! artifact is written exactly where the Makefile chain would write it, so the two ways of
//! running agree file for file.

use crate::analysis::layers::SoftmaxHead;
use crate::artifacts::{
    self, Activations, Layout, MetricRow, PoolRow, Samples, Table, TrainLogRow,
};
use crate::config::{Pipeline, Space};
use crate::model::{self, Architecture, Mlp};
use crate::stages::evaluate::{EvalTag, metric_rows};
use crate::stages::heatmap::{self, Analysis, SplitStates};
use crate::stages::layers::{self, LayerSelection};
use crate::stages::select::{self, PoolStates, Strategy, rows_of};
use crate::stages::{probe, retrain};
use anyhow::{Context, Result};
use ndarray::Array2;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// The 21 arms of the full replication: nine metrics with and without layer selection, the
/// two baselines and the control.
pub fn all_arms() -> Vec<String> {
    let mut v = Vec::new();
    for m in crate::config::Metric::ALL {
        v.push(format!("mode-{}", m.as_str()));
        v.push(format!("mode-{}-nols", m.as_str()));
    }
    v.extend([
        "label-random".to_string(),
        "uncertainty".to_string(),
        "random".to_string(),
    ]);
    v
}

/// The pipeline an arm runs with: its metric and whether layer selection is on.
pub fn arm_pipeline(p: &Pipeline, arm: &str) -> Result<Pipeline> {
    let mut q = p.clone();
    let base = arm.strip_suffix("-nols");
    q.layers.enabled = p.layers.enabled && base.is_none();
    let base = base.unwrap_or(arm);
    if let Some(m) = base.strip_prefix("mode-") {
        q.select.metric = crate::config::Metric::parse(m)
            .with_context(|| format!("arm {arm:?}: unknown metric {m:?} (mode-<metric>[-nols], random, label-random, uncertainty)"))?;
    } else if !matches!(base, "random" | "label-random" | "uncertainty") {
        anyhow::bail!(
            "unknown arm {arm:?}: use mode-<metric>[-nols], random, label-random[-nols] or uncertainty[-nols]"
        );
    }
    Ok(q)
}

/// What the loop shares between arms.
pub struct Shared<'a> {
    pub train: &'a Samples,
    pub pool: &'a Samples,
    pub test: &'a Samples,
    pub initial: &'a Mlp,
    pub arch: &'a Architecture,
    /// Input-pixel feature model (layer selection on).
    pub input_head: Option<&'a SoftmaxHead>,
}

/// One model's analysis: activations, layer selection, diagnosis and heat maps.
pub struct Probed {
    pub train: Activations,
    pub test: Activations,
    pub pool: Option<Activations>,
    pub layers: LayerSelection,
    pub analysis: Analysis,
}

/// probe → layers → heatmap for one model, in memory.
pub fn analyse_model(p: &Pipeline, s: &Shared, net: &Mlp, with_pool: bool) -> Result<Probed> {
    let train = probe::probe(net, s.arch, s.train)?;
    let test = probe::probe(net, s.arch, s.test)?;
    let pool = if with_pool || p.heatmap.space == Space::Feature {
        Some(probe::probe(net, s.arch, s.pool)?)
    } else {
        None
    };
    let input = s.input_head.map(|h| (h, &s.test.pixels));
    let sel = layers::select(
        p,
        &train,
        &test,
        if p.layers.enabled { input } else { None },
    )?;
    let analysis = heatmap::analyse(
        p,
        &sel.rows,
        &|l| sel.head(l),
        &SplitStates {
            acts: &train,
            pixels: Some(&s.train.pixels),
        },
        &SplitStates {
            acts: &test,
            pixels: Some(&s.test.pixels),
        },
    )?;
    Ok(Probed {
        train,
        test,
        pool,
        layers: sel,
        analysis,
    })
}

/// Write one analysis into an iteration folder (as probe, layers and heatmap would).
fn write_analysis(dir: &Path, p: &Pipeline, a: &Probed, s: &Shared) -> Result<()> {
    let mut meta = BTreeMap::new();
    meta.insert(
        "mode.architecture".to_string(),
        serde_json::to_string(s.arch)?,
    );
    a.train
        .write(&artifacts::activations_path(dir, "train"), &meta)?;
    a.test
        .write(&artifacts::activations_path(dir, "test"), &meta)?;
    if let Some(pool) = &a.pool {
        pool.write(&artifacts::activations_path(dir, "pool"), &meta)?;
    }
    layers::write(dir, &a.layers)?;
    let test_meta = if p.heatmap.space == Space::Input {
        Some(&s.test.meta)
    } else {
        None
    };
    heatmap::write(dir, &a.analysis, test_meta)
}

/// Pool states in memory: the pool split, and its activations when probed.
pub struct MemStates<'a> {
    pub pool: &'a Samples,
    pub acts: Option<&'a Activations>,
}

impl PoolStates for MemStates<'_> {
    fn states(&self, space: Space, layer: &str, ids: &[u32]) -> Result<(Vec<u32>, Array2<f32>)> {
        if space == Space::Input || layer == layers::INPUT {
            rows_of(&self.pool.ids, &self.pool.pixels, ids)
        } else {
            let acts = self.acts.context("pool activations were not probed")?;
            rows_of(&acts.ids, acts.layer(layer)?, ids)
        }
    }
    fn probs(&self) -> Result<(Vec<u32>, Array2<f32>)> {
        let acts = self.acts.context("pool activations were not probed")?;
        Ok((acts.ids.clone(), acts.layer(layers::OUTPUT)?.clone()))
    }
}

/// One iteration of one arm, as the sweep records it.
#[derive(Debug, Clone)]
pub struct IterRecord {
    pub arm: String,
    pub iteration: u32,
    /// Overall test accuracy and per-label accuracies after this iteration.
    pub accuracy: f64,
    pub label_acc: Vec<f64>,
    /// The label this iteration targeted (the faultiest), if any.
    pub target: Option<u16>,
    pub finished_early: bool,
    pub seconds: f64,
}

fn record(
    arm: &str,
    iteration: u32,
    rows: &[MetricRow],
    target: Option<u16>,
    finished: bool,
    secs: f64,
) -> IterRecord {
    IterRecord {
        arm: arm.into(),
        iteration,
        accuracy: rows[0].accuracy,
        label_acc: rows[1..].iter().map(|r| r.accuracy).collect(),
        target,
        finished_early: finished,
        seconds: secs,
    }
}

/// Run `max_iter` iterations of one arm. `first` is the shared analysis of the initial model
/// (for this arm's layer-selection setting) when the arm needs one.
pub fn run_arm(
    p: &Pipeline,
    s: &Shared,
    arm: &str,
    first: Option<&Probed>,
    out: Option<&Layout>,
) -> Result<Vec<IterRecord>> {
    let strategy = Strategy::of_arm(arm);
    let mut net = s.initial.clone();
    let mut pool: Vec<PoolRow> = s.pool.pool_rows();
    let mut records = Vec::new();
    for k in 1..=p.mode.max_iter as u32 {
        let t0 = Instant::now();
        let dir = out.map(|l| l.iter_dir(arm, k as usize));
        let owned;
        let analysis: Option<&Probed> = if !strategy.needs_diagnosis() {
            None
        } else if k == 1 && first.is_some() {
            first
        } else {
            owned = analyse_model(p, s, &net, strategy == Strategy::Uncertainty)?;
            Some(&owned)
        };
        if let (Some(d), Some(a)) = (&dir, analysis) {
            write_analysis(d, p, a, s)?;
        }
        let states = MemStates {
            pool: s.pool,
            acts: analysis.and_then(|a| a.pool.as_ref()),
        };
        let (diagnosis, maps) = match analysis {
            Some(a) => (&a.analysis.diagnosis[..], &a.analysis.maps[..]),
            None => (&[][..], &[][..]),
        };
        let sel = select::choose(p, strategy, arm, k, &pool, diagnosis, maps, &states)?;
        if let Some(d) = &dir {
            select::write(d, &sel)?;
        }
        // retrain
        let mut log = Vec::new();
        if !sel.batch.is_empty() {
            let ids: Vec<u32> = sel.batch.iter().map(|b| b.id).collect();
            let batch = s.pool.take_ids(&ids, "batch")?;
            let (trained, epochs) = model::fit(
                net,
                &batch.pixels,
                &batch.labels,
                &p.retrain,
                retrain::shuffle_seed(p, arm, k),
                |_, _| {},
            )?;
            net = trained;
            log = crate::stages::train::log_rows(&epochs);
        }
        pool = sel.left;
        // evaluate
        let probs = model::predict(&net, &s.test.pixels, s.arch.classes)?;
        let tag = EvalTag {
            arm: arm.into(),
            iteration: k,
            finished_early: sel.batch.is_empty(),
        };
        let rows = metric_rows(p, &tag, &s.test.labels, &probs, s.arch.classes);
        if let Some(d) = &dir {
            net.save(s.arch, &d.join(artifacts::MODEL))?;
            TrainLogRow::write(&d.join(artifacts::TRAIN_LOG), &log)?;
            artifacts::write_predictions(
                &d.join(artifacts::PREDICTIONS),
                &s.test.ids,
                &s.test.labels,
                &probs,
            )?;
            MetricRow::write(&d.join(artifacts::METRICS), &rows)?;
        }
        let target = if sel.targeted > 0 {
            sel.faulty_label
        } else {
            None
        };
        records.push(record(
            arm,
            k,
            &rows,
            target,
            sel.batch.is_empty(),
            t0.elapsed().as_secs_f64(),
        ));
    }
    Ok(records)
}

/// Advances a progress bar when dropped (when an arm ends, however it ends).
struct BarTick<'a>(&'a indicatif::ProgressBar);

impl Drop for BarTick<'_> {
    fn drop(&mut self) {
        self.0.inc(1);
    }
}

/// Run every arm from one initial model, in parallel.
pub fn run_arms(
    p: &Pipeline,
    s: &Shared,
    arms: &[String],
    out: Option<&Layout>,
) -> Result<Vec<IterRecord>> {
    let pipelines: Vec<(String, Pipeline)> = arms
        .iter()
        .map(|a| Ok((a.clone(), arm_pipeline(p, a)?)))
        .collect::<Result<_>>()?;
    // The initial model's analysis, once per layer-selection setting that some arm needs.
    let mut settings: Vec<(bool, bool)> = Vec::new(); // (layer selection, with pool)
    for (a, q) in &pipelines {
        let st = Strategy::of_arm(a);
        if st.needs_diagnosis() {
            let key = (q.layers.enabled, st == Strategy::Uncertainty);
            if !settings.contains(&key) {
                settings.push(key);
            }
        }
    }
    let firsts: Vec<((bool, bool), Probed)> = settings
        .par_iter()
        .map(|&(ls, with_pool)| {
            let mut q = p.clone();
            q.layers.enabled = ls;
            Ok(((ls, with_pool), analyse_model(&q, s, s.initial, with_pool)?))
        })
        .collect::<Result<_>>()?;
    let bar = crate::progress::bar(pipelines.len() as u64, "arms");
    let results: Vec<Result<Vec<IterRecord>>> = pipelines
        .par_iter()
        .map(|(arm, q)| {
            let _done = BarTick(&bar);
            let st = Strategy::of_arm(arm);
            let key = (q.layers.enabled, st == Strategy::Uncertainty);
            let first = firsts.iter().find(|(k, _)| *k == key).map(|(_, a)| a);
            run_arm(q, s, arm, first, out).with_context(|| format!("arm {arm}"))
        })
        .collect();
    bar.finish_and_clear();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

/// `mode experiment`: load the splits, the initial model and the input feature model of a
/// pipeline's output folder, run the arms, write every artifact.
pub fn run(
    p: &Pipeline,
    layout: &Layout,
    arms: &[String],
    input_cache: Option<&Path>,
) -> Result<Vec<IterRecord>> {
    let train = Samples::read(&layout.split("train"))?;
    let pool = Samples::read(&layout.split("pool"))?;
    let test = Samples::read(&layout.split("test"))?;
    let (initial, arch) = Mlp::load(
        &layout.initial_dir().join(artifacts::MODEL),
        &model::device(false),
    )?;
    let ih = if p.layers.enabled {
        Some(layers::input_head(p, &train, input_cache)?)
    } else {
        None
    };
    let shared = Shared {
        train: &train,
        pool: &pool,
        test: &test,
        initial: &initial,
        arch: &arch,
        input_head: ih.as_ref(),
    };
    run_arms(p, &shared, arms, Some(layout))
}
