//! Sharded sweeps and ablations: `--shard I/N` runs one share of the (setting, seed) grid and
//! writes it as a part under `parts/`; `--merge` checks every part and hands their results to
//! the stage's own finishing code, so the merged files are those a one-machine run writes (all
//! but the wall-clock `seconds`).
//!
//! **Assignment.** The grid's U = seeds × settings units in seed-major order — unit
//! u = seed index × settings + setting index (a sweep has one setting, so u = seed index) —
//! and shard I of N holds the contiguous block ⌊I·U/N⌋ ≤ u < ⌊(I+1)·U/N⌋. So the shards
//! differ by at most one unit, and an ablation's settings of a seed mostly stay in one shard
//! (which makes their shared foundation once). N may not exceed U.
//!
//! **A part** is `parts/<kind>-<I>-of-<N>.<host>-<pid>.parquet` ([`PartRow`]s: the
//! `sweep.parquet` rows of its units with their setting and the per-label accuracies the
//! summaries need) and, written after it, its manifest `….json` ([`PartManifest`]: the grid,
//! its fingerprint, the shard, the units and seeds, the part's rows, size and CRC-32). Every
//! attempt writes its own pair, so a shard run twice (a worker that died after writing) leaves
//! two parts, which the merge accepts only when they agree in every column but `seconds`.
//!
//! **The merge refuses**, naming the part: a part of other settings or of another grid, parts
//! of two shardings, a part whose units are not its shard's, a part file changed or missing
//! since its manifest was written, a shard made twice with different results, and a missing
//! shard. It writes nothing then.

use super::grid::{ABLATION_KIND, SeedResult};
use crate::artifacts::manifest::sum_file;
use crate::artifacts::{
    Artifact, FileSum, Grid, Layout, PartManifest, PartRow, ShardOf, SweepRow, Unit, write_bytes,
};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

/// The label of a sweep's one setting: the pipeline as given.
pub const BASE: &str = "base";

/// Shard `index` of `count` (`--shard I/N`, 0 ≤ I < N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("{s:?} is not a shard: give I/N with 0 ≤ I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(format!(
                "{s:?}: the shard index must be below the count (0/{count} to {}/{count})",
                count.saturating_sub(1)
            ));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What a sweep or ablation command does with its grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Every unit, in this process (the one-machine run).
    All,
    /// One shard's units, written as a part.
    Shard(Shard),
    /// No unit: merge the parts under `parts/`.
    Merge,
}

/// Every unit of a grid, in order (seed-major).
pub fn units(g: &Grid) -> Vec<Unit> {
    (0..g.seeds)
        .flat_map(|seed| (0..g.settings.len()).map(move |setting| Unit { seed, setting }))
        .collect()
}

/// The units of shard `s` (see the module's assignment); an error when there are fewer units
/// than shards.
pub fn assigned(g: &Grid, s: Shard) -> Result<Vec<Unit>> {
    let all = units(g);
    if s.count > all.len() {
        bail!(
            "--shard {s}: the {} grid has {} (setting, seed) units, so at most {} shards",
            g.kind,
            all.len(),
            all.len()
        );
    }
    let (a, b) = block(all.len(), s);
    Ok(all[a..b].to_vec())
}

fn block(n_units: usize, s: Shard) -> (usize, usize) {
    (
        s.index * n_units / s.count,
        (s.index + 1) * n_units / s.count,
    )
}

/// The command that runs a kind of grid (`sweep` → `sweep`, `ablation` → `ablate`).
fn command(kind: &str) -> &str {
    if kind == ABLATION_KIND {
        "ablate"
    } else {
        kind
    }
}

/// The fingerprint of a grid (every field).
pub fn fingerprint(g: &Grid) -> String {
    crate::config::fingerprint(&serde_json::to_string(g).expect("a grid serialises"))
}

