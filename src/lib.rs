//! mode: automated neural-network model debugging (MODE, Ma et al., FSE 2018) in Rust.
pub mod analysis;
pub mod arch;
pub mod arm;
pub mod artifacts;
pub mod cli;
pub mod config;
pub mod engine;
pub mod idx;
pub mod linalg;
pub mod model;
pub mod numeric;
pub mod plots;
pub mod progress;
pub mod sources;
pub mod stages;
pub mod text_enum;
pub mod vocab;
