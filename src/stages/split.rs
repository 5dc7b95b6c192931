//! `mode split`: idx files, an image folder or a Parquet table → `splits/{train,pool,test}.parquet`
//! (and `splits/sources.parquet` for folders and tables), with optional fault injection.
//!
//! Ids (idx): the i-th image of the training file has id `i`; the j-th image of the test file
//! has id `N + j`, where N is the number of images in the training file (60 000 for MNIST).
//! Ids (folders, tables): the sample's index in the source. Ids are unique across the files
//! and never change in later artifacts.

use super::Ctx;
use crate::artifacts::io::temp_name;
use crate::artifacts::keys::{ID_MAPPING_KEY, SETTINGS_KEY, SOURCE_KEY, SPLIT_KEY, SPLIT_SEED_KEY};
use crate::artifacts::layout::{sources_file, split_file};
use crate::artifacts::{Artifact, DatasetMeta, Samples, SourceRow, Split};
use crate::config::{Pipeline, SplitConfig};
use crate::sources::Rows;
pub use crate::sources::{Source, load};
use anyhow::{Result, bail};
use ndarray::Array2;
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    let pool_part = order.split_off(order.len() - n_pool);
    let mut pool = pool_part;
    let mut train = order;

    // Label skew: keep only a fraction of each chosen label in train; the rest goes to the pool.
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

    // Cap on the train size.
    let mut cap_moved = 0;
    if cfg.max_train > 0 && train.len() > cfg.max_train {
        let surplus = train.split_off(cfg.max_train);
        cap_moved = surplus.len();
        pool.extend(surplus);
    }

    train.sort_unstable();
    pool.sort_unstable();

    // Label noise on train: flip a rate of labels to another random label.
    let mut labels: Vec<u16> = train.iter().map(|&i| train_labels[i]).collect();
    let n_flip = (train.len() as f64 * cfg.noise_rate).round() as usize;
    if n_flip > 0 && classes < 2 {
        bail!("split.noise_rate needs at least two classes");
    }
    let mut positions: Vec<usize> = (0..train.len()).collect();
    positions.shuffle(&mut rng);
    for &p in &positions[..n_flip] {
        let orig = labels[p];
        let mut new = rng.random_range(0..classes as u16 - 1);
        if new >= orig {
            new += 1;
        }
        labels[p] = new;
    }

    let mut test: Vec<usize> = (0..n_test).collect();
    if cfg.test_limit > 0 && cfg.test_limit < n_test {
        test.shuffle(&mut rng);
        test.truncate(cfg.test_limit);
        test.sort_unstable();
    }

    // The holdout: a seeded slice of the pool, never selected.
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
        order.shuffle(&mut rng);
        holdout = order[..cfg.holdout].to_vec();
        holdout.sort_unstable();
        let set: std::collections::HashSet<usize> = holdout.iter().copied().collect();
        pool.retain(|i| !set.contains(i));
    }

    Ok(SplitPlan {
        train,
        train_labels: labels,
        pool,
        test,
        holdout,
        skew_moved,
        cap_moved,
        flipped: n_flip,
    })
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

/// Counts reported by the split.
pub struct SplitReport {
    pub train: usize,
    pub pool: usize,
    pub test: usize,
    pub holdout: usize,
    pub plan: SplitPlan,
    pub out: PathBuf,
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

/// Where `mode split` reads from and writes to.
pub struct SplitArgs {
    pub idx_dir: Option<PathBuf>,
    pub out: PathBuf,
}

impl std::fmt::Display for SplitReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "split: train {} / pool {} / test {} / holdout {} rows → {} (skew moved {}, cap moved {}, labels flipped {})",
            self.train,
            self.pool,
            self.test,
            self.holdout,
            self.out.display(),
            self.plan.skew_moved,
            self.plan.cap_moved,
            self.plan.flipped
        )
    }
}

/// Where each sample of the splits came from (image folders and tables).
fn source_rows(src: &Source, splits: &Splits) -> Vec<SourceRow> {
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

/// Read the source, plan the split and write the split files (and, for image folders and
/// tables, the sources table) into `out`: all are staged under temporary names and renamed
/// only when every one is complete.
pub fn run(ctx: &Ctx, a: &SplitArgs) -> Result<SplitReport> {
    let p = &ctx.p;
    let src = load(p, a.idx_dir.as_deref())?;
    let splits = make(p, &src)?;
    let sources = src.has_sources().then(|| source_rows(&src, &splits));
    drop(src); // the splits hold copies; free the whole set before the writers allocate
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut stage = |target: PathBuf| -> Result<PathBuf> {
        let tmp = temp_name(&target)?;
        staged.push((tmp.clone(), target));
        Ok(tmp)
    };
    let written = (|| -> Result<()> {
        let files = splits
            .each()
            .into_iter()
            .map(|(split, s)| Ok((stage(split_file(&a.out, split))?, s)))
            .collect::<Result<Vec<_>>>()?;
        let sources_tmp = match &sources {
            Some(rows) => Some((stage(sources_file(&a.out))?, rows)),
            None => None,
        };
        // The files are independent: written in parallel (each on one thread).
        use rayon::prelude::*;
        files
            .par_iter()
            .map(|(tmp, s)| s.write(tmp))
            .collect::<Result<Vec<()>>>()?;
        if let Some((tmp, rows)) = sources_tmp {
            rows.write(&tmp)?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        for (tmp, _) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (tmp, target) in &staged {
        std::fs::rename(tmp, target)?;
    }
    // Files of an earlier split that this one does not make.
    for (stale, made) in [
        (split_file(&a.out, Split::Holdout), splits.holdout.is_some()),
        (sources_file(&a.out), sources.is_some()),
    ] {
        if !made && stale.exists() {
            std::fs::remove_file(&stale)?;
        }
    }
    Ok(SplitReport {
        train: splits.train.len(),
        pool: splits.pool.len(),
        test: splits.test.len(),
        holdout: splits.holdout.as_ref().map_or(0, |h| h.len()),
        plan: splits.plan,
        out: a.out.clone(),
    })
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
