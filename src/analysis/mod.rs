//! Pure analysis: distances, layer selection, heat maps, statistics. No file I/O here.
pub mod distance;
pub mod heatmap;
pub mod layers;
pub mod logistic;
pub mod selection;
pub mod stats;
pub mod strategies;
pub mod verdict;
