//! Every artifact's path and schema: the project's public Parquet contract.
//!
//! - [`layout`] names every file; no other module spells a file name.
//! - Every artifact type implements [`Artifact`]: one `read` and one `write`, atomic (a
//!   temporary file renamed into place), so a failed stage leaves no half artifact.
//! - *Tensor* artifacts (rows with `FixedSizeList<Float32, N>` columns: splits, predictions,
//!   activations, heat maps, heads) are written and read with arrow-rs + parquet ([`tensor`]);
//!   *tables* (train log, metrics, layers, diagnosis, scores, batch, pool, summaries) with
//!   polars ([`table`], rows in [`rows`]). No artifact is written through both.
//! - Categorical columns are [`crate::vocab`] enums, checked when read; float columns are
//!   checked to be finite when read.

pub mod activations;
pub mod batch_csv;
pub mod error;
pub mod io;
pub mod keys;
pub mod layout;
pub mod manifest;
pub mod maps;
pub mod rows;
pub mod samples;
pub mod table;
pub mod tensor;

pub use activations::{Activations, INPUT, OUTPUT};
pub use batch_csv::{BatchCsv, BatchCsvRow};
pub use error::ArtifactError;
pub use io::{Lock, LockKind, write_atomic, write_bytes};
pub use layout::{IterDir, Layout, Split};
pub use manifest::{FileSum, Grid, IterFiles, Manifest, PartManifest, ShardOf, Unit, Verify};
pub use maps::{Head, HeatmapRow, Heatmaps, Predictions, SoftmaxHead};
pub use rows::*;
pub use samples::{DatasetMeta, Samples, read_pool};
pub use table::{Table, write_frame_with};

use anyhow::Result;
use std::path::Path;

/// A file kind of the contract: read whole, written atomically.
pub trait Artifact: Sized + Send + Sync + 'static {
    fn read(path: &Path) -> Result<Self>;
    fn write(&self, path: &Path) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{IterStatus, Scope};

    #[test]
    fn table_roundtrip_with_enums() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.parquet");
        let rows = vec![MetricRow {
            pipeline: "p".into(),
            seed: 1,
            arm: "a".into(),
            iteration: 0,
            scope: Scope::Overall,
            label: None,
            accuracy: 0.5,
            loss: 1.0,
            n: 3,
            finished_early: false,
            status: IterStatus::Ran,
        }];
        rows.write(&p).unwrap();
        assert_eq!(Vec::<MetricRow>::read(&p).unwrap(), rows);
        let t = table::read_frame(&p, None).unwrap();
        assert_eq!(
            t.column("scope").unwrap().str().unwrap().get(0),
            Some("overall"),
            "categorical columns are plain text"
        );
    }

    #[test]
    fn bad_category_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.parquet");
        let mut df = polars::prelude::df!(
            "id" => [1u32], "label" => [0u16], "origin" => ["chosen"], "iteration" => [1u32], "arm" => ["x"]
        )
        .unwrap();
        table::write_frame(&p, &mut df).unwrap();
        let e = format!("{:#}", Vec::<BatchRow>::read(&p).unwrap_err());
        assert!(e.contains("unknown origin \"chosen\""), "{e}");
    }
}
