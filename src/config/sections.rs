//! The sections of a pipeline file, each with its defaults.

use crate::vocab::{MapKind, Metric, Space};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// The number of classes; every label must be below it. Defaults to the number of
    /// `class_names` when given, else to the largest label + 1 (and then every label below it
    /// must occur in the data).
    pub classes: Option<usize>,
    /// An image folder instead of the idx files: `<images>/<class name>/*.png|jpg`, classes
    /// sorted by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<PathBuf>,
    /// A Parquet table instead of the idx files: one row per sample, a label column and a
    /// pixel-array column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<PathBuf>,
    /// The table's label column (integers, or text: class names sorted) [default: "label"].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// The table's pixel column: a list or array of numbers per row, C × H × W
    /// [default: "pixels"].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixels_column: Option<String>,
    /// Image channels (1 grayscale, 3 RGB) [default: images: 3 if any image has colour, else 1;
    /// table: 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// Image height and width: images are resized to it [default: the first image's size, and
    /// every image must have it; table: square images].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    /// Image folders and tables have no test file: this share of the samples (seeded) is the
    /// test split [default: 0.2].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_fraction: Option<f64>,
    /// Table pixel values are multiplied by it [default: 1/255 for integer columns, 1 for
    /// float columns].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            idx_dir: "data/mnist".into(),
            dataset: "mnist".into(),
            class_names: Vec::new(),
            classes: None,
            images: None,
            table: None,
            label_column: None,
            pixels_column: None,
            channels: None,
            height: None,
            width: None,
            test_fraction: None,
            scale: None,
        }
    }
}

impl DataConfig {
    pub const TEST_FRACTION: f64 = 0.2;

    /// The share of an image folder or table that becomes the test split.
    pub fn test_fraction(&self) -> f64 {
        self.test_fraction.unwrap_or(Self::TEST_FRACTION)
    }

    pub fn label_column(&self) -> &str {
        self.label_column.as_deref().unwrap_or("label")
    }

    pub fn pixels_column(&self) -> &str {
        self.pixels_column.as_deref().unwrap_or("pixels")
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
    /// Pool samples set aside (seeded) as a holdout split: never selected, used for the heat
    /// maps and diagnosis with `heatmap.split = "holdout"`; 0 = none.
    pub holdout: usize,
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
            holdout: 0,
        }
    }
}

/// Architecture of the model under debugging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// `mlp` (dense ReLU layers of `hidden`, the seed's) or `lenet5` (conv 6@5×5 pad 2 → pool →
    /// conv 16@5×5 → pool → dense 120 → dense 84); ignored when `layers` is given.
    pub preset: ModelPreset,
    /// Sizes of the hidden dense (ReLU) layers of the `mlp` preset.
    pub hidden: Vec<usize>,
    /// The hidden layers, in order (the output layer is implicit): tables with `kind` =
    /// conv2d (filters, kernel, stride, padding, activation), max_pool2d / avg_pool2d (size,
    /// stride), flatten, dense (units, activation), dropout (rate).
    pub layers: Option<Vec<crate::arch::Layer>>,
    /// Seed of the weight initialisation; defaults to a stream derived from the pipeline seed.
    pub seed: Option<u64>,
    /// ONNX models (`--onnx`): the node outputs to record, in order; empty = every Relu, Gemm,
    /// MatMul and Conv output but the model's own output.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub onnx_layers: Vec<String>,
    /// ONNX models: how samples reach the model's input: `flat` (N × C·H·W, the default) or
    /// `image` (N × C × H × W).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<OnnxInput>,
    /// ONNX models: per-channel normalisation of the [0, 1] pixels, x' = (x − mean) / std
    /// (one value for every channel, or one per channel); empty = none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub input_mean: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub input_std: Vec<f64>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            preset: ModelPreset::Mlp,
            hidden: vec![28, 28],
            layers: None,
            seed: None,
            onnx_layers: Vec::new(),
            input: None,
            input_mean: Vec::new(),
            input_std: Vec::new(),
        }
    }
}

