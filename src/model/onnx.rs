//! A user's own classifier as an ONNX file, run with tract (pure Rust).
//!
//! The recorded layers are chosen on the graph as imported, before tract optimises it (the
//! optimiser fuses Gemm + Relu and Conv + Relu, and the pre-activation tensors would be gone).
//! ONNX op types come from the protobuf: tract renames some ops at import (Relu → Clip).
//! One plan serves every batch size (a symbolic batch), unless the model declares a fixed
//! batch: then it runs in batches of exactly that size.

use super::Classifier;
use crate::artifacts::keys::{INPUT_KEY, OUTPUT_KEY};
use crate::artifacts::{DatasetMeta, INPUT, OUTPUT};
use crate::config::{ConvProbe, OnnxInput, Pipeline};
use anyhow::{Context, Result, anyhow, bail};
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, GenericFactoid};

/// ONNX op types whose outputs are recorded by default.
const RECORDED_OPS: [&str; 4] = ["Relu", "Gemm", "MatMul", "Conv"];
/// Column names an ONNX layer may not take.
const RESERVED: [&str; 5] = ["id", "label", "predicted", INPUT, OUTPUT];
/// Rows per run of a plan with a symbolic batch.
const CHUNK: usize = 1024;

/// The values of the activations metadata key [`OUTPUT_KEY`]: where the probabilities come
/// from.
pub const SOFTMAX_APPLIED: &str = "softmax applied";
pub const MODEL_PROBABILITIES: &str = "model probabilities";

/// A loaded ONNX classifier, ready for samples of one shape.
#[derive(Debug, Clone)]
pub struct OnnxNet {
    plan: Arc<TypedRunnableModel>,
    /// The recorded layers' column names and their tensors' ranks.
    layers: Vec<(String, usize)>,
    classes: usize,
    /// The model ends in logits (not a Softmax): softmax is applied.
    applies_softmax: bool,
    input: OnnxInput,
    /// One sample's shape as the model takes it.
    sample: Vec<usize>,
    /// A fixed batch size declared by the model; `None`: any.
    batch: Option<usize>,
    conv: ConvProbe,
    meta: DatasetMeta,
    /// Per-channel (mean, std) of the input normalisation; empty: none.
    norm: Vec<(f32, f32)>,
}

/// "N×1×28×28" for a declared shape (unknown dimensions as "?").
fn show_declared(f: &InferenceFact) -> String {
    match f.shape.rank() {
        GenericFactoid::Only(_) => f
            .shape
            .dims()
            .map(|d| match d {
                GenericFactoid::Only(d) => d.to_string(),
                GenericFactoid::Any => "?".into(),
            })
            .collect::<Vec<_>>()
            .join("×"),
        GenericFactoid::Any => "of unknown rank".into(),
    }
}

/// The dimensions of one sample in a layout.
fn sample_rank(input: OnnxInput) -> usize {
    match input {
        OnnxInput::Flat => 1,
        OnnxInput::Image => 3,
    }
}

fn show(dims: &[usize]) -> String {
    let d: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("N×{}", d.join("×"))
}

