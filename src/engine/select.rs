//! The select step: the next retraining batch from the bug-fix pool.
//!
//! - MODE (`mode-<metric>`): score the pool samples of the faulty label against its heat map
//!   with the metric; underfitting takes the α·batch most similar (`select.order`),
//!   overfitting the least similar;
//! - `label-random`, `label-margin`: the α share at random / by margin from the faulty label;
//! - `uncertainty` (DeepGini), `margin`, `entropy`, `least-confidence`: the α share = the most
//!   uncertain pool samples; `coreset`, `badge`: the α share picked for diversity;
//! - `random`: the whole batch at random (the control).
//!
//! `select.targets` spreads the α share over every faulty label; the rest of the batch is
//! random (`select.random_fill`: never from the targeted labels, as the seed, or from any);
//! every chosen id leaves the pool. With no faulty label (all but `random`) the arm has
//! finished early: an empty batch, or with `mode.on_finish = "random"` a random one.

use super::{Step, Store};
use crate::analysis::distance::{rank_order, score_rows};
use crate::analysis::selection::{apportion, random_fill};
use crate::analysis::strategies::{Uncertainty, badge, k_center_greedy, rank_uncertain};
use crate::arm::{Arm, Baseline, Strategy};
use crate::artifacts::{
    Activations, BatchRow, DiagnosisRow, Heatmaps, INPUT, OUTPUT, PoolRow, Samples, ScoreRow, Split,
};
use crate::config::{EmptyMap, OnFinish, Order, Pipeline, RandomFill, Targets, derive_seed};
use crate::vocab::{Action, MapKind, Origin, Space};
use anyhow::{Context, Result, anyhow, bail};
use ndarray::{Array2, Axis};
use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};

/// The pool's states: its pixels, and its activations when probed.
pub struct PoolView<'a> {
    pub samples: &'a Samples,
    pub acts: Option<&'a Activations>,
}

/// Rows of `all` whose id is in `ids`, in `all`'s order.
pub fn rows_by_id(
    all_ids: &[u32],
    all: &Array2<f32>,
    ids: &[u32],
) -> Result<(Vec<u32>, Array2<f32>)> {
    let keep: HashSet<u32> = ids.iter().copied().collect();
    let rows: Vec<usize> = (0..all_ids.len())
        .filter(|&i| keep.contains(&all_ids[i]))
        .collect();
    if rows.len() != keep.len() {
        bail!(
            "{} pool ids asked for, only {} found among the pool's states",
            keep.len(),
            rows.len()
        );
    }
    Ok((
        rows.iter().map(|&i| all_ids[i]).collect(),
        crate::numeric::select_rows(all, &rows),
    ))
}

impl PoolView<'_> {
    /// States of `ids` at `layer` in `space`: pixels in input space or for the input layer,
    /// activations otherwise.
    pub fn states(
        &self,
        space: Space,
        layer: &str,
        ids: &[u32],
    ) -> Result<(Vec<u32>, Array2<f32>)> {
        if space == Space::Input || layer == INPUT {
            rows_by_id(&self.samples.ids, &self.samples.pixels, ids)
        } else {
            let acts = self
                .acts
                .context("the pool's activations were not probed")?;
            rows_by_id(&acts.ids, acts.layer(layer)?, ids)
        }
    }

    /// The model's class probabilities over the pool.
    pub fn probs(&self) -> Result<(&[u32], &Array2<f32>)> {
        let acts = self
            .acts
            .context("the pool's activations were not probed")?;
        Ok((&acts.ids, acts.probs()?))
    }
}

/// A batch and what is left of the pool.
#[derive(Debug, Clone)]
pub struct Selection {
    pub scores: Vec<ScoreRow>,
    pub batch: Vec<BatchRow>,
    pub left: Vec<PoolRow>,
    /// The faultiest label (the first target), if any.
    pub faulty_label: Option<u16>,
    pub action: Action,
    pub targeted: usize,
    pub random: usize,
    pub candidates: usize,
}

/// What a selection reads besides the pipeline.
pub struct Inputs<'a> {
    /// The pool before the selection.
    pub pool: &'a [PoolRow],
    pub diagnosis: &'a [DiagnosisRow],
    pub maps: Option<&'a Heatmaps>,
    pub states: &'a PoolView<'a>,
    /// The train split's activations (the core-set's centres).
    pub train: Option<&'a Activations>,
    /// The forward target layer (where the core-set measures distances).
    pub target_layer: Option<&'a str>,
}

