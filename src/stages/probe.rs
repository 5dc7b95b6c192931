//! `mode probe`: model + split(s) → `activations/<split>.parquet` (one column per layer).

use crate::artifacts::{self, Activations, Samples};
use crate::model::{self, Architecture, Mlp};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Activations of every layer of `net` on `samples`.
pub fn probe(net: &Mlp, arch: &Architecture, samples: &Samples) -> Result<Activations> {
    let names = arch.layer_names();
    let outs = if samples.is_empty() {
        arch.layer_widths()
            .iter()
            .map(|&w| ndarray::Array2::zeros((0, w)))
            .collect()
    } else {
        model::activations(net, &samples.pixels)?
    };
    let probs = outs.last().expect("output layer");
    let predicted = crate::analysis::layers::predictions(probs.view());
    Ok(Activations {
        ids: samples.ids.clone(),
        labels: samples.labels.clone(),
        predicted,
        layers: names.into_iter().zip(outs).collect(),
    })
}

/// Probe each of `data` and write `<out_dir>/activations/<file stem>.parquet`.
pub fn run(model_path: &Path, data: &[PathBuf], out_dir: &Path) -> Result<Vec<(PathBuf, usize)>> {
    let (net, arch) = Mlp::load(model_path, &model::device(false))?;
    let mut meta = BTreeMap::new();
    meta.insert("mode.model".to_string(), model_path.display().to_string());
    meta.insert(
        "mode.architecture".to_string(),
        serde_json::to_string(&arch)?,
    );
    let mut written = Vec::new();
    let bar = crate::progress::bar(data.len() as u64, "probe");
    for d in data {
        let samples = Samples::read(d)?;
        let acts = probe(&net, &arch, &samples)?;
        let stem = d
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "data".into());
        let path = artifacts::activations_path(out_dir, &stem);
        acts.write(&path, &meta)?;
        written.push((path, samples.len()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(written)
}