crate::text_enum!(
    /// `model.input`: the layout of an ONNX model's input.
    pub enum OnnxInput("model.input") { Flat = "flat", Image = "image" }
);

crate::text_enum!(
    /// `model.preset`.
    pub enum ModelPreset("model.preset") { Mlp = "mlp", Lenet5 = "lenet5" }
);

/// What the probe records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Convolution and pooling layers: per-channel `mean`s (C values) or the `full` maps
    /// (C × H × W values).
    pub conv: ConvProbe,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            conv: ConvProbe::Mean,
        }
    }
}

crate::text_enum!(
    /// `probe.conv`.
    pub enum ConvProbe("probe.conv") { Mean = "mean", Full = "full" }
);

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

crate::text_enum!(
    /// When a label counts as underfitting.
    pub enum UnderfitRule("underfit rule") {
        /// Test accuracy below θ (what the seed's loop did).
        Test = "test",
        /// Train and test accuracy both below θ (the seed's parameter notes).
        Both = "both",
    }
);

/// The MODE loop's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModeConfig {
    /// θ: a label whose accuracy is below it underfits — a number, or `{ relative = r }`: r
    /// times the model's accuracy on the analysis split at that iteration.
    pub theta: Theta,
    /// γ: a label whose train − test accuracy exceeds it overfits.
    pub gamma: f64,
    /// α: share of each batch chosen by the heat map; the rest is random.
    pub alpha: f64,
    /// Samples per retraining batch: a whole number, or a fraction of the pool split in (0, 1).
    pub batch: Amount,
    /// Iterations of probe → … → evaluate.
    pub max_iter: usize,
    pub underfit_rule: UnderfitRule,
    /// Whose per-label accuracy finds the faulty labels: the model's own (`model`), or the
    /// target layer's feature model (`target_layer`, the seed; its heat maps come from the
    /// target layer either way).
    pub diagnosis: DiagnosisBy,
    /// When no label is faulty: `stop` (an empty batch, as the seed) or `random` (keep spending
    /// the budget at random, so every arm trains on as many samples).
    pub on_finish: OnFinish,
}

impl Default for ModeConfig {
    fn default() -> Self {
        Self {
            theta: Theta::Relative { relative: 0.97 },
            gamma: 0.10,
            alpha: 0.25,
            batch: Amount::Fraction(0.067),
            max_iter: 5,
            underfit_rule: UnderfitRule::Test,
            diagnosis: DiagnosisBy::Model,
            on_finish: OnFinish::Stop,
        }
    }
}

crate::text_enum!(
    /// Whose accuracy per label diagnoses the model (`mode.diagnosis`).
    pub enum DiagnosisBy("diagnosis") { Model = "model", TargetLayer = "target_layer" }
);

/// A number of samples, or a fraction of a whole (of the pool split, for `mode.batch`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Count(usize),
    Fraction(f64),
}

impl Amount {
    /// The count out of `whole`: the number itself, or the fraction rounded (at least 1).
    pub fn of(self, whole: usize) -> usize {
        match self {
            Amount::Count(n) => n,
            Amount::Fraction(f) => ((f * whole as f64).round() as usize).max(1),
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Fraction(x) => write!(f, "{x} of the pool"),
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Amount::Count(n) => s.serialize_u64(*n as u64),
            Amount::Fraction(f) => s.serialize_f64(*f),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a whole number of samples, or a fraction of the pool in (0, 1)")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount::Count(v as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Amount, E> {
                usize::try_from(v)
                    .map(Amount::Count)
                    .map_err(|_| E::custom(format!("{v} samples: a batch cannot be negative")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Amount, E> {
                Ok(Amount::Fraction(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// θ: absolute, or relative to the model's accuracy (`{ relative = 0.97 }`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Theta {
    Absolute(f64),
    Relative { relative: f64 },
}

impl Theta {
    /// θ for a model whose accuracy (on the analysis split) is `model_acc`.
    pub fn at(self, model_acc: f64) -> f64 {
        match self {
            Theta::Absolute(t) => t,
            Theta::Relative { relative } => relative * model_acc,
        }
    }
}

impl std::fmt::Display for Theta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Theta::Absolute(t) => write!(f, "{t}"),
            Theta::Relative { relative } => write!(f, "{relative} × the model's accuracy"),
        }
    }
}

/// The L2 strength of the feature models: a number, or `"auto"` — chosen per head from
/// `layers.l2_grid` by the accuracy on a seeded held-out part of its fit rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Penalty {
    Fixed(f64),
    Auto,
}

impl std::fmt::Display for Penalty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Penalty::Fixed(v) => write!(f, "{v}"),
            Penalty::Auto => f.write_str("auto"),
        }
    }
}

