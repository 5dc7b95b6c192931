//! Where every artifact lives. This is the only place in `src/` that spells a file name.
//!
//! ```text
//! <root>/splits/{train,pool,test}.parquet  [sources.parquet]
//! <root>/initial/{model.safetensors,optimizer.bpk,train_log,metrics,predictions}
//! <root>/input_head.parquet
//! <root>/runs/<arm>/manifest.json
//! <root>/runs/<arm>/iter-<k>/…           (see [`IterDir`])
//! <root>/summary.parquet  sweep.parquet  sweep_summary.{parquet,md}  sweep_manifest.json
//! <root>/ablation.parquet  ablation_summary.{parquet,md}
//! <root>/parts/<kind>-<i>-of-<n>.<host>-<pid>.{parquet,json}   (sharded sweeps and ablations)
//! <root>/report/index.html  <root>/timings.log  <root>/.locks/
//! ```

use std::path::{Path, PathBuf};

/// The splits of a dataset: train, the bug-fix pool, test, and (with `split.holdout`) a
/// holdout set aside from the pool for the analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Pool,
    Test,
    Holdout,
}

impl Split {
    pub const ALL: [Split; 4] = [Split::Train, Split::Pool, Split::Test, Split::Holdout];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Pool => "pool",
            Split::Test => "test",
            Split::Holdout => "holdout",
        }
    }

    pub fn parse(s: &str) -> Option<Split> {
        Split::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const PARQUET: &str = "parquet";

/// A pipeline's output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// A path as recorded in metadata: relative to the root when inside it (so the same run
    /// under another root records the same text).
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// The default root of a pipeline: `output/<name>`.
    pub fn default_root(pipeline_name: &str) -> PathBuf {
        PathBuf::from("output").join(pipeline_name)
    }

    pub fn splits_dir(&self) -> PathBuf {
        self.root.join("splits")
    }
    pub fn split(&self, s: Split) -> PathBuf {
        split_file(&self.splits_dir(), s)
    }
    /// Where each sample came from (image folders, Parquet tables).
    pub fn sources(&self) -> PathBuf {
        sources_file(&self.splits_dir())
    }
    /// The initial model's folder (iteration 0).
    pub fn initial(&self) -> IterDir {
        IterDir(self.root.join("initial"))
    }
    pub fn input_head(&self) -> PathBuf {
        self.root.join("input_head.parquet")
    }
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }
    pub fn arm_dir(&self, arm: &str) -> PathBuf {
        self.runs_dir().join(arm)
    }
    pub fn manifest(&self, arm: &str) -> PathBuf {
        self.arm_dir(arm).join("manifest.json")
    }
    /// `runs/<arm>/iter-<k>`; iteration 0 is the initial model.
    pub fn iter(&self, arm: &str, k: u32) -> IterDir {
        if k == 0 {
            self.initial()
        } else {
            IterDir(self.arm_dir(arm).join(iter_name(k)))
        }
    }
    /// The staging folder of an iteration, renamed to [`Layout::iter`] when complete.
    pub fn iter_staging(&self, arm: &str, k: u32) -> PathBuf {
        self.arm_dir(arm).join(format!(
            ".{}{}{}",
            iter_name(k),
            super::io::PARTIAL_MARK,
            std::process::id()
        ))
    }
    /// The iteration of a folder name `iter-<k>`.
    pub fn parse_iter(name: &str) -> Option<u32> {
        name.strip_prefix("iter-")?.parse().ok()
    }
    pub fn summary(&self) -> PathBuf {
        self.root.join("summary.parquet")
    }
    pub fn sweep(&self) -> PathBuf {
        self.root.join("sweep.parquet")
    }
    pub fn sweep_summary(&self) -> PathBuf {
        self.root.join("sweep_summary.parquet")
    }
    pub fn sweep_markdown(&self) -> PathBuf {
        self.root.join("sweep_summary.md")
    }
    pub fn sweep_manifest(&self) -> PathBuf {
        self.root.join("sweep_manifest.json")
    }
    /// Every seed's artifacts of a sweep run with `--keep-artifacts`.
    pub fn sweep_seed(&self, seed: u64) -> Layout {
        Layout::new(self.root.join("sweep").join(format!("seed-{seed}")))
    }
    pub fn ablation(&self) -> PathBuf {
        self.root.join("ablation.parquet")
    }
    pub fn ablation_summary(&self) -> PathBuf {
        self.root.join("ablation_summary.parquet")
    }
    pub fn ablation_markdown(&self) -> PathBuf {
        self.root.join("ablation_summary.md")
    }
    pub fn ablation_manifest(&self) -> PathBuf {
        self.root.join("ablation_manifest.json")
    }
    /// The parts of sharded sweeps and ablations (`--shard I/N`), merged by `--merge`.
    pub fn parts_dir(&self) -> PathBuf {
        self.root.join("parts")
    }
    /// The part that shard `i` of `n` of a `kind` (`sweep`, `ablation`) writes in the process
    /// `token` (`<host>-<pid>`: an attempt of its own, so a shard made twice leaves two parts).
    pub fn part(&self, kind: &str, i: usize, n: usize, token: &str) -> PathBuf {
        self.parts_dir()
            .join(format!("{}.{token}.{PARQUET}", part_stem(kind, i, n)))
    }
    /// The manifest beside a part, written after it (a part without one is unfinished).
    pub fn part_manifest(part: &Path) -> PathBuf {
        part.with_extension("json")
    }
    /// The lock unit of shard `i` of `n` (two attempts of one shard on one machine exclude
    /// each other; different shards run side by side).
    pub fn part_unit(kind: &str, i: usize, n: usize) -> String {
        format!("parts/{}", part_stem(kind, i, n))
    }
    /// The shard (i, n) of a part's or part manifest's file name of `kind`, with its extension
    /// (`parquet` or `json`); `None` for other files (hidden temporaries among them).
    pub fn parse_part(kind: &str, name: &str) -> Option<(usize, usize, &'static str)> {
        let rest = name.strip_prefix(kind)?.strip_prefix('-')?;
        let (i, rest) = rest.split_once("-of-")?;
        let (n, rest) = rest.split_once('.')?;
        let ext = [PARQUET, "json"].into_iter().find(|e| {
            rest.strip_suffix(e)
                .is_some_and(|t| t.ends_with('.') && t.len() > 1)
        })?;
        Some((i.parse().ok()?, n.parse().ok()?, ext))
    }
    pub fn report_dir(&self) -> PathBuf {
        self.root.join("report")
    }
    pub fn report_index(dir: &Path) -> PathBuf {
        dir.join("index.html")
    }
    /// A figure file of the report.
    pub fn figure(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}.png"))
    }
    pub fn timings(&self) -> PathBuf {
        self.root.join("timings.log")
    }
    /// The lock of the root (`None`) or of one unit of it (a run folder, the splits, …).
    pub fn lock_file(&self, unit: Option<&str>) -> PathBuf {
        let d = self.root.join(".locks");
        match unit {
            None => d.join("root"),
            Some(u) => d.join(format!("{}.lock", u.replace(['/', '\\', '.'], "_"))),
        }
    }
}

