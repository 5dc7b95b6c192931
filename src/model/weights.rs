//! A network's weights as plain arrays: Keras-style initialisation (Glorot-uniform kernels,
//! zero biases, from the pipeline's weight seed) and the model file's named tensors.
//!
//! The tensors keep the names and shapes of burn's `Conv2d` / `Linear` modules in a list of
//! blocks (`blocks.<j>.Conv.weight` `[filters, channels, k, k]`, `blocks.<j>.Dense.weight`
//! `[inputs, units]`, their biases, `output.weight`, `output.bias`; `j` counts the layers that
//! are burn blocks: convolutions, poolings and dense layers), so model files keep their layout.

use super::arch::{Architecture, Layer, Shape};
use anyhow::{Result, anyhow, bail};
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A dense layer: `[inputs, units]` and `[units]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    pub w: Array2<f32>,
    pub b: Array1<f32>,
}

/// A convolution: `[filters, channels · k · k]` (rows in channel, kernel row, kernel column
/// order) and `[filters]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    pub w: Array2<f32>,
    pub b: Array1<f32>,
    pub channels: usize,
    pub k: usize,
}

/// The weights of one layer of the architecture.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Conv(Conv),
    Dense(Dense),
}

/// Every weight of a network: one entry per layer of the architecture (`None` for layers
/// without weights), then the output layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub layers: Vec<Option<Param>>,
    pub output: Dense,
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    (0..n).map(|_| rng.random_range(-limit..limit)).collect()
}

fn dense(rng: &mut ChaCha8Rng, fan_in: usize, fan_out: usize) -> Dense {
    let w = uniform(rng, fan_in * fan_out, fan_in, fan_out);
    Dense {
        w: Array2::from_shape_vec((fan_in, fan_out), w).expect("dense shape"),
        b: Array1::zeros(fan_out),
    }
}

