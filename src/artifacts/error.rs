//! The artifact contract's errors, for callers and tests that tell them apart: a file an
//! earlier stage should have written, a column missing or of the wrong type, a non-finite
//! value, activations of another split, a broken run manifest. The messages are the ones the
//! command line prints (after `error:`, in one chain with their causes).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// A file an earlier stage makes is not there.
    #[error(
        "cannot open {}: it does not exist; {made_by} makes it (make all and make chain run every stage)",
        path.display()
    )]
    Missing {
        path: PathBuf,
        /// The command that makes it.
        made_by: String,
        source: std::io::Error,
    },
    #[error("{}: missing column {column:?} (has {has:?})", path.display())]
    MissingColumn {
        path: PathBuf,
        column: String,
        has: Vec<String>,
    },
    /// A column of another type than the contract's (`expected`).
    #[error("{}: column {column:?} {found}", path.display())]
    ColumnType {
        path: PathBuf,
        column: String,
        /// What the column is and what it must be, as the message says it.
        found: String,
    },
    #[error(
        "{}: column {column:?} has a non-finite value ({value}) in row {row} (of {rows}); the file is corrupt or was written from a diverged model",
        path.display()
    )]
    NonFinite {
        path: PathBuf,
        column: String,
        value: f32,
        row: usize,
        rows: usize,
    },
    /// Activations whose ids are not their split's, in its order.
    #[error(
        "{}: the activations do not match the {split} split {}: their ids must be the split's, in its order (re-run the probe)",
        path.display(),
        split_path.display()
    )]
    NotOfSplit {
        path: PathBuf,
        split: String,
        split_path: PathBuf,
    },
    /// A run manifest that cannot be read as one.
    #[error("{}: not a run manifest (delete the run folder and run again)", path.display())]
    BrokenManifest {
        path: PathBuf,
        source: serde_json::Error,
    },
}