fn describe(g: &Grid) -> String {
    format!(
        "{} seeds from {} × arms [{}] × settings [{}]",
        g.seeds,
        g.first_seed,
        g.arms.join(", "),
        g.settings.join(" | ")
    )
}

/// A unit's master seed.
pub fn seed_of(g: &Grid, u: Unit) -> u64 {
    g.first_seed + u.seed as u64
}

/// One unit's result as part rows: its sweep rows under the setting's label, the initial
/// per-label accuracies on the iteration-0 rows and each arm's final ones on its row of
/// iteration `last` (what [`SeedResult`] holds; [`seed_result`] reads it back).
pub fn part_rows(setting: &str, last: u32, r: &SeedResult) -> Vec<PartRow> {
    r.rows
        .iter()
        .map(|x| {
            let label_acc = if x.iteration == 0 {
                Some(r.initial_label_acc.clone())
            } else if x.iteration == last {
                r.final_label_acc
                    .iter()
                    .find(|(a, _)| *a == x.arm)
                    .map(|(_, v)| v.clone())
            } else {
                None
            };
            PartRow {
                setting: setting.to_string(),
                seed: x.seed,
                arm: x.arm.clone(),
                metric: x.metric.clone(),
                layer_select: x.layer_select,
                iteration: x.iteration,
                accuracy: x.accuracy,
                target_label: x.target_label,
                target_acc: x.target_acc,
                finished_early: x.finished_early,
                status: x.status,
                seconds: x.seconds,
                label_acc,
            }
        })
        .collect()
}

/// A unit's result from its part rows (the inverse of [`part_rows`]).
fn seed_result(rows: &[PartRow]) -> Option<SeedResult> {
    let initial_label_acc = rows.iter().find(|x| x.iteration == 0)?.label_acc.clone()?;
    Some(SeedResult {
        rows: rows
            .iter()
            .map(|x| SweepRow {
                seed: x.seed,
                arm: x.arm.clone(),
                metric: x.metric.clone(),
                layer_select: x.layer_select,
                iteration: x.iteration,
                accuracy: x.accuracy,
                target_label: x.target_label,
                target_acc: x.target_acc,
                finished_early: x.finished_early,
                status: x.status,
                seconds: x.seconds,
            })
            .collect(),
        initial_label_acc,
        final_label_acc: rows
            .iter()
            .filter(|x| x.iteration > 0)
            .filter_map(|x| Some((x.arm.clone(), x.label_acc.clone()?)))
            .collect(),
    })
}

/// What a shard wrote.
pub struct PartReport {
    pub kind: String,
    pub shard: Shard,
    pub seeds: Vec<u64>,
    pub units: usize,
    pub seconds: f64,
    pub out: PathBuf,
}

impl std::fmt::Display for PartReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seeds: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
        write!(
            f,
            "{} shard {}: {} unit{} (seed{} {}) in {:.1} s → {}",
            self.kind,
            self.shard,
            self.units,
            if self.units == 1 { "" } else { "s" },
            if self.seeds.len() == 1 { "" } else { "s" },
            seeds.join(", "),
            self.seconds,
            self.out.display()
        )
    }
}

/// A finished run, or a shard's part.
pub enum Outcome<R> {
    Done(R),
    Part(PartReport),
}

impl<R: std::fmt::Display> std::fmt::Display for Outcome<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Done(r) => r.fmt(f),
            Outcome::Part(r) => r.fmt(f),
        }
    }
}

/// This machine's name for part names (`/proc/sys/kernel/hostname`, else `$HOSTNAME`), made
/// of file-name characters.
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let safe: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() { "host".into() } else { safe }
}

/// The size and CRC-32 of the running binary (`/proc/self/exe`: the file this process runs,
/// even if it was replaced since).
fn this_binary() -> Result<FileSum> {
    let exe = Path::new("/proc/self/exe");
    if exe.exists() {
        sum_file(exe)
    } else {
        sum_file(&std::env::current_exe().context("cannot find the running binary")?)
    }
}