fn part_stem(kind: &str, i: usize, n: usize) -> String {
    format!("{kind}-{i}-of-{n}")
}

fn iter_name(k: u32) -> String {
    format!("iter-{k}")
}

/// A split file in a splits folder.
pub fn split_file(dir: &Path, s: Split) -> PathBuf {
    dir.join(format!("{}.{PARQUET}", s.as_str()))
}

/// The sources table in a splits folder: where each sample came from.
pub fn sources_file(dir: &Path) -> PathBuf {
    dir.join(format!("sources.{PARQUET}"))
}

/// A layer name as a file name: unchanged when it is made of letters, digits, `-`, `_` and
/// inner dots; otherwise (an ONNX name such as `/fc1/Gemm_output_0`) every other character
/// becomes `_` and a fingerprint of the name keeps different names apart.
fn file_stem(name: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    if !name.is_empty() && name.chars().all(plain) && !name.starts_with('.') {
        return name.to_string();
    }
    let safe: String = name
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    format!(
        "{}-{}",
        safe.trim_start_matches(['.', '_']),
        &crate::config::fingerprint(name)[..8]
    )
}

/// One model's folder: the initial model or `runs/<arm>/iter-<k>`, holding the analysis of the
/// previous model, the selection, and the new model with its metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IterDir(pub PathBuf);