/// The labels the α share goes to, with their share: the faultiest, or every faulty label by
/// its deficit (θ − test accuracy for underfitting, gap − γ for overfitting).
fn targets<'a>(
    p: &Pipeline,
    diagnosis: &'a [DiagnosisRow],
    n: usize,
) -> Vec<(&'a DiagnosisRow, usize)> {
    match p.select.targets {
        Targets::Faultiest => diagnosis
            .iter()
            .filter(|r| r.faultiest)
            .map(|r| (r, n))
            .collect(),
        Targets::AllFaulty => {
            let mut faulty: Vec<&DiagnosisRow> = diagnosis
                .iter()
                .filter(|r| r.underfit || r.overfit)
                .collect();
            // The faultiest first, then by label.
            faulty.sort_by_key(|r| (!r.faultiest, r.label));
            let deficits: Vec<f64> = faulty
                .iter()
                .map(|r| {
                    if r.underfit {
                        r.theta - r.test_acc
                    } else {
                        r.gap - p.mode.gamma
                    }
                })
                .collect();
            faulty.into_iter().zip(apportion(n, &deficits)).collect()
        }
    }
}

/// Rank the candidates of one faulty label with MODE's heat-map similarity. Returns the ranked
/// ids (best first) and their score rows.
fn rank_mode(
    picking: &Picking,
    metric: crate::vocab::Metric,
    target: &DiagnosisRow,
    cand: &[u32],
) -> Result<(Vec<u32>, Vec<ScoreRow>)> {
    let Picking {
        p,
        inp,
        seed,
        context,
        ..
    } = *picking;
    let l = target.label;
    let overfit = target.action == Action::FixOverfit;
    let kind = if overfit {
        p.select.overfit_kind
    } else {
        p.select.underfit_kind
    };
    let Some(map) = scoring_map(p, inp, l, kind, context)? else {
        let mut ids = cand.to_vec();
        ids.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
            seed,
            &format!("empty/{l}"),
        )));
        return Ok((ids, Vec::new()));
    };
    if map.space != p.heatmap.space {
        bail!(
            "heat maps are in {} space but the pipeline selects in {} space: re-run the heatmap step",
            map.space,
            p.heatmap.space
        );
    }
    let (ids, x) = if cand.is_empty() {
        (Vec::new(), Array2::zeros((0, map.values.len())))
    } else {
        inp.states.states(p.heatmap.space, &map.layer, cand)?
    };
    if x.ncols() != map.values.len() {
        bail!(
            "the heat map has {} values but the samples have {}",
            map.values.len(),
            x.ncols()
        );
    }
    let sc = score_rows(x.view(), &map.values, metric, p.select.minkowski_p);
    let mut order = rank_order(&sc, metric);
    let scores = order
        .iter()
        .enumerate()
        .map(|(rank, &k)| ScoreRow {
            id: ids[k],
            label: l,
            metric: metric.as_str().into(),
            score: sc[k],
            rank: rank as u32 + 1,
        })
        .collect();
    // Overfitting takes the least similar; underfitting the most (or, with select.order =
    // "least", the least).
    if overfit || p.select.order == Order::Least {
        order.reverse();
    }
    Ok((order.iter().map(|&k| ids[k]).collect(), scores))
}

/// The map label `l`'s candidates are scored against: its `kind` map, or when that one is
/// empty what `select.empty_map` says (an error, the HW map, or `None`: take them at random).
fn scoring_map<'a>(
    p: &Pipeline,
    inp: &Inputs<'a>,
    l: u16,
    kind: MapKind,
    context: &str,
) -> Result<Option<&'a crate::artifacts::HeatmapRow>> {
    let maps = inp
        .maps
        .ok_or_else(|| anyhow!("MODE selection needs the heat maps"))?;
    let mut map = maps
        .get(l, kind)
        .ok_or_else(|| anyhow!("the heat maps have no {kind} map for label {l}"))?;
    if map.n == 0 {
        let fallback = match p.select.empty_map {
            EmptyMap::Error => bail!(
                "{context}: the {kind} heat map of label {l} is empty (n = 0); set select.empty_map = \"HW\" or \"random\" to go on"
            ),
            EmptyMap::Hw => maps.get(l, MapKind::Hw).filter(|m| m.n > 0),
            EmptyMap::Random => None,
        };
        match fallback {
            Some(m) => {
                tracing::info!(
                    "{context}: the {kind} map of label {l} is empty; scoring against HW (select.empty_map)"
                );
                map = m;
            }
            None => {
                tracing::info!(
                    "{context}: the {kind} map of label {l} is empty; taking its candidates at random (select.empty_map)"
                );
                return Ok(None);
            }
        }
    }
    Ok(Some(map))
}

