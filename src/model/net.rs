//! A model: the network, its architecture and the settings that made it; the model file
//! (SafeTensors, byte-reproducible) and the activations of every layer.

use super::arch::{Architecture, Shape};
use super::infer::Plan;
use super::network::{Block, Network, device};
use super::safetensors;
use crate::artifacts::OUTPUT;
use crate::artifacts::{Artifact, DatasetMeta, write_bytes};
use crate::config::{ConvProbe, Pipeline};
use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use ndarray::{Array2, Axis};
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
    pub(super) module: Network,
}

pub(super) const ARCHITECTURE_KEY: &str = "mode.architecture";
const SETTINGS_KEY: &str = "mode.settings";

impl Net {
    /// Fresh Keras-style weights (Glorot-uniform kernels, zero biases) for the pipeline's
    /// architecture on data of this shape, from the pipeline's weight seed.
    pub fn init(p: &Pipeline, meta: &DatasetMeta) -> Result<Net> {
        let arch = Architecture::from_pipeline(p, meta);
        arch.validate()?;
        Ok(Net {
            module: Network::init(&arch, p.model_seed(), &device(false))?,
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
            bail!(
                "{}: the model is {} but the pipeline describes {}; train it again or use the pipeline it was made with",
                path.display(),
                self.arch.describe(),
                want.describe()
            );
        }
        Ok(())
    }

    /// Data of another shape or class count than the model's is an error.
    pub fn check_data(&self, meta: &DatasetMeta, data: &Path) -> Result<()> {
        if meta.features() != self.arch.inputs() || meta.classes != self.arch.classes {
            bail!(
                "{}: the data are {}×{}×{} images of {} classes but the model takes {}×{}×{} inputs and has {} classes",
                data.display(),
                meta.channels,
                meta.height,
                meta.width,
                meta.classes,
                self.arch.channels,
                self.arch.height,
                self.arch.width,
                self.arch.classes
            );
        }
        Ok(())
    }

    /// Activations of every layer for `x`, in chunks, without autodiff; the last is the class
    /// probabilities. Every value is checked to be finite.
    pub fn activations(&self, x: &Array2<f32>) -> Result<Vec<Array2<f32>>> {
        let widths = self.layer_widths();
        if x.nrows() == 0 {
            return Ok(widths.iter().map(|&w| Array2::zeros((0, w))).collect());
        }
        if x.ncols() != self.arch.inputs() {
            bail!(
                "the samples have {} values but the model takes {}",
                x.ncols(),
                self.arch.inputs()
            );
        }
        let mut parts: Vec<Vec<Array2<f32>>> = vec![Vec::new(); widths.len()];
        if self.arch.is_convolutional() {
            // Convolutional models run in ndarray (im2col + sgemm; see `infer`).
            let plan = Plan::new(&self.arch, &self.module);
            for chunk in x.axis_chunks_iter(Axis(0), 256) {
                let (probs, mut outs) = plan.forward(chunk, self.conv_probe);
                outs.push(probs);
                for (i, a) in outs.into_iter().enumerate() {
                    parts[i].push(a);
                }
            }
        } else {
            let device = device(false);
            let module = self.module.valid().fork(&device);
            for chunk in x.axis_chunks_iter(Axis(0), 8192) {
                let (logits, mut outs) = module.forward(
                    &self.arch,
                    to_tensor(chunk, &device),
                    Some(self.conv_probe),
                    None,
                );
                outs.push(softmax(logits, 1));
                for (i, t) in outs.into_iter().enumerate() {
                    parts[i].push(to_array(t)?);
                }
            }
        }
        let names = self.arch.layer_names();
        parts
            .into_iter()
            .zip(names)
            .map(|(p, name)| {
                let views: Vec<_> = p.iter().map(|a| a.view()).collect();
                let a = ndarray::concatenate(Axis(0), &views)?;
                if let Some(i) = a.iter().position(|v| !v.is_finite()) {
                    bail!(
                        "the model's layer {name} gives a non-finite activation (row {}): its weights have diverged",
                        i / a.ncols().max(1)
                    );
                }
                Ok(a)
            })
            .collect()
    }

    /// Class probabilities for `x`.
    pub fn predict(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        Ok(self.activations(x)?.pop().expect("the output layer"))
    }
}

fn to_tensor(x: ndarray::ArrayView2<f32>, device: &Device) -> Tensor<2> {
    let (n, d) = x.dim();
    let v: Vec<f32> = match x.as_slice() {
        Some(s) => s.to_vec(),
        None => x.iter().copied().collect(),
    };
    Tensor::from_data(TensorData::new(v, [n, d]), device)
}

fn to_array(t: Tensor<2>) -> Result<Array2<f32>> {
    let [n, d] = t.dims();
    let v: Vec<f32> = t
        .try_into_vec_as::<f32>()
        .map_err(|e| anyhow!("tensor readback: {e:?}"))?;
    Ok(Array2::from_shape_vec((n, d), v)?)
}

impl Artifact for Net {
    /// SafeTensors with the architecture and settings in the metadata, byte-reproducible.
    fn write(&self, path: &Path) -> Result<()> {
        let mut store = SafetensorsStore::from_bytes(None)
            .metadata(ARCHITECTURE_KEY, self.arch.to_json())
            .metadata(SETTINGS_KEY, self.settings.clone());
        self.module
            .save_into(&mut store)
            .map_err(|e| anyhow!("saving model: {e}"))?;
        let bytes = store
            .get_bytes()
            .map_err(|e| anyhow!("saving model: {e}"))?;
        write_bytes(path, &safetensors::canonical(&bytes)?)
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
        let mut module = Network::init(&arch, 0, &device(false))?;
        let mut store = SafetensorsStore::from_bytes(Some(bytes));
        let result = module
            .load_from(&mut store)
            .map_err(|e| anyhow!("{}: cannot load the weights: {e}", path.display()))?;
        if !result.missing.is_empty() {
            bail!(
                "{}: weights missing for {:?} (a file of another architecture?)",
                path.display(),
                result.missing
            );
        }
        let net = Net {
            arch,
            settings: meta.get(SETTINGS_KEY).cloned().unwrap_or_default(),
            conv_probe: ConvProbe::Mean,
            module,
        };
        net.check_weights(path)?;
        Ok(net)
    }
}

impl Net {
    /// Every weight finite.
    fn check_weights(&self, path: &Path) -> Result<()> {
        let mut weights: Vec<(String, Vec<f32>)> = Vec::new();
        let read = |t: Tensor<1>| t.try_into_vec_as::<f32>().map_err(|e| anyhow!("{e:?}"));
        for (k, b) in self.module.blocks.iter().enumerate() {
            match b {
                Block::Conv(c) => {
                    weights.push((format!("block {k}"), read(c.weight.val().flatten(0, 3))?))
                }
                Block::Dense(d) => {
                    weights.push((format!("block {k}"), read(d.weight.val().flatten(0, 1))?))
                }
                _ => {}
            }
        }
        weights.push((
            OUTPUT.into(),
            read(self.module.output.weight.val().flatten(0, 1))?,
        ));
        for (name, w) in weights {
            if w.iter().any(|v| !v.is_finite()) {
                bail!(
                    "{}: layer {name} has non-finite weights: the model diverged; train it again",
                    path.display()
                );
            }
        }
        Ok(())
    }
}
