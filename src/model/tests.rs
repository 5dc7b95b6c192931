//! Convolutions by hand, and a small convolutional model that trains and probes.

use super::arch::{Activation, Architecture, Layer};
use super::net::Net;
use super::network::{Block, Network, conv_slices, device, param};
use super::train::fit;
use crate::config::{ConvProbe, TrainConfig};
use burn::tensor::{Tensor, TensorData};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn tiny_conv() -> Architecture {
    Architecture {
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
    }
}

#[test]
fn conv_forward_by_hand() {
    let dev = device(false);
    let arch = tiny_conv();
    let mut net = Network::init(&arch, 1, &dev).unwrap();
    // Kernel [[1,0,−1],[0,2,0],[−1,0,1]], bias 0.5; input 0..16 row-major.
    let k = vec![1.0f32, 0.0, -1.0, 0.0, 2.0, 0.0, -1.0, 0.0, 1.0];
    let Block::Conv(c) = &mut net.blocks[0] else {
        panic!("a conv block")
    };
    let mut id = 0;
    c.weight = param(
        Tensor::from_data(TensorData::new(k, [1, 1, 3, 3]), &dev),
        &mut id,
    );
    c.bias = Some(param(
        Tensor::from_data(TensorData::new(vec![0.5f32], [1]), &dev),
        &mut id,
    ));
    let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let x4 = Tensor::<4>::from_data(TensorData::new(x.clone(), [1, 1, 4, 4]), &dev);
    // out[i][j] = x[i][j] − x[i][j+2] + 2·x[i+1][j+1] − x[i+2][j] + x[i+2][j+2] + 0.5
    let at = |i: usize, j: usize| x[i * 4 + j];
    let want: Vec<f32> = (0..2)
        .flat_map(|i| (0..2).map(move |j| (i, j)))
        .map(|(i, j)| {
            at(i, j) - at(i, j + 2) + 2.0 * at(i + 1, j + 1) - at(i + 2, j) + at(i + 2, j + 2) + 0.5
        })
        .collect();
    let got: Vec<f32> = c.forward(x4.clone()).try_into_vec_as::<f32>().unwrap();
    assert_eq!(got, want);
    let slices: Vec<f32> = conv_slices(c, x4, 0).try_into_vec_as::<f32>().unwrap();
    for (a, b) in slices.iter().zip(&want) {
        assert!((a - b).abs() < 1e-5, "im2col {slices:?} vs {want:?}");
    }
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

#[test]
fn a_two_conv_model_trains_and_probes_every_layer() {
    let arch = Architecture {
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
    };
    let net = Net {
        module: Network::init(&arch, 3, &device(false)).unwrap(),
        arch: arch.clone(),
        settings: String::new(),
        conv_probe: ConvProbe::Mean,
    };
    let (x, y) = images();
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        learning_rate: 0.01,
    };
    let (trained, epochs, _) = fit(net, &x, &y, &cfg, 1, None, |_, _| {}).unwrap();
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
    let full = trained.clone();
    let full = Net {
        conv_probe: ConvProbe::Full,
        ..full
    };
    let widths: Vec<usize> = full
        .activations(&x)
        .unwrap()
        .iter()
        .map(|a| a.ncols())
        .collect();
    assert_eq!(widths, [4 * 12 * 12, 4 * 6 * 6, 8 * 4 * 4, 16, 2]);
    // The same seed trains the same weights: dropout masks come from the seed.
    let again = Net {
        module: Network::init(&arch, 3, &device(false)).unwrap(),
        arch: arch.clone(),
        settings: String::new(),
        conv_probe: ConvProbe::Mean,
    };
    let (again, _, _) = fit(again, &x, &y, &cfg, 1, None, |_, _| {}).unwrap();
    assert_eq!(again.predict(&x).unwrap(), trained.predict(&x).unwrap());
}

/// burn's forward pass (its own conv kernel) on a plain device: the reference for `infer`.
fn burn_forward(net: &Net, x: &Array2<f32>, probe: ConvProbe) -> Vec<Array2<f32>> {
    let dev = device(false);
    let (n, d) = x.dim();
    let t = Tensor::<2>::from_data(TensorData::new(x.iter().copied().collect(), [n, d]), &dev);
    let (logits, mut outs) = net.module.forward(&net.arch, t, Some(probe), None);
    outs.push(burn::tensor::activation::softmax(logits, 1));
    outs.into_iter()
        .map(|t| {
            let [r, c] = t.dims();
            Array2::from_shape_vec((r, c), t.try_into_vec_as::<f32>().unwrap()).unwrap()
        })
        .collect()
}

#[test]
fn ndarray_inference_equals_burns_forward() {
    let odd = Architecture {
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
    };
    let lenet = Architecture {
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
        layers: super::lenet5(),
    };
    for (arch, seed) in [(odd, 11u64), (lenet, 12)] {
        let net = Net {
            module: Network::init(&arch, seed, &device(false)).unwrap(),
            arch: arch.clone(),
            settings: String::new(),
            conv_probe: ConvProbe::Mean,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = Array2::from_shape_fn((300, arch.inputs()), |_| rng.random::<f32>());
        for probe in [ConvProbe::Mean, ConvProbe::Full] {
            let net = Net {
                conv_probe: probe,
                ..net.clone()
            };
            let ours = net.activations(&x).unwrap();
            let burn = burn_forward(&net, &x, probe);
            assert_eq!(ours.len(), burn.len());
            for (name, (a, b)) in arch.layer_names().iter().zip(ours.iter().zip(&burn)) {
                assert_eq!(a.dim(), b.dim(), "{name}");
                let diff = (a - b).mapv(f32::abs).fold(0f32, |m, &v| m.max(v));
                assert!(diff <= 1e-5, "{name} ({probe:?}): max |diff| {diff}");
            }
        }
    }
}