/// Score rows of a ranking over `ids` (best first).
fn ranked_rows(
    ids: &[u32],
    scores: &[f64],
    label_of: &HashMap<u32, u16>,
    metric: &str,
) -> Vec<ScoreRow> {
    ids.iter()
        .zip(scores)
        .enumerate()
        .map(|(rank, (&id, &score))| ScoreRow {
            id,
            label: label_of[&id],
            metric: metric.into(),
            score,
            rank: rank as u32 + 1,
        })
        .collect()
}

/// The pool-wide strategies: `n` ids ranked or picked over the whole pool.
fn pick_pool(
    b: Baseline,
    n: usize,
    inp: &Inputs,
    label_of: &HashMap<u32, u16>,
    seed: u64,
) -> Result<(Vec<u32>, Vec<ScoreRow>)> {
    let pool_ids: Vec<u32> = inp.pool.iter().map(|r| r.id).collect();
    let (all_ids, all_probs) = inp.states.probs()?;
    let (ids, probs) = rows_by_id(all_ids, all_probs, &pool_ids)?;
    let uncertainty = match b {
        Baseline::Uncertainty => Some(Uncertainty::Gini),
        Baseline::Margin => Some(Uncertainty::Margin),
        Baseline::Entropy => Some(Uncertainty::Entropy),
        Baseline::LeastConfidence => Some(Uncertainty::LeastConfidence),
        _ => None,
    };
    if let Some(u) = uncertainty {
        let (sc, order) = rank_uncertain(probs.view(), u);
        let ranked: Vec<u32> = order.iter().map(|&k| ids[k]).collect();
        let scores: Vec<f64> = order.iter().map(|&k| sc[k]).collect();
        let rows = ranked_rows(&ranked, &scores, label_of, u.name());
        return Ok((ranked.into_iter().take(n).collect(), rows));
    }
    let picks = match b {
        Baseline::Coreset => {
            let acts = inp
                .states
                .acts
                .context("the pool's activations were not probed")?;
            let layer = coreset_layer(inp, acts)?;
            let x = acts.layer(&layer)?;
            let (_, cand) = rows_by_id(&acts.ids, x, &ids)?;
            // Centres: every sample already trained on — the train split and what earlier
            // iterations selected from the pool.
            let left: HashSet<u32> = pool_ids.iter().copied().collect();
            let used: Vec<u32> = acts
                .ids
                .iter()
                .copied()
                .filter(|id| !left.contains(id))
                .collect();
            let (_, mut centres) = rows_by_id(&acts.ids, x, &used)?;
            if let Some(t) = inp.train {
                let tx = t.layer(&layer)?;
                centres = ndarray::concatenate(Axis(0), &[tx.view(), centres.view()])?;
            }
            k_center_greedy(cand.view(), centres.view(), n, derive_seed(seed, "coreset"))
        }
        Baseline::Badge => {
            let acts = inp
                .states
                .acts
                .context("the pool's activations were not probed")?;
            let names = acts.layer_names();
            let last_hidden = names
                .iter()
                .rev()
                .find(|l| l.as_str() != OUTPUT)
                .ok_or_else(|| anyhow!("BADGE needs a hidden layer; the model has none"))?;
            let (_, h) = rows_by_id(&acts.ids, acts.layer(last_hidden)?, &ids)?;
            badge(probs.view(), h.view(), n, derive_seed(seed, "badge"))
        }
        other => bail!("{other} is not a pool-wide strategy"),
    };
    let picked: Vec<u32> = picks.iter().map(|&(k, _)| ids[k]).collect();
    let scores: Vec<f64> = picks.iter().map(|&(_, d)| d as f64).collect();
    let name = if b == Baseline::Coreset {
        "coreset"
    } else {
        "badge"
    };
    let rows = ranked_rows(&picked, &scores, label_of, name);
    Ok((picked, rows))
}