impl Serialize for Penalty {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Penalty::Fixed(v) => s.serialize_f64(*v),
            Penalty::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Penalty {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Penalty, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Penalty;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a positive number or \"auto\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Penalty, E> {
                Ok(Penalty::Fixed(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Penalty, E> {
                Ok(Penalty::Fixed(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Penalty, E> {
                Ok(Penalty::Fixed(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Penalty, E> {
                match v {
                    "auto" => Ok(Penalty::Auto),
                    _ => Err(E::custom(format!(
                        "{v:?}: give a positive number or \"auto\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

crate::text_enum!(
    /// What decides the diagnosis when the target layer's feature model is not to be trusted
    /// (near chance, or far below the model's own accuracy): the model's own predictions, or
    /// the feature model all the same (the seed: MODE as it is).
    pub enum Untrusted("untrusted") { Model = "model", Keep = "keep" }
);

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
    /// L2 penalty of each softmax head (on the summed log-loss of standardised features), or
    /// `"auto"` (chosen from `l2_grid` on held-out rows).
    pub l2: Penalty,
    /// The strengths `l2 = "auto"` tries.
    pub l2_grid: Vec<f64>,
    /// The share of a head's fit rows held out to score the grid (seeded).
    pub l2_holdout: f64,
    /// Fit each head on at most this many train samples (seeded subset); 0 = all.
    pub max_train_samples: usize,
    /// Take this layer as the target in both directions (a probed layer's name, e.g.
    /// "dense_2", or "input" / "output") instead of the Bhattacharyya rule; unset = the rule.
    pub force_target: Option<String>,
    /// A target layer whose feature model's accuracy is more than this below the model's own
    /// (accuracy points / 100) is not trusted.
    pub max_gap: f64,
    /// Who decides when the target's feature model is not trusted.
    pub untrusted: Untrusted,
}

impl Default for LayersConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 0.01,
            max_iterations: 15,
            l2: Penalty::Auto,
            l2_grid: vec![0.01, 0.1, 1.0, 10.0, 100.0, 1000.0],
            l2_holdout: 0.2,
            max_train_samples: 10_000,
            force_target: None,
            max_gap: 0.10,
            untrusted: Untrusted::Model,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeatmapConfig {
    pub space: Space,
    /// In feature space, weight each neuron by the head's weight for the label.
    pub weighted: bool,
    /// The split whose inputs the diagnosis and the heat maps come from: `test` (the seed;
    /// the same split whose accuracy is reported), `train`, or `holdout` (a seeded slice of the
    /// pool kept out of selection, `split.holdout` samples).
    pub split: AnalysisSplit,
}

impl Default for HeatmapConfig {
    fn default() -> Self {
        Self {
            space: Space::Input,
            weighted: false,
            split: AnalysisSplit::Test,
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
    pub underfit_kind: MapKind,
    /// Heat map scored against when the faultiest label overfits.
    pub overfit_kind: MapKind,
    /// Where the random share comes from: `exclude_target` (the seed: never the targeted
    /// labels, so they make up exactly α of the batch) or `any` (the whole remaining pool).
    pub random_fill: RandomFill,
    /// When the scored heat map is empty (n = 0, e.g. no correct input of the label): score
    /// against `HW` instead, take the label's candidates at `random` (what the seed's NaN map
    /// amounts to), or stop with an `error`.
    pub empty_map: EmptyMap,
    /// For underfitting labels take the `most` (the seed) or the `least` similar candidates;
    /// overfitting labels always take the least similar.
    pub order: Order,
    /// Which labels the α share targets: the `faultiest` (the seed) or `all_faulty`, split
    /// over every faulty label in proportion to its deficit (θ − accuracy, gap − γ).
    pub targets: Targets,
}

impl Default for SelectConfig {
    fn default() -> Self {
        Self {
            metric: Metric::Dot,
            minkowski_p: 3.0,
            underfit_kind: MapKind::Hc,
            overfit_kind: MapKind::Hc,
            random_fill: RandomFill::ExcludeTarget,
            empty_map: EmptyMap::Random,
            order: Order::Most,
            targets: Targets::Faultiest,
        }
    }
}

/// The `[retrain]` section: how each iteration trains on what was selected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// Adam's moments: `keep` them across trainings (the seed fits one compiled Keras model
    /// again and again; the state is saved beside each model) or start `fresh` each time.
    pub optimizer: OptimizerMode,
    /// Train on the `batch` alone (the seed) or on `train+selected`: the train split plus every
    /// batch selected so far (the paper).
    pub data: RetrainData,
    /// `continue` from the previous model (the seed) or train from `scratch` (fresh weights).
    pub init: RetrainInit,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        let t = TrainConfig::default();
        Self {
            epochs: t.epochs,
            batch_size: t.batch_size,
            learning_rate: t.learning_rate,
            optimizer: OptimizerMode::Keep,
            data: RetrainData::Batch,
            init: RetrainInit::Continue,
        }
    }
}

impl RetrainConfig {
    /// The optimisation part, as training takes it.
    pub fn train(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
        }
    }
}

crate::text_enum!(
    /// `mode.on_finish`.
    pub enum OnFinish("mode.on_finish") { Stop = "stop", Random = "random" }
);

crate::text_enum!(
    /// `heatmap.split`.
    pub enum AnalysisSplit("heatmap.split") { Test = "test", Train = "train", Holdout = "holdout" }
);

crate::text_enum!(
    /// `select.random_fill`.
    pub enum RandomFill("select.random_fill") { ExcludeTarget = "exclude_target", Any = "any" }
);

crate::text_enum!(
    /// `select.empty_map`.
    pub enum EmptyMap("select.empty_map") { Hw = "HW", Random = "random", Error = "error" }
);

crate::text_enum!(
    /// `select.order`.
    pub enum Order("select.order") { Most = "most", Least = "least" }
);

crate::text_enum!(
    /// `select.targets`.
    pub enum Targets("select.targets") { Faultiest = "faultiest", AllFaulty = "all_faulty" }
);

crate::text_enum!(
    /// `retrain.optimizer`.
    pub enum OptimizerMode("retrain.optimizer") { Keep = "keep", Fresh = "fresh" }
);

crate::text_enum!(
    /// `retrain.data`.
    pub enum RetrainData("retrain.data") { Batch = "batch", TrainSelected = "train+selected" }
);

crate::text_enum!(
    /// `retrain.init`.
    pub enum RetrainInit("retrain.init") { Continue = "continue", Scratch = "scratch" }
);

/// The `[ablate]` section: the protocol settings `mode ablate` compares, the arms and seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AblateConfig {
    /// Seeds per setting (seed, seed + 1, …).
    pub seeds: usize,
    /// Arms, comma-separated, or a set; must include the control `random`.
    pub arms: String,
    /// One entry per setting: "base" (the pipeline as it is) or overrides joined by "; ",
    /// e.g. "retrain.data=\"train+selected\"; select.random_fill=\"any\"".
    pub settings: Vec<String>,
}

impl Default for AblateConfig {
    fn default() -> Self {
        Self {
            seeds: 10,
            arms: "mode-dot,mode-cosine,label-random,uncertainty,random".into(),
            settings: vec!["base".into()],
        }
    }
}
