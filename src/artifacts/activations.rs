//! `activations/<split>.parquet`: `id`, `label`, `predicted`, then one
//! `FixedSizeList<Float32, width>` column per recorded layer in order (`dense_1`, …, `output` =
//! class probabilities). The layer order is in the metadata key `mode.layers`.

use super::Artifact;
use super::samples::Samples;
use super::tensor::{Col, TensorFile, write_tensors};
use anyhow::{Result, anyhow, bail};
use ndarray::Array2;
use std::collections::BTreeMap;
use std::path::Path;

/// The probabilities' column: every activations file ends with it.
pub const OUTPUT: &str = "output";
/// The pseudo-layer of the input pixels in layer selection (never a column).
pub const INPUT: &str = "input";

use super::keys::{ARROW_SCHEMA_KEY, LAYERS_KEY};

#[derive(Debug, Clone, PartialEq)]
pub struct Activations {
    pub ids: Vec<u32>,
    pub labels: Vec<u16>,
    pub predicted: Vec<u16>,
    pub layers: Vec<(String, Array2<f32>)>,
    /// Further metadata: `mode.model`, `mode.architecture`, `mode.probe.conv`, …
    pub info: BTreeMap<String, String>,
}

impl Activations {
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

    /// The class probabilities (the `output` column).
    pub fn probs(&self) -> Result<&Array2<f32>> {
        self.layer(OUTPUT)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The contract against the split the file at `path` describes (`split` at `split_path`):
    /// the split's rows in its order with its labels, `output` one probability per class of
    /// the split (each row in [0, 1], summing to 1), and `predicted` the arg-max of `output`.
    pub fn check_split(
        &self,
        path: &Path,
        split: &Samples,
        split_path: &Path,
        split_name: &str,
    ) -> Result<()> {
        let at = path.display();
        if self.ids != split.ids {
            return Err(super::ArtifactError::NotOfSplit {
                path: path.to_path_buf(),
                split: split_name.into(),
                split_path: split_path.to_path_buf(),
            }
            .into());
        }
        if let Some(i) = (0..self.len()).find(|&i| self.labels[i] != split.labels[i]) {
            bail!(
                "{at}: row {i} (id {}) has label {} but the split {} says {}: the label column must hold the split's labels",
                self.ids[i],
                self.labels[i],
                split_path.display(),
                split.labels[i]
            );
        }
        let probs = self.probs()?;
        let classes = split.meta.classes;
        if probs.ncols() != classes {
            bail!(
                "{at}: column {OUTPUT:?} is {} wide but the split {} has {classes} classes: it must hold one probability per class",
                probs.ncols(),
                split_path.display()
            );
        }
        for (i, row) in probs.rows().into_iter().enumerate() {
            if let Some(v) = row.iter().find(|&&v| !(-1e-6..=1.0 + 1e-4).contains(&v)) {
                bail!(
                    "{at}: column {OUTPUT:?} holds {v} in row {i}: it must hold class probabilities in [0, 1] (apply a softmax to logits)"
                );
            }
            let sum: f64 = row.iter().map(|&v| v as f64).sum();
            if (sum - 1.0).abs() > 1e-3 {
                bail!(
                    "{at}: the probabilities of column {OUTPUT:?} in row {i} sum to {sum:.6}, not 1 (apply a softmax to logits)"
                );
            }
            let p = self.predicted[i] as usize;
            let best = crate::numeric::argmax(row.iter().copied());
            if p >= classes || row[p] < row[best] {
                bail!(
                    "{at}: row {i} has predicted = {p} but the largest probability in {OUTPUT:?} is class {best}: predicted must be the arg-max of {OUTPUT:?}"
                );
            }
        }
        Ok(())
    }

    /// The same layers, in the same order and of the same widths, as `reference` (the train
    /// activations at `ref_path`): heads fitted on one split are applied to the other.
    pub fn check_layers(
        &self,
        path: &Path,
        reference: &Activations,
        ref_path: &Path,
    ) -> Result<()> {
        let (have, want) = (self.layer_names(), reference.layer_names());
        if have != want {
            bail!(
                "{}: the layers {have:?} differ from {want:?} in {}: every split's activations must record the same layers in the same order",
                path.display(),
                ref_path.display()
            );
        }
        for ((name, a), (_, b)) in self.layers.iter().zip(&reference.layers) {
            if a.ncols() != b.ncols() {
                bail!(
                    "{}: layer {name:?} is {} wide but {} wide in {}: every split's activations must have the same widths",
                    path.display(),
                    a.ncols(),
                    b.ncols(),
                    ref_path.display()
                );
            }
        }
        Ok(())
    }
}

impl Artifact for Activations {
    fn write(&self, path: &Path) -> Result<()> {
        let mut cols = vec![
            Col::u32("id", self.ids.clone()),
            Col::u16("label", self.labels.clone()),
            Col::u16("predicted", self.predicted.clone()),
        ];
        for (name, m) in &self.layers {
            cols.push(Col::tensor(name, m.clone()));
        }
        let mut kv = self.info.clone();
        kv.insert(
            LAYERS_KEY.into(),
            self.layers
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        write_tensors(path, cols, &kv)
    }

    fn read(path: &Path) -> Result<Activations> {
        let t = TensorFile::read(path)?;
        let names: Vec<String> = t
            .meta(LAYERS_KEY)
            .ok_or_else(|| {
                anyhow!(
                    "{}: no {LAYERS_KEY} metadata: list the layer columns there, in order, comma-separated (see the README's activations contract)",
                    path.display()
                )
            })?
            .split(',')
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if names.last().map(String::as_str) != Some(OUTPUT) {
            anyhow::bail!(
                "{}: the last layer in {LAYERS_KEY} must be {OUTPUT:?} (the class probabilities), got {names:?}",
                path.display()
            );
        }
        let layers = names
            .iter()
            .map(|n| Ok((n.clone(), t.tensor(n)?)))
            .collect::<Result<Vec<_>>>()?;
        let info = t
            .metadata
            .iter()
            .filter(|(k, _)| k.as_str() != LAYERS_KEY && k.as_str() != ARROW_SCHEMA_KEY)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let a = Activations {
            ids: t.u32("id")?,
            labels: t.u16("label")?,
            predicted: t.u16("predicted")?,
            layers,
            info,
        };
        let classes = a.probs()?.ncols();
        if let Some(i) = a.labels.iter().position(|&l| l as usize >= classes) {
            anyhow::bail!(
                "{}: label {} in row {i} is not below the {classes} classes of {OUTPUT:?}",
                path.display(),
                a.labels[i]
            );
        }
        Ok(a)
    }
}
