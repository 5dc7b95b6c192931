//! File mechanics shared by every artifact: atomic writes, opening with a helpful error,
//! sweeping temporary files left by killed runs, and the one-writer lock of an output root.

use anyhow::{Context, Result, anyhow, bail};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name a file is written under before it is renamed to `path`:
/// `.<file name>.tmp-<pid>` in the same folder.
pub fn temp_name(path: &Path) -> Result<PathBuf> {
    let dir = parent(path);
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?;
    Ok(dir.join(format!(
        ".{}{TEMP_MARK}{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

const TEMP_MARK: &str = ".tmp-";

fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Write `path` through `f` on a temporary file in the same folder, then rename it into place:
/// a failed or killed write never leaves a partial artifact under the real name.
pub fn write_atomic<T>(path: &Path, f: impl FnOnce(File) -> Result<T>) -> Result<T> {
    let dir = parent(path);
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))?;
    let tmp = temp_name(path)?;
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    match f(file) {
        Ok(v) => {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot move result to {}", path.display()))?;
            Ok(v)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e.context(format!(
                "writing {} failed; nothing was written",
                path.display()
            )))
        }
    }
}

/// A file of a group written together: its place and how to write it to a given path.
pub type GroupFile<'a> = (PathBuf, Box<dyn FnOnce(&Path) -> Result<()> + Send + 'a>);

/// Write several files as one: each under a temporary name beside its place (in parallel,
/// each on one thread), then all renamed into place in order, only when every one was
/// written. On failure none is renamed and the temporaries go, so the files stay as they were
/// (all old, never a mix); the error names the first file (in order) that failed.
pub fn write_together(files: Vec<GroupFile<'_>>) -> Result<()> {
    use rayon::prelude::*;
    let names: Vec<String> = files
        .iter()
        .map(|(p, _)| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    let mut written: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut writers = Vec::new();
    for (path, write) in files {
        let tmp = temp_name(&path)?;
        written.push((path, tmp.clone()));
        writers.push((tmp, write));
    }
    let results: Vec<Result<()>> = writers
        .into_par_iter()
        .map(|(tmp, write)| write(&tmp))
        .collect();
    if let Some(i) = results.iter().position(Result::is_err) {
        for (_, t) in &written {
            let _ = std::fs::remove_file(t);
        }
        let e = results
            .into_iter()
            .nth(i)
            .expect("the failure")
            .unwrap_err();
        bail!(
            "writing {} failed, so none of {} was written: {}",
            written[i].0.display(),
            names.join(", "),
            e.root_cause()
        );
    }
    for (path, tmp) in &written {
        std::fs::rename(tmp, path)
            .with_context(|| format!("cannot move result to {}", path.display()))?;
    }
    Ok(())
}

/// Write bytes atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |mut f| {
        f.write_all(bytes)?;
        f.sync_all().ok();
        Ok(())
    })
}

/// Open a file that an earlier stage should have written.
pub fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|source| match super::layout::made_by(path) {
        Some(cmd) if !path.exists() => super::ArtifactError::Missing {
            path: path.to_path_buf(),
            made_by: cmd,
            source,
        }
        .into(),
        _ => anyhow::Error::new(source)
            .context(format!("cannot open {}: check the path", path.display())),
    })
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The pid in a temporary name (`.x.tmp-<pid>` or `.iter-3.partial-<pid>`), if any.
fn temp_pid(name: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    for mark in [TEMP_MARK, PARTIAL_MARK] {
        if let Some(i) = name.rfind(mark) {
            return name[i + mark.len()..].parse().ok();
        }
    }
    None
}

/// Marker of a folder staged before it is renamed into place.
pub const PARTIAL_MARK: &str = ".partial-";

