//! `mode layers`: target-layer selection with feature models → `layers.parquet`, `heads/`;
//! `--input-only` fits just the input-pixel feature model (`input_head.parquet`).

use super::{At, Ctx};
use crate::artifacts::LayerRow;
use crate::engine::Store;
use anyhow::Result;
use std::path::PathBuf;

pub enum LayersArgs {
    Step(At),
    /// Only the input head, shared by every arm and iteration.
    InputHead,
}

pub enum LayersReport {
    Rows(Vec<LayerRow>),
    InputHead(PathBuf),
}

impl std::fmt::Display for LayersReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayersReport::InputHead(p) => {
                write!(f, "layers: input feature model → {}", p.display())
            }
            LayersReport::Rows(rows) => {
                let fwd: Vec<String> = rows
                    .iter()
                    .filter(|r| r.direction == crate::vocab::Direction::Forward)
                    .map(|r| {
                        format!(
                            "{} {:.4}{}",
                            r.layer,
                            r.probe_accuracy,
                            if r.is_target { "*" } else { "" }
                        )
                    })
                    .collect();
                write!(
                    f,
                    "layers: probe accuracy {} (* = forward target)",
                    fwd.join(", ")
                )
            }
        }
    }
}

pub fn run(ctx: &Ctx, a: &LayersArgs) -> Result<LayersReport> {
    match a {
        LayersArgs::InputHead => {
            let store = Store::files(ctx.layout.clone());
            crate::engine::layers::input_head(&store, &ctx.pipeline)?;
            Ok(LayersReport::InputHead(ctx.layout.input_head()))
        }
        LayersArgs::Step(at) => {
            let (store, s) = ctx.step(*at, super::Stage::Later)?;
            let sel = crate::engine::layers::run(&store, &s)?;
            Ok(LayersReport::Rows(sel.rows))
        }
    }
}
