//! `mode probe`: a model's activations at every layer → `activations/<split>.parquet`; the
//! model is an arm's, any `mode` model file, or an ONNX classifier.

use super::{At, Ctx};
use crate::artifacts::{Activations, Artifact, IterDir, Samples};
use crate::engine::probe::probe_samples;
use crate::model::{Classifier, Net, OnnxNet};
use anyhow::Result;
use std::path::{Path, PathBuf};

pub enum ProbeArgs {
    /// The previous model of an arm's iteration, on the splits that iteration needs.
    Step(At),
    /// Any model on any sample files: `<out>/activations/<file stem>.parquet`.
    Model {
        model: PathBuf,
        data: Vec<PathBuf>,
        out: IterDir,
    },
    /// An ONNX classifier on any sample files (`model.input`, `model.onnx_layers`).
    Onnx {
        model: PathBuf,
        data: Vec<PathBuf>,
        out: IterDir,
    },
}

pub struct ProbeReport {
    pub written: Vec<(PathBuf, usize)>,
}

impl std::fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .written
            .iter()
            .map(|(p, n)| format!("{n} rows → {}", p.display()))
            .collect();
        write!(f, "probe: {}", parts.join("; "))
    }
}

pub fn run(ctx: &Ctx, a: &ProbeArgs) -> Result<ProbeReport> {
    let mut written = Vec::new();
    match a {
        ProbeArgs::Step(at) => {
            let (store, s) = ctx.step(*at, super::Stage::First)?;
            crate::engine::probe::run(&store, &s)?;
            for split in s.probe_splits() {
                let path = s.dir.activations(split.as_str());
                let n = store.get::<crate::artifacts::Activations>(&path)?.len();
                written.push((path, n));
            }
        }
        ProbeArgs::Model { model, data, out } => {
            let net = Net::read(model)?.with_probe(&ctx.pipeline);
            written = probe_files(&net, model, data, out)?;
        }
        ProbeArgs::Onnx { model, data, out } => {
            let first = data
                .first()
                .ok_or_else(|| anyhow::anyhow!("probe: no sample files given"))?;
            let meta = Samples::read(first)?.meta;
            let net = OnnxNet::load(model, &ctx.pipeline, &meta)?;
            written = probe_files(&net, model, data, out)?;
        }
    }
    Ok(ProbeReport { written })
}

/// Probe `net` on every file, then write `<out>/activations/<file stem>.parquet` for each (so
/// a failure on any file writes none).
fn probe_files(
    net: &(impl Classifier + ?Sized),
    model: &Path,
    data: &[PathBuf],
    out: &IterDir,
) -> Result<Vec<(PathBuf, usize)>> {
    let bar = crate::progress::bar(data.len() as u64, "probe");
    let mut done = Vec::new();
    for d in data {
        let samples = Samples::read(d)?;
        net.check_data(&samples.meta, d)?;
        let acts = probe_samples(net, &samples, &model.display().to_string())?;
        let stem = d
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "data".into());
        let path = out.activations(&stem);
        if done
            .iter()
            .any(|(p, _): &(PathBuf, Activations)| *p == path)
        {
            anyhow::bail!(
                "probe: two sample files named {stem:?} would write the same {}",
                path.display()
            );
        }
        done.push((path, acts));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut written = Vec::new();
    for (path, acts) in done {
        acts.write(&path)?;
        written.push((path, acts.len()));
    }
    Ok(written)
}
