//! The probe step: a model's activations at every layer, per split.

use super::{Step, Store};
use crate::analysis::layers::predictions;
use crate::artifacts::{Activations, Samples};
use crate::model::{Classifier, Net};
use anyhow::Result;

/// Metadata key of an activations file: the model it came from.
pub const MODEL_KEY: &str = "mode.model";

/// Activations of every recorded layer of `net` on `samples`; `model` names the model file in
/// the metadata.
pub fn probe_samples(
    net: &(impl Classifier + ?Sized),
    samples: &Samples,
    model: &str,
) -> Result<Activations> {
    let outs = net.activations(&samples.pixels)?;
    let probs = outs.last().expect("the output layer");
    let predicted = predictions(probs.view());
    let mut info = net.info();
    info.insert(MODEL_KEY.to_string(), model.to_string());
    Ok(Activations {
        ids: samples.ids.clone(),
        labels: samples.labels.clone(),
        predicted,
        layers: net.layer_names().into_iter().zip(outs).collect(),
        info,
    })
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
    let model = s.prev.model();
    let net = store.get::<Net>(&model)?;
    net.check_pipeline(&s.p, &model)?;
    let net = (*net).clone().with_probe(&s.p);
    run_with(store, s, &net, &s.layout.relative(&model))
}