impl IterDir {
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn model(&self) -> PathBuf {
        self.0.join("model.safetensors")
    }
    /// Adam's state beside the model (`retrain.optimizer = "keep"`), burn's burnpack format.
    pub fn optimizer(&self) -> PathBuf {
        self.0.join("optimizer.bpk")
    }
    pub fn train_log(&self) -> PathBuf {
        self.0.join("train_log.parquet")
    }
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.parquet")
    }
    pub fn predictions(&self) -> PathBuf {
        self.0.join("predictions.parquet")
    }
    pub fn activations_dir(&self) -> PathBuf {
        self.0.join("activations")
    }
    pub fn activations(&self, split: &str) -> PathBuf {
        self.activations_dir().join(format!("{split}.{PARQUET}"))
    }
    pub fn layers(&self) -> PathBuf {
        self.0.join("layers.parquet")
    }
    pub fn heads_dir(&self) -> PathBuf {
        self.0.join("heads")
    }
    /// A layer's feature model; layer names that are not plain file names are encoded.
    pub fn head(&self, layer: &str) -> PathBuf {
        self.heads_dir()
            .join(format!("{}.{PARQUET}", file_stem(layer)))
    }
    pub fn heatmaps(&self) -> PathBuf {
        self.0.join("heatmaps.parquet")
    }
    pub fn diagnosis(&self) -> PathBuf {
        self.0.join("diagnosis.parquet")
    }
    pub fn scores(&self) -> PathBuf {
        self.0.join("scores.parquet")
    }
    pub fn batch(&self) -> PathBuf {
        self.0.join("batch.parquet")
    }
    /// The batch as CSV for a user's own trainer (`mode debug`).
    pub fn batch_csv(&self) -> PathBuf {
        self.0.join("batch.csv")
    }
    pub fn pool(&self) -> PathBuf {
        self.0.join("pool.parquet")
    }
}

/// The command that makes the artifact at `path`, when it is one of the layout's: for a
/// missing file, what to run.
pub fn made_by(path: &Path) -> Option<String> {
    let names: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .collect();
    let file = names.last()?.as_str();
    let up = |i: usize| names.len().checked_sub(i + 1).map(|j| names[j].as_str());
    if up(1) == Some("splits") {
        return Some("`mode split`".into());
    }
    if file == "input_head.parquet" {
        return Some("`mode layers` (any arm with layer selection)".into());
    }
    if up(1) == Some("initial") {
        return Some(
            match file {
                "metrics.parquet" | "predictions.parquet" => "`mode evaluate`",
                _ => "`mode train`",
            }
            .into(),
        );
    }
    // runs/<arm>/iter-<k>/<file>, or …/iter-<k>/{activations,heads}/<file>
    let (depth, stage) = match (up(1), file) {
        (Some("activations"), _) => (2, "probe"),
        (Some("heads"), _) => (2, "layers"),
        (_, "layers.parquet") => (1, "layers"),
        (_, "heatmaps.parquet" | "diagnosis.parquet") => (1, "heatmap"),
        (_, "scores.parquet" | "batch.parquet" | "pool.parquet") => (1, "select"),
        (_, "model.safetensors" | "optimizer.bpk" | "train_log.parquet") => (1, "retrain"),
        (_, "metrics.parquet" | "predictions.parquet") => (1, "evaluate"),
        _ => return None,
    };
    let k = Layout::parse_iter(up(depth)?)?;
    let arm = up(depth + 1)?;
    (up(depth + 2) == Some("runs")).then(|| {
        format!("`mode {stage} --arm {arm} --iteration {k}` (iteration {k} of the arm's run)")
    })
}

