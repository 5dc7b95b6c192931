//! A model: the network, its architecture and the settings that made it; the model file
//! (SafeTensors, byte-reproducible) and the activations of every layer.

use super::arch::{Architecture, Shape};
use super::error::{DataShape, ModelError};
use super::infer;
use super::safetensors;
use super::weights::Weights;
use crate::artifacts::keys::{ARCHITECTURE_KEY, SETTINGS_KEY};
use crate::artifacts::{Artifact, DatasetMeta, write_bytes};
use crate::config::{ConvProbe, Pipeline};
use anyhow::{Context, Result, anyhow, bail};
use ndarray::{Array2, Axis};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// A model: the architecture, the weights, and the fingerprint of the settings that made it.
#[derive(Debug, Clone)]
pub struct Net {
    pub arch: Architecture,
    /// `Pipeline::initial_fingerprint` of the initial model, the arm's fingerprint after a
    /// retrain; empty when unknown.
    pub settings: String,
    /// What the probe records of convolution and pooling layers (`probe.conv`).
    pub conv_probe: ConvProbe,
    pub weights: Weights,
}

impl Net {
    /// Fresh Keras-style weights (Glorot-uniform kernels, zero biases) for the pipeline's
    /// architecture on data of this shape, from the pipeline's weight seed.
    pub fn init(p: &Pipeline, meta: &DatasetMeta) -> Result<Net> {
        let arch = Architecture::from_pipeline(p, meta);
        arch.validate()?;
        Ok(Net {
            weights: Weights::init(&arch, p.model_seed())?,
            arch,
            settings: p.initial_fingerprint(),
            conv_probe: p.probe.conv,
        })
    }

    /// The same weights, recorded as made by other settings.
    pub fn with_settings(mut self, settings: &str) -> Net {
        self.settings = settings.into();
        self
    }

    /// The same model, probed with the pipeline's `probe.conv`.
    pub fn with_probe(mut self, p: &Pipeline) -> Net {
        self.conv_probe = p.probe.conv;
        self
    }

    /// Extra metadata the probe records: how conv and pooling layers were recorded.
    pub fn probe_info(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        if self.arch.is_convolutional() {
            m.insert("mode.probe.conv".to_string(), self.conv_probe.to_string());
        }
        m
    }

    /// The width of every probed layer's column.
    pub fn layer_widths(&self) -> Vec<usize> {
        let shapes = self.arch.shapes().unwrap_or_default();
        self.arch
            .probed()
            .into_iter()
            .map(|(i, _)| match i.map(|i| shapes[i]) {
                None => self.arch.classes,
                Some(Shape::Image(c, h, w)) => match self.conv_probe {
                    ConvProbe::Mean => c,
                    ConvProbe::Full => c * h * w,
                },
                Some(s) => s.size(),
            })
            .collect()
    }

    /// A model file of another architecture than the pipeline's is an error.
    pub fn check_pipeline(&self, p: &Pipeline, path: &Path) -> Result<()> {
        let want = Architecture::from_pipeline(
            p,
            &DatasetMeta {
                dataset: String::new(),
                channels: self.arch.channels,
                height: self.arch.height,
                width: self.arch.width,
                classes: self.arch.classes,
                class_names: vec![],
            },
        );
        if want.layers != self.arch.layers || want.channels != self.arch.channels {
            return Err(ModelError::OtherArchitecture {
                path: path.to_path_buf(),
                model: self.arch.describe(),
                pipeline: want.describe(),
            }
            .into());
        }
        Ok(())
    }

    /// Data of another shape or class count than the model's is an error.
    pub fn check_data(&self, meta: &DatasetMeta, data: &Path) -> Result<()> {
        if meta.features() != self.arch.inputs() || meta.classes != self.arch.classes {
            return Err(ModelError::DataShape {
                path: data.to_path_buf(),
                data: meta.into(),
                model: DataShape {
                    channels: self.arch.channels,
                    height: self.arch.height,
                    width: self.arch.width,
                    classes: self.arch.classes,
                },
            }
            .into());
        }
        Ok(())
    }

    /// Activations of every layer for `x`, in chunks of rows (in parallel); the last is the
    /// class probabilities. Every value is checked to be finite.
    pub fn activations(&self, x: &Array2<f32>) -> Result<Vec<Array2<f32>>> {
        Ok(activations_fleet(&[self], x)?.pop().expect("one model"))
    }
}

/// Rows per chunk of a probe: small enough for a chunk's layers to stay in cache, large enough
/// for the products to be efficient.
const CHUNK: usize = 1024;

/// What a chunk's widest layer output may take for the whole fleet: a LeNet fleet's shared
/// first convolution is 26 × 4 704 values an image, which at [`CHUNK`] images was half a
/// gigabyte per chunk, written once, read once and handed back to the system.
const CHUNK_BYTES: usize = 8 << 20;

