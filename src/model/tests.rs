//! Convolutions by hand; a small convolutional model that trains and probes; the inference
//! kernel against burn's forward pass; a model trains and probes the same alone and inside a
//! fleet.

use super::arch::{Activation, Architecture, Layer};
use super::fleet::{self, Job};
use super::net::{Net, activations_fleet};
use super::train::fit;
use super::weights::{Param, Weights};
use crate::config::{ConvProbe, TrainConfig};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn net_of(arch: &Architecture, seed: u64) -> Net {
    Net {
        weights: Weights::init(arch, seed).unwrap(),
        arch: arch.clone(),
        settings: String::new(),
        conv_probe: ConvProbe::Mean,
    }
}

#[test]
fn conv_forward_by_hand() {
    let arch = Architecture {
        channels: 1,
        height: 4,
        width: 4,
        classes: 2,
        layers: vec![Layer::Conv2d {
            filters: 1,
            kernel: 3,
            stride: 1,
            padding: 0,
            activation: Activation::Linear,
        }],
    };
    let mut net = net_of(&arch, 1);
    // Kernel [[1,0,−1],[0,2,0],[−1,0,1]], bias 0.5; input 0..16 row-major.
    let k = vec![1.0f32, 0.0, -1.0, 0.0, 2.0, 0.0, -1.0, 0.0, 1.0];
    let Some(Param::Conv(c)) = &mut net.weights.layers[0] else {
        panic!("a conv layer")
    };
    c.w = Array2::from_shape_vec((1, 9), k.clone()).unwrap();
    c.b = ndarray::arr1(&[0.5f32]);
    let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    // out[i][j] = x[i][j] − x[i][j+2] + 2·x[i+1][j+1] − x[i+2][j] + x[i+2][j+2] + 0.5
    let at = |i: usize, j: usize| x[i * 4 + j];
    let want: Vec<f32> = (0..2)
        .flat_map(|i| (0..2).map(move |j| (i, j)))
        .map(|(i, j)| {
            at(i, j) - at(i, j + 2) + 2.0 * at(i + 1, j + 1) - at(i + 2, j) + at(i + 2, j + 2) + 0.5
        })
        .collect();
    let acts = net
        .activations(&Array2::from_shape_vec((1, 16), x.clone()).unwrap())
        .unwrap();
    let full = Net {
        conv_probe: ConvProbe::Full,
        ..net.clone()
    }
    .activations(&Array2::from_shape_vec((1, 16), x.clone()).unwrap())
    .unwrap();
    assert_eq!(full[0].as_slice().unwrap(), &want[..]);
    assert_eq!(acts[0][[0, 0]], want.iter().sum::<f32>() / 4.0);
    // The fleet's training convolution (the fused kernel) agrees.
    let s = super::kernels::ConvShape {
        k: 1,
        b: 1,
        c: 1,
        h: 4,
        w: 4,
        o: 1,
        kernel: 3,
        stride: 1,
        pad: 0,
    };
    let got = super::kernels::conv_forward(s, &x, &k, &[0.5], Activation::Linear);
    assert_eq!(got, want);
}

/// 300 synthetic 12×12 images: label 1 when the left half is brighter.
fn images() -> (Array2<f32>, Vec<u16>) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 300;
    let mut x = Array2::<f32>::zeros((n, 144));
    let mut y = Vec::new();
    for i in 0..n {
        let left = i % 2 == 1;
        for p in 0..144 {
            let bright = ((p % 12) < 6) == left;
            x[[i, p]] = rng.random::<f32>() * 0.5 + if bright { 0.5 } else { 0.0 };
        }
        y.push(left as u16);
    }
    (x, y)
}

fn two_conv() -> Architecture {
    Architecture {
        channels: 1,
        height: 12,
        width: 12,
        classes: 2,
        layers: vec![
            Layer::Conv2d {
                filters: 4,
                kernel: 3,
                stride: 1,
                padding: 1,
                activation: Activation::Relu,
            },
            Layer::MaxPool2d {
                size: 2,
                stride: None,
            },
            Layer::Conv2d {
                filters: 8,
                kernel: 3,
                stride: 1,
                padding: 0,
                activation: Activation::Relu,
            },
            Layer::Dropout { rate: 0.1 },
            Layer::Dense {
                units: 16,
                activation: Activation::Relu,
            },
        ],
    }
}

#[test]
fn a_two_conv_model_trains_and_probes_every_layer() {
    let arch = two_conv();
    let (x, y) = images();
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        learning_rate: 0.01,
    };
    let job = || Job {
        net: net_of(&arch, 3),
        x: &x,
        y: &y,
        cfg: cfg.clone(),
        seed: 1,
        state: None,
    };
    let (trained, epochs, _) = fit(job(), |_, _| {}).unwrap();
    assert!(
        epochs[2].accuracy > 0.9,
        "learns the halves: {:?}",
        epochs[2]
    );
    let acts = trained.activations(&x).unwrap();
    let widths: Vec<usize> = acts.iter().map(|a| a.ncols()).collect();
    assert_eq!(
        widths,
        [4, 4, 8, 16, 2],
        "per-channel means, then dense, then output"
    );
    assert_eq!(
        trained.arch.layer_names(),
        ["conv2d_1", "max_pool2d_1", "conv2d_2", "dense_1", "output"]
    );
    let full = Net {
        conv_probe: ConvProbe::Full,
        ..trained.clone()
    };
    let widths: Vec<usize> = full
        .activations(&x)
        .unwrap()
        .iter()
        .map(|a| a.ncols())
        .collect();
    assert_eq!(widths, [4 * 12 * 12, 4 * 6 * 6, 8 * 4 * 4, 16, 2]);
    // The same seed trains the same weights on one thread and on three: dropout masks come
    // from the seed, not from the order the threads run in.
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (again, _, _) = pool.install(|| fit(job(), |_, _| {})).unwrap();
        assert_eq!(again.weights, trained.weights, "{threads} threads");
    }
}

