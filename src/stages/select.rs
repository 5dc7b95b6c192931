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
    self, Activations, BatchRow, Cell, DiagnosisRow, PoolRow, Samples, ScoreRow, Table,
    read_frame_columns,
};
use crate::config::{Pipeline, Space, derive_seed};
use anyhow::{Result, anyhow, bail};
use std::collections::HashMap;
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

pub struct SelectReport {
    pub faulty_label: Option<u16>,
    pub action: String,
    pub targeted: usize,
    pub random: usize,
    pub candidates: usize,
    pub pool_left: usize,
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

pub fn run(p: &Pipeline, a: &SelectArgs) -> Result<SelectReport> {
    let pool = pool_rows(a.pool)?;
    let pool_ids: Vec<u32> = pool.iter().map(|r| r.id).collect();
    let label_of: HashMap<u32, u16> = pool.iter().map(|r| (r.id, r.label)).collect();
    let batch = p.mode.batch;
    let n_targeted = (p.mode.alpha * batch as f64).round() as usize;
    let seed = derive_seed(p.seed, &format!("select/{}/{}", a.arm, a.iteration));
    let metric = p.select.metric;

    let (faulty, action) = if a.strategy.needs_diagnosis() {
        let d = DiagnosisRow::read(&a.dir.join(artifacts::DIAGNOSIS))?;
        match d.iter().find(|r| r.faultiest) {
            Some(r) => (Some(r.label), r.action.clone()),
            None => (None, "none".to_string()),
        }
    } else {
        (None, "random".to_string())
    };

    let mut scores: Vec<ScoreRow> = Vec::new();
    let mut candidates = 0;
    let (targeted, random) = match (a.strategy, faulty) {
        (Strategy::Random, _) => compose(&[], &pool_ids, 0, batch, seed),
        (_, None) => (Vec::new(), Vec::new()),
        (Strategy::LabelRandom, Some(l)) => {
            let mut c: Vec<u32> = pool.iter().filter(|r| r.label == l).map(|r| r.id).collect();
            candidates = c.len();
            use rand::{SeedableRng, seq::SliceRandom};
            c.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(derive_seed(
                seed, "label",
            )));
            compose(&c, &pool_ids, n_targeted, batch, seed)
        }
        (Strategy::Uncertainty, Some(_)) => {
            let acts = Activations::read(&artifacts::activations_path(a.dir, "pool"))?;
            let probs = acts.layer("output")?;
            let g = gini(probs.view());
            let in_pool: Vec<usize> = (0..acts.ids.len())
                .filter(|&i| label_of.contains_key(&acts.ids[i]))
                .collect();
            let sc: Vec<f64> = in_pool.iter().map(|&i| g[i]).collect();
            let mut order: Vec<usize> = (0..sc.len()).collect();
            order.sort_by(|&x, &y| sc[y].total_cmp(&sc[x]).then(x.cmp(&y)));
            candidates = in_pool.len();
            let ranked: Vec<u32> = order.iter().map(|&k| acts.ids[in_pool[k]]).collect();
            for (rank, &k) in order.iter().enumerate() {
                let id = acts.ids[in_pool[k]];
                scores.push(ScoreRow {
                    id,
                    label: label_of[&id],
                    metric: "gini".into(),
                    score: sc[k],
                    rank: rank as u32 + 1,
                });
            }
            compose(&ranked, &pool_ids, n_targeted, batch, seed)
        }
        (Strategy::Mode, Some(l)) => {
            let cand: Vec<u32> = pool.iter().filter(|r| r.label == l).map(|r| r.id).collect();
            candidates = cand.len();
            let maps = artifacts::read_heatmaps(&a.dir.join(artifacts::HEATMAPS))?;
            let kind = if action == "fix_overfit" {
                p.select.overfit_kind
            } else {
                p.select.underfit_kind
            };
            let map = maps
                .iter()
                .find(|m| m.label == l && m.other.is_none() && m.kind == kind.as_str())
                .ok_or_else(|| {
                    anyhow!(
                        "heatmaps.parquet has no {} map for label {l}",
                        kind.as_str()
                    )
                })?;
            if map.space != p.heatmap.space.as_str() {
                bail!(
                    "heat maps are in {} space but the pipeline selects in {} space: re-run `mode heatmap`",
                    map.space,
                    p.heatmap.space.as_str()
                );
            }
            // Candidate states: pixels in input space (or when the heat-map layer is the
            // input), the heat-map layer's pool activations in feature space.
            let (all_ids, all_x) = if p.heatmap.space == Space::Input || map.layer == "input" {
                let s = Samples::read(&a.splits_dir.join("pool.parquet"))?;
                (s.ids, s.pixels)
            } else {
                let acts = Activations::read(&artifacts::activations_path(a.dir, "pool"))?;
                let x = acts.layer(&map.layer)?.clone();
                (acts.ids, x)
            };
            let keep: std::collections::HashSet<u32> = cand.iter().copied().collect();
            let rows: Vec<usize> = (0..all_ids.len())
                .filter(|&i| keep.contains(&all_ids[i]))
                .collect();
            if rows.len() != cand.len() {
                bail!(
                    "{} pool candidates but only {} found in the pool's states",
                    cand.len(),
                    rows.len()
                );
            }
            let ids: Vec<u32> = rows.iter().map(|&i| all_ids[i]).collect();
            let x = all_x.select(ndarray::Axis(0), &rows);
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
            "select: only {} candidates for the targeted share of {n_targeted}; took them all, the rest is random",
            targeted.len()
        );
    }
    if a.strategy.needs_diagnosis() && faulty.is_none() {
        tracing::info!("select: no faulty label; empty batch (finished early)");
    }
    let mut rows: Vec<BatchRow> = Vec::new();
    for (ids, origin) in [(&targeted, "targeted"), (&random, "random")] {
        for &id in ids {
            rows.push(BatchRow {
                id,
                label: label_of[&id],
                origin: origin.into(),
                iteration: a.iteration,
                arm: a.arm.into(),
            });
        }
    }
    let chosen: std::collections::HashSet<u32> = rows.iter().map(|r| r.id).collect();
    let left: Vec<PoolRow> = pool
        .into_iter()
        .filter(|r| !chosen.contains(&r.id))
        .collect();
    ScoreRow::write(&a.out_dir.join(artifacts::SCORES), &scores)?;
    BatchRow::write(&a.out_dir.join(artifacts::BATCH), &rows)?;
    PoolRow::write(&a.out_dir.join(artifacts::POOL), &left)?;
    Ok(SelectReport {
        faulty_label: faulty,
        action,
        targeted: targeted.len(),
        random: random.len(),
        candidates,
        pool_left: left.len(),
    })
}
