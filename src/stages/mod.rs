//! One module per stage, each with one `run`.
pub mod evaluate;
pub mod experiment;
pub mod heatmap;
pub mod layers;
pub mod probe;
pub mod report;
pub mod retrain;
pub mod select;
pub mod split;
pub mod summary;
pub mod sweep;
pub mod train;
