//! The probe step: a model's activations at every layer, per split.

use super::{Step, Store};
use crate::analysis::layers::predictions;
use crate::artifacts::{Activations, Samples, Split};
use crate::model::{Classifier, Net};
use anyhow::Result;
use std::sync::Arc;

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
