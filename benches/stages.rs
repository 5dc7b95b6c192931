//! `make bench` (`cargo bench --bench stages`): wall time of every stage of one MODE
//! iteration on full MNIST (in memory, the engine's own steps over a memory store), probing
//! 70 000 images through ONNX classifiers (tract), and pool-scoring throughput per metric on
//! 1 000 000 × 784 synthetic rows. Prints figures
//! (median of several runs); asserts nothing about time.

use mode::analysis::distance::score_rows;
use mode::arm::Arm;
use mode::artifacts::{Artifact, Layout, Samples, Split};
use mode::config::{ModelPreset, OnnxInput, Pipeline};
use mode::engine::split;
use mode::engine::{Step, Store, heatmap, layers, probe, select, train};
use mode::model::{Classifier, Net, OnnxNet};
use mode::vocab::Metric;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

/// Run `f` `runs` times; print the median (and range) of the wall times; return the last value.
fn measure<T>(label: &str, runs: usize, mut f: impl FnMut() -> T) -> T {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{label:<46} {median:>9.3} s   (median of {runs}; {:.3}–{:.3})",
        times[0],
        times[times.len() - 1]
    );
    last.expect("at least one run")
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// Probe 70 000 images through ONNX classifiers with tract: the MLP fixture (784-28-28-10)
/// and a LeNet-5 made by tests/fixtures/make_onnx.py from fresh `mode` weights (needs
/// python3 with onnx and numpy; skipped otherwise).
fn onnx_probes(p: &Pipeline, all: &Samples, tmp: &std::path::Path) {
    println!(
        "\n== ONNX classifiers (tract), {} images, {} threads ==",
        all.len(),
        rayon::current_num_threads()
    );
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mlp = OnnxNet::load(&fixtures.join("mlp.onnx"), p, &all.meta).expect("the MLP fixture");
    measure("probe 70 000 images, ONNX MLP 784-28-28-10", 3, || {
        mlp.activations(&all.pixels).unwrap()
    });
    let mut q = p.clone();
    q.model.preset = ModelPreset::Lenet5;
    q.model.input = Some(OnnxInput::Image);
    let weights = tmp.join("lenet5.safetensors");
    let model = tmp.join("lenet5.onnx");
    Net::init(&q, &all.meta).unwrap().write(&weights).unwrap();
    let made = std::process::Command::new("python3")
        .arg(fixtures.join("make_onnx.py"))
        .arg(&weights)
        .arg(&model)
        .output();
    match made {
        Ok(o) if o.status.success() => {
            let lenet = OnnxNet::load(&model, &q, &all.meta).expect("the LeNet-5 ONNX");
            measure("probe 70 000 images, ONNX LeNet-5", 3, || {
                lenet.activations(&all.pixels).unwrap()
            });
        }
        _ => println!(
            "probe 70 000 images, ONNX LeNet-5: skipped (python3 -m pip install onnx numpy)"
        ),
    }
}

