//! `mode heatmap`: per-label heat maps and the diagnosis of one iteration of an arm.

use super::{At, Ctx};
use anyhow::Result;

/// What `mode heatmap` found.
pub struct HeatmapReport {
    pub maps: usize,
    pub layer: String,
    pub faulty: Vec<(u16, bool)>,
}

impl std::fmt::Display for HeatmapReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let faulty: Vec<String> = self
            .faulty
            .iter()
            .map(|(l, worst)| format!("{l}{}", if *worst { "*" } else { "" }))
            .collect();
        write!(
            f,
            "heatmap: {} maps at layer {}; faulty labels [{}] (* = faultiest)",
            self.maps,
            self.layer,
            faulty.join(", ")
        )
    }
}

pub fn run(ctx: &Ctx, at: At) -> Result<HeatmapReport> {
    let (store, s) = ctx.step(at, super::Stage::Later)?;
    let a = crate::engine::heatmap::run(&store, &s)?;
    Ok(HeatmapReport {
        maps: a.maps.rows.len(),
        layer: a.layer,
        faulty: a
            .diagnosis
            .iter()
            .filter(|d| d.underfit || d.overfit)
            .map(|d| (d.label, d.faultiest))
            .collect(),
    })
}
