//! `mode select`: the next retraining batch of one iteration of an arm.

use super::{At, Ctx};
use anyhow::Result;

/// What `mode select` chose.
pub struct SelectReport(pub crate::engine::select::Selection);

impl std::fmt::Display for SelectReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.0;
        write!(
            f,
            "select: label {} ({}), {} candidates; batch {} targeted + {} random; pool left {}",
            s.faulty_label.map_or("-".to_string(), |l| l.to_string()),
            s.action,
            s.candidates,
            s.targeted,
            s.random,
            s.left.len()
        )
    }
}

pub fn run(ctx: &Ctx, at: At) -> Result<SelectReport> {
    // A strategy without a diagnosis starts its iteration here; the others after the heatmap.
    let stage = if at.arm.strategy.needs_diagnosis() {
        super::Stage::Later
    } else {
        super::Stage::First
    };
    let (store, s) = ctx.step(at, stage)?;
    Ok(SelectReport(crate::engine::select::run(&store, &s)?))
}
