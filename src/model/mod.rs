//! The model under debugging: its architecture (one description, saved in the model file),
//! its weights as plain arrays, the one inference kernel (ndarray + sgemm) and training as
//! fleets of models in one burn autodiff program on burn's Flex CPU backend.
//!
//! A model file is SafeTensors whose header metadata holds the [`Architecture`]
//! (`mode.architecture`, JSON) and the fingerprint of the settings that produced it
//! (`mode.settings`), so every stage rebuilds the network from the file alone, and a model of
//! another architecture than the pipeline's is a clear error.
//!
//! A user's own classifier can also be an ONNX file ([`OnnxNet`], run with tract); both kinds
//! are [`Classifier`]s, which is all the probe and the evaluation need.

pub mod adam;
mod arch;
pub mod error;
pub mod fleet;
mod infer;
pub mod kernels;
mod net;
pub mod onnx;
mod ops;
pub mod safetensors;
mod train;
pub mod weights;

pub use adam::OptimState;
pub use arch::{Activation, Architecture, Layer, Shape, lenet5};
pub use error::{DataShape, ModelError};
pub use fleet::{Job, Trained, fit_all};
pub use net::{Net, activations_fleet};
pub use onnx::OnnxNet;
pub use train::{EpochStats, cross_entropy, fit};
pub use weights::Weights;

#[cfg(test)]
mod tests;

use crate::artifacts::DatasetMeta;
use anyhow::Result;
use ndarray::Array2;
use std::collections::BTreeMap;
use std::path::Path;

/// A network the probe and the evaluation can run: its recorded layers' activations, the last
/// being the class probabilities (`output`).
pub trait Classifier: Send + Sync {
    /// The recorded layers' names, input to output, ending with `output`.
    fn layer_names(&self) -> Vec<String>;
    /// Every recorded layer's activations for `x` (one row per sample), the probabilities
    /// last; every value finite.
    fn activations(&self, x: &Array2<f32>) -> Result<Vec<Array2<f32>>>;
    /// Metadata the activations record about the model (architecture, how layers were read).
    fn info(&self) -> BTreeMap<String, String>;
    fn classes(&self) -> usize;
    /// Data of another shape or class count than the model's is an error.
    fn check_data(&self, meta: &DatasetMeta, data: &Path) -> Result<()>;
    /// Class probabilities for `x`.
    fn predict(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        Ok(self.activations(x)?.pop().expect("the output layer"))
    }
}

impl Classifier for Net {
    fn layer_names(&self) -> Vec<String> {
        self.arch.layer_names()
    }
    fn activations(&self, x: &Array2<f32>) -> Result<Vec<Array2<f32>>> {
        Net::activations(self, x)
    }
    fn info(&self) -> BTreeMap<String, String> {
        let mut m = self.probe_info();
        m.insert(
            crate::artifacts::keys::ARCHITECTURE_KEY.to_string(),
            self.arch.to_json(),
        );
        m
    }
    fn classes(&self) -> usize {
        self.arch.classes
    }
    fn check_data(&self, meta: &DatasetMeta, data: &Path) -> Result<()> {
        Net::check_data(self, meta, data)
    }
}
