//! The split files: `id`, `label`, `true_label`, `pixels` and the dataset's facts in the
//! key-value metadata.

use super::Artifact;
use super::keys::{
    ARROW_SCHEMA_KEY, CHANNELS_KEY, CLASS_NAMES_KEY, CLASSES_KEY, DATASET_KEY, HEIGHT_KEY,
    WIDTH_KEY,
};
use super::rows::PoolRow;
use super::tensor::{Col, TensorFile, write_tensors_with};
use anyhow::{Result, anyhow, bail};
use ndarray::Array2;
use std::collections::BTreeMap;
use std::path::Path;

/// Facts about a dataset, stored in every split's key-value metadata.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatasetMeta {
    pub dataset: String,
    /// Image channels (1 = grayscale, 3 = RGB); pixels are stored channel-major (C × H × W).
    #[serde(default = "one")]
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    pub class_names: Vec<String>,
}

fn one() -> usize {
    1
}

impl DatasetMeta {
    /// Values per sample: channels × height × width.
    pub fn features(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The name of a label: its class name, or its number.
    pub fn class_name(&self, label: u16) -> String {
        self.class_names
            .get(label as usize)
            .cloned()
            .unwrap_or_else(|| label.to_string())
    }

    pub fn to_kv(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(DATASET_KEY.into(), self.dataset.clone());
        if self.channels != 1 {
            m.insert(CHANNELS_KEY.into(), self.channels.to_string());
        }
        m.insert(HEIGHT_KEY.into(), self.height.to_string());
        m.insert(WIDTH_KEY.into(), self.width.to_string());
        m.insert(CLASSES_KEY.into(), self.classes.to_string());
        m.insert(
            CLASS_NAMES_KEY.into(),
            serde_json::to_string(&self.class_names).unwrap_or_default(),
        );
        m
    }

    /// Whether a metadata key is one of the dataset's.
    fn owns(key: &str) -> bool {
        [
            DATASET_KEY,
            CHANNELS_KEY,
            HEIGHT_KEY,
            WIDTH_KEY,
            CLASSES_KEY,
            CLASS_NAMES_KEY,
        ]
        .contains(&key)
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
        let channels = match kv.get(CHANNELS_KEY) {
            Some(_) => num(CHANNELS_KEY)?,
            None => 1,
        };
        let m = DatasetMeta {
            dataset: get(DATASET_KEY)?.clone(),
            channels,
            height: num(HEIGHT_KEY)?,
            width: num(WIDTH_KEY)?,
            classes: num(CLASSES_KEY)?,
            class_names: kv
                .get(CLASS_NAMES_KEY)
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default(),
        };
        if m.classes == 0 || m.classes > 65_536 || m.features() == 0 {
            bail!(
                "{}: metadata says {} classes of {}×{}×{} images; that is not a dataset",
                path.display(),
                m.classes,
                m.channels,
                m.height,
                m.width
            );
        }
        Ok(m)
    }
}

/// Rows of a split: `id`, `label`, `true_label`, `pixels`.
#[derive(Debug, Clone, PartialEq)]
pub struct Samples {
    pub meta: DatasetMeta,
    pub ids: Vec<u32>,
    pub labels: Vec<u16>,
    pub true_labels: Vec<u16>,
    /// `n × (channels·height·width)`, scaled to [0, 1].
    pub pixels: Array2<f32>,
    /// Further metadata (`mode.split`, `mode.split_seed`, `mode.settings`, …).
    pub info: BTreeMap<String, String>,
}

impl Samples {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The rows at `idx`, in that order (no further metadata).
    pub fn take(&self, idx: &[usize]) -> Samples {
        Samples {
            meta: self.meta.clone(),
            ids: idx.iter().map(|&i| self.ids[i]).collect(),
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            true_labels: idx.iter().map(|&i| self.true_labels[i]).collect(),
            pixels: crate::numeric::select_rows(&self.pixels, idx),
            info: BTreeMap::new(),
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

    /// Several sample sets of one dataset, concatenated.
    pub fn concat(parts: &[&Samples]) -> Result<Samples> {
        let first = parts
            .first()
            .ok_or_else(|| anyhow!("nothing to concatenate"))?;
        let views: Vec<_> = parts.iter().map(|s| s.pixels.view()).collect();
        Ok(Samples {
            meta: first.meta.clone(),
            ids: parts.iter().flat_map(|s| s.ids.iter().copied()).collect(),
            labels: parts
                .iter()
                .flat_map(|s| s.labels.iter().copied())
                .collect(),
            true_labels: parts
                .iter()
                .flat_map(|s| s.true_labels.iter().copied())
                .collect(),
            pixels: crate::numeric::concat_rows(&views)
                .ok_or_else(|| anyhow!("sample sets of different widths cannot be concatenated"))?,
            info: BTreeMap::new(),
        })
    }
}

impl Artifact for Samples {
    fn write(&self, path: &Path) -> Result<()> {
        let mut kv = self.meta.to_kv();
        kv.extend(self.info.clone());
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
    /// dataset facts come from the metadata, or are inferred (square grayscale images) when
    /// absent.
    fn read(path: &Path) -> Result<Samples> {
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
            Err(e) if !t.metadata.contains_key(DATASET_KEY) => {
                let side = (pixels.ncols() as f64).sqrt() as usize;
                if side * side != pixels.ncols() || side == 0 {
                    return Err(e);
                }
                DatasetMeta {
                    dataset: "unknown".into(),
                    channels: 1,
                    height: side,
                    width: side,
                    classes: labels.iter().copied().max().map_or(0, |m| m as usize + 1),
                    class_names: vec![],
                }
            }
            Err(e) => return Err(e),
        };
        if pixels.ncols() != meta.features() {
            bail!(
                "{}: pixels have {} values but metadata says {}×{}×{}",
                path.display(),
                pixels.ncols(),
                meta.channels,
                meta.height,
                meta.width
            );
        }
        for (what, l) in [("label", &labels), ("true_label", &true_labels)] {
            if let Some(i) = l.iter().position(|&l| l as usize >= meta.classes) {
                bail!(
                    "{}: {what} {} in row {i} is not below the class count {}",
                    path.display(),
                    l[i],
                    meta.classes
                );
            }
        }
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        if let Some(i) = ids.iter().position(|id| !seen.insert(*id)) {
            bail!("{}: id {} appears twice (row {i})", path.display(), ids[i]);
        }
        let info = t
            .metadata
            .iter()
            .filter(|(k, _)| !DatasetMeta::owns(k) && k.as_str() != ARROW_SCHEMA_KEY)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Samples {
            meta,
            ids,
            labels,
            true_labels,
            pixels,
            info,
        })
    }
}

/// Ids and labels of a pool file (a split or a `pool.parquet`), without the pixels.
pub fn read_pool(path: &Path) -> Result<Vec<PoolRow>> {
    use super::table::{Cell, read_frame};
    let df = read_frame(path, Some(&["id", "label"]))?;
    let ids = <u32 as Cell>::read(&df, "id")?;
    let labels = <u16 as Cell>::read(&df, "label")?;
    Ok(ids
        .into_iter()
        .zip(labels)
        .map(|(id, label)| PoolRow { id, label })
        .collect())
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
                channels: 1,
                height: 1,
                width: 3,
                classes: 4,
                class_names: vec!["a".into()],
            },
            ids: vec![5, 9],
            labels: vec![3, 0],
            true_labels: vec![3, 1],
            pixels: Array2::from_shape_vec((2, 3), vec![0.0, 0.5, 1.0, 0.25, 0.0, 0.75]).unwrap(),
            info: [(
                crate::artifacts::keys::SPLIT_KEY.to_string(),
                "train".to_string(),
            )]
            .into(),
        };
        s.write(&p).unwrap();
        assert_eq!(Samples::read(&p).unwrap(), s);
        assert_eq!(
            read_pool(&p).unwrap(),
            vec![PoolRow { id: 5, label: 3 }, PoolRow { id: 9, label: 0 }]
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn non_finite_pixels_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.parquet");
        let mut pixels = Array2::zeros((3, 4));
        pixels[[2, 1]] = f32::NAN;
        let s = Samples {
            meta: DatasetMeta {
                dataset: "t".into(),
                channels: 1,
                height: 2,
                width: 2,
                classes: 2,
                class_names: vec![],
            },
            ids: vec![1, 2, 3],
            labels: vec![0, 1, 0],
            true_labels: vec![0, 1, 0],
            pixels,
            info: BTreeMap::new(),
        };
        s.write(&p).unwrap();
        let e = Samples::read(&p).unwrap_err();
        match e.downcast_ref::<crate::artifacts::ArtifactError>() {
            Some(crate::artifacts::ArtifactError::NonFinite { column, row, .. }) => {
                assert_eq!((column.as_str(), *row), ("pixels", 2));
            }
            _ => panic!("{e:#}"),
        }
    }
}