impl Weights {
    /// Keras' initialisation: Glorot-uniform kernels (convolutions with fans k²·channels),
    /// zero biases, drawn layer by layer from `seed`.
    pub fn init(arch: &Architecture, seed: u64) -> Result<Weights> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layers = Vec::with_capacity(arch.layers.len());
        let mut shape = Shape::Image(arch.channels, arch.height, arch.width);
        for l in &arch.layers {
            let next = l.output(shape)?;
            layers.push(match (l, shape) {
                (
                    Layer::Conv2d {
                        filters, kernel, ..
                    },
                    Shape::Image(c, _, _),
                ) => {
                    let (o, k) = (*filters, *kernel);
                    let w = uniform(&mut rng, o * c * k * k, k * k * c, k * k * o);
                    Some(Param::Conv(Conv {
                        w: Array2::from_shape_vec((o, c * k * k), w).expect("conv shape"),
                        b: Array1::zeros(o),
                        channels: c,
                        k,
                    }))
                }
                (Layer::Dense { units, .. }, s) => {
                    Some(Param::Dense(dense(&mut rng, s.size(), *units)))
                }
                _ => None,
            });
            shape = next;
        }
        let output = dense(&mut rng, shape.size(), arch.classes);
        Ok(Weights { layers, output })
    }

    /// The named tensors of the model file: (name, shape, values), in no particular order.
    pub fn tensors(&self, arch: &Architecture) -> Vec<(String, Vec<usize>, &[f32])> {
        let mut out = Vec::new();
        let mut block = 0usize;
        for (l, p) in arch.layers.iter().zip(&self.layers) {
            let is_block = matches!(
                l,
                Layer::Conv2d { .. }
                    | Layer::MaxPool2d { .. }
                    | Layer::AvgPool2d { .. }
                    | Layer::Dense { .. }
            );
            match p {
                Some(Param::Conv(c)) => {
                    let o = c.w.nrows();
                    let name = format!("blocks.{block}.Conv");
                    out.push((
                        format!("{name}.weight"),
                        vec![o, c.channels, c.k, c.k],
                        slice(&c.w),
                    ));
                    out.push((format!("{name}.bias"), vec![o], slice1(&c.b)));
                }
                Some(Param::Dense(d)) => {
                    let name = format!("blocks.{block}.Dense");
                    out.push((format!("{name}.weight"), d.w.shape().to_vec(), slice(&d.w)));
                    out.push((format!("{name}.bias"), vec![d.b.len()], slice1(&d.b)));
                }
                None => {}
            }
            block += is_block as usize;
        }
        let o = &self.output;
        out.push(("output.weight".into(), o.w.shape().to_vec(), slice(&o.w)));
        out.push(("output.bias".into(), vec![o.b.len()], slice1(&o.b)));
        out
    }

    /// The weights of `arch` from named tensors (as [`Weights::tensors`] names them); a
    /// missing tensor or one of another shape is an error.
    pub fn from_tensors(
        arch: &Architecture,
        mut t: super::safetensors::Tensors,
    ) -> Result<Weights> {
        let shapes = Weights::init_shapes(arch)?;
        let mut take = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let (have, values) = t.remove(name).ok_or_else(|| {
                anyhow!("weights missing for {name} (a file of another architecture?)")
            })?;
            if have != shape {
                bail!("{name} is {have:?} but the architecture needs {shape:?}");
            }
            Ok(values)
        };
        let mut layers = Vec::with_capacity(shapes.layers.len());
        for (name, p) in shapes.names(arch).into_iter().zip(&shapes.layers) {
            layers.push(match p {
                Some(Param::Conv(c)) => {
                    let o = c.w.nrows();
                    let w = take(&format!("{name}.weight"), &[o, c.channels, c.k, c.k])?;
                    let b = take(&format!("{name}.bias"), &[o])?;
                    Some(Param::Conv(Conv {
                        w: Array2::from_shape_vec(c.w.dim(), w)?,
                        b: Array1::from(b),
                        channels: c.channels,
                        k: c.k,
                    }))
                }
                Some(Param::Dense(d)) => {
                    let (i, o) = d.w.dim();
                    let w = take(&format!("{name}.weight"), &[i, o])?;
                    let b = take(&format!("{name}.bias"), &[o])?;
                    Some(Param::Dense(Dense {
                        w: Array2::from_shape_vec((i, o), w)?,
                        b: Array1::from(b),
                    }))
                }
                None => None,
            });
        }
        let (i, o) = shapes.output.w.dim();
        let w = take("output.weight", &[i, o])?;
        let b = take("output.bias", &[o])?;
        Ok(Weights {
            layers,
            output: Dense {
                w: Array2::from_shape_vec((i, o), w)?,
                b: Array1::from(b),
            },
        })
    }

    /// Zero weights of the architecture's shapes.
    fn init_shapes(arch: &Architecture) -> Result<Weights> {
        let mut w = Weights::init(arch, 0)?;
        w.for_each_mut(|v| v.fill(0.0));
        Ok(w)
    }

    /// The tensor-name prefix of each layer (`blocks.<j>.Conv`, `blocks.<j>.Dense`; empty for
    /// layers without weights).
    fn names(&self, arch: &Architecture) -> Vec<String> {
        let mut block = 0usize;
        arch.layers
            .iter()
            .zip(&self.layers)
            .map(|(l, p)| {
                let name = match p {
                    Some(Param::Conv(_)) => format!("blocks.{block}.Conv"),
                    Some(Param::Dense(_)) => format!("blocks.{block}.Dense"),
                    None => String::new(),
                };
                block += matches!(
                    l,
                    Layer::Conv2d { .. }
                        | Layer::MaxPool2d { .. }
                        | Layer::AvgPool2d { .. }
                        | Layer::Dense { .. }
                ) as usize;
                name
            })
            .collect()
    }

    /// The names and shapes of the parameter tensors, in [`Weights::params`] order.
    pub fn param_names(&self, arch: &Architecture) -> Vec<(String, Vec<usize>)> {
        self.tensors(arch)
            .into_iter()
            .map(|(name, shape, _)| (name, shape))
            .collect()
    }

    /// The parameter tensors in a fixed order (each layer's kernel then bias, the output
    /// layer last): what training and Adam's state walk over.
    pub fn params(&self) -> Vec<&[f32]> {
        let mut v: Vec<&[f32]> = Vec::new();
        for p in self.layers.iter().flatten() {
            match p {
                Param::Conv(c) => v.extend([slice(&c.w), slice1(&c.b)]),
                Param::Dense(d) => v.extend([slice(&d.w), slice1(&d.b)]),
            }
        }
        v.extend([slice(&self.output.w), slice1(&self.output.b)]);
        v
    }

    /// As [`Weights::params`], mutable.
    pub fn params_mut(&mut self) -> Vec<&mut [f32]> {
        let mut v: Vec<&mut [f32]> = Vec::new();
        for p in self.layers.iter_mut().flatten() {
            match p {
                Param::Conv(c) => {
                    v.push(c.w.as_slice_mut().expect("standard layout"));
                    v.push(c.b.as_slice_mut().expect("standard layout"));
                }
                Param::Dense(d) => {
                    v.push(d.w.as_slice_mut().expect("standard layout"));
                    v.push(d.b.as_slice_mut().expect("standard layout"));
                }
            }
        }
        v.push(self.output.w.as_slice_mut().expect("standard layout"));
        v.push(self.output.b.as_slice_mut().expect("standard layout"));
        v
    }

    fn for_each_mut(&mut self, mut f: impl FnMut(&mut [f32])) {
        for p in self.params_mut() {
            f(p);
        }
    }

    /// The name of the first layer with a non-finite weight, if any.
    pub fn first_non_finite(&self, arch: &Architecture) -> Option<String> {
        self.tensors(arch)
            .into_iter()
            .find(|(_, _, v)| crate::numeric::first_non_finite(v.iter()).is_some())
            .map(|(name, _, _)| {
                name.trim_end_matches(".weight")
                    .trim_end_matches(".bias")
                    .to_string()
            })
    }
}

fn slice(a: &Array2<f32>) -> &[f32] {
    a.as_slice().expect("weights in standard layout")
}

fn slice1(a: &Array1<f32>) -> &[f32] {
    a.as_slice().expect("weights in standard layout")
}
