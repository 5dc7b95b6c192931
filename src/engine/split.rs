//! Splitting a source into `splits/{train,pool,test}.parquet` (and the holdout), with
//! optional fault injection: the plan (pure), the splits in memory with the metadata every
//! split file records, and where each sample came from. `mode split` writes them; the grid
//! runner splits each seed in memory.
//!
//! Ids (idx): the i-th image of the training file has id `i`; the j-th image of the test file
//! has id `N + j`, where N is the number of images in the training file (60 000 for MNIST).
//! Ids (folders, tables): the sample's index in the source. Ids are unique across the files
//! and never change in later artifacts.

use crate::artifacts::keys::{ID_MAPPING_KEY, SETTINGS_KEY, SOURCE_KEY, SPLIT_KEY, SPLIT_SEED_KEY};
use crate::artifacts::{DatasetMeta, Samples, SourceRow, Split};
use crate::config::{Pipeline, SplitConfig};
use crate::sources::{Rows, Source};
use anyhow::{Result, bail};
use ndarray::Array2;
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Which source rows go where, and the (possibly flipped) train labels.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitPlan {
    /// Indices into the training file, sorted.
    pub train: Vec<usize>,
    /// The label each train row gets (differs from the source under label noise).
    pub train_labels: Vec<u16>,
    /// Indices into the training file, sorted.
    pub pool: Vec<usize>,
    /// Indices into the test file, sorted.
    pub test: Vec<usize>,
    /// Indices into the training file set aside from the pool (`split.holdout`), sorted.
    pub holdout: Vec<usize>,
    /// How many train samples were moved to the pool by label skew, by the cap, and flipped.
    pub skew_moved: usize,
    pub cap_moved: usize,
    pub flipped: usize,
}

/// Plan a split from the source labels. Pure: the same inputs and seed give the same plan.
pub fn plan(
    train_labels: &[u16],
    n_test: usize,
    classes: usize,
    cfg: &SplitConfig,
    seed: u64,
) -> Result<SplitPlan> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..train_labels.len()).collect();
    order.shuffle(&mut rng);
    if cfg.train_limit > 0 {
        order.truncate(cfg.train_limit);
    }
    let n_pool = (order.len() as f64 * cfg.pool_fraction).round() as usize;
    let mut pool = order.split_off(order.len() - n_pool);
    let mut train = order;
    let skew_moved = skew(&mut train, &mut pool, train_labels, classes, cfg)?;
    // Cap on the train size.
    let mut cap_moved = 0;
    if cfg.max_train > 0 && train.len() > cfg.max_train {
        let surplus = train.split_off(cfg.max_train);
        cap_moved = surplus.len();
        pool.extend(surplus);
    }
    train.sort_unstable();
    pool.sort_unstable();
    let (labels, flipped) = flip_labels(&train, train_labels, classes, cfg, &mut rng)?;
    let mut test: Vec<usize> = (0..n_test).collect();
    if cfg.test_limit > 0 && cfg.test_limit < n_test {
        test.shuffle(&mut rng);
        test.truncate(cfg.test_limit);
        test.sort_unstable();
    }
    let holdout = set_aside(&mut pool, cfg, &mut rng)?;
    Ok(SplitPlan {
        train,
        train_labels: labels,
        pool,
        test,
        holdout,
        skew_moved,
        cap_moved,
        flipped,
    })
}

/// Label skew: keep only a fraction of each chosen label in train; the rest goes to the pool.
/// Returns how many moved.
fn skew(
    train: &mut Vec<usize>,
    pool: &mut Vec<usize>,
    train_labels: &[u16],
    classes: usize,
    cfg: &SplitConfig,
) -> Result<usize> {
    let mut skew_moved = 0;
    for &label in &cfg.skew_labels {
        if label as usize >= classes {
            bail!(
                "split.skew_labels: label {label} does not exist (the data has {classes} classes)"
            );
        }
        let of_label: Vec<usize> = train
            .iter()
            .copied()
            .filter(|&i| train_labels[i] == label)
            .collect();
        let keep = (of_label.len() as f64 * cfg.skew_keep).round() as usize;
        let moved: std::collections::HashSet<usize> = of_label[keep..].iter().copied().collect();
        skew_moved += moved.len();
        train.retain(|i| !moved.contains(i));
        pool.extend(moved);
    }
    Ok(skew_moved)
}