/// Write shard `s`'s part (`rows` of `units`) and then its manifest; on failure neither stays.
pub fn write_part(
    layout: &Layout,
    grid: &Grid,
    s: Shard,
    units: &[Unit],
    rows: Vec<PartRow>,
    t0: Instant,
) -> Result<PartReport> {
    let token = format!("{}-{}", host(), std::process::id());
    let path = layout.part(&grid.kind, s.index, s.count, &token);
    rows.write(&path)?;
    let seeds: Vec<u64> = {
        let mut v: Vec<u64> = units.iter().map(|&u| seed_of(grid, u)).collect();
        v.dedup();
        v
    };
    let done = this_binary().and_then(|binary| {
        let sum = sum_file(&path)?;
        let m = PartManifest {
            grid: grid.clone(),
            fingerprint: fingerprint(grid),
            shard: ShardOf {
                index: s.index,
                count: s.count,
            },
            units: units.to_vec(),
            seeds: seeds.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            binary,
            file: file_name(&path),
            rows: rows.len(),
            sum,
        };
        let mut text = serde_json::to_string_pretty(&m)?;
        text.push('\n');
        write_bytes(&Layout::part_manifest(&path), text.as_bytes())
    });
    if let Err(e) = done {
        let _ = std::fs::remove_file(&path);
        return Err(e.context(format!(
            "writing the manifest of {} failed; the part was removed",
            path.display()
        )));
    }
    Ok(PartReport {
        kind: grid.kind.clone(),
        shard: s,
        seeds,
        units: units.len(),
        seconds: t0.elapsed().as_secs_f64(),
        out: path,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// The first column in which two copies of a shard differ, but `seconds`: (row, column).
fn first_difference(a: &[PartRow], b: &[PartRow]) -> Option<(usize, &'static str)> {
    if a.len() != b.len() {
        return Some((a.len().min(b.len()), "the number of rows"));
    }
    a.iter().zip(b).enumerate().find_map(|(i, (x, y))| {
        let col = if x.setting != y.setting {
            "setting"
        } else if x.seed != y.seed {
            "seed"
        } else if x.arm != y.arm {
            "arm"
        } else if x.metric != y.metric {
            "metric"
        } else if x.layer_select != y.layer_select {
            "layer_select"
        } else if x.iteration != y.iteration {
            "iteration"
        } else if x.accuracy.to_bits() != y.accuracy.to_bits() {
            "accuracy"
        } else if x.target_label != y.target_label {
            "target_label"
        } else if x.target_acc.map(f64::to_bits) != y.target_acc.map(f64::to_bits) {
            "target_acc"
        } else if x.finished_early != y.finished_early {
            "finished_early"
        } else if x.status != y.status {
            "status"
        } else if x
            .label_acc
            .as_ref()
            .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
            != y.label_acc
                .as_ref()
                .map(|v| v.iter().map(|f| f.to_bits()).collect())
        {
            "label_acc"
        } else {
            return None;
        };
        Some((i, col))
    })
}

/// A checked part: where it is, the binary that made it and its rows.
struct Part {
    file: PathBuf,
    binary: FileSum,
    rows: Vec<PartRow>,
}

/// Read and check a part against the grid: its manifest's name, grid, fingerprint, version,
/// shard and units, then its file's size, checksum and rows.
fn check_part(
    dir: &Path,
    path: &Path,
    grid: &Grid,
    name_shard: (usize, usize),
) -> Result<(Shard, Part)> {
    let shown = path.display();
    let m = PartManifest::read(path)?;
    check_manifest(path, &m, grid, name_shard)?;
    let s = Shard {
        index: m.shard.index,
        count: m.shard.count,
    };
    let want = assigned(grid, s).with_context(|| format!("{shown}"))?;
    if m.units != want {
        bail!(
            "{shown} holds units {:?}, but shard {s} is assigned {:?}: {}",
            m.units,
            want,
            again(grid, &m.shard)
        );
    }
    let file = dir.join(&m.file);
    check_file(path, &file, &m, grid)?;
    let rows = Vec::<PartRow>::read(&file)?;
    check_rows(&file, &rows, &m, grid, &want)?;
    Ok((
        s,
        Part {
            file,
            binary: m.binary,
            rows,
        },
    ))
}

/// What to do about a broken part of shard `s`.
fn again(grid: &Grid, s: &ShardOf) -> String {
    format!(
        "remove it and run `mode {} --shard {}/{}` again",
        command(&grid.kind),
        s.index,
        s.count
    )
}

/// A part's manifest belongs to this grid: its name's shard, the grid's kind, settings and
/// plan, its fingerprint, the binary's version.
fn check_manifest(
    path: &Path,
    m: &PartManifest,
    grid: &Grid,
    name_shard: (usize, usize),
) -> Result<()> {
    let shown = path.display();
    let again = |s: &ShardOf| again(grid, s);
    if (m.shard.index, m.shard.count) != name_shard {
        bail!(
            "{shown}: its name says shard {}/{} but its manifest says {}/{}: a part was renamed; {}",
            name_shard.0,
            name_shard.1,
            m.shard.index,
            m.shard.count,
            again(&m.shard)
        );
    }
    if m.grid.kind != grid.kind {
        bail!(
            "{shown} is a part of a {} grid, not of a {} grid",
            m.grid.kind,
            grid.kind
        );
    }
    if m.grid.pipeline != grid.pipeline || m.grid.initial != grid.initial {
        bail!(
            "{shown} was made with other settings (pipeline fingerprint {}, this merge's {}): merge with the pipeline and --set options its shards ran with, or remove the parts of that run",
            m.grid.pipeline,
            grid.pipeline
        );
    }
    if m.grid != *grid {
        bail!(
            "{shown} belongs to another grid: {} (this merge: {}); merge with the --seeds, --arms and settings its shards ran with, or remove the parts of that run",
            describe(&m.grid),
            describe(grid)
        );
    }
    if m.fingerprint != fingerprint(grid) {
        bail!(
            "{shown}: its grid fingerprint {} does not match its grid ({}): the manifest was edited; {}",
            m.fingerprint,
            fingerprint(grid),
            again(&m.shard)
        );
    }
    if m.version != env!("CARGO_PKG_VERSION") {
        bail!(
            "{shown} was made by mode {}, this is mode {}: merge with the binary its shards ran",
            m.version,
            env!("CARGO_PKG_VERSION")
        );
    }
    Ok(())
}

/// The part file beside the manifest `path` is the one it names, there and unchanged.
fn check_file(path: &Path, file: &Path, m: &PartManifest, grid: &Grid) -> Result<()> {
    let shown = path.display();
    let again = |s: &ShardOf| again(grid, s);
    if Layout::part_manifest(file) != path {
        bail!(
            "{shown} names the part {:?}, not the one beside it: {}",
            m.file,
            again(&m.shard)
        );
    }
    if !file.exists() {
        bail!(
            "{} is missing (its manifest {shown} names it): {}",
            file.display(),
            again(&m.shard)
        );
    }
    if sum_file(file)? != m.sum {
        bail!(
            "{} was changed since its shard wrote it (its manifest records {} bytes, CRC-32 {}): {}",
            file.display(),
            m.sum.bytes,
            m.sum.crc32,
            again(&m.shard)
        );
    }
    Ok(())
}

/// A part's rows are its units', in order, each with one iteration-0 row per arm of the grid.
fn check_rows(
    file: &Path,
    rows: &[PartRow],
    m: &PartManifest,
    grid: &Grid,
    want: &[Unit],
) -> Result<()> {
    let wrong = |what: String| -> Result<()> {
        bail!("{} {what}: {}", file.display(), again(grid, &m.shard))
    };
    if rows.len() != m.rows {
        return wrong(format!(
            "has {} rows where its manifest records {}",
            rows.len(),
            m.rows
        ));
    }
    let mut at = 0;
    for &u in want {
        let (label, seed) = (&grid.settings[u.setting], seed_of(grid, u) as i64);
        let n = rows[at..]
            .iter()
            .take_while(|x| &x.setting == label && x.seed == seed)
            .count();
        let unit = &rows[at..at + n];
        let arms: Vec<&str> = unit
            .iter()
            .filter(|x| x.iteration == 0)
            .map(|x| x.arm.as_str())
            .collect();
        if arms != grid.arms.iter().map(String::as_str).collect::<Vec<_>>() {
            return wrong(format!(
                "does not hold the arms [{}] of setting {label:?}, seed {seed} (it has [{}])",
                grid.arms.join(", "),
                arms.join(", ")
            ));
        }
        if seed_result(unit).is_none() {
            return wrong(format!(
                "has no per-label accuracies of the initial model of setting {label:?}, seed {seed}"
            ));
        }
        at += n;
    }
    if at != rows.len() {
        let x = &rows[at];
        return wrong(format!(
            "holds rows of setting {:?}, seed {} that are not its shard's",
            x.setting, x.seed
        ));
    }
    Ok(())
}

/// Read every part of `grid` under `parts/`, check them (see the module) and return every
/// unit's result in grid order and the number of shards — or the first problem, naming the
/// part.
pub fn read_parts(layout: &Layout, grid: &Grid) -> Result<(Vec<(Unit, SeedResult)>, usize)> {
    let dir = layout.parts_dir();
    let kind = grid.kind.as_str();
    let cmd = command(kind);
    let first = format!("run `mode {cmd} --shard I/N` for every shard I of N first");
    let entries = std::fs::read_dir(&dir)
        .with_context(|| format!("no parts to merge: cannot read {} ({first})", dir.display()))?;
    let (manifests, unfinished) = listing(&dir, kind, entries)?;
    if manifests.is_empty() {
        bail!(
            "no finished parts of this {kind} in {}: {first}",
            dir.display()
        );
    }
    let mut parts: BTreeMap<(usize, usize), Vec<Part>> = BTreeMap::new();
    for (path, name_shard) in &manifests {
        let (s, part) = check_part(&dir, path, grid, *name_shard)?;
        parts.entry((s.count, s.index)).or_default().push(part);
    }
    let n = one_sharding(&dir, kind, &parts)?;
    check_missing(&dir, grid, &parts, n, &unfinished)?;
    let out = unit_results(grid, &parts, n)?;
    let got: Vec<Unit> = out.iter().map(|(u, _)| *u).collect();
    if got != units(grid) {
        bail!(
            "the parts in {} do not cover the grid's units exactly once (got {got:?})",
            dir.display()
        );
    }
    Ok((out, n))
}

/// The finished parts' manifests in `dir` (path, the shard their name says) and the
/// unfinished parts (shard, count, file name), sorted.
type Listing = (Vec<(PathBuf, (usize, usize))>, Vec<(usize, usize, String)>);

fn listing(dir: &Path, kind: &str, entries: std::fs::ReadDir) -> Result<Listing> {
    let mut manifests = Vec::new();
    let mut unfinished = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().to_string();
        match Layout::parse_part(kind, &name) {
            Some((i, n, "json")) => manifests.push((e.path(), (i, n))),
            Some((i, n, _)) if !Layout::part_manifest(&e.path()).exists() => {
                unfinished.push((i, n, name))
            }
            _ => {}
        }
    }
    manifests.sort();
    unfinished.sort();
    Ok((manifests, unfinished))
}

/// The parts come from one sharding, one binary, and copies of a shard agree: the number of
/// shards.
fn one_sharding(
    dir: &Path,
    kind: &str,
    parts: &BTreeMap<(usize, usize), Vec<Part>>,
) -> Result<usize> {
    let counts: Vec<usize> = {
        let mut c: Vec<usize> = parts.keys().map(|k| k.0).collect();
        c.dedup();
        c
    };
    if counts.len() > 1 {
        let names: Vec<String> = counts.iter().map(|n| format!("{kind}-*-of-{n}")).collect();
        bail!(
            "{} holds parts of {} shardings of this {kind} ({}): they come from different runs; remove the parts of the one you do not want",
            dir.display(),
            counts.len(),
            names.join(", ")
        );
    }
    let n = counts[0];
    let all: Vec<&Part> = parts.values().flatten().collect();
    if let Some(other) = all.iter().find(|p| p.binary != all[0].binary) {
        bail!(
            "{} and {} were made by different mode binaries ({} bytes, CRC-32 {} and {} bytes, CRC-32 {}): run every shard of a grid with one binary",
            all[0].file.display(),
            other.file.display(),
            all[0].binary.bytes,
            all[0].binary.crc32,
            other.binary.bytes,
            other.binary.crc32
        );
    }
    for ((_, i), copies) in parts {
        for other in &copies[1..] {
            if let Some((row, col)) = first_difference(&copies[0].rows, &other.rows) {
                let at = copies[0]
                    .rows
                    .get(row)
                    .map(|x| {
                        format!(
                            " at setting {:?}, seed {}, arm {}, iteration {}",
                            x.setting, x.seed, x.arm, x.iteration
                        )
                    })
                    .unwrap_or_default();
                bail!(
                    "shard {i}/{n} was made twice with different results: {} and {} differ in {col}{at}; one came from another binary, data or settings: remove the wrong part and merge again",
                    copies[0].file.display(),
                    other.file.display()
                );
            }
        }
    }
    Ok(n)
}

/// Every shard of `n` has a finished part.
fn check_missing(
    dir: &Path,
    grid: &Grid,
    parts: &BTreeMap<(usize, usize), Vec<Part>>,
    n: usize,
    unfinished: &[(usize, usize, String)],
) -> Result<()> {
    let kind = grid.kind.as_str();
    let cmd = command(kind);
    let missing: Vec<String> = (0..n)
        .filter(|i| !parts.contains_key(&(n, *i)))
        .map(|i| {
            let s = Shard { index: i, count: n };
            let seeds: Vec<String> = assigned(grid, s)
                .unwrap_or_default()
                .iter()
                .map(|&u| seed_of(grid, u).to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            format!("{s} (seeds {})", seeds.join(", "))
        })
        .collect();
    if !missing.is_empty() {
        let hint = unfinished
            .iter()
            .filter(|(_, c, _)| *c == n)
            .map(|(_, _, f)| f.as_str())
            .collect::<Vec<_>>();
        bail!(
            "shard {} of this {kind} {} missing: no finished part in {}{}; run `mode {cmd} --shard I/{n}` for {} with the same options, then merge again",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            dir.display(),
            if hint.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} without a manifest: a shard that did not finish)",
                    hint.join(", ")
                )
            },
            if missing.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(())
}

/// Every unit's result, shard by shard, in each shard's assigned order.
fn unit_results(
    grid: &Grid,
    parts: &BTreeMap<(usize, usize), Vec<Part>>,
    n: usize,
) -> Result<Vec<(Unit, SeedResult)>> {
    let mut out = Vec::new();
    for i in 0..n {
        let part = &parts[&(n, i)][0];
        let mut at = 0;
        for u in assigned(grid, Shard { index: i, count: n })? {
            let (label, seed) = (&grid.settings[u.setting], seed_of(grid, u) as i64);
            let k = part.rows[at..]
                .iter()
                .take_while(|x| &x.setting == label && x.seed == seed)
                .count();
            let r = seed_result(&part.rows[at..at + k]).expect("checked when read");
            out.push((u, r));
            at += k;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::IterStatus;

    fn grid(seeds: usize, settings: usize) -> Grid {
        Grid {
            kind: "ablation".into(),
            pipeline: "p".into(),
            initial: "i".into(),
            first_seed: 7,
            seeds,
            arms: vec!["random".into()],
            settings: (0..settings).map(|k| format!("s{k}")).collect(),
        }
    }

    #[test]
    fn shards_parse_and_refuse_nonsense() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        assert_eq!("1/4".parse::<Shard>().unwrap().to_string(), "1/4");
        for bad in ["4/4", "0/0", "x/2", "1", "-1/2", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert!("4/4".parse::<Shard>().unwrap_err().contains("0/4 to 3/4"));
    }

    #[test]
    fn the_assignment_is_contiguous_seed_major_and_covers_every_unit_once() {
        let g = grid(10, 1);
        let of = |i, n| assigned(&g, Shard { index: i, count: n }).unwrap();
        let seeds = |v: Vec<Unit>| v.iter().map(|u| u.seed).collect::<Vec<_>>();
        assert_eq!(seeds(of(0, 4)), [0, 1]);
        assert_eq!(seeds(of(1, 4)), [2, 3, 4]);
        assert_eq!(seeds(of(3, 4)), [7, 8, 9]);
        let g = grid(3, 4);
        for n in 1..=12 {
            let mut all = Vec::new();
            for i in 0..n {
                let mine = assigned(&g, Shard { index: i, count: n }).unwrap();
                assert!(!mine.is_empty());
                all.extend(mine);
            }
            assert_eq!(all, units(&g), "{n} shards");
        }
        assert_eq!(
            assigned(&g, Shard { index: 0, count: 2 }).unwrap()[..5],
            [
                Unit {
                    seed: 0,
                    setting: 0
                },
                Unit {
                    seed: 0,
                    setting: 1
                },
                Unit {
                    seed: 0,
                    setting: 2
                },
                Unit {
                    seed: 0,
                    setting: 3
                },
                Unit {
                    seed: 1,
                    setting: 0
                },
            ]
        );
        let e = assigned(
            &g,
            Shard {
                index: 0,
                count: 13,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("12 (setting, seed) units"), "{e}");
    }

    #[test]
    fn a_seed_result_survives_its_part_rows() {
        let row = |arm: &str, iteration| SweepRow {
            seed: 9,
            arm: arm.into(),
            metric: "m".into(),
            layer_select: true,
            iteration,
            accuracy: 0.5 + iteration as f64 / 10.0,
            target_label: Some(3),
            target_acc: Some(0.25),
            finished_early: false,
            status: IterStatus::Ran,
            seconds: 1.5,
        };
        let r = SeedResult {
            rows: vec![
                row("a", 0),
                row("a", 1),
                row("a", 2),
                row("b", 0),
                row("b", 1),
            ],
            initial_label_acc: vec![0.1, 0.2],
            // b finished early: no final accuracies at iteration 2
            final_label_acc: vec![("a".into(), vec![0.3, 0.4])],
        };
        let rows = part_rows("base", 2, &r);
        assert_eq!(rows.iter().filter(|x| x.label_acc.is_some()).count(), 3);
        let back = seed_result(&rows).unwrap();
        assert_eq!(back.rows, r.rows);
        assert_eq!(back.initial_label_acc, r.initial_label_acc);
        assert_eq!(back.final_label_acc, r.final_label_acc);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("part.parquet");
        rows.write(&p).unwrap();
        assert_eq!(Vec::<PartRow>::read(&p).unwrap(), rows);
        let mut other = rows.clone();
        other[4].seconds = 99.0;
        assert_eq!(
            first_difference(&rows, &other),
            None,
            "seconds do not count"
        );
        other[2].label_acc = Some(vec![0.3, 0.41]);
        assert_eq!(first_difference(&rows, &other), Some((2, "label_acc")));
    }
}