/// LeNet-5's two convolutions forward and backward on a batch of 32, 200 steps: burn's Flex
/// `conv2d` under autodiff against the fleet's fused kernels (im2col / col2im around sgemm).
fn conv_layers() {
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Distribution, Tensor};
    use mode::model::kernels::{ConvShape, conv_backward, conv_forward_cols};
    let dev = mode::model::fleet::device(true);
    let steps = 200;
    for (c, h, o, pad) in [(1usize, 28usize, 6usize, 2usize), (6, 14, 16, 0)] {
        let x = Tensor::<4>::random([32, c, h, h], Distribution::Default, &dev);
        let w = Tensor::<4>::random([o, c, 5, 5], Distribution::Default, &dev).require_grad();
        let b = Tensor::<1>::random([o], Distribution::Default, &dev).require_grad();
        let x = if c > 1 { x.require_grad() } else { x };
        measure(
            &format!("conv {c}→{o}@5×5 fwd+bwd ×{steps}: Flex conv2d"),
            3,
            || {
                for _ in 0..steps {
                    let y = conv2d(
                        x.clone(),
                        w.clone(),
                        Some(b.clone()),
                        ConvOptions::new([1, 1], [pad, pad], [1, 1], 1),
                    );
                    let _ = y.sum().backward();
                }
            },
        );
        let s = ConvShape {
            k: 1,
            b: 32,
            c,
            h,
            w: h,
            o,
            kernel: 5,
            stride: 1,
            pad,
        };
        let xs: Vec<f32> = (0..32 * c * h * h)
            .map(|i| (i % 13) as f32 / 13.0)
            .collect();
        let ws: Vec<f32> = (0..o * c * 25).map(|i| (i % 7) as f32 / 70.0).collect();
        let bs = vec![0.1f32; o];
        measure(
            &format!("conv {c}→{o}@5×5 fwd+bwd ×{steps}: fused kernels"),
            3,
            || {
                for _ in 0..steps {
                    let relu = mode::model::Activation::Relu;
                    let (y, cols) = conv_forward_cols(s, &xs, &ws, &bs, relu, true);
                    let g = vec![1.0f32; y.len()];
                    let _ = conv_backward(s, cols, &ws, &y, &g, relu, c > 1);
                }
            },
        );
    }
}

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).unwrap();
    let p = Pipeline::load(Some(&root.join("pipelines/mnist.toml")), &[]).expect("pipeline");
    println!(
        "backend: burn's Flex CPU backend (SIMD; training as fleets with fused kernels, sgemm of the gemm crate), {} threads",
        rayon::current_num_threads()
    );
    println!("== one MODE iteration on full MNIST (pipelines/mnist.toml), in memory ==");
    let src = measure("load idx (gzip)", 3, || {
        mode::sources::load(&p, None).unwrap()
    });
    let s = measure("split 60 000 + 10 000", 3, || {
        split::make(&p, &src).unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("train.parquet");
    measure("write splits/train.parquet (30 000 × 784)", 3, || {
        s.train.write(&f).unwrap()
    });
    measure("read splits/train.parquet", 3, || {
        Samples::read(&f).unwrap()
    });
    let (net, _, state) = measure("train 30 000 × 3 epochs, batch 32", 3, || {
        train::fit_initial(&p, &s.train, None, |_, _| {}).unwrap()
    });
    // A memory store holding what `mode experiment` holds after the foundation.
    let layout = Layout::new(dir.path().join("out"));
    let store = Store::memory(layout.clone(), false);
    store
        .put(&layout.split(Split::Train), s.train.clone())
        .unwrap();
    store
        .put(&layout.split(Split::Pool), s.pool.clone())
        .unwrap();
    store
        .put(&layout.split(Split::Test), s.test.clone())
        .unwrap();
    store.put(&layout.initial().model(), net.clone()).unwrap();
    store
        .put(&layout.initial().optimizer(), state.clone())
        .unwrap();
    measure("input feature model (784 → 10, f32 L-BFGS)", 3, || {
        store.forget(&layout.input_head(), &[]);
        layers::input_head(&store, &p).unwrap()
    });
    // θ = 0.99 so that some label is faulty and a full batch is selected and retrained on.
    let mut q = p.clone();
    q.mode.theta = mode::config::Theta::Absolute(0.99);
    let step = Step::new(&layout, &q, Arm::mode(Metric::Dot, true), 1);
    measure("probe train + test (40 000)", 3, || {
        probe::run(&store, &step).unwrap()
    });
    let all = Samples::concat(&[&s.train, &s.pool, &s.test]).unwrap();
    measure("probe 70 000 images (activations only)", 3, || {
        net.activations(&all.pixels).unwrap()
    });
    measure("layers (2 hidden heads, parallel)", 3, || {
        layers::run(&store, &step).unwrap()
    });
    measure("heatmap", 3, || heatmap::run(&store, &step).unwrap());
    let chosen = measure("select (mode-dot, θ = 0.99)", 3, || {
        select::run(&store, &step).unwrap()
    });
    assert_eq!(
        chosen.batch.len(),
        p.mode.batch.of(s.pool.len()),
        "a full batch"
    );
    measure("retrain (2 000 × 3 epochs)", 3, || {
        train::retrain(&store, &step).unwrap()
    });
    measure("evaluate (10 000)", 3, || {
        train::evaluate(&store, &step).unwrap()
    });
    // 27 arms' retrainings as `mode experiment` runs them: one fleet, each model its own batch.
    let batches: Vec<Samples> = (0..27)
        .map(|a| {
            let idx: Vec<usize> = (0..2000)
                .map(|i| (i * 7 + a * 1013) % s.pool.len())
                .collect();
            s.pool.take(&idx)
        })
        .collect();
    measure(
        "retrain 27 arms × 2 000 × 3 epochs (one fleet)",
        3,
        || {
            let jobs: Vec<mode::model::Job> = batches
                .iter()
                .enumerate()
                .map(|(a, b)| mode::model::Job {
                    net: net.clone(),
                    x: &b.pixels,
                    y: &b.labels,
                    cfg: p.retrain.train(),
                    seed: a as u64,
                    state: Some(&state),
                })
                .collect();
            mode::model::fit_all(jobs, &|_, _| {})
        },
    );
    let _: &Net = &net;
    println!("peak RSS so far: {:.0} MB", peak_rss_mb());

    println!("\n== selection: each strategy, 30 000 pool, batch 2 000, α = 1 (pure) ==");
    let mut pure = q.clone();
    pure.mode.alpha = 1.0;
    let pool_step = |arm: Arm| {
        let s = Step::new(&layout, &pure, arm, 1);
        probe::run(&store, &s).unwrap();
        layers::run(&store, &s).unwrap();
        heatmap::run(&store, &s).unwrap();
        s
    };
    for name in [
        "mode-dot",
        "mode-cosine",
        "mode-wasserstein",
        "uncertainty",
        "margin",
        "entropy",
        "least-confidence",
        "coreset",
        "badge",
        "label-margin",
        "label-random",
        "random",
    ] {
        let arm: Arm = name.parse().unwrap();
        let s = pool_step(arm);
        let sel = measure(&format!("select {name}"), 3, || {
            select::run(&store, &s).unwrap()
        });
        assert!(sel.batch.len() <= pure.mode.batch.of(usize::MAX / 2));
    }
    drop((s, store));

    println!("\n== LeNet-5 (pipelines/mnist-lenet.toml) ==");
    let pl = Pipeline::load(Some(&root.join("pipelines/mnist-lenet.toml")), &[]).expect("pipeline");
    let sl = split::make(&pl, &src).unwrap();
    let (lenet, _, _) = measure("train LeNet-5 30 000 × 3 epochs, batch 32", 1, || {
        train::fit_initial(&pl, &sl.train, None, |_, _| {}).unwrap()
    });
    measure("probe LeNet-5 on 70 000 images", 3, || {
        lenet.activations(&all.pixels).unwrap()
    });
    conv_layers();
    onnx_probes(&p, &all, dir.path());
    drop((sl, src, all));

    println!(
        "\n== pool scoring: 1 000 000 × 784 synthetic rows (uniform [0, 1)), {} threads ==",
        rayon::current_num_threads()
    );
    let n = 1_000_000;
    let d = 784;
    let rows = {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        Array2::from_shape_simple_fn((n, d), || rng.random::<f32>())
    };
    let reference: Vec<f32> = (0..d).map(|j| (j % 17) as f32 / 17.0).collect();
    for &metric in Metric::ALL {
        let t = Instant::now();
        let scores = score_rows(rows.view(), &reference, metric, 3.0);
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{:<12} {:>8.3} s  {:>7.2} M rows/s  {:>6.2} GB/s  (checksum {:.3e})",
            metric.as_str(),
            secs,
            n as f64 / secs / 1e6,
            (n * d * 4) as f64 / secs / 1e9,
            scores.iter().sum::<f64>()
        );
    }
    println!("peak RSS: {:.0} MB", peak_rss_mb());
}
