//! Every artifact's path and schema: the project's public Parquet contract.
//!
//! Two columnar stacks, each with one role:
//! - **arrow + parquet** (arrow-rs) write and read the *tensor* artifacts, whose rows carry
//!   `FixedSizeList<Float32, N>` columns: splits, predictions, activations, heat maps, heads.
//! - **polars** writes and reads the *tables* (train log, metrics, layers, diagnosis, scores,
//!   batch, pool, summaries) and runs the queries over them.
//!
//! No artifact is written through both. Every write goes to a temporary file beside the target
//! and is renamed into place only when complete, so a failed stage leaves no half artifact.

use anyhow::{Context, Result, anyhow, bail};
use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, RecordBatch, StringArray,
    UInt16Array, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Float32Type, Schema, UInt16Type, UInt32Type};
use ndarray::Array2;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use polars::prelude::{
    Column, DataFrame, DataType as PlType, ParquetCompression, ParquetReader, ParquetWriter,
    SerReader,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

pub const MODEL: &str = "model.safetensors";
pub const TRAIN_LOG: &str = "train_log.parquet";
pub const METRICS: &str = "metrics.parquet";
pub const PREDICTIONS: &str = "predictions.parquet";
pub const ACTIVATIONS: &str = "activations";
pub const LAYERS: &str = "layers.parquet";
pub const HEAD: &str = "head.parquet";
pub const HEATMAPS: &str = "heatmaps.parquet";
pub const DIAGNOSIS: &str = "diagnosis.parquet";
pub const SCORES: &str = "scores.parquet";
pub const BATCH: &str = "batch.parquet";
pub const POOL: &str = "pool.parquet";

/// The three splits.
pub const SPLITS: [&str; 3] = ["train", "pool", "test"];

/// Where a pipeline's artifacts live: `output/<pipeline>/…`.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn splits_dir(&self) -> PathBuf {
        self.root.join("splits")
    }
    pub fn split(&self, name: &str) -> PathBuf {
        self.splits_dir().join(format!("{name}.parquet"))
    }
    pub fn initial_dir(&self) -> PathBuf {
        self.root.join("initial")
    }
    /// `runs/<arm>/iter-<k>`; iteration 0 is the initial model.
    pub fn iter_dir(&self, arm: &str, iteration: usize) -> PathBuf {
        if iteration == 0 {
            self.initial_dir()
        } else {
            self.root
                .join("runs")
                .join(arm)
                .join(format!("iter-{iteration}"))
        }
    }
}

/// `<dir>/activations/<split>.parquet`
pub fn activations_path(dir: &Path, split: &str) -> PathBuf {
    dir.join(ACTIVATIONS).join(format!("{split}.parquet"))
}

// ---------------------------------------------------------------------------------------------
// Atomic writes
// ---------------------------------------------------------------------------------------------

/// Write `path` through `f` on a temporary file in the same folder, then rename it into place.
pub fn write_atomic<T>(path: &Path, f: impl FnOnce(File) -> Result<T>) -> Result<T> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    match f(file) {
        Ok(v) => {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot move result to {}", path.display()))?;
            Ok(v)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.context(format!(
                "writing {} failed; nothing was written",
                path.display()
            )))
        }
    }
}

