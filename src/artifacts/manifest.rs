//! Run manifests: what produced a run folder (a fingerprint of the effective settings), how
//! far it got and how it ended. Readers (`summary`, `sweep`, `report`) refuse or flag runs that
//! are incomplete or were produced by other settings.

use super::Artifact;
use super::io::write_bytes;
use crate::vocab::{IterStatus, RunStatus};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A file of a complete iteration as the manifest recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSum {
    pub bytes: u64,
    /// CRC-32 (IEEE) of the contents, 8 hex digits.
    pub crc32: String,
}

/// Every file of an iteration folder (paths relative to it, `/`-separated) → its record.
pub type IterFiles = BTreeMap<String, FileSum>;

/// How closely [`verify_dir`] looks: sizes only (cheap), or the contents too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    Sizes,
    Contents,
}

fn crc_of(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:08x}", h.finalize()))
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = e?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The record of one file: its size and CRC-32.
pub fn sum_file(path: &Path) -> Result<FileSum> {
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    Ok(FileSum {
        bytes,
        crc32: crc_of(path)?,
    })
}

/// The records of every file under `dir` (an iteration folder just completed).
pub fn sum_dir(dir: &Path) -> Result<IterFiles> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let mut out = IterFiles::new();
    for f in files {
        out.insert(relative(dir, &f), sum_file(&f)?);
    }
    Ok(out)
}

/// The first way `dir` differs from what was recorded (a file missing, of another size or,
/// with [`Verify::Contents`], other contents), if any.
pub fn verify_dir(dir: &Path, want: &IterFiles, how: Verify) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("{} is missing", dir.display()));
    }
    for (name, sum) in want {
        let path = dir.join(name);
        let Ok(meta) = std::fs::metadata(&path) else {
            return Err(format!("{} is missing", path.display()));
        };
        if meta.len() != sum.bytes {
            return Err(format!(
                "{} has {} bytes where {} were written",
                path.display(),
                meta.len(),
                sum.bytes
            ));
        }
        if how == Verify::Contents {
            match crc_of(&path) {
                Ok(c) if c == sum.crc32 => {}
                Ok(_) => {
                    return Err(format!(
                        "{} was changed since it was written",
                        path.display()
                    ));
                }
                Err(e) => return Err(format!("{e:#}")),
            }
        }
    }
    Ok(())
}

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
    /// Each complete iteration's files with their sizes and checksums (arm runs): a resume
    /// verifies them, and redoes an iteration whose files were removed or changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<IterFiles>,
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
            files: Vec::new(),
        }
    }

    /// [`Manifest::complete`], recording the iteration's files.
    pub fn complete_with(&mut self, k: u32, status: IterStatus, files: IterFiles) {
        self.complete(k, status);
        self.files.truncate(k.saturating_sub(1) as usize);
        self.files.push(files);
    }

    /// Forget iterations after `k` (they are to be made again).
    pub fn truncate(&mut self, k: u32) {
        if self.completed > k {
            self.completed = k;
            self.iterations.truncate(k as usize);
            self.files.truncate(k as usize);
            self.status = RunStatus::Interrupted;
        }
    }

    /// The first complete iteration whose folder (`dir_of(k)`) differs from its record, with
    /// what differs. Iterations recorded without files (older manifests) are checked to exist.
    pub fn first_broken(
        &self,
        dir_of: impl Fn(u32) -> std::path::PathBuf,
        how: Verify,
    ) -> Option<(u32, String)> {
        (1..=self.completed).find_map(|k| {
            let dir = dir_of(k);
            let r = match self.files.get(k as usize - 1) {
                Some(files) => verify_dir(&dir, files, how),
                None if dir.is_dir() => Ok(()),
                None => Err(format!("{} is missing", dir.display())),
            };
            r.err().map(|e| (k, e))
        })
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
        serde_json::from_str(&text).map_err(|source| {
            super::ArtifactError::BrokenManifest {
                path: path.to_path_buf(),
                source,
            }
            .into()
        })
    }
}

