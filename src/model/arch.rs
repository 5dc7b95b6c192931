//! Architectures: the layers of a network (their kinds are [`crate::arch`]'s), as the pipeline
//! declares them (`model.layers`, or the presets `mlp` and `lenet5`) and the model file
//! records them.

use crate::artifacts::{DatasetMeta, OUTPUT};
use crate::config::{ModelPreset, Pipeline};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

pub use crate::arch::{Activation, Layer, Shape, lenet5};

/// Enough description to rebuild the network from its weights file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Input channels, height and width.
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    pub layers: Vec<Layer>,
}

impl Architecture {
    /// The pipeline's architecture for data of this shape: `model.layers` when given, else the
    /// preset (`mlp`: dense layers of `model.hidden`; `lenet5`).
    pub fn from_pipeline(p: &Pipeline, meta: &DatasetMeta) -> Architecture {
        let layers = match (&p.model.layers, p.model.preset) {
            (Some(l), _) => l.clone(),
            (None, ModelPreset::Lenet5) => lenet5(),
            (None, ModelPreset::Mlp) => p
                .model
                .hidden
                .iter()
                .map(|&units| Layer::Dense {
                    units,
                    activation: Activation::Relu,
                })
                .collect(),
        };
        Architecture {
            channels: meta.channels,
            height: meta.height,
            width: meta.width,
            classes: meta.classes,
            layers,
        }
    }

    pub fn inputs(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Every layer's output shape, in order (then the output's).
    pub fn shapes(&self) -> Result<Vec<Shape>> {
        let mut s = Shape::Image(self.channels, self.height, self.width);
        let mut out = Vec::new();
        for l in &self.layers {
            s = l.output(s)?;
            out.push(s);
        }
        Ok(out)
    }

    /// Whether any layer works on images (the input then reaches it as C × H × W).
    pub fn is_convolutional(&self) -> bool {
        self.layers.iter().any(|l| {
            matches!(
                l,
                Layer::Conv2d { .. } | Layer::MaxPool2d { .. } | Layer::AvgPool2d { .. }
            )
        })
    }

    /// The probed layers: (index into `layers`, name `<kind>_<n>`), then the output.
    pub fn probed(&self) -> Vec<(Option<usize>, String)> {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        let mut v = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let Some(k) = l.kind_name() else { continue };
            let n = match counts.iter_mut().find(|(name, _)| *name == k) {
                Some(c) => {
                    c.1 += 1;
                    c.1
                }
                None => {
                    counts.push((k, 1));
                    1
                }
            };
            v.push((Some(i), format!("{k}_{n}")));
        }
        v.push((None, OUTPUT.into()));
        v
    }

    /// Names of the probed layers, input to output: `conv2d_1`, …, `dense_1`, …, `output`.
    pub fn layer_names(&self) -> Vec<String> {
        self.probed().into_iter().map(|(_, n)| n).collect()
    }

    pub fn describe(&self) -> String {
        let h: Vec<String> = self.layers.iter().map(Layer::describe).collect();
        format!(
            "{}×{}×{} → {}{}Dense {} softmax",
            self.channels,
            self.height,
            self.width,
            h.join(" → "),
            if h.is_empty() { "" } else { " → " },
            self.classes
        )
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an architecture serialises")
    }

    /// Check the architecture's own consistency: every layer fits its input.
    pub fn validate(&self) -> Result<()> {
        if self.classes < 1 || self.inputs() == 0 {
            bail!(
                "architecture: {} classes of {}×{}×{} inputs is not a classifier",
                self.classes,
                self.channels,
                self.height,
                self.width
            );
        }
        self.shapes()
            .map_err(|e| anyhow::anyhow!("architecture {}: {e}", self.describe()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_shapes() {
        let a = Architecture {
            channels: 1,
            height: 28,
            width: 28,
            classes: 10,
            layers: vec![
                Layer::Dense {
                    units: 28,
                    activation: Activation::Relu,
                },
                Layer::Dense {
                    units: 16,
                    activation: Activation::Relu,
                },
            ],
        };
        assert_eq!(a.layer_names(), ["dense_1", "dense_2", "output"]);
        assert_eq!(a.inputs(), 784);
        let j = a.to_json();
        assert!(j.contains("\"kind\":\"dense\""), "{j}");
        assert_eq!(serde_json::from_str::<Architecture>(&j).unwrap(), a);
        assert_eq!(
            serde_json::from_str::<Layer>(r#"{"kind":"dense","units":5}"#).unwrap(),
            Layer::Dense {
                units: 5,
                activation: Activation::Relu
            },
            "relu by default"
        );
    }

    #[test]
    fn lenet_shapes() {
        let a = Architecture {
            channels: 1,
            height: 28,
            width: 28,
            classes: 10,
            layers: lenet5(),
        };
        let s = a.shapes().unwrap();
        assert_eq!(s[0], Shape::Image(6, 28, 28));
        assert_eq!(s[1], Shape::Image(6, 14, 14));
        assert_eq!(s[2], Shape::Image(16, 10, 10));
        assert_eq!(s[3], Shape::Image(16, 5, 5));
        assert_eq!(s[4], Shape::Vector(400));
        assert_eq!(
            a.layer_names(),
            [
                "conv2d_1",
                "max_pool2d_1",
                "conv2d_2",
                "max_pool2d_2",
                "dense_1",
                "dense_2",
                "output"
            ]
        );
        assert!(a.is_convolutional());
        let bad = Architecture {
            layers: vec![
                Layer::Dense {
                    units: 4,
                    activation: Activation::Relu,
                },
                Layer::MaxPool2d {
                    size: 2,
                    stride: None,
                },
            ],
            ..a
        };
        assert!(bad.validate().is_err());
    }
}