fn open(path: &Path) -> Result<File> {
    File::open(path).with_context(|| {
        format!(
            "cannot open {}: does it exist? (run the stage that makes it first)",
            path.display()
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Tensor artifacts (arrow + parquet)
// ---------------------------------------------------------------------------------------------

/// A column of a tensor artifact being written.
pub struct Col {
    pub name: String,
    pub array: ArrayRef,
    pub nullable: bool,
}

impl Col {
    pub fn u32(name: &str, v: Vec<u32>) -> Col {
        Col {
            name: name.into(),
            array: Arc::new(UInt32Array::from(v)),
            nullable: false,
        }
    }
    pub fn u16(name: &str, v: Vec<u16>) -> Col {
        Col {
            name: name.into(),
            array: Arc::new(UInt16Array::from(v)),
            nullable: false,
        }
    }
    pub fn u16_opt(name: &str, v: Vec<Option<u16>>) -> Col {
        Col {
            name: name.into(),
            array: Arc::new(UInt16Array::from(v)),
            nullable: true,
        }
    }
    pub fn f32(name: &str, v: Vec<f32>) -> Col {
        Col {
            name: name.into(),
            array: Arc::new(Float32Array::from(v)),
            nullable: false,
        }
    }
    pub fn str(name: &str, v: Vec<String>) -> Col {
        Col {
            name: name.into(),
            array: Arc::new(StringArray::from(v)),
            nullable: false,
        }
    }
    /// A `FixedSizeList<Float32, ncols>` column with one row per matrix row.
    pub fn tensor(name: &str, m: Array2<f32>) -> Col {
        let width = m.ncols();
        let m = if m.is_standard_layout() {
            m
        } else {
            m.as_standard_layout().to_owned()
        };
        let (values, offset) = m.into_raw_vec_and_offset();
        debug_assert!(offset.unwrap_or(0) == 0);
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let array = FixedSizeListArray::new(
            item,
            width as i32,
            Arc::new(Float32Array::from(values)),
            None,
        );
        Col {
            name: name.into(),
            array: Arc::new(array),
            nullable: false,
        }
    }
}

/// Write a tensor artifact with key-value metadata.
pub fn write_tensors(
    path: &Path,
    cols: Vec<Col>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    write_tensors_with(path, cols, metadata, false)
}

/// As [`write_tensors`]; `dictionary` turns on Parquet dictionary encoding, which suits
/// columns of few distinct values (8-bit pixels) and slows down everything else.
pub fn write_tensors_with(
    path: &Path,
    cols: Vec<Col>,
    metadata: &BTreeMap<String, String>,
    dictionary: bool,
) -> Result<()> {
    let fields: Vec<Field> = cols
        .iter()
        .map(|c| Field::new(&c.name, c.array.data_type().clone(), c.nullable))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols.into_iter().map(|c| c.array).collect())
        .with_context(|| format!("building {}", path.display()))?;
    let kv: Vec<KeyValue> = metadata
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(16_384))
        .set_dictionary_enabled(dictionary)
        .set_key_value_metadata(Some(kv))
        .build();
    write_atomic(path, |file| {
        let mut w = ArrowWriter::try_new(file, schema, Some(props))?;
        w.write(&batch)?;
        w.close()?;
        Ok(())
    })
}

/// A tensor artifact read back whole.
pub struct TensorFile {
    pub path: PathBuf,
    pub batch: RecordBatch,
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// Read a whole file; row groups are decoded in parallel.
    pub fn read(path: &Path) -> Result<TensorFile> {
        let file = open(path)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("{} is not a readable Parquet file", path.display()))?;
        let metadata = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kv| {
                kv.iter()
                    .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let schema = builder.schema().clone();
        let groups = builder.metadata().num_row_groups();
        let read_group = |g: usize| -> Result<Vec<RecordBatch>> {
            let b = ParquetRecordBatchReaderBuilder::try_new(open(path)?)?;
            let reader = b
                .with_row_groups(vec![g])
                .with_batch_size(1 << 20)
                .build()?;
            Ok(reader.collect::<Result<Vec<_>, _>>()?)
        };
        use rayon::prelude::*;
        let parts: Vec<Result<Vec<RecordBatch>>> =
            (0..groups).into_par_iter().map(read_group).collect();
        let mut batches = Vec::new();
        for p in parts {
            batches.extend(p.with_context(|| format!("reading {}", path.display()))?);
        }
        let batch = match batches.len() {
            1 => batches.pop().expect("one batch"),
            _ => arrow::compute::concat_batches(&schema, &batches)?,
        };
        Ok(TensorFile {
            path: path.into(),
            batch,
            metadata,
        })
    }

    pub fn rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn has(&self, name: &str) -> bool {
        self.batch.column_by_name(name).is_some()
    }

    fn col(&self, name: &str) -> Result<&ArrayRef> {
        let c = self.batch.column_by_name(name).ok_or_else(|| {
            anyhow!(
                "{}: missing column {name:?} (has {:?})",
                self.path.display(),
                self.column_names()
            )
        })?;
        if c.null_count() > 0 {
            bail!("{}: column {name:?} has nulls", self.path.display());
        }
        Ok(c)
    }

    pub fn column_names(&self) -> Vec<String> {
        self.batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    pub fn u32(&self, name: &str) -> Result<Vec<u32>> {
        let c = arrow::compute::cast(self.col(name)?, &DataType::UInt32).with_context(|| {
            format!(
                "{}: column {name:?} is not an unsigned integer",
                self.path.display()
            )
        })?;
        Ok(c.as_primitive::<UInt32Type>().values().to_vec())
    }

    pub fn u16(&self, name: &str) -> Result<Vec<u16>> {
        let c = arrow::compute::cast(self.col(name)?, &DataType::UInt16).with_context(|| {
            format!(
                "{}: column {name:?} does not fit UInt16",
                self.path.display()
            )
        })?;
        Ok(c.as_primitive::<UInt16Type>().values().to_vec())
    }

    pub fn f32(&self, name: &str) -> Result<Vec<f32>> {
        let c = arrow::compute::cast(self.col(name)?, &DataType::Float32)?;
        Ok(c.as_primitive::<Float32Type>().values().to_vec())
    }

    pub fn str(&self, name: &str) -> Result<Vec<String>> {
        let c = arrow::compute::cast(self.col(name)?, &DataType::Utf8)?;
        Ok(c.as_string::<i32>()
            .iter()
            .map(|s| s.unwrap_or_default().to_string())
            .collect())
    }

    pub fn u16_opt(&self, name: &str) -> Result<Vec<Option<u16>>> {
        let c = self
            .batch
            .column_by_name(name)
            .ok_or_else(|| anyhow!("{}: missing column {name:?}", self.path.display()))?;
        let c = arrow::compute::cast(c, &DataType::UInt16)?;
        Ok(c.as_primitive::<UInt16Type>().iter().collect())
    }

    /// A `FixedSizeList<Float32>` (or `List<Float32>`) column as a matrix, one row per row.
    pub fn tensor(&self, name: &str) -> Result<Array2<f32>> {
        let c = self.col(name)?;
        let n = c.len();
        let (width, values) = match c.data_type() {
            DataType::FixedSizeList(_, w) => {
                let l = c.as_fixed_size_list();
                let v = arrow::compute::cast(l.values(), &DataType::Float32)?;
                let start = l.offset() * *w as usize;
                (
                    *w as usize,
                    v.as_primitive::<Float32Type>().values()[start..start + n * *w as usize]
                        .to_vec(),
                )
            }
            other => bail!(
                "{}: column {name:?} has type {other}, expected FixedSizeList<Float32>",
                self.path.display()
            ),
        };
        Array2::from_shape_vec((n, width), values)
            .map_err(|e| anyhow!("{}: {e}", self.path.display()))
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(|s| s.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Samples: the split files
// ---------------------------------------------------------------------------------------------

/// Facts about a dataset, stored in every split's key-value metadata.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetMeta {
    pub dataset: String,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    pub class_names: Vec<String>,
}

impl DatasetMeta {
    pub fn features(&self) -> usize {
        self.height * self.width
    }

    pub fn to_kv(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("mode.dataset".into(), self.dataset.clone());
        m.insert("mode.height".into(), self.height.to_string());
        m.insert("mode.width".into(), self.width.to_string());
        m.insert("mode.classes".into(), self.classes.to_string());
        m.insert(
            "mode.class_names".into(),
            serde_json::to_string(&self.class_names).unwrap_or_default(),
        );
        m
    }

    pub fn from_kv(path: &Path, kv: &BTreeMap<String, String>) -> Result<DatasetMeta> {
        let get = |k: &str| {
            kv.get(k).ok_or_else(|| {
                anyhow!(
                    "{}: metadata key {k:?} missing; was this file written by `mode split`?",
                    path.display()
                )
            })
        };
        let num = |k: &str| -> Result<usize> {
            get(k)?
                .parse()
                .map_err(|_| anyhow!("{}: metadata {k} is not a number", path.display()))
        };
        Ok(DatasetMeta {
            dataset: get("mode.dataset")?.clone(),
            height: num("mode.height")?,
            width: num("mode.width")?,
            classes: num("mode.classes")?,
            class_names: kv
                .get("mode.class_names")
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default(),
        })
    }
}

/// Rows of a split: `id`, `label`, `true_label`, `pixels`.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    pub meta: DatasetMeta,
    pub ids: Vec<u32>,
    pub labels: Vec<u16>,
    pub true_labels: Vec<u16>,
    /// `n × (height·width)`, scaled to [0, 1].
    pub pixels: Array2<f32>,
}

impl Samples {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The rows at `idx`, in that order.
    pub fn take(&self, idx: &[usize]) -> Samples {
        Samples {
            meta: self.meta.clone(),
            ids: idx.iter().map(|&i| self.ids[i]).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            true_labels: idx.iter().map(|&i| self.true_labels[i]).collect(),
            pixels: self.pixels.select(ndarray::Axis(0), idx),
        }
    }

    /// Ids and labels, as a pool of candidates.
    pub fn pool_rows(&self) -> Vec<PoolRow> {
        self.ids
            .iter()
            .zip(&self.labels)
            .map(|(&id, &label)| PoolRow { id, label })
            .collect()
    }

    /// The rows whose id is in `ids` (in this file's order); errors on ids it does not hold.
    pub fn take_ids(&self, ids: &[u32], what: &str) -> Result<Samples> {
        let pos: std::collections::HashMap<u32, usize> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        let mut idx = Vec::with_capacity(ids.len());
        for id in ids {
            match pos.get(id) {
                Some(&i) => idx.push(i),
                None => bail!("{what}: id {id} is not among the samples it refers to"),
            }
        }
        idx.sort_unstable();
        Ok(self.take(&idx))
    }

    pub fn write(&self, path: &Path, extra: &BTreeMap<String, String>) -> Result<()> {
        let mut kv = self.meta.to_kv();
        kv.extend(extra.clone());
        write_tensors_with(
            path,
            vec![
                Col::u32("id", self.ids.clone()),
                Col::u16("label", self.labels.clone()),
                Col::u16("true_label", self.true_labels.clone()),
                Col::tensor("pixels", self.pixels.clone()),
            ],
            &kv,
            true,
        )
    }

    /// Read any Parquet of samples: `id`, `label`, `pixels`, optional `true_label`. The
    /// dataset facts come from the metadata, or are inferred (square images) when absent.
    pub fn read(path: &Path) -> Result<Samples> {
        let t = TensorFile::read(path)?;
        let ids = t.u32("id")?;
        let labels = t.u16("label")?;
        let true_labels = if t.has("true_label") {
            t.u16("true_label")?
        } else {
            labels.clone()
        };
        let pixels = t.tensor("pixels")?;
        let meta = match DatasetMeta::from_kv(path, &t.metadata) {
            Ok(m) => m,
            Err(e) => {
                let side = (pixels.ncols() as f64).sqrt() as usize;
                if side * side != pixels.ncols() {
                    return Err(e);
                }
                DatasetMeta {
                    dataset: "unknown".into(),
                    height: side,
                    width: side,
                    classes: labels.iter().copied().max().map_or(0, |m| m as usize + 1),
                    class_names: vec![],
                }
            }
        };
        if pixels.ncols() != meta.features() {
            bail!(
                "{}: pixels have {} values but metadata says {}×{}",
                path.display(),
                pixels.ncols(),
                meta.height,
                meta.width
            );
        }
        if let Some(&l) = labels.iter().find(|&&l| l as usize >= meta.classes) {
            bail!(
                "{}: label {l} is not below the class count {}",
                path.display(),
                meta.classes
            );
        }
        Ok(Samples {
            meta,
            ids,
            labels,
            true_labels,
            pixels,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Activations: one column per layer
// ---------------------------------------------------------------------------------------------

/// `id`, `label`, `predicted`, then one `FixedSizeList<Float32, width>` column per layer in
/// order (`dense_1`, …, `output` = softmax probabilities). The order of layers is also stored in
/// the metadata key `mode.layers` (comma-separated), so new kinds of layers keep the contract.
#[derive(Debug, Clone)]
pub struct Activations {
    pub ids: Vec<u32>,
    pub labels: Vec<u16>,
    pub predicted: Vec<u16>,
    pub layers: Vec<(String, Array2<f32>)>,
}

impl Activations {
    pub fn write(&self, path: &Path, extra: &BTreeMap<String, String>) -> Result<()> {
        let mut cols = vec![
            Col::u32("id", self.ids.clone()),
            Col::u16("label", self.labels.clone()),
            Col::u16("predicted", self.predicted.clone()),
        ];
        for (name, m) in &self.layers {
            cols.push(Col::tensor(name, m.clone()));
        }
        let mut kv = extra.clone();
        kv.insert(
            "mode.layers".into(),
            self.layers
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        write_tensors(path, cols, &kv)
    }

    pub fn read(path: &Path) -> Result<Activations> {
        let t = TensorFile::read(path)?;
        let names: Vec<String> = t
            .meta("mode.layers")
            .ok_or_else(|| {
                anyhow!(
                    "{}: no mode.layers metadata; was it written by `mode probe`?",
                    path.display()
                )
            })?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let layers = names
            .iter()
            .map(|n| Ok((n.clone(), t.tensor(n)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Activations {
            ids: t.u32("id")?,
            labels: t.u16("label")?,
            predicted: t.u16("predicted")?,
            layers,
        })
    }

    pub fn layer(&self, name: &str) -> Result<&Array2<f32>> {
        self.layers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
            .ok_or_else(|| {
                anyhow!(
                    "no layer {name:?} in activations (have {:?})",
                    self.layer_names()
                )
            })
    }

    pub fn layer_names(&self) -> Vec<String> {
        self.layers.iter().map(|(n, _)| n.clone()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Predictions, heat maps, heads
// ---------------------------------------------------------------------------------------------

/// `predictions.parquet`: `id`, `label`, `predicted`, `confidence`, `probs`.
pub fn write_predictions(
    path: &Path,
    ids: &[u32],
    labels: &[u16],
    probs: &Array2<f32>,
) -> Result<()> {
    let predicted: Vec<u16> = probs
        .rows()
        .into_iter()
        .map(|r| argmax(r.iter().copied()) as u16)
        .collect();
    let confidence: Vec<f32> = probs
        .rows()
        .into_iter()
        .map(|r| r.iter().copied().fold(f32::MIN, f32::max))
        .collect();
    write_tensors(
        path,
        vec![
            Col::u32("id", ids.to_vec()),
            Col::u16("label", labels.to_vec()),
            Col::u16("predicted", predicted),
            Col::f32("confidence", confidence),
            Col::tensor("probs", probs.clone()),
        ],
        &BTreeMap::new(),
    )
}

/// Index of the largest value (first on ties).
pub fn argmax(it: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in it.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// One heat map: a mean state (or a difference of two) for one label.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapRow {
    pub label: u16,
    /// For `DH_CC` (HC_label − HC_other): the other label.
    pub other: Option<u16>,
    pub kind: String,
    pub space: String,
    pub layer: String,
    pub n: u32,
    pub values: Vec<f32>,
}

/// `heatmaps.parquet`: `label`, `other`, `kind`, `space`, `layer`, `n`, `values`.
pub fn write_heatmaps(
    path: &Path,
    rows: &[HeatmapRow],
    extra: &BTreeMap<String, String>,
) -> Result<()> {
    let width = rows.first().map_or(0, |r| r.values.len());
    let mut m = Array2::<f32>::zeros((rows.len(), width));
    for (i, r) in rows.iter().enumerate() {
        if r.values.len() != width {
            bail!("heat maps of one file must share one width");
        }
        m.row_mut(i).assign(&ndarray::ArrayView1::from(&r.values));
    }
    write_tensors(
        path,
        vec![
            Col::u16("label", rows.iter().map(|r| r.label).collect()),
            Col::u16_opt("other", rows.iter().map(|r| r.other).collect()),
            Col::str("kind", rows.iter().map(|r| r.kind.clone()).collect()),
            Col::str("space", rows.iter().map(|r| r.space.clone()).collect()),
            Col::str("layer", rows.iter().map(|r| r.layer.clone()).collect()),
            Col::u32("n", rows.iter().map(|r| r.n).collect()),
            Col::tensor("values", m),
        ],
        extra,
    )
}

pub fn read_heatmaps(path: &Path) -> Result<Vec<HeatmapRow>> {
    let t = TensorFile::read(path)?;
    let (label, other, kind, space, layer, n) = (
        t.u16("label")?,
        t.u16_opt("other")?,
        t.str("kind")?,
        t.str("space")?,
        t.str("layer")?,
        t.u32("n")?,
    );
    let values = t.tensor("values")?;
    Ok((0..t.rows())
        .map(|i| HeatmapRow {
            label: label[i],
            other: other[i],
            kind: kind[i].clone(),
            space: space[i].clone(),
            layer: layer[i].clone(),
            n: n[i],
            values: values.row(i).to_vec(),
        })
        .collect())
}

/// A softmax head fitted on one layer: `classes × width` weights and `classes` intercepts.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub layer: String,
    pub weights: Array2<f32>,
    pub intercept: Vec<f32>,
}

impl Head {
    /// `head.parquet`: `layer`, `label`, `intercept`, `weights`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let k = self.intercept.len();
        write_tensors(
            path,
            vec![
                Col::str("layer", vec![self.layer.clone(); k]),
                Col::u16("label", (0..k as u16).collect()),
                Col::f32("intercept", self.intercept.clone()),
                Col::tensor("weights", self.weights.clone()),
            ],
            &BTreeMap::new(),
        )
    }

    pub fn read(path: &Path) -> Result<Head> {
        let t = TensorFile::read(path)?;
        let layer = t.str("layer")?.first().cloned().unwrap_or_default();
        Ok(Head {
            layer,
            weights: t.tensor("weights")?,
            intercept: t.f32("intercept")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Tables (polars)
// ---------------------------------------------------------------------------------------------

/// Write a polars table atomically (Snappy-compressed Parquet).
pub fn write_frame(path: &Path, df: &mut DataFrame) -> Result<()> {
    write_atomic(path, |file| {
        ParquetWriter::new(file)
            .with_compression(ParquetCompression::Snappy)
            .finish(df)?;
        Ok(())
    })
}

pub fn read_frame(path: &Path) -> Result<DataFrame> {
    let file = open(path)?;
    ParquetReader::new(file)
        .finish()
        .with_context(|| format!("{} is not a readable Parquet file", path.display()))
}

/// A value type a table column can hold.
pub trait Cell: Sized + Clone {
    fn read(df: &DataFrame, name: &str) -> Result<Vec<Self>>;
}

fn cast(df: &DataFrame, name: &str, dt: PlType) -> Result<Column> {
    let c = df
        .column(name)
        .map_err(|_| anyhow!("missing column {name:?} (has {:?})", df.get_column_names()))?;
    c.cast(&dt)
        .with_context(|| format!("column {name:?} cannot be read as {dt}"))
}

macro_rules! cell {
    ($t:ty, $pl:expr, $acc:ident) => {
        impl Cell for $t {
            fn read(df: &DataFrame, name: &str) -> Result<Vec<Self>> {
                let c = cast(df, name, $pl)?;
                c.$acc()?
                    .iter()
                    .map(|v| v.ok_or_else(|| anyhow!("column {name:?} has nulls")))
                    .collect()
            }
        }
        impl Cell for Option<$t> {
            fn read(df: &DataFrame, name: &str) -> Result<Vec<Self>> {
                let c = cast(df, name, $pl)?;
                Ok(c.$acc()?.iter().collect())
            }
        }
    };
}
cell!(u16, PlType::UInt16, u16);
cell!(u32, PlType::UInt32, u32);
cell!(i64, PlType::Int64, i64);
cell!(f64, PlType::Float64, f64);
cell!(bool, PlType::Boolean, bool);

impl Cell for String {
    fn read(df: &DataFrame, name: &str) -> Result<Vec<Self>> {
        let c = cast(df, name, PlType::String)?;
        c.str()?
            .iter()
            .map(|v| {
                v.map(String::from)
                    .ok_or_else(|| anyhow!("column {name:?} has nulls"))
            })
            .collect()
    }
}

/// A row type stored as a polars table.
pub trait Table: Sized {
    const COLUMNS: &'static [&'static str];
    fn to_frame(rows: &[Self]) -> Result<DataFrame>;
    fn from_frame(df: &DataFrame) -> Result<Vec<Self>>;

    fn write(path: &Path, rows: &[Self]) -> Result<()> {
        write_frame(path, &mut Self::to_frame(rows)?)
    }
    fn read(path: &Path) -> Result<Vec<Self>> {
        Self::from_frame(&read_frame(path)?).with_context(|| format!("reading {}", path.display()))
    }
}

macro_rules! table {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name { $($(#[$fm])* pub $field: $ty),* }
        impl Table for $name {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
            fn to_frame(rows: &[Self]) -> Result<DataFrame> {
                let cols = vec![$(
                    Column::new(stringify!($field).into(), rows.iter().map(|r| r.$field.clone()).collect::<Vec<$ty>>())
                ),*];
                Ok(DataFrame::new(rows.len(), cols)?)
            }
            fn from_frame(df: &DataFrame) -> Result<Vec<Self>> {
                $( let $field: Vec<$ty> = <$ty as Cell>::read(df, stringify!($field))?; )*
                Ok((0..df.height()).map(|i| $name { $($field: $field[i].clone()),* }).collect())
            }
        }
    };
}

table!(
    /// `train_log.parquet`: one row per epoch.
    TrainLogRow { epoch: u32, loss: f64, accuracy: f64, seconds: f64 }
);

table!(
    /// `metrics.parquet`, long format: one `overall` row and one row per label.
    MetricRow {
        pipeline: String,
        seed: i64,
        arm: String,
        iteration: u32,
        /// 'overall' | 'label'
        scope: String,
        /// null for the overall row
        label: Option<u16>,
        accuracy: f64,
        loss: f64,
        n: u32,
        /// the arm stopped before this iteration because no label was faulty
        finished_early: bool,
    }
);

table!(
    /// `layers.parquet`: one row per probed layer and direction.
    LayerRow {
        layer: String,
        position: u32,
        width: u32,
        probe_accuracy: f64,
        /// null when layer selection is off
        bhattacharyya: Option<f64>,
        is_target: bool,
        /// 'forward' (input → output, for underfitting) | 'backward' (output → input, for overfitting)
        direction: String,
    }
);

table!(
    /// `diagnosis.parquet`: one row per label.
    DiagnosisRow {
        label: u16,
        train_acc: f64,
        test_acc: f64,
        gap: f64,
        underfit: bool,
        overfit: bool,
        faultiest: bool,
        /// 'fix_underfit' | 'fix_overfit' | 'none'
        action: String,
        n_train: u32,
        n_test: u32,
    }
);

table!(
    /// `scores.parquet`: every scored pool sample of the faultiest label.
    ScoreRow { id: u32, label: u16, metric: String, score: f64, rank: u32 }
);

table!(
    /// `batch.parquet`: the samples chosen for retraining.
    BatchRow { id: u32, label: u16, origin: String, iteration: u32, arm: String }
);

table!(
    /// `pool.parquet` (select's output): the pool ids left.
    PoolRow { id: u32, label: u16 }
);

table!(
    /// `summary.parquet`: one row per arm (Tables 1 and 2 of the seed).
    SummaryRow {
        arm: String,
        /// selection metric, or the baseline's name
        metric: String,
        layer_select: bool,
        iterations: u32,
        initial_acc: f64,
        final_acc: f64,
        control_acc: f64,
        finished_early: bool,
        diff_i_f: f64,
        diff_f_c: f64,
    }
);

table!(
    /// `sweep.parquet`: one row per seed × arm × iteration (iteration 0 = the initial model).
    SweepRow {
        seed: i64,
        arm: String,
        metric: String,
        layer_select: bool,
        iteration: u32,
        /// overall test accuracy after this iteration
        accuracy: f64,
        /// the label this iteration targeted (null: none, e.g. the random control)
        target_label: Option<u16>,
        /// test accuracy of the targeted label after this iteration
        target_acc: Option<f64>,
        finished_early: bool,
        seconds: f64,
    }
);

table!(
    /// `sweep_summary.parquet`: one row per arm over all seeds, against the control.
    SweepSummaryRow {
        arm: String,
        metric: String,
        layer_select: bool,
        seeds: u32,
        mean_initial: f64,
        mean_final: f64,
        /// mean of (arm final − control final); null for the control itself
        mean_delta: Option<f64>,
        /// 95% Student-t interval of the mean delta
        ci_low: Option<f64>,
        ci_high: Option<f64>,
        /// paired t-test and Wilcoxon signed-rank p-values against the control
        t_p: Option<f64>,
        wilcoxon_p: Option<f64>,
        wins: u32,
        losses: u32,
        ties: u32,
        /// labels below θ for the initial model (summed over seeds), and how many of them
        /// ended at or above θ in this arm
        faulty_labels: u32,
        lifted: u32,
    }
);

/// Ids of a pool file: either a split (`splits/pool.parquet`) or a `pool.parquet` of ids.
pub fn read_ids(path: &Path) -> Result<Vec<u32>> {
    let df = read_frame_columns(path, &["id"])?;
    <u32 as Cell>::read(&df, "id").with_context(|| format!("reading ids of {}", path.display()))
}

/// Read only some columns of a Parquet file through polars.
pub fn read_frame_columns(path: &Path, cols: &[&str]) -> Result<DataFrame> {
    let file = open(path)?;
    ParquetReader::new(file)
        .with_columns(Some(cols.iter().map(|s| s.to_string()).collect()))
        .finish()
        .with_context(|| format!("reading {} (columns {cols:?})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_roundtrip_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.parquet");
        let s = Samples {
            meta: DatasetMeta {
                dataset: "t".into(),
                height: 1,
                width: 3,
                classes: 4,
                class_names: vec!["a".into()],
            },
            ids: vec![5, 9],
            labels: vec![3, 0],
            true_labels: vec![3, 1],
            pixels: Array2::from_shape_vec((2, 3), vec![0.0, 0.5, 1.0, 0.25, 0.0, 0.75]).unwrap(),
        };
        s.write(&p, &BTreeMap::new()).unwrap();
        assert_eq!(Samples::read(&p).unwrap(), s);
        assert_eq!(read_ids(&p).unwrap(), vec![5, 9]);
        assert!(
            std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "no temp file left"
        );
    }

    #[test]
    fn table_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.parquet");
        let rows = vec![MetricRow {
            pipeline: "p".into(),
            seed: 1,
            arm: "a".into(),
            iteration: 0,
            scope: "overall".into(),
            label: None,
            accuracy: 0.5,
            loss: 1.0,
            n: 3,
            finished_early: false,
        }];
        MetricRow::write(&p, &rows).unwrap();
        assert_eq!(MetricRow::read(&p).unwrap(), rows);
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.parquet");
        let r: Result<()> = write_atomic(&p, |_| bail!("boom"));
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
