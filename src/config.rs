//! The one typed configuration of a pipeline.
//!
//! A pipeline is a TOML file (`pipelines/<name>.toml`). Every field has a default, unknown keys
//! are rejected, and [`Pipeline::validate`] checks every range before any stage does work.
//! Command-line overrides are applied to the TOML document before it is deserialised
//! (`--set section.key=value`), so they go through exactly the same checks.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// All parameters of one pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pipeline {
    /// Name of the pipeline; outputs go to `output/<name>/`.
    pub name: String,
    /// Master seed: every random choice (split, weights, shuffling, selection) derives from it.
    pub seed: u64,
    pub data: DataConfig,
    pub split: SplitConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub mode: ModeConfig,
    pub layers: LayersConfig,
    pub heatmap: HeatmapConfig,
    pub select: SelectConfig,
    pub retrain: TrainConfig,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            name: "mnist".into(),
            seed: 123,
            data: DataConfig::default(),
            split: SplitConfig::default(),
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            mode: ModeConfig::default(),
            layers: LayersConfig::default(),
            heatmap: HeatmapConfig::default(),
            select: SelectConfig::default(),
            retrain: TrainConfig::default(),
        }
    }
}

/// Where the idx files are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Folder with `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
    /// `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`.
    pub idx_dir: PathBuf,
    /// Dataset name recorded in the artifacts' metadata.
    pub dataset: String,
    /// Optional class names, one per label (recorded in the metadata).
    pub class_names: Vec<String>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            idx_dir: "data/mnist".into(),
            dataset: "mnist".into(),
            class_names: Vec::new(),
        }
    }
}

/// How the source data is split into train / bug-fix pool / test, and which faults to inject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Seed of the split; defaults to a stream derived from the pipeline seed.
    pub seed: Option<u64>,
    /// Share of the (used) training file that goes to the bug-fix pool.
    pub pool_fraction: f64,
    /// Use only this many images of the training file (seeded random subset); 0 = all.
    pub train_limit: usize,
    /// Use only this many images of the test file (seeded random subset); 0 = all.
    pub test_limit: usize,
    /// Labels whose train samples are kept only at `skew_keep` (label skew).
    pub skew_labels: Vec<u16>,
    /// Fraction of each skewed label's train samples that is kept (the rest goes to the pool).
    pub skew_keep: f64,
    /// Fraction of train labels flipped to another random label (label noise).
    pub noise_rate: f64,
    /// Cap on the train size after skew (the surplus goes to the pool); 0 = no cap.
    pub max_train: usize,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            seed: None,
            pool_fraction: 0.5,
            train_limit: 0,
            test_limit: 0,
            skew_labels: Vec::new(),
            skew_keep: 1.0,
            noise_rate: 0.0,
            max_train: 0,
        }
    }
}

/// Architecture of the model under debugging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Sizes of the hidden dense (ReLU) layers.
    pub hidden: Vec<usize>,
    /// Seed of the weight initialisation; defaults to a stream derived from the pipeline seed.
    pub seed: Option<u64>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            hidden: vec![28, 28],
            seed: None,
        }
    }
}

/// Training hyper-parameters (used by `train`, and by `retrain` from its own section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 32,
            learning_rate: 1e-3,
        }
    }
}

/// When a label counts as underfitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnderfitRule {
    /// Test accuracy below θ (what the seed's loop did).
    Test,
    /// Train and test accuracy both below θ (the seed's parameter notes).
    Both,
}

/// The MODE loop's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModeConfig {
    /// θ: a label whose accuracy is below it underfits.
    pub theta: f64,
    /// γ: a label whose train − test accuracy exceeds it overfits.
    pub gamma: f64,
    /// α: share of each batch chosen by the heat map; the rest is random.
    pub alpha: f64,
    /// Samples per retraining batch.
    pub batch: usize,
    /// Iterations of probe → … → evaluate.
    pub max_iter: usize,
    pub underfit_rule: UnderfitRule,
}

impl Default for ModeConfig {
    fn default() -> Self {
        Self {
            theta: 0.92,
            gamma: 0.10,
            alpha: 0.25,
            batch: 2000,
            max_iter: 5,
            underfit_rule: UnderfitRule::Test,
        }
    }
}

/// Target-layer selection with feature models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LayersConfig {
    /// Switch layer selection on (feature models) or off (target = output layer).
    pub enabled: bool,
    /// Bhattacharyya distance at or below which accuracy has saturated.
    pub threshold: f64,
    /// L-BFGS iterations of each softmax head.
    pub max_iterations: u64,
    /// L2 penalty of each softmax head (linfa's `alpha`, on the summed log-loss).
    pub l2: f64,
    /// Fit each head on at most this many train samples (seeded subset); 0 = all.
    pub max_train_samples: usize,
}

