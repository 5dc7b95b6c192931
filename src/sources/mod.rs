//! Where `mode split` reads labelled images from: the idx files (a training and a test file),
//! an image folder (`data.images`) or a Parquet table (`data.table`). Each becomes a
//! [`Source`]: rows with ids, labels and C × H × W pixels, and, for folders and tables, the
//! file or row each sample came from. Folders and tables have no test file: a seeded
//! `data.test_fraction` of them is the test set.

pub mod images;
pub mod table;

use crate::artifacts::DatasetMeta;
use crate::config::{Pipeline, derive_seed};
use crate::idx::{self, IdxImages};
use anyhow::{Result, bail};
use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Pixel values of a set of rows, `n × features`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// Bytes 0–255, scaled by 1/255 when read.
    Bytes(Vec<u8>),
    /// Values taken as they are.
    Floats(Vec<f32>),
}

/// Labelled rows of one source file (or of the share set aside as its test set).
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    pub ids: Vec<u32>,
    pub labels: Vec<u16>,
    pub pixels: Pixels,
    /// Where each row came from; empty for idx files.
    pub sources: Vec<String>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Row `i`'s pixels as floats (`features` values) into `out`.
    pub fn row_into(&self, i: usize, features: usize, out: &mut [f32]) {
        let range = i * features..(i + 1) * features;
        match &self.pixels {
            Pixels::Bytes(b) => {
                for (o, &p) in out.iter_mut().zip(&b[range]) {
                    *o = p as f32 / 255.0;
                }
            }
            Pixels::Floats(f) => out.copy_from_slice(&f[range]),
        }
    }

    /// The rows at `idx`, in that order.
    fn take(&self, idx: &[usize], features: usize) -> Rows {
        let pixels = match &self.pixels {
            Pixels::Bytes(b) => Pixels::Bytes(
                idx.iter()
                    .flat_map(|&i| &b[i * features..(i + 1) * features])
                    .copied()
                    .collect(),
            ),
            Pixels::Floats(f) => Pixels::Floats(
                idx.iter()
                    .flat_map(|&i| &f[i * features..(i + 1) * features])
                    .copied()
                    .collect(),
            ),
        };
        Rows {
            ids: idx.iter().map(|&i| self.ids[i]).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            pixels,
            sources: if self.sources.is_empty() {
                Vec::new()
            } else {
                idx.iter().map(|&i| self.sources[i].clone()).collect()
            },
        }
    }
}

/// The source data of a pipeline: the rows the split plan divides into train and pool (the
/// training file), the test rows, and the dataset's facts.
pub struct Source {
    /// The idx folder, image folder or table.
    pub dir: PathBuf,
    pub train: Rows,
    pub test: Rows,
    pub meta: DatasetMeta,
    /// How ids relate to the source (recorded in every split's metadata).
    pub id_mapping: String,
}

impl Source {
    /// Whether the samples came from files or rows of their own (image folders and tables).
    pub fn has_sources(&self) -> bool {
        !self.train.sources.is_empty()
    }
}

/// Read the pipeline's source: `data.images`, `data.table`, or the idx folder (`idx_dir`, or
/// `data.idx_dir`).
pub fn load(p: &Pipeline, idx_dir: Option<&Path>) -> Result<Source> {
    if let (Some(dir), true) = (idx_dir, p.data.images.is_some() || p.data.table.is_some()) {
        bail!(
            "--idx-dir {} and data.images / data.table: give one source",
            dir.display()
        );
    }
    if let Some(root) = &p.data.images {
        let (rows, meta) = images::load(root, p)?;
        return one_file(
            p,
            root,
            rows,
            meta,
            "the index of the image in class-name, then file-name order (the sources table of the splits names the file)",
        );
    }
    if let Some(file) = &p.data.table {
        let (rows, meta) = table::load(file, p)?;
        return one_file(
            p,
            file,
            rows,
            meta,
            "the row of the table (the sources table of the splits names it)",
        );
    }
    load_idx(p, idx_dir)
}

/// Set a seeded `data.test_fraction` of a single source aside as the test set.
fn one_file(p: &Pipeline, dir: &Path, rows: Rows, meta: DatasetMeta, ids: &str) -> Result<Source> {
    let n = rows.len();
    let f = p.data.test_fraction();
    let n_test = (n as f64 * f).round() as usize;
    if n_test == 0 || n_test >= n {
        bail!(
            "{}: {n} samples with data.test_fraction = {f} leave {n_test} for test and {} for train and pool; a split needs both",
            dir.display(),
            n - n_test.min(n)
        );
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
        p.split_seed(),
        "test",
    )));
    let mut test: Vec<usize> = order[..n_test].to_vec();
    let mut rest: Vec<usize> = order[n_test..].to_vec();
    test.sort_unstable();
    rest.sort_unstable();
    let d = meta.features();
    Ok(Source {
        dir: dir.to_path_buf(),
        train: rows.take(&rest, d),
        test: rows.take(&test, d),
        meta,
        id_mapping: format!(
            "id = {ids}; a seeded data.test_fraction = {f} of the samples is the test split"
        ),
    })
}

