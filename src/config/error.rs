//! What can be wrong with a pipeline: its file, a `--set` override or a value.

/// A configuration error. The message starts with the file or the `--set` override it comes
/// from ([`ConfigError::In`]), then the key that is wrong and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key no section has.
    #[error("{0}")]
    UnknownKey(String),
    /// A value of the wrong type or form for its key (a word where a number belongs, an
    /// unknown metric).
    #[error("{0}")]
    BadValue(String),
    /// A value outside its key's range, or at odds with another key; `key` is the key the
    /// message starts with.
    #[error("{message}")]
    OutOfRange { key: String, message: String },
    /// Pipeline files that extend each other in a loop, first to last.
    #[error(
        "`extends` makes a cycle: {}; the last file must not extend the first",
        .files.join(" → ")
    )]
    ExtendsCycle { files: Vec<String> },
    /// `extends` names a file that is neither beside the pipeline nor shipped.
    #[error("{path}: extends = {base:?}, but neither {beside} nor {shipped} exists")]
    ExtendsMissing {
        path: String,
        base: String,
        beside: String,
        shipped: String,
    },
    /// `extends` is not a string.
    #[error("{path}: `extends` must be a file name, e.g. \"mnist.toml\"")]
    ExtendsNotAName { path: String },
    /// The pipeline file cannot be read.
    #[error(
        "cannot read pipeline file {path}: check the path (pipelines live in pipelines/<name>.toml; `mode --pipeline NAME` takes a name too)"
    )]
    MissingFile {
        path: String,
        source: std::io::Error,
    },
    /// The pipeline file is not TOML.
    #[error("{path}: invalid TOML: {message}")]
    Syntax { path: String, message: String },
    /// An override that is not `section.key=value`.
    #[error("{0}")]
    BadOverride(String),
    /// An error of the pipeline file or of the override named by `origin`.
    #[error("{origin}: {error}")]
    In {
        origin: String,
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    /// `self` as coming from `origin` (a file, `--set KEY=VALUE`, `--epochs N`).
    pub fn at(self, origin: impl Into<String>) -> ConfigError {
        ConfigError::In {
            origin: origin.into(),
            error: Box::new(self),
        }
    }

    /// The error itself, without the file or override it comes from.
    pub fn cause(&self) -> &ConfigError {
        match self {
            ConfigError::In { error, .. } => error.cause(),
            e => e,
        }
    }

    /// A serde decoding message, made plain, as an unknown key or a bad value.
    pub(super) fn decoding(message: String) -> ConfigError {
        if message.starts_with("unknown field") {
            ConfigError::UnknownKey(message)
        } else {
            ConfigError::BadValue(message)
        }
    }
}