impl Default for LayersConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 0.01,
            max_iterations: 15,
            l2: 100.0,
            max_train_samples: 0,
        }
    }
}

/// Where heat maps are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Space {
    /// Mean pixels (the Keras replication's choice).
    Input,
    /// Mean target-layer activations (the paper's choice).
    Feature,
}

impl Space {
    pub fn as_str(self) -> &'static str {
        match self {
            Space::Input => "input",
            Space::Feature => "feature",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeatmapConfig {
    pub space: Space,
    /// In feature space, weight each neuron by the head's weight for the label.
    pub weighted: bool,
}

impl Default for HeatmapConfig {
    fn default() -> Self {
        Self {
            space: Space::Input,
            weighted: false,
        }
    }
}

/// Similarity / distance metrics for input selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Dot,
    Cosine,
    Manhattan,
    Euclidean,
    Minkowski,
    Chebyshev,
    Wasserstein,
    Canberra,
    Braycurtis,
}

impl Metric {
    pub const ALL: [Metric; 9] = [
        Metric::Dot,
        Metric::Cosine,
        Metric::Manhattan,
        Metric::Euclidean,
        Metric::Minkowski,
        Metric::Chebyshev,
        Metric::Wasserstein,
        Metric::Canberra,
        Metric::Braycurtis,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Dot => "dot",
            Metric::Cosine => "cosine",
            Metric::Manhattan => "manhattan",
            Metric::Euclidean => "euclidean",
            Metric::Minkowski => "minkowski",
            Metric::Chebyshev => "chebyshev",
            Metric::Wasserstein => "wasserstein",
            Metric::Canberra => "canberra",
            Metric::Braycurtis => "braycurtis",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// Heat-map kinds a selection can score against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SelectKind {
    Hc,
    Hm,
    Hw,
    DhCm,
    DhCw,
}

impl SelectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SelectKind::Hc => "HC",
            SelectKind::Hm => "HM",
            SelectKind::Hw => "HW",
            SelectKind::DhCm => "DH_CM",
            SelectKind::DhCw => "DH_CW",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectConfig {
    pub metric: Metric,
    /// p of the Minkowski distance.
    pub minkowski_p: f64,
    /// Heat map scored against when the faultiest label underfits.
    pub underfit_kind: SelectKind,
    /// Heat map scored against when the faultiest label overfits.
    pub overfit_kind: SelectKind,
}

impl Default for SelectConfig {
    fn default() -> Self {
        Self {
            metric: Metric::Dot,
            minkowski_p: 3.0,
            underfit_kind: SelectKind::Hc,
            overfit_kind: SelectKind::Hc,
        }
    }
}

impl Pipeline {
    /// Load a pipeline file, apply `section.key=value` overrides, and validate.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Pipeline> {
        let mut doc: toml::Table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| {
                    format!(
                        "cannot read pipeline file {}: check the path (pipelines live in pipelines/<name>.toml)",
                        p.display()
                    )
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    anyhow::anyhow!(
                        "{}: invalid TOML: {}",
                        p.display(),
                        one_line(&e.to_string())
                    )
                })?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            apply_override(&mut doc, o)?;
        }
        let origin = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "defaults".into());
        let pipeline: Pipeline =
            toml::Value::Table(doc)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    anyhow::anyhow!("{origin}: {}", one_line(&e.to_string()))
                })?;
        pipeline
            .validate()
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        Ok(pipeline)
    }

    /// Check every range; the message says which key is wrong and what is allowed.
    pub fn validate(&self) -> Result<()> {
        fn unit(name: &str, v: f64, lo_open: bool) -> Result<()> {
            let ok = if lo_open {
                v > 0.0 && v <= 1.0
            } else {
                (0.0..=1.0).contains(&v)
            };
            if !ok || !v.is_finite() {
                bail!(
                    "{name} = {v} is out of range: it must lie in {}0, 1]",
                    if lo_open { "(" } else { "[" }
                );
            }
            Ok(())
        }
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(
                "name = {:?} must be a non-empty file name (letters, digits, '-', '_')",
                self.name
            );
        }
        if self.split.pool_fraction < 0.0 || self.split.pool_fraction >= 1.0 {
            bail!(
                "split.pool_fraction = {} is out of range: it must lie in [0, 1)",
                self.split.pool_fraction
            );
        }
        unit("split.skew_keep", self.split.skew_keep, false)?;
        if !(0.0..1.0).contains(&self.split.noise_rate) {
            bail!(
                "split.noise_rate = {} is out of range: it must lie in [0, 1)",
                self.split.noise_rate
            );
        }
        if self.model.hidden.is_empty() || self.model.hidden.iter().any(|&h| h == 0 || h > 65_536) {
            bail!(
                "model.hidden = {:?}: give at least one hidden layer, each of 1 to 65536 units",
                self.model.hidden
            );
        }
        for (section, t) in [("train", &self.train), ("retrain", &self.retrain)] {
            if t.epochs == 0 || t.epochs > 10_000 {
                bail!(
                    "{section}.epochs = {} is out of range: 1 to 10000",
                    t.epochs
                );
            }
            if t.batch_size == 0 {
                bail!("{section}.batch_size must be at least 1");
            }
            if !(t.learning_rate > 0.0 && t.learning_rate < 10.0) {
                bail!(
                    "{section}.learning_rate = {} is out of range: (0, 10)",
                    t.learning_rate
                );
            }
        }
        unit("mode.theta", self.mode.theta, false)?;
        unit("mode.gamma", self.mode.gamma, false)?;
        unit("mode.alpha", self.mode.alpha, false)?;
        if self.mode.batch == 0 {
            bail!("mode.batch must be at least 1");
        }
        if self.mode.max_iter == 0 || self.mode.max_iter > 1000 {
            bail!(
                "mode.max_iter = {} is out of range: 1 to 1000",
                self.mode.max_iter
            );
        }
        if !(self.layers.threshold >= 0.0 && self.layers.threshold <= 1.0) {
            bail!(
                "layers.threshold = {} is out of range: [0, 1]",
                self.layers.threshold
            );
        }
        if self.layers.max_iterations == 0 {
            bail!("layers.max_iterations must be at least 1");
        }
        if !(self.layers.l2 > 0.0 && self.layers.l2.is_finite()) {
            bail!("layers.l2 = {} must be positive", self.layers.l2);
        }
        if !(self.select.minkowski_p >= 1.0 && self.select.minkowski_p.is_finite()) {
            bail!(
                "select.minkowski_p = {} must be a finite number >= 1",
                self.select.minkowski_p
            );
        }
        if self.split.skew_labels.iter().any(|&l| l > 4095) {
            bail!(
                "split.skew_labels = {:?}: labels must be below 4096",
                self.split.skew_labels
            );
        }
        Ok(())
    }

    /// The split's seed.
    pub fn split_seed(&self) -> u64 {
        self.split
            .seed
            .unwrap_or_else(|| derive_seed(self.seed, "split"))
    }

    /// The weight-initialisation seed.
    pub fn model_seed(&self) -> u64 {
        self.model
            .seed
            .unwrap_or_else(|| derive_seed(self.seed, "model"))
    }

    /// Output root of the pipeline: `output/<name>`.
    pub fn output_root(&self) -> PathBuf {
        PathBuf::from("output").join(&self.name)
    }
}

