//! `mode retrain`: continue training the previous model on the selected batch.

use super::{At, Ctx};
use anyhow::Result;

/// What `mode retrain` did.
pub struct RetrainReport {
    pub samples: usize,
    pub out: std::path::PathBuf,
}

impl std::fmt::Display for RetrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "retrain: {} samples → {}",
            self.samples,
            self.out.display()
        )
    }
}

pub fn run(ctx: &Ctx, at: At) -> Result<RetrainReport> {
    let (store, s) = ctx.step(at, super::Stage::Later)?;
    let r = crate::engine::train::retrain(&store, &s)?;
    Ok(RetrainReport {
        samples: r.samples,
        out: s.dir.path().to_path_buf(),
    })
}