/// Rows per chunk for a fleet of `models` of `arch`: [`CHUNK`], or fewer so that the widest
/// layer's outputs of the fleet stay within [`CHUNK_BYTES`]. Rows are independent (each value
/// is the same sum whatever the chunk), so the chunking changes no value.
fn chunk_rows(arch: &Architecture, models: usize) -> usize {
    let widest = arch
        .shapes()
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.size())
        .max()
        .unwrap_or(1);
    let per_row = (widest * models.max(1) * std::mem::size_of::<f32>()).max(1);
    (CHUNK_BYTES / per_row).clamp(8, CHUNK)
}

/// The activations of every model of a fleet (one architecture, one `probe.conv`) on the same
/// samples: per model, every probed layer then the probabilities. Chunks of rows run in
/// parallel; the first layer's product is shared by the fleet (see `infer`). Every value is
/// checked to be finite.
pub fn activations_fleet(nets: &[&Net], x: &Array2<f32>) -> Result<Vec<Vec<Array2<f32>>>> {
    let first = nets.first().ok_or_else(|| anyhow!("no model to probe"))?;
    let arch = &first.arch;
    if let Some(n) = nets
        .iter()
        .find(|n| n.arch != *arch || n.conv_probe != first.conv_probe)
    {
        bail!(
            "a fleet probes models of one architecture: {} and {}",
            arch.describe(),
            n.arch.describe()
        );
    }
    let widths = first.layer_widths();
    if x.nrows() == 0 {
        let empty: Vec<Array2<f32>> = widths.iter().map(|&w| Array2::zeros((0, w))).collect();
        return Ok(vec![empty; nets.len()]);
    }
    if x.ncols() != arch.inputs() {
        bail!(
            "the samples have {} values but the model takes {}",
            x.ncols(),
            arch.inputs()
        );
    }
    let weights: Vec<&Weights> = nets.iter().map(|n| &n.weights).collect();
    let chunks: Vec<Vec<infer::Forward>> = x
        .axis_chunks_iter(Axis(0), chunk_rows(arch, nets.len()))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|c| infer::forward_fleet(arch, &weights, c, first.conv_probe))
        .collect();
    let names = arch.layer_names();
    (0..nets.len())
        .map(|m| {
            (0..widths.len())
                .map(|l| {
                    let views: Vec<_> = chunks
                        .iter()
                        .map(|c| {
                            let (probs, probed) = &c[m];
                            if l + 1 == widths.len() {
                                probs.view()
                            } else {
                                probed[l].view()
                            }
                        })
                        .collect();
                    let a = crate::numeric::concat_rows(&views).ok_or_else(|| {
                        anyhow!("the probe's chunks of layer {} differ in width", names[l])
                    })?;
                    if let Some(i) = crate::numeric::first_non_finite(&a) {
                        return Err(ModelError::NonFinite {
                            layer: names[l].clone(),
                            row: i / a.ncols().max(1),
                        }
                        .into());
                    }
                    Ok(a)
                })
                .collect()
        })
        .collect()
}

impl Artifact for Net {
    /// SafeTensors with the architecture and settings in the metadata, byte-reproducible.
    fn write(&self, path: &Path) -> Result<()> {
        let meta: BTreeMap<String, String> = [
            ("format".to_string(), "safetensors".to_string()),
            (ARCHITECTURE_KEY.to_string(), self.arch.to_json()),
            (SETTINGS_KEY.to_string(), self.settings.clone()),
            ("producer".to_string(), "mode".to_string()),
            ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ]
        .into();
        let bytes = safetensors::write(&self.weights.tensors(&self.arch), &meta)?;
        write_bytes(path, &bytes)
    }

    fn read(path: &Path) -> Result<Net> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "cannot open model {}: run `mode train` first or check the path",
                path.display()
            )
        })?;
        let meta = safetensors::metadata(&bytes).with_context(|| path.display().to_string())?;
        let json = meta.get(ARCHITECTURE_KEY).ok_or_else(|| {
            anyhow!(
                "{}: no {ARCHITECTURE_KEY} metadata; was it written by `mode train`?",
                path.display()
            )
        })?;
        let arch: Architecture = serde_json::from_str(json)
            .map_err(|e| anyhow!("{}: bad architecture metadata: {e}", path.display()))?;
        arch.validate()
            .with_context(|| path.display().to_string())?;
        let tensors = safetensors::read(&bytes)
            .map_err(|e| anyhow!("{}: cannot load the weights: {e}", path.display()))?;
        let weights = Weights::from_tensors(&arch, tensors)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        if let Some(layer) = weights.first_non_finite(&arch) {
            bail!(
                "{}: layer {layer} has non-finite weights: the model diverged; train it again",
                path.display()
            );
        }
        Ok(Net {
            arch,
            settings: meta.get(SETTINGS_KEY).cloned().unwrap_or_default(),
            conv_probe: ConvProbe::Mean,
            weights,
        })
    }
}
