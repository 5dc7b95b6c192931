//! Run manifests: what produced a run folder (a fingerprint of the effective settings), how
//! far it got and how it ended. Readers (`summary`, `sweep`, `report`) refuse or flag runs that
//! are incomplete or were produced by other settings.

use super::Artifact;
use super::io::write_bytes;
use crate::vocab::{IterStatus, RunStatus};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `runs/<arm>/manifest.json` (and `sweep_manifest.json`, `ablation_manifest.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The arm (or `sweep`, `ablation`).
    pub name: String,
    /// Fingerprint of the effective settings that produced the run (`Pipeline::fingerprint`).
    pub settings: String,
    /// Fingerprint of the settings of the splits and the initial model it started from.
    pub initial: String,
    /// Iterations (or seeds) asked for.
    pub planned: u32,
    /// Iterations (or seeds) complete, in order.
    pub completed: u32,
    pub status: RunStatus,
    /// Each complete iteration's status.
    #[serde(default)]
    pub iterations: Vec<IterStatus>,
}

impl Manifest {
    pub fn new(name: &str, settings: &str, initial: &str, planned: u32) -> Manifest {
        Manifest {
            name: name.into(),
            settings: settings.into(),
            initial: initial.into(),
            planned,
            completed: 0,
            status: RunStatus::Interrupted,
            iterations: Vec::new(),
        }
    }

    /// Record iteration `k` (1-based) as complete with `status`; later records are dropped.
    pub fn complete(&mut self, k: u32, status: IterStatus) {
        self.iterations.truncate(k.saturating_sub(1) as usize);
        self.iterations.push(status);
        self.completed = k;
        self.status = if k < self.planned {
            RunStatus::Interrupted
        } else if self.iterations.contains(&IterStatus::PoolExhausted) {
            RunStatus::PoolExhausted
        } else if self.iterations.contains(&IterStatus::FinishedEarly) {
            RunStatus::FinishedEarly
        } else {
            RunStatus::Complete
        };
    }

    pub fn is_final(&self) -> bool {
        self.status != RunStatus::Interrupted && self.completed == self.planned
    }
}

impl Artifact for Manifest {
    fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        write_bytes(path, text.as_bytes())
    }

    fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a run manifest (delete the run folder and run again)",
                path.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_iterations() {
        let mut m = Manifest::new("mode-dot", "a", "b", 3);
        assert!(!m.is_final());
        m.complete(1, IterStatus::Ran);
        m.complete(2, IterStatus::FinishedEarly);
        assert_eq!(m.status, RunStatus::Interrupted);
        m.complete(3, IterStatus::Ran);
        assert_eq!((m.status, m.completed), (RunStatus::FinishedEarly, 3));
        assert!(m.is_final());
        m.complete(2, IterStatus::Ran);
        assert_eq!((m.iterations.len(), m.status), (2, RunStatus::Interrupted));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("manifest.json");
        m.write(&p).unwrap();
        assert_eq!(Manifest::read(&p).unwrap(), m);
    }
}
