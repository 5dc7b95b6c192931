//! The probe step: a model's activations at every layer, per split.

use super::{Step, Store};
use crate::analysis::layers::predictions;
use crate::artifacts::keys::MODEL_KEY;
use crate::artifacts::{Activations, Samples, Split};
use crate::model::{Classifier, Net};
use anyhow::Result;
use rayon::prelude::*;
use std::sync::Arc;

/// Activations of every recorded layer of `net` on `samples`; `model` names the model file in
/// the metadata.
pub fn probe_samples(
    net: &(impl Classifier + ?Sized),
    samples: &Samples,
    model: &str,
) -> Result<Activations> {
    let outs = net.activations(&samples.pixels)?;
    Ok(activations_of(net, samples, model, outs))
}

/// The activations file of `net`'s layer outputs `outs` on `samples`.
fn activations_of(
    net: &(impl Classifier + ?Sized),
    samples: &Samples,
    model: &str,
    outs: Vec<ndarray::Array2<f32>>,
) -> Activations {
    let probs = outs.last().expect("the output layer");
    let predicted = predictions(probs.view());
    let mut info = net.info();
    info.insert(MODEL_KEY.to_string(), model.to_string());
    Activations {
        ids: samples.ids.clone(),
        labels: samples.labels.clone(),
        predicted,
        layers: net.layer_names().into_iter().zip(outs).collect(),
        info,
    }
}

/// Probe `net` on the step's splits (an ONNX model given for the step, `mode debug`).
pub fn run_with(
    store: &Store,
    s: &Step,
    net: &(impl Classifier + ?Sized),
    model: &str,
) -> Result<()> {
    for split in s.probe_splits() {
        let path = s.layout.split(split);
        let samples = store.get::<Samples>(&path)?;
        net.check_data(&samples.meta, &path)?;
        let acts = probe_samples(net, &samples, model)?;
        store.put(&s.dir.activations(split.as_str()), acts)?;
    }
    Ok(())
}

/// Probe the previous model on the step's splits.
pub fn run(store: &Store, s: &Step) -> Result<()> {
    run_fleet(store, &[s])
}

/// Probe each step's previous model on its splits, as fleets: the models of one architecture
/// that look at the same split are probed together (one pass over the split's rows, the first
/// layer's product shared).
pub fn run_fleet(store: &Store, steps: &[&Step]) -> Result<()> {
    let nets: Vec<Arc<Net>> = steps
        .iter()
        .map(|s| {
            let model = s.prev.model();
            let net = store.get::<Net>(&model)?;
            net.check_pipeline(&s.p, &model)?;
            Ok(Arc::new((*net).clone().with_probe(&s.p)))
        })
        .collect::<Result<_>>()?;
    let mut splits: Vec<Split> = steps.iter().flat_map(|s| s.probe_splits()).collect();
    splits.sort();
    splits.dedup();
    for split in splits {
        let path = steps[0].layout.split(split);
        let samples = store.get::<Samples>(&path)?;
        // The steps that probe this split, by architecture and probe setting.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            if !s.probe_splits().contains(&split) {
                continue;
            }
            nets[i].check_data(&samples.meta, &path)?;
            match groups.iter_mut().find(|g| {
                let n = &nets[g[0]];
                n.arch == nets[i].arch && n.conv_probe == nets[i].conv_probe
            }) {
                Some(g) => g.push(i),
                None => groups.push(vec![i]),
            }
        }
        for g in groups {
            let t0 = std::time::Instant::now();
            let outs = fleet_outputs(store, steps, &nets, &g, split, &samples)?;
            if std::env::var_os("MODE_PROFILE").is_some() {
                eprintln!(
                    "profile:   probe {split} × {} models: {:.3} s",
                    g.len(),
                    t0.elapsed().as_secs_f64()
                );
            }
            // Written in parallel: encoding a file is the larger part of a probe.
            g.par_iter()
                .zip(outs.into_par_iter())
                .map(|(&i, out)| {
                    let s = steps[i];
                    let model = s.layout.relative(&s.prev.model());
                    let acts = activations_of(&*nets[i], &samples, &model, out);
                    store
                        .put(&s.dir.activations(split.as_str()), acts)
                        .map(|_| ())
                })
                .collect::<Result<Vec<()>>>()?;
        }
    }
    Ok(())
}

/// Every layer's outputs of the `g` models on `split`: what the evaluation of a model kept
/// for its next probe (the same kernel on the same rows: the same values), the rest probed
/// as one fleet.
fn fleet_outputs(
    store: &Store,
    steps: &[&Step],
    nets: &[Arc<Net>],
    g: &[usize],
    split: Split,
    samples: &Samples,
) -> Result<Vec<Vec<ndarray::Array2<f32>>>> {
    let mut kept: Vec<Option<Vec<ndarray::Array2<f32>>>> = g
        .iter()
        .map(|&i| {
            store
                .take::<Vec<ndarray::Array2<f32>>>(&kept_path(&steps[i].prev.model(), split))
                .map(|a| Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()))
        })
        .collect();
    let missing: Vec<&Net> = g
        .iter()
        .zip(&kept)
        .filter(|(_, k)| k.is_none())
        .map(|(&i, _)| &*nets[i])
        .collect();
    let mut probed = if missing.is_empty() {
        Vec::new()
    } else {
        crate::model::activations_fleet(&missing, &samples.pixels)?
    }
    .into_iter();
    Ok(kept
        .iter_mut()
        .map(|k| {
            k.take()
                .unwrap_or_else(|| probed.next().expect("one output per missing model"))
        })
        .collect())
}

/// Where the outputs of `model` on `split` are kept in memory for its probe.
fn kept_path(model: &std::path::Path, split: Split) -> std::path::PathBuf {
    model.with_file_name(format!(".outputs-{}", split.as_str()))
}

/// Keep the layer outputs of step `s`'s new model on `split` for the probe of its next
/// iteration (in memory; only when that iteration will probe it).
pub fn keep_outputs(store: &Store, s: &Step, split: Split, outs: Vec<ndarray::Array2<f32>>) {
    if s.analyses() && s.k < s.p.mode.max_iter as u32 && s.probe_splits().contains(&split) {
        store.keep(&kept_path(&s.dir.model(), split), Arc::new(outs));
    }
}

/// The step's activations of `split`. Activations this process did not probe (a user's own
/// files, or an earlier stage's) are checked first: against the split they describe (rows,
/// labels, probabilities, predictions) and, for other splits, against the train activations'
/// layers — so a file of another shape is a clear error, never a panic or a wrong table.
pub fn activations(store: &Store, s: &Step, split: Split) -> Result<Arc<Activations>> {
    let path = s.dir.activations(split.as_str());
    let a = store.get::<Activations>(&path)?;
    if !store.made_here(&path) {
        let split_path = s.layout.split(split);
        let samples = store.get::<Samples>(&split_path)?;
        a.check_split(&path, &samples, &split_path, split.as_str())?;
        if split != Split::Train {
            let train = s.dir.activations(Split::Train.as_str());
            a.check_layers(&path, &*activations(store, s, Split::Train)?, &train)?;
        }
    }
    Ok(a)
}
