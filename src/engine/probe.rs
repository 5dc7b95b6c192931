//! The probe step: a model's activations at every layer, per split.

use super::{Step, Store};
use crate::analysis::layers::predictions;
use crate::artifacts::{Activations, Samples};
use crate::model::Net;
use anyhow::Result;
use std::collections::BTreeMap;

/// Metadata keys of an activations file.
pub const MODEL_KEY: &str = "mode.model";
pub const ARCHITECTURE_KEY: &str = "mode.architecture";

/// Activations of every layer of `net` on `samples`; `model` names the model file in the
/// metadata.
pub fn probe_samples(net: &Net, samples: &Samples, model: &str) -> Result<Activations> {
    let outs = net.activations(&samples.pixels)?;
    let probs = outs.last().expect("the output layer");
    let predicted = predictions(probs.view());
    let mut info = BTreeMap::new();
    info.insert(MODEL_KEY.to_string(), model.to_string());
    info.insert(ARCHITECTURE_KEY.to_string(), net.arch.to_json());
    info.extend(net.probe_info());
    Ok(Activations {
        ids: samples.ids.clone(),
        labels: samples.labels.clone(),
        predicted,
        layers: net.arch.layer_names().into_iter().zip(outs).collect(),
        info,
    })
}

/// Probe the previous model on the step's splits.
pub fn run(store: &Store, s: &Step) -> Result<()> {
    let model = s.prev.model();
    let net = store.get::<Net>(&model)?;
    net.check_pipeline(&s.p, &model)?;
    let net = (*net).clone().with_probe(&s.p);
    for split in s.probe_splits() {
        let samples = store.get::<Samples>(&s.layout.split(split))?;
        net.check_data(&samples.meta, &s.layout.split(split))?;
        let acts = probe_samples(&net, &samples, &s.layout.relative(&model))?;
        store.put(&s.dir.activations(split.as_str()), acts)?;
    }
    Ok(())
}