fn odd() -> Architecture {
    Architecture {
        channels: 3,
        height: 9,
        width: 9,
        classes: 4,
        layers: vec![
            Layer::Conv2d {
                filters: 5,
                kernel: 3,
                stride: 2,
                padding: 1,
                activation: Activation::Tanh,
            },
            Layer::AvgPool2d {
                size: 2,
                stride: Some(1),
            },
            Layer::Dropout { rate: 0.3 },
            Layer::Conv2d {
                filters: 8,
                kernel: 2,
                stride: 1,
                padding: 0,
                activation: Activation::Linear,
            },
            Layer::MaxPool2d {
                size: 2,
                stride: None,
            },
            Layer::Flatten,
            Layer::Dense {
                units: 7,
                activation: Activation::Relu,
            },
        ],
    }
}

fn lenet() -> Architecture {
    Architecture {
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
        layers: super::lenet5(),
    }
}

fn mlp() -> Architecture {
    Architecture {
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
                units: 28,
                activation: Activation::Relu,
            },
        ],
    }
}

/// The inference kernel (ndarray) against the training's forward pass (burn): the same
/// probabilities to float rounding, on LeNet-5, an MLP and an odd model (stride, padding,
/// average pooling, tanh).
#[test]
fn inference_equals_the_training_forward_pass() {
    for (arch, seed) in [(odd(), 11u64), (lenet(), 12), (mlp(), 13)] {
        let net = net_of(&arch, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((200, arch.inputs()), |_| rng.random::<f32>());
        let ours = super::Classifier::predict(&net, &x).unwrap();
        let burn = fleet::burn_probs(&net, &x);
        let diff = (&ours - &burn).mapv(f32::abs).fold(0f32, |m, &v| m.max(v));
        assert!(diff <= 1e-5, "{}: max |diff| {diff}", arch.describe());
    }
}

/// A model's result does not depend on the fleet it trains or is probed in: the same bytes
/// alone and among others (each with its own data, seed and starting weights).
#[test]
fn a_model_is_the_same_alone_and_in_a_fleet() {
    let cases: [(Architecture, usize, usize); 3] =
        [(mlp(), 27, 96), (two_conv(), 5, 64), (odd(), 3, 40)];
    for (arch, k, n) in cases {
        let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
        let data: Vec<(Array2<f32>, Vec<u16>)> = (0..k)
            .map(|_| {
                let x = Array2::from_shape_fn((n, arch.inputs()), |_| rng.random::<f32>());
                let y = (0..n)
                    .map(|_| rng.random_range(0..arch.classes as u16))
                    .collect();
                (x, y)
            })
            .collect();
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 32,
            learning_rate: 0.003,
        };
        let jobs = |range: std::ops::Range<usize>| -> Vec<Job> {
            range
                .map(|m| Job {
                    net: net_of(&arch, 100 + m as u64),
                    x: &data[m].0,
                    y: &data[m].1,
                    cfg: cfg.clone(),
                    seed: 7 + m as u64,
                    state: None,
                })
                .collect()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let fleet: Vec<_> = pool.install(|| fleet::fit_all(jobs(0..k), &|_, _| {}));
        let last = k - 1;
        let alone = fleet::fit_all(jobs(last..k), &|_, _| {})
            .pop()
            .unwrap()
            .unwrap();
        let inside = fleet.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>();
        assert_eq!(
            alone.net.weights,
            inside[last].net.weights,
            "{}: weights",
            arch.describe()
        );
        assert_eq!(
            alone.state,
            inside[last].state,
            "{}: Adam's state",
            arch.describe()
        );
        // Probed together, each model gives its own activations.
        let nets: Vec<&Net> = inside.iter().map(|t| &t.net).collect();
        let together = activations_fleet(&nets, &data[0].0).unwrap();
        assert_eq!(
            together[last],
            alone.net.activations(&data[0].0).unwrap(),
            "{}: probe",
            arch.describe()
        );
    }
}

/// Another architecture than the pipeline's and data of another shape are told apart.
#[test]
fn mismatches_are_model_errors() {
    use super::{DataShape, ModelError};
    let net = net_of(&mlp(), 1);
    let path = std::path::Path::new("m.safetensors");
    let mut p = crate::config::Pipeline::default();
    p.model.hidden = vec![16];
    let e = net.check_pipeline(&p, path).unwrap_err();
    match e.downcast_ref::<ModelError>() {
        Some(ModelError::OtherArchitecture { model, .. }) => {
            assert!(model.contains("Dense 28"), "{model}")
        }
        _ => panic!("{e:#}"),
    }
    let mut three = crate::artifacts::DatasetMeta {
        dataset: "d".into(),
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
        class_names: vec![],
    };
    net.check_data(&three, path).unwrap();
    three.classes = 3;
    let e = net.check_data(&three, path).unwrap_err();
    match e.downcast_ref::<ModelError>() {
        Some(ModelError::DataShape { data, model, .. }) => {
            assert_eq!((data.classes, model.classes), (3, 10));
            assert_eq!(model.to_string(), "1×28×28");
        }
        _ => panic!("{e:#}"),
    }
    assert_eq!(DataShape::from(&three).classes, 3);
}
