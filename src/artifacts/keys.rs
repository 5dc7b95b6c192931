//! Every metadata key the artifacts carry, each spelled once. Parquet files keep them in their
//! key-value metadata, model files in their SafeTensors header.

/// Parquet's own copy of the Arrow schema: not ours, dropped when a file's metadata is read.
pub const ARROW_SCHEMA_KEY: &str = "ARROW:schema";

/// The fingerprint of the settings a file was made with (splits, models, heads).
pub const SETTINGS_KEY: &str = "mode.settings";

/// Splits: which split a file is, the split's seed, where the data came from and how ids
/// were given.
pub const SPLIT_KEY: &str = "mode.split";
pub const SPLIT_SEED_KEY: &str = "mode.split_seed";
pub const SOURCE_KEY: &str = "mode.source";
pub const ID_MAPPING_KEY: &str = "mode.id_mapping";

/// The dataset's shape and classes, in every split file.
pub const DATASET_KEY: &str = "mode.dataset";
pub const CHANNELS_KEY: &str = "mode.channels";
pub const HEIGHT_KEY: &str = "mode.height";
pub const WIDTH_KEY: &str = "mode.width";
pub const CLASSES_KEY: &str = "mode.classes";
pub const CLASS_NAMES_KEY: &str = "mode.class_names";

/// Activations: the layer columns in order, and the model that was probed.
pub const LAYERS_KEY: &str = "mode.layers";
pub const MODEL_KEY: &str = "mode.model";

/// Heat maps: whether the maps are weighted by the feature model.
pub const WEIGHTED_KEY: &str = "mode.weighted";

/// Model files: the architecture (JSON); Adam's saved state: its kind.
pub const ARCHITECTURE_KEY: &str = "mode.architecture";
pub const OPTIMIZER_KEY: &str = "mode.optimizer";

/// ONNX models, as their activations record them: the output and input node names.
pub const OUTPUT_KEY: &str = "mode.output";
pub const INPUT_KEY: &str = "mode.input";
