//! mode: automated neural-network model debugging (MODE, Ma et al., FSE 2018) in Rust.
pub mod analysis;
pub mod artifacts;
pub mod config;
pub mod idx;
pub mod model;
pub mod plots;
pub mod progress;
pub mod stages;