/// The class count of integer labels: `data.classes`, else the number of class names, else
/// the largest label + 1 — and then every label below it must occur (a stray value such as
/// 255 would otherwise make 256 classes).
pub fn class_count(p: &Pipeline, dir: &Path, sets: &[(&str, &[u16])]) -> Result<usize> {
    two_labels(dir, sets)?;
    let max = sets
        .iter()
        .flat_map(|(_, l)| l.iter())
        .max()
        .map_or(0, |&m| m as usize + 1);
    let given = p
        .data
        .classes
        .or_else(|| (!p.data.class_names.is_empty()).then_some(p.data.class_names.len()));
    if let Some(c) = given {
        for (what, labels) in sets {
            if let Some(i) = labels.iter().position(|&l| l as usize >= c) {
                bail!(
                    "{}: label {} of {what} sample {i} is not below the {c} classes of the pipeline (data.classes / data.class_names)",
                    dir.display(),
                    labels[i]
                );
            }
        }
        return Ok(c);
    }
    let mut seen = vec![false; max];
    for (_, labels) in sets {
        for &l in labels.iter() {
            seen[l as usize] = true;
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        bail!(
            "{}: the labels go up to {} but label {missing} never occurs; if that is right, set data.classes (or data.class_names) in the pipeline, else the labels are corrupt",
            dir.display(),
            max - 1
        );
    }
    Ok(max)
}

/// At least two labels occur: data of one class trains a model that is always right.
pub fn two_labels(dir: &Path, sets: &[(&str, &[u16])]) -> Result<()> {
    let mut it = sets.iter().flat_map(|(_, l)| l.iter());
    if let Some(&first) = it.next()
        && it.all(|&l| l == first)
    {
        bail!(
            "{}: every sample has label {first}; a classifier needs samples of at least two classes",
            dir.display()
        );
    }
    Ok(())
}

fn rows_of_idx(set: IdxImages, offset: u32) -> Rows {
    Rows {
        ids: (0..set.len() as u32).map(|i| i + offset).collect(),
        labels: set.labels.iter().map(|&l| l as u16).collect(),
        pixels: Pixels::Bytes(set.pixels),
        sources: Vec::new(),
    }
}

/// Read and check the idx folder (`--idx-dir` or `data.idx_dir`).
fn load_idx(p: &Pipeline, idx_dir: Option<&Path>) -> Result<Source> {
    let dir: PathBuf = idx_dir
        .map(PathBuf::from)
        .unwrap_or_else(|| p.data.idx_dir.clone());
    let (train, test) = idx::load_dir(&dir)?;
    if (train.height, train.width) != (test.height, test.width) {
        bail!(
            "{}: train images are {}×{} but test images are {}×{}",
            dir.display(),
            train.height,
            train.width,
            test.height,
            test.width
        );
    }
    if train.height == 0 || train.width == 0 {
        bail!(
            "{}: the images are {}×{}",
            dir.display(),
            train.height,
            train.width
        );
    }
    for (what, set) in [("training", &train), ("test", &test)] {
        if set.is_empty() {
            bail!(
                "{}: the {what} idx files hold no images; a split needs train, pool and test samples",
                dir.display()
            );
        }
    }
    if train.len() > u32::MAX as usize / 2 {
        bail!("{}: too many images for 32-bit ids", dir.display());
    }
    let (height, width) = (train.height, train.width);
    let offset = train.len() as u32;
    let (train, test) = (rows_of_idx(train, 0), rows_of_idx(test, offset));
    let classes = class_count(
        p,
        &dir,
        &[("training", &train.labels), ("test", &test.labels)],
    )?;
    Ok(Source {
        dir,
        train,
        test,
        meta: DatasetMeta {
            dataset: p.data.dataset.clone(),
            channels: 1,
            height,
            width,
            classes,
            class_names: p.data.class_names.clone(),
        },
        id_mapping: format!(
            "id < {offset}: index in the training idx file; id >= {offset}: {offset} + index in the test idx file"
        ),
    })
}
