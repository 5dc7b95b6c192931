//! Model/data mismatches, for callers and tests that tell them apart: a model of another
//! architecture than the pipeline's, data of another shape or class count than the model's,
//! and a model whose activations are not finite. The messages are the ones the command line
//! prints (after `error:`).

use std::path::PathBuf;

/// Channels × height × width images of a number of classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
}

impl std::fmt::Display for DataShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model file holds another architecture than the pipeline describes.
    #[error(
        "{}: the model is {model} but the pipeline describes {pipeline}; train it again or use the pipeline it was made with",
        path.display()
    )]
    OtherArchitecture {
        path: PathBuf,
        model: String,
        pipeline: String,
    },
    /// Data of another shape or class count than the model takes.
    #[error(
        "{}: the data are {data} images of {} classes but the model takes {model} inputs and has {} classes",
        path.display(),
        data.classes,
        model.classes
    )]
    DataShape {
        path: PathBuf,
        data: DataShape,
        model: DataShape,
    },
    /// Data of another shape or class count than an ONNX model was loaded for.
    #[error(
        "{}: the data are {data} images of {} classes but the ONNX model was loaded for {model} images of {} classes",
        path.display(),
        data.classes,
        model.classes
    )]
    OnnxDataShape {
        path: PathBuf,
        data: DataShape,
        model: DataShape,
    },
    /// A layer's activation is NaN or infinite.
    #[error(
        "the model's layer {layer} gives a non-finite activation (row {row}): its weights have diverged"
    )]
    NonFinite { layer: String, row: usize },
}

impl From<&crate::artifacts::DatasetMeta> for DataShape {
    fn from(m: &crate::artifacts::DatasetMeta) -> DataShape {
        DataShape {
            channels: m.channels,
            height: m.height,
            width: m.width,
            classes: m.classes,
        }
    }
}