/// Label noise on train: flip a rate of labels to another random label. Returns the train
/// labels and how many were flipped.
fn flip_labels(
    train: &[usize],
    train_labels: &[u16],
    classes: usize,
    cfg: &SplitConfig,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<u16>, usize)> {
    let mut labels: Vec<u16> = train.iter().map(|&i| train_labels[i]).collect();
    let n_flip = (train.len() as f64 * cfg.noise_rate).round() as usize;
    if n_flip > 0 && classes < 2 {
        bail!("split.noise_rate needs at least two classes");
    }
    let mut positions: Vec<usize> = (0..train.len()).collect();
    positions.shuffle(rng);
    for &p in &positions[..n_flip] {
        let orig = labels[p];
        let mut new = rng.random_range(0..classes as u16 - 1);
        if new >= orig {
            new += 1;
        }
        labels[p] = new;
    }
    Ok((labels, n_flip))
}

/// The holdout: a seeded slice of the pool, never selected (taken out of `pool`), sorted.
fn set_aside(pool: &mut Vec<usize>, cfg: &SplitConfig, rng: &mut ChaCha8Rng) -> Result<Vec<usize>> {
    let mut holdout = Vec::new();
    if cfg.holdout > 0 {
        if cfg.holdout >= pool.len() {
            bail!(
                "split.holdout = {} but the pool has only {} samples: keep some for selection",
                cfg.holdout,
                pool.len()
            );
        }
        let mut order: Vec<usize> = pool.clone();
        order.shuffle(rng);
        holdout = order[..cfg.holdout].to_vec();
        holdout.sort_unstable();
        let set: std::collections::HashSet<usize> = holdout.iter().copied().collect();
        pool.retain(|i| !set.contains(i));
    }
    Ok(holdout)
}

fn samples(meta: &DatasetMeta, src: &Rows, idx: &[usize], labels: Option<&[u16]>) -> Samples {
    let d = meta.features();
    let mut pixels = Array2::<f32>::zeros((idx.len(), d));
    for (row, &i) in idx.iter().enumerate() {
        src.row_into(
            i,
            d,
            pixels
                .row_mut(row)
                .as_slice_mut()
                .expect("a standard layout"),
        );
    }
    let true_labels: Vec<u16> = idx.iter().map(|&i| src.labels[i]).collect();
    Samples {
        meta: meta.clone(),
        ids: idx.iter().map(|&i| src.ids[i]).collect(),
        labels: labels
            .map(|l| l.to_vec())
            .unwrap_or_else(|| true_labels.clone()),
        true_labels,
        pixels,
        info: BTreeMap::new(),
    }
}

/// The splits in memory.
pub struct Splits {
    pub train: Samples,
    pub pool: Samples,
    pub test: Samples,
    /// With `split.holdout`: pool samples set aside for the analysis.
    pub holdout: Option<Samples>,
    pub plan: SplitPlan,
}

impl Splits {
    /// Every split that exists, with its name.
    pub fn each(&self) -> Vec<(Split, &Samples)> {
        let mut v = vec![
            (Split::Train, &self.train),
            (Split::Pool, &self.pool),
            (Split::Test, &self.test),
        ];
        if let Some(h) = &self.holdout {
            v.push((Split::Holdout, h));
        }
        v
    }
}

/// Split the source with the pipeline's split seed and faults; every split records the
/// settings it was made with.
pub fn make(p: &Pipeline, src: &Source) -> Result<Splits> {
    let plan = plan(
        &src.train.labels,
        src.test.len(),
        src.meta.classes,
        &p.split,
        p.split_seed(),
    )?;
    if plan.train.is_empty() || plan.test.is_empty() {
        bail!(
            "{}: the split leaves {} train and {} test samples; check split.train_limit, split.test_limit, split.pool_fraction and split.max_train",
            src.dir.display(),
            plan.train.len(),
            plan.test.len()
        );
    }
    let mut info = BTreeMap::new();
    info.insert(SPLIT_SEED_KEY.to_string(), p.split_seed().to_string());
    info.insert(SOURCE_KEY.to_string(), src.dir.display().to_string());
    info.insert(SETTINGS_KEY.to_string(), p.splits_fingerprint());
    info.insert(ID_MAPPING_KEY.to_string(), src.id_mapping.clone());
    let tagged = |mut s: Samples, split: Split| {
        s.info = info.clone();
        s.info.insert(SPLIT_KEY.into(), split.as_str().into());
        s
    };
    Ok(Splits {
        train: tagged(
            samples(&src.meta, &src.train, &plan.train, Some(&plan.train_labels)),
            Split::Train,
        ),
        pool: tagged(
            samples(&src.meta, &src.train, &plan.pool, None),
            Split::Pool,
        ),
        test: tagged(samples(&src.meta, &src.test, &plan.test, None), Split::Test),
        holdout: (!plan.holdout.is_empty()).then(|| {
            tagged(
                samples(&src.meta, &src.train, &plan.holdout, None),
                Split::Holdout,
            )
        }),
        plan,
    })
}