/// The core-set's layer: the forward target, or the first hidden layer when that is the input
/// (pixels would make the distances slow and the model would not matter).
fn coreset_layer(inp: &Inputs, acts: &Activations) -> Result<String> {
    let names = acts.layer_names();
    Ok(match inp.target_layer {
        Some(l) if l != INPUT => l.to_string(),
        _ => names
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("no layers in the activations"))?,
    })
}

/// Choose the batch (pure but for the seeded draws): the strategy's share, then random.
pub fn choose(p: &Pipeline, arm: Arm, iteration: u32, inp: &Inputs) -> Result<Selection> {
    let name = arm.to_string();
    let context = format!("select ({name}, iteration {iteration})");
    let pool_ids: Vec<u32> = inp.pool.iter().map(|r| r.id).collect();
    let label_of: HashMap<u32, u16> = inp.pool.iter().map(|r| (r.id, r.label)).collect();
    let batch = p.mode.batch.of(inp.states.samples.len());
    let n_targeted = ((p.mode.alpha * batch as f64).round() as usize).min(batch);
    let seed = derive_seed(p.seed, &format!("select/{name}/{iteration}"));
    let strategy = arm.strategy;
    let goals = if strategy.needs_diagnosis() {
        targets(p, inp.diagnosis, n_targeted)
    } else {
        Vec::new()
    };
    let mut scores: Vec<ScoreRow> = Vec::new();
    let mut targeted: Vec<u32> = Vec::new();
    let mut candidates = 0;
    let mut skip: HashSet<u32> = HashSet::new();
    let finished = strategy.needs_diagnosis() && goals.is_empty();
    let fill = if finished && p.mode.on_finish == OnFinish::Stop {
        0
    } else if !strategy.needs_diagnosis() || finished {
        batch
    } else if strategy.label_restricted() {
        let picking = Picking {
            p,
            inp,
            label_of: &label_of,
            seed,
            context: &context,
        };
        candidates = per_label(
            &picking,
            strategy,
            &goals,
            &mut scores,
            &mut targeted,
            &mut skip,
        )?;
        batch - targeted.len()
    } else {
        let Strategy::Baseline(b) = strategy else {
            unreachable!("MODE is label-restricted")
        };
        let (picked, rows) = pick_pool(b, n_targeted, inp, &label_of, seed)?;
        candidates = inp.pool.len();
        scores = rows;
        skip.extend(picked.iter().copied());
        targeted = picked;
        batch - targeted.len()
    };
    let random = random_fill(&pool_ids, &skip, fill, seed);
    let rows = batch_rows(&name, iteration, &targeted, &random, &label_of);
    let chosen: HashSet<u32> = rows.iter().map(|r| r.id).collect();
    let left: Vec<PoolRow> = inp
        .pool
        .iter()
        .filter(|r| !chosen.contains(&r.id))
        .cloned()
        .collect();
    let first = goals.first().map(|(g, _)| *g);
    Ok(Selection {
        scores,
        batch: rows,
        left,
        faulty_label: first.map(|g| g.label),
        action: first.map_or(Action::None, |g| g.action),
        targeted: targeted.len(),
        random: random.len(),
        candidates,
    })
}

/// The rows of `batch.parquet`: the targeted share, then the random fill.
fn batch_rows(
    arm: &str,
    iteration: u32,
    targeted: &[u32],
    random: &[u32],
    label_of: &HashMap<u32, u16>,
) -> Vec<BatchRow> {
    let mut rows: Vec<BatchRow> = Vec::new();
    for (ids, origin) in [(targeted, Origin::Targeted), (random, Origin::Random)] {
        for &id in ids {
            rows.push(BatchRow {
                id,
                label: label_of[&id],
                origin,
                iteration,
                arm: arm.to_string(),
            });
        }
    }
    rows
}

/// What the targeted share is picked with: the pipeline, the step's inputs, the pool's
/// labels, the selection's seed and the context its warnings name.
struct Picking<'a> {
    p: &'a Pipeline,
    inp: &'a Inputs<'a>,
    label_of: &'a HashMap<u32, u16>,
    seed: u64,
    context: &'a str,
}

