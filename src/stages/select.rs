//! `mode select`: choose the next retraining batch from the bug-fix pool.
//!
//! Strategies (one per arm kind):
//! - `mode`: score the pool samples of the faultiest label against its heat map with the
//!   metric; underfitting takes the α·batch most similar, overfitting the least similar;
//! - `label-random`: the α share drawn at random from the faultiest label;
//! - `uncertainty`: the α share = the pool samples of highest DeepGini impurity;
//! - `random`: the whole batch at random (the control).
//!
//! The rest of the batch is random; every chosen id leaves the pool. With no faulty label
//! (all but `random`), the batch is empty and the arm has finished early.

use crate::analysis::distance::{rank_order, score_rows};
use crate::analysis::selection::{compose, gini};
use crate::artifacts::{
    self, Activations, BatchRow, Cell, DiagnosisRow, HeatmapRow, PoolRow, Samples, ScoreRow, Table,
    read_frame_columns,
};
use crate::config::{Pipeline, Space, derive_seed};
use anyhow::{Result, anyhow, bail};
use ndarray::{Array2, Axis};
use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::collections::{HashMap, HashSet};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    Mode,
    LabelRandom,
    Uncertainty,
    Random,
}

impl Strategy {
    pub fn needs_diagnosis(self) -> bool {
        self != Strategy::Random
    }

    /// The strategy of an arm name: `random`, `label-random*`, `uncertainty*`, else `mode`.
    pub fn of_arm(arm: &str) -> Strategy {
        if arm == "random" {
            Strategy::Random
        } else if arm.starts_with("label-random") {
            Strategy::LabelRandom
        } else if arm.starts_with("uncertainty") {
            Strategy::Uncertainty
        } else {
            Strategy::Mode
        }
    }
}

/// Where the pool's states come from.
pub trait PoolStates {
    /// States of the `ids` (in any order; returned with their ids) at `layer` in `space`:
    /// pixels in input space or for the input layer, activations otherwise.
    fn states(&self, space: Space, layer: &str, ids: &[u32]) -> Result<(Vec<u32>, Array2<f32>)>;
    /// The model's softmax probabilities over the pool (ids, probabilities).
    fn probs(&self) -> Result<(Vec<u32>, Array2<f32>)>;
}

/// Rows of `all` whose id is in `ids`, in `all`'s order.
pub fn rows_of(all_ids: &[u32], all: &Array2<f32>, ids: &[u32]) -> Result<(Vec<u32>, Array2<f32>)> {
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
        all.select(Axis(0), &rows),
    ))
}

/// A batch and what is left of the pool.
pub struct Selection {
    pub scores: Vec<ScoreRow>,
    pub batch: Vec<BatchRow>,
    pub left: Vec<PoolRow>,
    pub faulty_label: Option<u16>,
    pub action: String,
    pub targeted: usize,
    pub random: usize,
    pub candidates: usize,
}