/// A seed for one named random stream, derived from the master seed (SplitMix64 over the
/// master seed and an FNV-1a hash of the stream's name).
pub fn derive_seed(seed: u64, stream: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ h;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Apply one `a.b.c=value` override to the TOML document. The value is parsed as TOML
/// (`3`, `0.5`, `true`, `[1, 2]`, `"text"`); anything that is not valid TOML is taken as a string.
pub fn apply_override(doc: &mut toml::Table, spec: &str) -> Result<()> {
    let Some((key, raw)) = spec.split_once('=') else {
        bail!("override {spec:?} must look like section.key=value (e.g. mode.theta=0.9)");
    };
    let key = key.trim();
    let raw = raw.trim();
    let value: toml::Value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("override {spec:?}: empty key segment");
    }
    let mut table = doc;
    for part in &parts[..parts.len() - 1] {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("override {spec:?}: {part} is not a section"),
        };
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Pipeline::default().validate().unwrap();
    }

    #[test]
    fn unknown_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(&p, "[mode]\nthetaa = 0.5\n").unwrap();
        let err = Pipeline::load(Some(&p), &[]).unwrap_err().to_string();
        assert!(err.contains("thetaa"), "{err}");
    }

    #[test]
    fn override_and_range_check() {
        let p = Pipeline::load(
            None,
            &["mode.theta=0.5".into(), "select.metric=cosine".into()],
        )
        .unwrap();
        assert_eq!(p.mode.theta, 0.5);
        assert_eq!(p.select.metric, Metric::Cosine);
        let err = Pipeline::load(None, &["mode.alpha=1.5".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("mode.alpha"), "{err}");
        let err = Pipeline::load(None, &["select.metric=nope".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn seeds_are_distinct_streams() {
        assert_ne!(derive_seed(1, "split"), derive_seed(1, "model"));
        assert_eq!(derive_seed(7, "x"), derive_seed(7, "x"));
    }
}
