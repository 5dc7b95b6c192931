//! Architectures: the layers of a network, as the pipeline declares them (`model.layers`, or
//! the presets `mlp` and `lenet5`) and the model file records them.

use crate::artifacts::{DatasetMeta, OUTPUT};
use crate::config::{ModelPreset, Pipeline};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

crate::text_enum!(
    /// A layer's activation.
    pub enum Activation("activation") { Relu = "relu", Tanh = "tanh", Linear = "linear" }
);

fn relu() -> Activation {
    Activation::Relu
}

fn one() -> usize {
    1
}

/// One hidden layer. The output layer (dense, `classes` units, softmax) is implicit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Layer {
    /// A 2-D convolution (`filters` × `kernel`² kernels, zero padding of `padding` pixels on
    /// each side), then the activation.
    Conv2d {
        filters: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        padding: usize,
        #[serde(default = "relu")]
        activation: Activation,
    },
    /// Max pooling over `size` × `size` windows (stride = size unless given).
    MaxPool2d {
        size: usize,
        #[serde(default)]
        stride: Option<usize>,
    },
    /// Average pooling over `size` × `size` windows (stride = size unless given).
    AvgPool2d {
        size: usize,
        #[serde(default)]
        stride: Option<usize>,
    },
    /// Channels × height × width → one vector (implicit before the first dense layer).
    Flatten,
    /// A fully connected layer, then the activation.
    Dense {
        units: usize,
        #[serde(default = "relu")]
        activation: Activation,
    },
    /// Dropout at `rate` while training; the identity otherwise.
    Dropout { rate: f64 },
}

/// The shape of a layer's output: an image of channels × height × width, or a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Image(usize, usize, usize),
    Vector(usize),
}

impl Shape {
    pub fn size(self) -> usize {
        match self {
            Shape::Image(c, h, w) => c * h * w,
            Shape::Vector(n) => n,
        }
    }
}

impl Layer {
    /// The probe's name prefix of the layer kind; `None` for layers that are not probed
    /// (flatten and dropout do not change what a layer knows).
    pub fn kind_name(&self) -> Option<&'static str> {
        match self {
            Layer::Conv2d { .. } => Some("conv2d"),
            Layer::MaxPool2d { .. } => Some("max_pool2d"),
            Layer::AvgPool2d { .. } => Some("avg_pool2d"),
            Layer::Dense { .. } => Some("dense"),
            Layer::Flatten | Layer::Dropout { .. } => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Layer::Conv2d {
                filters,
                kernel,
                stride,
                padding,
                activation,
            } => format!(
                "Conv {filters}@{kernel}×{kernel}{}{} {activation}",
                if *stride > 1 {
                    format!("/{stride}")
                } else {
                    String::new()
                },
                if *padding > 0 {
                    format!(" pad {padding}")
                } else {
                    String::new()
                }
            ),
            Layer::MaxPool2d { size, .. } => format!("MaxPool {size}"),
            Layer::AvgPool2d { size, .. } => format!("AvgPool {size}"),
            Layer::Flatten => "Flatten".into(),
            Layer::Dense { units, activation } => format!("Dense {units} {activation}"),
            Layer::Dropout { rate } => format!("Dropout {rate}"),
        }
    }

    /// The output shape of the layer on an input of `s`.
    pub fn output(&self, s: Shape) -> Result<Shape> {
        let pooled = |c: usize, h: usize, w: usize, size: usize, stride: Option<usize>| {
            let st = stride.unwrap_or(size);
            if size == 0 || st == 0 || size > h || size > w {
                bail!("a {size}×{size} pooling does not fit a {h}×{w} image");
            }
            Ok(Shape::Image(c, (h - size) / st + 1, (w - size) / st + 1))
        };
        Ok(match (self, s) {
            (
                Layer::Conv2d {
                    filters,
                    kernel,
                    stride,
                    padding,
                    ..
                },
                Shape::Image(_, h, w),
            ) => {
                let (hp, wp) = (h + 2 * padding, w + 2 * padding);
                if *kernel == 0 || *stride == 0 || *filters == 0 || *kernel > hp || *kernel > wp {
                    bail!(
                        "a {filters}@{kernel}×{kernel} convolution does not fit a {h}×{w} image (padding {padding})"
                    );
                }
                Shape::Image(
                    *filters,
                    (hp - kernel) / stride + 1,
                    (wp - kernel) / stride + 1,
                )
            }
            (Layer::MaxPool2d { size, stride }, Shape::Image(c, h, w))
            | (Layer::AvgPool2d { size, stride }, Shape::Image(c, h, w)) => {
                pooled(c, h, w, *size, *stride)?
            }
            (
                Layer::Conv2d { .. } | Layer::MaxPool2d { .. } | Layer::AvgPool2d { .. },
                Shape::Vector(_),
            ) => {
                bail!(
                    "{} after a dense layer: images become vectors only once",
                    self.describe()
                )
            }
            (Layer::Flatten, s) => Shape::Vector(s.size()),
            (Layer::Dense { units, .. }, _) => {
                if *units == 0 || *units > 65_536 {
                    bail!("a dense layer of {units} units (1 to 65536)");
                }
                Shape::Vector(*units)
            }
            (Layer::Dropout { rate }, s) => {
                if !(0.0..1.0).contains(rate) {
                    bail!("dropout rate {rate} (0 to < 1)");
                }
                s
            }
        })
    }
}

/// LeNet-5: conv 6@5×5 pad 2 → pool → conv 16@5×5 → pool → dense 120 → dense 84 → classes.
pub fn lenet5() -> Vec<Layer> {
    vec![
        Layer::Conv2d {
            filters: 6,
            kernel: 5,
            stride: 1,
            padding: 2,
            activation: Activation::Relu,
        },
        Layer::MaxPool2d {
            size: 2,
            stride: None,
        },
        Layer::Conv2d {
            filters: 16,
            kernel: 5,
            stride: 1,
            padding: 0,
            activation: Activation::Relu,
        },
        Layer::MaxPool2d {
            size: 2,
            stride: None,
        },
        Layer::Flatten,
        Layer::Dense {
            units: 120,
            activation: Activation::Relu,
        },
        Layer::Dense {
            units: 84,
            activation: Activation::Relu,
        },
    ]
}

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