/// The staging folder of `dir`, `.<name>.partial-<pid>` beside it (swept when its process is
/// dead).
pub fn staging_dir(dir: &Path) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a folder path", dir.display()))?;
    Ok(parent(dir).join(format!(
        ".{}{PARTIAL_MARK}{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Fill a folder as one: `fill` writes into a staging folder beside `dir`, which replaces
/// `dir` only when it succeeds; on failure the staging folder goes and `dir` stays as it was.
pub fn replace_dir<T>(dir: &Path, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let stage = staging_dir(dir)?;
    if stage.exists() {
        std::fs::remove_dir_all(&stage)
            .with_context(|| format!("cannot clear {}", stage.display()))?;
    }
    std::fs::create_dir_all(&stage)
        .with_context(|| format!("cannot create {}", stage.display()))?;
    let done = fill(&stage).and_then(|v| {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot replace {}", dir.display()))?;
        }
        std::fs::rename(&stage, dir)
            .with_context(|| format!("cannot move {} to {}", stage.display(), dir.display()))?;
        Ok(v)
    });
    if done.is_err() {
        let _ = std::fs::remove_dir_all(&stage);
    }
    done
}

/// Remove temporary files and staged folders of processes that no longer run, under `root`
/// (to a small depth). Returns how many were removed.
pub fn sweep_temporaries(root: &Path) -> usize {
    fn walk(dir: &Path, depth: usize, removed: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            match temp_pid(&name) {
                Some(pid) if pid != std::process::id() && !pid_alive(pid) => {
                    let ok = if is_dir {
                        std::fs::remove_dir_all(&path).is_ok()
                    } else {
                        std::fs::remove_file(&path).is_ok()
                    };
                    *removed += ok as usize;
                }
                Some(_) => {}
                None if is_dir && depth > 0 => walk(&path, depth - 1, removed),
                None => {}
            }
        }
    }
    let mut removed = 0;
    walk(root, 5, &mut removed);
    removed
}

/// How a process holds an output root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Sole writer of the whole root (`experiment`, `sweep`, `ablate`, `summary`, `report`).
    Exclusive,
    /// One of several writers, each of its own unit (the stage commands of a make chain).
    Shared,
}

/// A held lock; released when dropped (or when the process dies: flock(2)).
#[derive(Debug)]
pub struct Lock {
    _files: Vec<File>,
}

fn lock_file(path: &Path, kind: LockKind, what: &str, command: &str) -> Result<File> {
    std::fs::create_dir_all(parent(path))
        .with_context(|| format!("cannot create folder {}", parent(path).display()))?;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    let got = match kind {
        LockKind::Exclusive => f.try_lock(),
        LockKind::Shared => f.try_lock_shared(),
    };
    if let Err(e) = got {
        if matches!(e, std::fs::TryLockError::WouldBlock) {
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            let holder = holder.trim();
            bail!(
                "{what} is being written by another run ({}); wait for it to finish or use another --root",
                if holder.is_empty() {
                    "unknown process".to_string()
                } else {
                    holder.to_string()
                }
            );
        }
        return Err(anyhow!("cannot lock {}: {e:?}", path.display()));
    }
    // Name the holder (a stale name of a dead process is simply overwritten: flock locks die
    // with their process).
    f.set_len(0).ok();
    let _ = write!(f, "pid {} ({command})", std::process::id());
    Ok(f)
}

impl Lock {
    /// Lock `root` (and, for shared holders, the unit they write), then sweep temporaries of
    /// dead processes under `root` when `sweep`. A second writer gets a clear refusal naming
    /// the holder.
    pub fn acquire(
        root: &Path,
        kind: LockKind,
        unit: Option<&str>,
        command: &str,
        sweep: bool,
    ) -> Result<Lock> {
        let root_lock = crate::artifacts::Layout::new(root).lock_file(None);
        let mut files = vec![lock_file(
            &root_lock,
            kind,
            &format!("{}", root.display()),
            command,
        )?];
        if let Some(u) = unit {
            let unit_lock = crate::artifacts::Layout::new(root).lock_file(Some(u));
            files.push(lock_file(
                &unit_lock,
                LockKind::Exclusive,
                &format!("{} ({u})", root.display()),
                command,
            )?);
        }
        if sweep {
            sweep_temporaries(root);
        }
        Ok(Lock { _files: files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.parquet");
        let r: Result<()> = write_atomic(&p, |_| bail!("boom"));
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn temporaries_of_dead_processes_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("a/.x.parquet.tmp-4000000000");
        std::fs::create_dir_all(dead.parent().unwrap()).unwrap();
        std::fs::write(&dead, b"").unwrap();
        let mine = dir
            .path()
            .join(format!(".y.parquet.tmp-{}", std::process::id()));
        std::fs::write(&mine, b"").unwrap();
        let staged = dir.path().join("a/.iter-2.partial-4000000001");
        std::fs::create_dir_all(&staged).unwrap();
        assert_eq!(sweep_temporaries(dir.path()), 2);
        assert!(!dead.exists() && !staged.exists() && mine.exists());
    }

    #[test]
    fn second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Lock::acquire(dir.path(), LockKind::Exclusive, None, "first", true).unwrap();
        let e = Lock::acquire(dir.path(), LockKind::Shared, Some("u"), "second", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("another run") && e.contains("first"), "{e}");
        drop(a);
        let _b = Lock::acquire(dir.path(), LockKind::Shared, Some("u"), "second", true).unwrap();
        let _c = Lock::acquire(dir.path(), LockKind::Shared, Some("v"), "third", true).unwrap();
        let e = Lock::acquire(dir.path(), LockKind::Shared, Some("u"), "fourth", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("(u)"), "{e}");
    }
}