/// Every artifact kind a generated Makefile or a user may ask the binary for (`mode info path`).
pub const ARTIFACTS: &[&str] = &[
    "model",
    "optimizer",
    "train_log",
    "metrics",
    "predictions",
    "activations",
    "layers",
    "heatmaps",
    "diagnosis",
    "scores",
    "batch",
    "pool",
];

impl IterDir {
    /// The path of an artifact kind by name (see [`ARTIFACTS`]); `activations` means the
    /// train split's file.
    pub fn by_name(&self, name: &str) -> Option<PathBuf> {
        Some(match name {
            "model" => self.model(),
            "optimizer" => self.optimizer(),
            "train_log" => self.train_log(),
            "metrics" => self.metrics(),
            "predictions" => self.predictions(),
            "activations" => self.activations(Split::Train.as_str()),
            "layers" => self.layers(),
            "heatmaps" => self.heatmaps(),
            "diagnosis" => self.diagnosis(),
            "scores" => self.scores(),
            "batch" => self.batch(),
            "pool" => self.pool(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        let l = Layout::new("out");
        assert_eq!(
            l.split(Split::Pool),
            PathBuf::from("out/splits/pool.parquet")
        );
        assert_eq!(
            l.iter("mode-dot", 2).head("dense_1"),
            PathBuf::from("out/runs/mode-dot/iter-2/heads/dense_1.parquet")
        );
        assert_eq!(l.iter("x", 0), l.initial());
        assert_eq!(Layout::parse_iter("iter-12"), Some(12));
        let d = l.iter("mode-dot", 1);
        let onnx = d.head("/fc1/Gemm_output_0");
        assert_eq!(onnx.parent(), Some(d.heads_dir().as_path()), "{onnx:?}");
        assert!(
            onnx.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("fc1_Gemm_output_0-")
        );
        assert_ne!(d.head("a/b"), d.head("a_b"));
        assert_ne!(d.head(".."), d.head("."));
        assert_eq!(
            d.head("..").parent(),
            Some(d.heads_dir().as_path()),
            "a name never leaves the heads folder"
        );
        for a in ARTIFACTS {
            assert!(l.initial().by_name(a).is_some(), "{a}");
        }
        let part = l.part("sweep", 1, 4, "node-a.lab-42");
        assert_eq!(
            part,
            PathBuf::from("out/parts/sweep-1-of-4.node-a.lab-42.parquet")
        );
        assert_eq!(
            Layout::part_manifest(&part),
            PathBuf::from("out/parts/sweep-1-of-4.node-a.lab-42.json")
        );
        let name = |p: &Path| p.file_name().unwrap().to_string_lossy().to_string();
        assert_eq!(
            Layout::parse_part("sweep", &name(&part)),
            Some((1, 4, "parquet"))
        );
        assert_eq!(
            Layout::parse_part("sweep", &name(&Layout::part_manifest(&part))),
            Some((1, 4, "json"))
        );
        assert_eq!(Layout::parse_part("ablation", &name(&part)), None);
        assert_eq!(
            Layout::parse_part("sweep", ".sweep-1-of-4.h-1.parquet.tmp-9"),
            None
        );
        assert_eq!(Layout::parse_part("sweep", "sweep-1-of-4.json"), None);
        assert_eq!(Layout::part_unit("ablation", 0, 2), "parts/ablation-0-of-2");
    }
}
