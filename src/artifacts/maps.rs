//! Tensor artifacts of the analysis: predictions, heat maps and feature-model heads.

use super::Artifact;
use super::keys::ARROW_SCHEMA_KEY;
use super::tensor::{Col, TensorFile, write_tensors};
use crate::numeric::argmax;
use crate::text_enum::TextEnum;
use crate::vocab::{MapKind, Space};
use anyhow::{Result, bail};
use ndarray::{Array2, ArrayView2};
use std::collections::BTreeMap;
use std::path::Path;

/// `predictions.parquet`: `id`, `label`, `predicted`, `confidence`, `probs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub ids: Vec<u32>,
    pub labels: Vec<u16>,
    pub probs: Array2<f32>,
}

impl Predictions {
    pub fn predicted(&self) -> Vec<u16> {
        self.probs
            .rows()
            .into_iter()
            .map(|r| argmax(r.iter().copied()) as u16)
            .collect()
    }

    pub fn confidence(&self) -> Vec<f32> {
        self.probs
            .rows()
            .into_iter()
            .map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max))
            .collect()
    }
}

impl Artifact for Predictions {
    fn write(&self, path: &Path) -> Result<()> {
        write_tensors(
            path,
            vec![
                Col::u32("id", self.ids.clone()),
                Col::u16("label", self.labels.clone()),
                Col::u16("predicted", self.predicted()),
                Col::f32("confidence", self.confidence()),
                Col::tensor("probs", self.probs.clone()),
            ],
            &BTreeMap::new(),
        )
    }

    fn read(path: &Path) -> Result<Predictions> {
        let t = TensorFile::read(path)?;
        Ok(Predictions {
            ids: t.u32("id")?,
            labels: t.u16("label")?,
            probs: t.tensor("probs")?,
        })
    }
}

/// One heat map: a mean state (or a difference of two) for one label.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapRow {
    pub label: u16,
    /// For `DH_CC` (HC_label − HC_other): the other label.
    pub other: Option<u16>,
    pub kind: MapKind,
    pub space: Space,
    pub layer: String,
    pub n: u32,
    pub values: Vec<f32>,
}

/// `heatmaps.parquet`: `label`, `other`, `kind`, `space`, `layer`, `n`, `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmaps {
    pub rows: Vec<HeatmapRow>,
    /// `mode.weighted`, and the dataset's facts for input-space maps.
    pub info: BTreeMap<String, String>,
}

impl Heatmaps {
    /// The map of a kind for a label (not a DH_CC pair).
    pub fn get(&self, label: u16, kind: MapKind) -> Option<&HeatmapRow> {
        self.rows
            .iter()
            .find(|m| m.label == label && m.other.is_none() && m.kind == kind)
    }
}

impl Artifact for Heatmaps {
    fn write(&self, path: &Path) -> Result<()> {
        let rows = &self.rows;
        let width = rows.first().map_or(0, |r| r.values.len());
        let mut m = Array2::<f32>::zeros((rows.len(), width));
        for (i, r) in rows.iter().enumerate() {
            if r.values.len() != width {
                bail!("heat maps of one file must share one width");
            }
            m.row_mut(i).assign(&ndarray::ArrayView1::from(&r.values));
        }
        let text = |f: &dyn Fn(&HeatmapRow) -> &'static str| {
            rows.iter().map(|r| f(r).to_string()).collect::<Vec<_>>()
        };
        write_tensors(
            path,
            vec![
                Col::u16("label", rows.iter().map(|r| r.label).collect()),
                Col::u16_opt("other", rows.iter().map(|r| r.other).collect()),
                Col::str("kind", text(&|r| r.kind.as_str())),
                Col::str("space", text(&|r| r.space.as_str())),
                Col::str("layer", rows.iter().map(|r| r.layer.clone()).collect()),
                Col::u32("n", rows.iter().map(|r| r.n).collect()),
                Col::tensor("values", m),
            ],
            &self.info,
        )
    }

    fn read(path: &Path) -> Result<Heatmaps> {
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
        let enum_err =
            |e: anyhow::Error, i: usize| e.context(format!("{}: row {i}", path.display()));
        let rows = (0..t.rows())
            .map(|i| {
                Ok(HeatmapRow {
                    label: label[i],
                    other: other[i],
                    kind: MapKind::parse_or_err(&kind[i]).map_err(|e| enum_err(e, i))?,
                    space: Space::parse_or_err(&space[i]).map_err(|e| enum_err(e, i))?,
                    layer: layer[i].clone(),
                    n: n[i],
                    values: values.row(i).to_vec(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let info = t
            .metadata
            .into_iter()
            .filter(|(k, _)| k != ARROW_SCHEMA_KEY)
            .collect();
        Ok(Heatmaps { rows, info })
    }
}

/// A fitted softmax head (a feature model, fitted by `analysis::layers`): `classes × width`
/// weights and `classes` intercepts.
#[derive(Debug, Clone)]
pub struct SoftmaxHead {
    pub weights: Array2<f32>,
    pub intercept: Vec<f32>,
}

impl SoftmaxHead {
    /// Class probabilities `softmax(x Wᵀ + b)`.
    pub fn probs(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut z = Array2::<f32>::zeros((x.nrows(), self.weights.nrows()));
        crate::linalg::mat_mul(1.0, &x, &self.weights.t(), 0.0, &mut z.view_mut());
        for mut row in z.rows_mut() {
            let mut max = f32::NEG_INFINITY;
            for (v, b) in row.iter_mut().zip(&self.intercept) {
                *v += b;
                max = max.max(*v);
            }
            row.mapv_inplace(|v| v - max);
            let row_values = row.as_slice_mut().expect("rows of a fresh matrix");
            crate::numeric::exp_in_place(row_values);
            let mut sum = 0.0;
            for v in row_values.iter() {
                sum += *v;
            }
            row.mapv_inplace(|v| v / sum);
        }
        z
    }
}

/// A feature model (softmax head) fitted on one layer, as stored.
#[derive(Debug, Clone)]
pub struct Head {
    pub layer: String,
    pub head: SoftmaxHead,
    /// Further metadata (`mode.settings` of the input head).
    pub info: BTreeMap<String, String>,
}

impl Head {
    pub fn new(layer: &str, head: SoftmaxHead) -> Head {
        Head {
            layer: layer.into(),
            head,
            info: BTreeMap::new(),
        }
    }
}

impl Artifact for Head {
    /// `heads/<layer>.parquet`: `layer`, `label`, `intercept`, `weights`.
    fn write(&self, path: &Path) -> Result<()> {
        let k = self.head.intercept.len();
        write_tensors(
            path,
            vec![
                Col::str("layer", vec![self.layer.clone(); k]),
                Col::u16("label", (0..k as u16).collect()),
                Col::f32("intercept", self.head.intercept.clone()),
                Col::tensor("weights", self.head.weights.clone()),
            ],
            &self.info,
        )
    }

    fn read(path: &Path) -> Result<Head> {
        let t = TensorFile::read(path)?;
        let layer = t.str("layer")?.first().cloned().unwrap_or_default();
        let head = SoftmaxHead {
            weights: t.tensor("weights")?,
            intercept: t.f32("intercept")?,
        };
        if head.weights.nrows() != head.intercept.len() {
            bail!(
                "{}: {} weight rows but {} intercepts",
                path.display(),
                head.weights.nrows(),
                head.intercept.len()
            );
        }
        let info = t
            .metadata
            .into_iter()
            .filter(|(k, _)| k != ARROW_SCHEMA_KEY)
            .collect();
        Ok(Head { layer, head, info })
    }
}