/// The targeted share of a label-restricted strategy, goal by goal: each label's candidates
/// ranked (MODE's metric, the margin, or a seeded shuffle) and the first `n` taken; their
/// score rows go to `scores`, the ids to `targeted` and `skip` (with the whole label when
/// `select.random_fill` excludes it). The number of candidates seen.
fn per_label(
    picking: &Picking,
    strategy: Strategy,
    goals: &[(&DiagnosisRow, usize)],
    scores: &mut Vec<ScoreRow>,
    targeted: &mut Vec<u32>,
    skip: &mut HashSet<u32>,
) -> Result<usize> {
    let Picking {
        p,
        inp,
        label_of,
        seed,
        context,
    } = *picking;
    let mut candidates = 0;
    for (goal, n) in goals {
        let l = goal.label;
        let cand: Vec<u32> = inp
            .pool
            .iter()
            .filter(|r| r.label == l && !skip.contains(&r.id))
            .map(|r| r.id)
            .collect();
        candidates += cand.len();
        let ranked = match strategy {
            Strategy::Mode(metric) => {
                let (ranked, rows) = rank_mode(picking, metric, goal, &cand)?;
                scores.extend(rows);
                ranked
            }
            Strategy::Baseline(Baseline::LabelMargin) => {
                let (all_ids, all_probs) = inp.states.probs()?;
                let (ids, probs) = rows_by_id(all_ids, all_probs, &cand)?;
                let (sc, order) = rank_uncertain(probs.view(), Uncertainty::Margin);
                let ranked: Vec<u32> = order.iter().map(|&k| ids[k]).collect();
                let s: Vec<f64> = order.iter().map(|&k| sc[k]).collect();
                scores.extend(ranked_rows(&ranked, &s, label_of, "margin"));
                ranked
            }
            _ => {
                let mut c = cand.clone();
                c.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(seed, "label")));
                c
            }
        };
        if ranked.len() < *n {
            tracing::warn!(
                "{context}: only {} candidates of label {l} for a targeted share of {n}; took them all, the rest is random",
                ranked.len()
            );
        }
        let take: Vec<u32> = ranked.into_iter().take(*n).collect();
        skip.extend(take.iter().copied());
        targeted.extend(take);
        if p.select.random_fill == RandomFill::ExcludeTarget {
            skip.extend(inp.pool.iter().filter(|r| r.label == l).map(|r| r.id));
        }
    }
    Ok(candidates)
}

/// The pool before the step's selection.
pub fn pool_before(store: &Store, s: &Step) -> Result<Vec<PoolRow>> {
    if s.k == 1 {
        Ok(store
            .get::<Samples>(&s.layout.split(Split::Pool))?
            .pool_rows())
    } else {
        Ok(store.get::<Vec<PoolRow>>(&s.prev.pool())?.to_vec())
    }
}

/// Select the step's batch; write `scores.parquet`, `batch.parquet` and `pool.parquet`.
pub fn run(store: &Store, s: &Step) -> Result<Selection> {
    let pool = pool_before(store, s)?;
    let strategy = s.arm.strategy;
    let diagnosis = if strategy.needs_diagnosis() {
        store.get::<Vec<DiagnosisRow>>(&s.dir.diagnosis())?
    } else {
        Default::default()
    };
    let maps = if strategy.needs_heatmaps() {
        Some(store.get::<Heatmaps>(&s.dir.heatmaps())?)
    } else {
        None
    };
    let samples = store.get::<Samples>(&s.layout.split(Split::Pool))?;
    let acts = if s.probe_splits().contains(&Split::Pool) && strategy.needs_diagnosis() {
        Some(super::probe::activations(store, s, Split::Pool)?)
    } else {
        None
    };
    let coreset = strategy == Strategy::Baseline(Baseline::Coreset);
    let train = if coreset {
        Some(super::probe::activations(store, s, Split::Train)?)
    } else {
        None
    };
    let layers = if coreset {
        Some(store.get::<Vec<crate::artifacts::LayerRow>>(&s.dir.layers())?)
    } else {
        None
    };
    let target_layer = match &layers {
        Some(rows) => Some(super::layers::target(
            rows,
            crate::vocab::Direction::Forward,
        )?),
        None => None,
    };
    let view = PoolView {
        samples: &samples,
        acts: acts.as_deref(),
    };
    let inputs = Inputs {
        pool: &pool,
        diagnosis: &diagnosis,
        maps: maps.as_deref(),
        states: &view,
        train: train.as_deref(),
        target_layer,
    };
    let sel = choose(&s.p, s.arm, s.k, &inputs)?;
    store.put(&s.dir.scores(), sel.scores.clone())?;
    store.put(&s.dir.batch(), sel.batch.clone())?;
    store.put(&s.dir.pool(), sel.left.clone())?;
    Ok(sel)
}
