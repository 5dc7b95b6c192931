//! `mode evaluate`: a model (`mode`'s or an ONNX classifier) on a split → `metrics.parquet` (long format) and
//! `predictions.parquet`; for an arm's iteration, also the arm's manifest.

use super::{At, Ctx};
use crate::artifacts::{Artifact, IterDir, MetricRow, Samples};
use crate::engine::train::{self, EvalTag, evaluate_model, evaluate_with};
use crate::engine::{Store, runs};
use crate::model::OnnxNet;
use crate::vocab::IterStatus;
use anyhow::Result;
use std::path::PathBuf;

pub enum EvaluateArgs {
    /// Any model on any split, recorded as `arm` / `iteration` (the initial model: `initial`, 0).
    Model {
        model: PathBuf,
        data: PathBuf,
        out: IterDir,
        arm: String,
        iteration: u32,
    },
    /// The model of an arm's iteration on the test split.
    Step(At),
    /// An ONNX classifier on any split, recorded under its file stem, iteration 0.
    Onnx {
        model: PathBuf,
        data: PathBuf,
        out: IterDir,
    },
}

pub struct EvaluateReport {
    pub rows: Vec<MetricRow>,
    pub out: PathBuf,
}

impl std::fmt::Display for EvaluateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.rows[0];
        write!(
            f,
            "evaluate: {} iteration {}: accuracy {:.4} on {} samples ({}) → {}",
            r.arm,
            r.iteration,
            r.accuracy,
            r.n,
            r.status,
            self.out.display()
        )
    }
}

pub fn run(ctx: &Ctx, a: &EvaluateArgs) -> Result<EvaluateReport> {
    match a {
        EvaluateArgs::Model {
            model,
            data,
            out,
            arm,
            iteration,
        } => {
            let store = Store::files(ctx.layout.clone());
            let tag = EvalTag {
                arm: arm.clone(),
                iteration: *iteration,
                status: IterStatus::Ran,
            };
            let rows = evaluate_model(&store, &ctx.pipeline, model, data, out, &tag)?;
            Ok(EvaluateReport {
                rows,
                out: out.path().to_path_buf(),
            })
        }
        EvaluateArgs::Onnx { model, data, out } => {
            let store = Store::files(ctx.layout.clone());
            let samples = Samples::read(data)?;
            let net = OnnxNet::load(model, &ctx.pipeline, &samples.meta)?;
            let tag = EvalTag {
                arm: model
                    .file_stem()
                    .map_or_else(|| "onnx".into(), |s| s.to_string_lossy().to_string()),
                iteration: 0,
                status: IterStatus::Ran,
            };
            let rows = evaluate_with(&store, &ctx.pipeline, &net, (&samples, data), out, &tag)?;
            Ok(EvaluateReport {
                rows,
                out: out.path().to_path_buf(),
            })
        }
        EvaluateArgs::Step(at) => {
            let (store, s) = ctx.step(*at, super::Stage::Later)?;
            let status = train::iteration_status(&store, &s)?;
            let rows = train::evaluate(&store, &s)?;
            runs::record(&store, &s, status)?;
            Ok(EvaluateReport {
                rows,
                out: s.dir.path().to_path_buf(),
            })
        }
    }
}
