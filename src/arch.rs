//! The layer kinds an architecture is made of, as the pipeline declares them (`model.layers`,
//! or the preset `lenet5`) and the model file records them: a low home, so the configuration
//! can hold them and the model can build networks from them.

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

    /// A short description (`Conv 6@5×5 pad 2 relu`, `Dense 120 relu`, …).
    pub fn describe(&self) -> String {
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
