//! What the integration tests share.
#![allow(dead_code)]

pub mod onnx;

use mode::artifacts::{Artifact, FileSum, Manifest, TrainLogRow};
use std::path::Path;

/// Equal bytes — but for train logs, whose `seconds` column is a wall time (equal rows
/// otherwise), and run manifests, which record those logs' checksums (equal otherwise).
pub fn same_content(rel: &Path, a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    match rel.file_name().and_then(|n| n.to_str()) {
        Some("train_log.parquet") => {
            let read = |bytes: &[u8]| {
                let f = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(f.path(), bytes).unwrap();
                let mut rows = Vec::<TrainLogRow>::read(f.path()).unwrap();
                rows.iter_mut().for_each(|r| r.seconds = 0.0);
                rows
            };
            read(a) == read(b)
        }
        Some("manifest.json") => {
            let read = |bytes: &[u8]| {
                let mut m: Manifest = serde_json::from_slice(bytes).unwrap();
                for files in &mut m.files {
                    for (name, sum) in files.iter_mut() {
                        if name.ends_with("train_log.parquet") {
                            *sum = FileSum {
                                bytes: 0,
                                crc32: String::new(),
                            };
                        }
                    }
                }
                m
            };
            read(a) == read(b)
        }
        _ => false,
    }
}