/// The core of `mode select`.
#[allow(clippy::too_many_arguments)]
pub fn choose(
    p: &Pipeline,
    strategy: Strategy,
    arm: &str,
    iteration: u32,
    pool: &[PoolRow],
    diagnosis: &[DiagnosisRow],
    maps: &[HeatmapRow],
    states: &dyn PoolStates,
) -> Result<Selection> {
    let pool_ids: Vec<u32> = pool.iter().map(|r| r.id).collect();
    let label_of: HashMap<u32, u16> = pool.iter().map(|r| (r.id, r.label)).collect();
    let batch = p.mode.batch;
    let n_targeted = (p.mode.alpha * batch as f64).round() as usize;
    let seed = derive_seed(p.seed, &format!("select/{arm}/{iteration}"));
    let metric = p.select.metric;
    let (faulty, action) = if strategy.needs_diagnosis() {
        match diagnosis.iter().find(|r| r.faultiest) {
            Some(r) => (Some(r.label), r.action.clone()),
            None => (None, "none".to_string()),
        }
    } else {
        (None, "random".to_string())
    };
    let mut scores: Vec<ScoreRow> = Vec::new();
    let mut candidates = 0;
    let (targeted, random) = match (strategy, faulty) {
        (Strategy::Random, _) => compose(&[], &pool_ids, 0, batch, seed),
        (_, None) => (Vec::new(), Vec::new()),
        (Strategy::LabelRandom, Some(l)) => {
            let mut c: Vec<u32> = pool.iter().filter(|r| r.label == l).map(|r| r.id).collect();
            candidates = c.len();
            c.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(seed, "label")));
            compose(&c, &pool_ids, n_targeted, batch, seed)
        }
        (Strategy::Uncertainty, Some(_)) => {
            let (ids, probs) = states.probs()?;
            let (ids, probs) = rows_of(&ids, &probs, &pool_ids)?;
            let g = gini(probs.view());
            let mut order: Vec<usize> = (0..g.len()).collect();
            order.sort_by(|&x, &y| g[y].total_cmp(&g[x]).then(x.cmp(&y)));
            candidates = ids.len();
            for (rank, &k) in order.iter().enumerate() {
                scores.push(ScoreRow {
                    id: ids[k],
                    label: label_of[&ids[k]],
                    metric: "gini".into(),
                    score: g[k],
                    rank: rank as u32 + 1,
                });
            }
            let ranked: Vec<u32> = order.iter().map(|&k| ids[k]).collect();
            compose(&ranked, &pool_ids, n_targeted, batch, seed)
        }
        (Strategy::Mode, Some(l)) => {
            let cand: Vec<u32> = pool.iter().filter(|r| r.label == l).map(|r| r.id).collect();
            candidates = cand.len();
            let kind = if action == "fix_overfit" {
                p.select.overfit_kind
            } else {
                p.select.underfit_kind
            };
            let map = maps
                .iter()
                .find(|m| m.label == l && m.other.is_none() && m.kind == kind.as_str())
                .ok_or_else(|| {
                    anyhow!("the heat maps have no {} map for label {l}", kind.as_str())
                })?;
            if map.n == 0 {
                tracing::warn!(
                    "select ({arm}, iteration {iteration}): the {} heat map of label {l} is empty (n = 0), so every candidate scores alike and the ranking falls back to pool order; select.underfit_kind = \"HW\" scores against the label's misclassified inputs instead",
                    kind.as_str()
                );
            }
            if map.space != p.heatmap.space.as_str() {
                bail!(
                    "heat maps are in {} space but the pipeline selects in {} space: re-run `mode heatmap`",
                    map.space,
                    p.heatmap.space.as_str()
                );
            }
            let (ids, x) = if cand.is_empty() {
                (Vec::new(), Array2::zeros((0, map.values.len())))
            } else {
                states.states(p.heatmap.space, &map.layer, &cand)?
            };
            if x.ncols() != map.values.len() {
                bail!(
                    "heat map has {} values but the samples have {}",
                    map.values.len(),
                    x.ncols()
                );
            }
            let sc = score_rows(x.view(), &map.values, metric, p.select.minkowski_p);
            let mut order = rank_order(&sc, metric);
            for (rank, &k) in order.iter().enumerate() {
                scores.push(ScoreRow {
                    id: ids[k],
                    label: l,
                    metric: metric.as_str().into(),
                    score: sc[k],
                    rank: rank as u32 + 1,
                });
            }
            if action == "fix_overfit" {
                order.reverse(); // least similar first
            }
            let ranked: Vec<u32> = order.iter().map(|&k| ids[k]).collect();
            compose(&ranked, &pool_ids, n_targeted, batch, seed)
        }
    };
    if faulty.is_some() && targeted.len() < n_targeted {
        tracing::warn!(
            "select ({arm}, iteration {iteration}): only {} candidates for the targeted share of {n_targeted}; took them all, the rest is random",
            targeted.len()
        );
    }
    let mut rows: Vec<BatchRow> = Vec::new();
    for (ids, origin) in [(&targeted, "targeted"), (&random, "random")] {
        for &id in ids {
            rows.push(BatchRow {
                id,
                label: label_of[&id],
                origin: origin.into(),
                iteration,
                arm: arm.into(),
            });
        }
    }
    let chosen: HashSet<u32> = rows.iter().map(|r| r.id).collect();
    let left: Vec<PoolRow> = pool
        .iter()
        .filter(|r| !chosen.contains(&r.id))
        .cloned()
        .collect();
    Ok(Selection {
        scores,
        batch: rows,
        left,
        faulty_label: faulty,
        action,
        targeted: targeted.len(),
        random: random.len(),
        candidates,
    })
}

