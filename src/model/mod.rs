//! The model under debugging: its architecture (one description, saved in the model file)
//! and the network on burn's NdArray CPU backend.
//!
//! A model file is SafeTensors whose header metadata holds the [`Architecture`]
//! (`mode.architecture`, JSON) and the fingerprint of the settings that produced it
//! (`mode.settings`), so every stage rebuilds the network from the file alone, and a model of
//! another architecture than the pipeline's is a clear error.

mod arch;
mod net;
mod network;
pub mod safetensors;
mod train;

pub use arch::{Activation, Architecture, Layer, Shape, lenet5};
pub use net::Net;
pub use train::{EpochStats, OptimState, cross_entropy, fit};

#[cfg(test)]
mod tests;