/// The name of the model's one output, the class scores.
fn output_name(graph: &tract_onnx::pb::GraphProto, path: &Path) -> Result<String> {
    let shown = path.display();
    let out_name = graph
        .output
        .first()
        .map(|o| o.name.clone())
        .ok_or_else(|| anyhow!("{shown}: the model has no output: not a classifier"))?;
    if graph.output.len() > 1 {
        bail!(
            "{shown}: the model declares {} outputs ({}); mode needs exactly one, the class scores (batch × classes): export the model with its classifier output only (other tensors can be recorded with model.onnx_layers)",
            graph.output.len(),
            graph
                .output
                .iter()
                .map(|o| format!("{:?}", o.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out_name)
}

/// Check the model's one input against the data as the pipeline's `model.input` lays them
/// out, and fix its shape (a symbolic batch unless the model declares one): the layout, one
/// sample's shape, the fixed batch size.
fn fix_input(
    model: &mut InferenceModel,
    p: &Pipeline,
    meta: &DatasetMeta,
    path: &Path,
) -> Result<(OnnxInput, Vec<usize>, Option<usize>)> {
    let shown = path.display();
    let inputs = model.input_outlets()?.len();
    if inputs != 1 {
        bail!("{shown}: the model takes {inputs} inputs; mode feeds one (the samples)");
    }
    let input = p.model.input.unwrap_or(OnnxInput::Flat);
    let sample = match input {
        OnnxInput::Flat => vec![meta.features()],
        OnnxInput::Image => vec![meta.channels, meta.height, meta.width],
    };
    let declared = model.input_fact(0)?.clone();
    let other = match input {
        OnnxInput::Flat => OnnxInput::Image,
        OnnxInput::Image => OnnxInput::Flat,
    };
    let hint = match declared.shape.rank() {
        GenericFactoid::Only(r) if r as usize == 1 + sample_rank(other) => {
            format!("set model.input = \"{other}\"")
        }
        _ => {
            "give it data of the size it takes (data.channels, data.height, data.width)".to_string()
        }
    };
    let mismatch = || {
        anyhow!(
            "{shown}: the model's input is {} but the data reach it as {} (model.input = \"{input}\", {}×{}×{} images); {hint}",
            show_declared(&declared),
            show(&sample),
            meta.channels,
            meta.height,
            meta.width,
        )
    };
    if let GenericFactoid::Only(r) = declared.shape.rank()
        && r as usize != 1 + sample.len()
    {
        return Err(mismatch());
    }
    for (i, want) in sample.iter().enumerate() {
        if let Some(GenericFactoid::Only(d)) = declared.shape.dim(i + 1)
            && let Some(d) = concrete(&d)
            && d != *want
        {
            return Err(mismatch());
        }
    }
    if let Some(t) = declared.datum_type.concretize()
        && t != f32::datum_type()
    {
        bail!("{shown}: the model's input is of type {t:?}; mode feeds 32-bit floats");
    }
    let batch = match declared.shape.dim(0) {
        Some(GenericFactoid::Only(d)) => concrete(&d).filter(|&b| b > 0),
        _ => None,
    };
    let mut shape: Vec<TDim> = vec![match batch {
        Some(b) => TDim::from(b),
        None => model.sym("N").into(),
    }];
    shape.extend(sample.iter().map(|&d| TDim::from(d)));
    model.set_input_fact(0, f32::fact(&shape).into())?;
    Ok((input, sample, batch))
}

/// The outlets to run, the model's output `out` first, and the names of the recorded layers
/// after it (`model.onnx_layers`, else every output of a recorded op type).
fn recorded_outlets(
    model: &InferenceModel,
    graph: &tract_onnx::pb::GraphProto,
    p: &Pipeline,
    out_name: &str,
    out: OutletId,
    path: &Path,
) -> Result<(Vec<OutletId>, Vec<String>)> {
    let shown = path.display();
    let names: Vec<String> = if p.model.onnx_layers.is_empty() {
        graph
            .node
            .iter()
            .filter(|n| RECORDED_OPS.contains(&n.op_type.as_str()))
            .flat_map(|n| n.output.iter().cloned())
            .filter(|o| !o.is_empty() && *o != out_name)
            .collect()
    } else {
        p.model.onnx_layers.clone()
    };
    let mut outlets = vec![out];
    let mut layers = Vec::new();
    for name in &names {
        let outlet = model.find_outlet_label(name).ok_or_else(|| {
            let known: Vec<&str> = graph
                .node
                .iter()
                .flat_map(|n| n.output.iter().map(String::as_str))
                .collect();
            let more = if known.len() > 12 { ", …" } else { "" };
            anyhow!(
                "{shown}: no node output named {name:?} (model.onnx_layers); the model's node outputs: {}{more}",
                known[..known.len().min(12)].join(", ")
            )
        })?;
        if *name == out_name || outlet == out {
            bail!(
                "{shown}: {name:?} is the model's output; it is recorded as {OUTPUT:?} (leave it out of model.onnx_layers)"
            );
        }
        if RESERVED.contains(&name.as_str()) || name.contains(',') {
            bail!(
                "{shown}: a node output named {name:?} cannot be a column of the activations (reserved: {}; no commas); list other node outputs in model.onnx_layers",
                RESERVED.join(", ")
            );
        }
        if !outlets.contains(&outlet) {
            outlets.push(outlet);
            layers.push(name.clone());
        }
    }
    Ok((outlets, layers))
}

/// A classifier: a 2-D float output, one column per class of the data; every recorded layer
/// float with a batch axis and a fixed size per sample. The classes and the recorded layers'
/// names and ranks.
fn check_outputs(
    plan: &TypedRunnableModel,
    layers: Vec<String>,
    meta: &DatasetMeta,
    out_name: &str,
    path: &Path,
) -> Result<(usize, Vec<(String, usize)>)> {
    let shown = path.display();
    let fact = plan.model().output_fact(0)?.clone();
    let dims = fact.shape.dims();
    let classes = match dims {
        [_, c] if fact.datum_type == f32::datum_type() => concrete(c),
        _ => None,
    }
    .ok_or_else(|| {
        anyhow!(
            "{shown}: not a classifier: its output {out_name:?} is {fact:?}; mode needs a 2-D float output (batch × classes)"
        )
    })?;
    if classes != meta.classes {
        bail!(
            "{shown}: the model's output {out_name:?} has {classes} values per sample but the data have {} classes",
            meta.classes
        );
    }
    let mut recorded = Vec::new();
    for (i, name) in layers.into_iter().enumerate() {
        let f = plan.model().output_fact(i + 1)?;
        if f.datum_type != f32::datum_type() || f.shape.rank() < 2 {
            bail!(
                "{shown}: node output {name:?} is {f:?}; a recorded layer must be float with a batch axis"
            );
        }
        if f.shape.dims()[1..].iter().any(|d| concrete(d).is_none()) {
            bail!("{shown}: node output {name:?} is {f:?}: its size per sample is not fixed");
        }
        recorded.push((name, f.shape.rank()));
    }
    Ok((classes, recorded))
}

/// The concrete size of a typed dimension, if it is one.
fn concrete(d: &TDim) -> Option<usize> {
    d.as_i64().and_then(|v| usize::try_from(v).ok())
}

impl OnnxNet {
    /// Load `path` for samples described by `meta`, with the pipeline's `model.input`,
    /// `model.onnx_layers`, normalisation and `probe.conv`. Every check that can be made
    /// before running is made here: the input shape against the data, the node names, a 2-D
    /// float output with one column per class.
    pub fn load(path: &Path, p: &Pipeline, meta: &DatasetMeta) -> Result<OnnxNet> {
        let shown = path.display();
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_path(path)
            .map_err(|e| anyhow!("{shown}: cannot read it as an ONNX model: {e}"))?;
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| anyhow!("{shown}: the ONNX file holds no graph"))?;
        let dir = path.parent().and_then(|d| d.to_str());
        let parsed = onnx
            .parse(&proto, dir)
            .map_err(|e| anyhow!("{shown}: tract cannot import the model: {e}"))?;
        if !parsed.unresolved_inputs.is_empty() {
            bail!(
                "{shown}: the graph refers to tensors it does not define: {:?}",
                parsed.unresolved_inputs
            );
        }
        let mut model = parsed.model;
        let op_of: HashMap<&str, &str> = graph
            .node
            .iter()
            .flat_map(|n| {
                n.output
                    .iter()
                    .map(move |o| (o.as_str(), n.op_type.as_str()))
            })
            .collect();
        let out_name = output_name(graph, path)?;

        // The input: one tensor, of the layout the pipeline declares.
        let (input, sample, batch) = fix_input(&mut model, p, meta, path)?;

        // The outputs: the model's own first, then the recorded layers.
        let out = model
            .find_outlet_label(&out_name)
            .or_else(|| model.output_outlets().ok().and_then(|o| o.first().copied()))
            .ok_or_else(|| anyhow!("{shown}: cannot find the model's output {out_name:?}"))?;
        let (outlets, layers) = recorded_outlets(&model, graph, p, &out_name, out, path)?;
        model.select_output_outlets(&outlets)?;
        let typed = model.into_optimized().map_err(|e| {
            anyhow!(
                "{shown}: tract cannot prepare the model for inputs of {}: {e}",
                show(&sample)
            )
        })?;
        let plan = typed.into_runnable()?;

        // A classifier: a 2-D float output, one column per class of the data.
        let (classes, recorded) = check_outputs(&plan, layers, meta, &out_name, path)?;
        let applies_softmax = op_of.get(out_name.as_str()) != Some(&"Softmax");
        Ok(OnnxNet {
            plan,
            layers: recorded,
            classes,
            applies_softmax,
            input,
            sample,
            batch,
            conv: p.probe.conv,
            meta: meta.clone(),
            norm: normalisation(p, meta.channels)?,
        })
    }

    /// Whether the model's probabilities are its own (it ends in a Softmax).
    pub fn ends_in_softmax(&self) -> bool {
        !self.applies_softmax
    }

    /// Run one chunk of rows: the recorded layers, then the probabilities.
    fn run_chunk(&self, x: ArrayView2<f32>) -> Result<Vec<Array2<f32>>> {
        let n = x.nrows();
        let rows = self.batch.unwrap_or(n).max(n);
        let per: usize = self.sample.iter().product();
        let mut data = vec![0f32; rows * per];
        let plane = self.meta.height * self.meta.width;
        for (r, row) in x.rows().into_iter().enumerate() {
            let dst = &mut data[r * per..(r + 1) * per];
            for (j, (d, &v)) in dst.iter_mut().zip(row).enumerate() {
                *d = match self.norm.get(j / plane.max(1)) {
                    Some(&(m, s)) => (v - m) / s,
                    None => v,
                };
            }
        }
        let mut shape = vec![rows];
        shape.extend(&self.sample);
        let outs = self
            .plan
            .run(tvec!(Tensor::from_shape(&shape, &data)?.into()))?;
        let mut result = Vec::with_capacity(self.layers.len() + 1);
        for ((name, _), t) in self.layers.iter().zip(outs.iter().skip(1)) {
            result.push(self.reduce(name, t, n)?);
        }
        let mut probs = self.reduce(OUTPUT, &outs[0], n)?;
        if self.applies_softmax {
            crate::numeric::softmax_rows(&mut probs);
        }
        result.push(probs);
        Ok(result)
    }

    /// A tensor of the first `n` rows as a matrix: 4-D maps per `probe.conv` (per-channel
    /// means or flat), anything else flat per sample.
    fn reduce(&self, name: &str, t: &TValue, n: usize) -> Result<Array2<f32>> {
        let shape = t.shape();
        let v: &[f32] = t
            .try_as_plain_ram()?
            .as_slice::<f32>()
            .with_context(|| format!("node output {name:?} is not float"))?;
        let per: usize = shape[1..].iter().product();
        let v = &v[..n * per];
        if shape.len() == 4 && self.conv == ConvProbe::Mean {
            let (c, hw) = (shape[1], shape[2] * shape[3]);
            let means = crate::numeric::channel_means(v, hw);
            return Ok(Array2::from_shape_vec((n, c), means)?);
        }
        Ok(Array2::from_shape_vec((n, per), v.to_vec())?)
    }
}

/// The per-channel (mean, std) of `model.input_mean` / `model.input_std`.
fn normalisation(p: &Pipeline, channels: usize) -> Result<Vec<(f32, f32)>> {
    let (mean, std) = (&p.model.input_mean, &p.model.input_std);
    if mean.is_empty() && std.is_empty() {
        return Ok(Vec::new());
    }
    let pick = |v: &[f64], key: &str, default: f64, c: usize| -> Result<f32> {
        Ok(match v.len() {
            0 => default,
            1 => v[0],
            n if n == channels => v[c],
            n => bail!("{key} has {n} values but the data have {channels} channels"),
        } as f32)
    };
    (0..channels)
        .map(|c| {
            Ok((
                pick(mean, "model.input_mean", 0.0, c)?,
                pick(std, "model.input_std", 1.0, c)?,
            ))
        })
        .collect()
}

impl Classifier for OnnxNet {
    fn layer_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.layers.iter().map(|(n, _)| n.clone()).collect();
        v.push(OUTPUT.into());
        v
    }

    fn activations(&self, x: &Array2<f32>) -> Result<Vec<Array2<f32>>> {
        if x.ncols() != self.meta.features() {
            bail!(
                "the samples have {} values but the model takes {}",
                x.ncols(),
                self.meta.features()
            );
        }
        let chunk = self.batch.unwrap_or(CHUNK);
        let parts: Vec<Vec<Array2<f32>>> = x
            .axis_chunks_iter(Axis(0), chunk)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|c| self.run_chunk(c))
            .collect::<Result<_>>()?;
        let names = self.layer_names();
        let widths: Vec<usize> = match parts.first() {
            Some(p) => p.iter().map(|a| a.ncols()).collect(),
            None => self.widths()?,
        };
        (0..names.len())
            .map(|i| {
                let views: Vec<_> = parts.iter().map(|p| p[i].view()).collect();
                let a = if views.is_empty() {
                    Array2::zeros((0, widths[i]))
                } else {
                    ndarray::concatenate(Axis(0), &views)?
                };
                if let Some(k) = crate::numeric::first_non_finite(&a) {
                    bail!(
                        "the model's node output {:?} gives a non-finite value (row {})",
                        names[i],
                        k / a.ncols().max(1)
                    );
                }
                Ok(a)
            })
            .collect()
    }

    fn info(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(
            OUTPUT_KEY.to_string(),
            if self.applies_softmax {
                SOFTMAX_APPLIED
            } else {
                MODEL_PROBABILITIES
            }
            .to_string(),
        );
        m.insert(INPUT_KEY.to_string(), self.input.to_string());
        if self.layers.iter().any(|(_, rank)| *rank == 4) {
            m.insert("mode.probe.conv".to_string(), self.conv.to_string());
        }
        m
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn check_data(&self, meta: &DatasetMeta, data: &Path) -> Result<()> {
        let m = &self.meta;
        if (meta.channels, meta.height, meta.width, meta.classes)
            != (m.channels, m.height, m.width, m.classes)
        {
            return Err(super::ModelError::OnnxDataShape {
                path: data.to_path_buf(),
                data: meta.into(),
                model: m.into(),
            }
            .into());
        }
        Ok(())
    }
}

impl OnnxNet {
    /// The columns' widths, from the plan's facts (for an empty sample set).
    fn widths(&self) -> Result<Vec<usize>> {
        let mut v = Vec::new();
        for i in 0..=self.layers.len() {
            let ix = if i == self.layers.len() { 0 } else { i + 1 };
            let f = self.plan.model().output_fact(ix)?;
            let dims: Vec<usize> = f.shape.dims()[1..]
                .iter()
                .map(|d| concrete(d).unwrap_or(0))
                .collect();
            v.push(if dims.len() == 3 && self.conv == ConvProbe::Mean {
                dims[0]
            } else {
                dims.iter().product()
            });
        }
        Ok(v)
    }
}