/// The grid of a sharded sweep or ablation: every part of one run records the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// `sweep` or `ablation`.
    pub kind: String,
    /// Fingerprint of the pipeline's effective settings (`Pipeline::fingerprint`).
    pub pipeline: String,
    /// Fingerprint of the settings of the splits and the initial model.
    pub initial: String,
    /// The master seed of seed 0 (seed i uses `first_seed + i`).
    pub first_seed: u64,
    pub seeds: usize,
    pub arms: Vec<String>,
    /// The settings' labels (a sweep: `["base"]`).
    pub settings: Vec<String>,
}

/// One (setting, seed) cell of a grid: seed index (master seed `first_seed + seed`) and the
/// setting's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub seed: usize,
    pub setting: usize,
}

/// Which shard a part is: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardOf {
    pub index: usize,
    pub count: usize,
}

/// `parts/<kind>-<i>-of-<n>.<host>-<pid>.json`, written after its part: what grid and shard
/// the part belongs to, the units it holds, and the part file's size and checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartManifest {
    pub grid: Grid,
    /// Fingerprint of `grid`.
    pub fingerprint: String,
    pub shard: ShardOf,
    /// The units it holds, in order.
    pub units: Vec<Unit>,
    /// Their master seeds (for people).
    pub seeds: Vec<u64>,
    /// The `mode` version that made it, and its binary's size and CRC-32 (every shard of a
    /// grid must run the same binary).
    pub version: String,
    pub binary: FileSum,
    /// The part file (a name in the same folder), its rows, size and CRC-32.
    pub file: String,
    pub rows: usize,
    pub sum: FileSum,
}

impl Artifact for PartManifest {
    fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        write_bytes(path, text.as_bytes())
    }

    fn read(path: &Path) -> Result<PartManifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a part manifest (remove it and its part, and run that shard again)",
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
        m.truncate(1);
        assert_eq!((m.completed, m.iterations.len()), (1, 1));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("manifest.json");
        m.write(&p).unwrap();
        assert_eq!(Manifest::read(&p).unwrap(), m);
    }
}

#[cfg(test)]
mod verify_tests {
    use super::*;

    #[test]
    fn a_changed_or_missing_file_is_found() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("iter-1");
        std::fs::create_dir_all(dir.join("heads")).unwrap();
        std::fs::write(dir.join("model.safetensors"), b"weights").unwrap();
        std::fs::write(dir.join("heads/dense_1.parquet"), b"head").unwrap();
        let sums = sum_dir(&dir).unwrap();
        assert_eq!(
            sums.keys().collect::<Vec<_>>(),
            ["heads/dense_1.parquet", "model.safetensors"]
        );
        assert_eq!(sums["model.safetensors"].bytes, 7);
        assert_eq!(verify_dir(&dir, &sums, Verify::Contents), Ok(()));
        std::fs::write(dir.join("model.safetensors"), b"weighTs").unwrap();
        assert_eq!(verify_dir(&dir, &sums, Verify::Sizes), Ok(()), "same size");
        let e = verify_dir(&dir, &sums, Verify::Contents).unwrap_err();
        assert!(
            e.ends_with("model.safetensors was changed since it was written"),
            "{e}"
        );
        std::fs::write(dir.join("model.safetensors"), b"w").unwrap();
        let e = verify_dir(&dir, &sums, Verify::Sizes).unwrap_err();
        assert!(e.ends_with("has 1 bytes where 7 were written"), "{e}");
        std::fs::remove_file(dir.join("heads/dense_1.parquet")).unwrap();
        let e = verify_dir(&dir, &sums, Verify::Sizes).unwrap_err();
        assert!(e.ends_with("heads/dense_1.parquet is missing"), "{e}");
        let mut m = Manifest::new("a", "s", "i", 2);
        m.complete_with(1, IterStatus::Ran, sums);
        let broken = m.first_broken(|k| t.path().join(format!("iter-{k}")), Verify::Sizes);
        assert_eq!(broken.map(|(k, _)| k), Some(1));
    }
}