/// Where each sample of the splits came from (image folders and tables).
pub fn source_rows(src: &Source, splits: &Splits) -> Vec<SourceRow> {
    let of: std::collections::HashMap<u32, &str> = [&src.train, &src.test]
        .iter()
        .flat_map(|r| {
            r.ids
                .iter()
                .copied()
                .zip(r.sources.iter().map(String::as_str))
        })
        .collect();
    splits
        .each()
        .into_iter()
        .flat_map(|(split, s)| s.ids.iter().map(move |&id| (split, id)).collect::<Vec<_>>())
        .map(|(split, id)| SourceRow {
            id,
            split: split.as_str().into(),
            source: of.get(&id).copied().unwrap_or_default().into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<u16> {
        (0..n).map(|i| (i % 10) as u16).collect()
    }

    #[test]
    fn deterministic_and_disjoint() {
        let cfg = SplitConfig::default();
        let a = plan(&labels(1000), 100, 10, &cfg, 7).unwrap();
        let b = plan(&labels(1000), 100, 10, &cfg, 7).unwrap();
        let c = plan(&labels(1000), 100, 10, &cfg, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.train, c.train);
        assert_eq!((a.train.len(), a.pool.len(), a.test.len()), (500, 500, 100));
        let mut all: Vec<usize> = a.train.iter().chain(&a.pool).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            1000,
            "train and pool are disjoint and cover the source"
        );
    }

    #[test]
    fn label_skew_moves_to_pool() {
        let cfg = SplitConfig {
            skew_labels: vec![3, 5],
            skew_keep: 0.1,
            ..Default::default()
        };
        let base = plan(&labels(2000), 0, 10, &SplitConfig::default(), 1).unwrap();
        let p = plan(&labels(2000), 0, 10, &cfg, 1).unwrap();
        let src = labels(2000);
        for l in [3u16, 5] {
            let before = base.train.iter().filter(|&&i| src[i] == l).count();
            let after = p.train.iter().filter(|&&i| src[i] == l).count();
            assert_eq!(after, (before as f64 * 0.1).round() as usize);
        }
        assert_eq!(p.train.len() + p.pool.len(), 2000);
        assert_eq!(p.skew_moved, base.train.len() - p.train.len());
    }

    #[test]
    fn label_noise_flips_exact_count() {
        let cfg = SplitConfig {
            noise_rate: 0.2,
            ..Default::default()
        };
        let p = plan(&labels(1000), 0, 10, &cfg, 3).unwrap();
        let src = labels(1000);
        let flipped = p
            .train
            .iter()
            .zip(&p.train_labels)
            .filter(|(i, l)| src[**i] != **l)
            .count();
        assert_eq!(flipped, 100);
        assert_eq!(p.flipped, 100);
        assert!(p.train_labels.iter().all(|&l| l < 10));
    }

    #[test]
    fn cap_and_limits() {
        let cfg = SplitConfig {
            max_train: 100,
            train_limit: 600,
            test_limit: 50,
            ..Default::default()
        };
        let p = plan(&labels(1000), 200, 10, &cfg, 3).unwrap();
        assert_eq!(p.train.len(), 100);
        assert_eq!(p.pool.len(), 500);
        assert_eq!(p.cap_moved, 200);
        assert_eq!(p.test.len(), 50);
    }

    #[test]
    fn skew_of_unknown_label_is_an_error() {
        let cfg = SplitConfig {
            skew_labels: vec![12],
            skew_keep: 0.5,
            ..Default::default()
        };
        assert!(plan(&labels(100), 0, 10, &cfg, 3).is_err());
    }
}