/// Write `scores.parquet`, `batch.parquet` and `pool.parquet` into `dir`.
pub fn write(dir: &Path, s: &Selection) -> Result<()> {
    ScoreRow::write(&dir.join(artifacts::SCORES), &s.scores)?;
    BatchRow::write(&dir.join(artifacts::BATCH), &s.batch)?;
    PoolRow::write(&dir.join(artifacts::POOL), &s.left)
}

pub struct SelectArgs<'a> {
    /// Folder with this iteration's analysis (diagnosis, heat maps, activations).
    pub dir: &'a Path,
    /// Pool ids before this selection (`splits/pool.parquet` or the previous `pool.parquet`).
    pub pool: &'a Path,
    pub splits_dir: &'a Path,
    pub out_dir: &'a Path,
    pub arm: &'a str,
    pub iteration: u32,
    pub strategy: Strategy,
}

/// Ids and labels of a pool file.
fn pool_rows(path: &Path) -> Result<Vec<PoolRow>> {
    let df = read_frame_columns(path, &["id", "label"])?;
    let ids = <u32 as Cell>::read(&df, "id")?;
    let labels = <u16 as Cell>::read(&df, "label")?;
    Ok(ids
        .into_iter()
        .zip(labels)
        .map(|(id, label)| PoolRow { id, label })
        .collect())
}

/// Pool states read from files: the pool split and `activations/pool.parquet`.
struct FileStates<'a> {
    dir: &'a Path,
    splits_dir: &'a Path,
}

impl PoolStates for FileStates<'_> {
    fn states(&self, space: Space, layer: &str, ids: &[u32]) -> Result<(Vec<u32>, Array2<f32>)> {
        if space == Space::Input || layer == "input" {
            let s = Samples::read(&self.splits_dir.join("pool.parquet"))?;
            rows_of(&s.ids, &s.pixels, ids)
        } else {
            let acts = Activations::read(&artifacts::activations_path(self.dir, "pool"))?;
            rows_of(&acts.ids, acts.layer(layer)?, ids)
        }
    }

    fn probs(&self) -> Result<(Vec<u32>, Array2<f32>)> {
        let acts = Activations::read(&artifacts::activations_path(self.dir, "pool"))?;
        let probs = acts.layer("output")?.clone();
        Ok((acts.ids, probs))
    }
}

pub fn run(p: &Pipeline, a: &SelectArgs) -> Result<Selection> {
    let pool = pool_rows(a.pool)?;
    let (diagnosis, maps) = match a.strategy {
        Strategy::Random => (Vec::new(), Vec::new()),
        Strategy::Mode => (
            DiagnosisRow::read(&a.dir.join(artifacts::DIAGNOSIS))?,
            artifacts::read_heatmaps(&a.dir.join(artifacts::HEATMAPS))?,
        ),
        _ => (
            DiagnosisRow::read(&a.dir.join(artifacts::DIAGNOSIS))?,
            Vec::new(),
        ),
    };
    let states = FileStates {
        dir: a.dir,
        splits_dir: a.splits_dir,
    };
    let s = choose(
        p,
        a.strategy,
        a.arm,
        a.iteration,
        &pool,
        &diagnosis,
        &maps,
        &states,
    )?;
    write(a.out_dir, &s)?;
    Ok(s)
}
