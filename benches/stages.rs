//! `make bench` (`cargo bench --bench stages`): wall time of every stage of one MODE
//! iteration on full MNIST, and pool-scoring throughput per metric on 1 000 000 × 784
//! synthetic rows. Prints figures; asserts nothing about time.

use mode::analysis::distance::score_rows;
use mode::artifacts::Samples;
use mode::config::{Metric, Pipeline, derive_seed};
use mode::model;
use mode::stages::experiment::{MemStates, Shared, analyse_model};
use mode::stages::select::{self, Strategy};
use mode::stages::{evaluate, layers, probe, split};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn time<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    println!("{label:<44} {:>9.3} s", t.elapsed().as_secs_f64());
    v
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

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).unwrap();
    let p = Pipeline::load(Some(&root.join("pipelines/mnist.toml")), &[]).expect("pipeline");
    println!("== one MODE iteration on full MNIST (pipelines/mnist.toml), in memory ==");
    let src = time("load idx (gzip)", || split::load(&p, None).unwrap());
    let s = time("split 60 000 + 10 000", || split::make(&p, &src).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("train.parquet");
    time("write splits/train.parquet (30 000 × 784)", || {
        s.train.write(&f, &Default::default()).unwrap()
    });
    time("read splits/train.parquet", || Samples::read(&f).unwrap());
    let (net, arch, _) = time("train 30 000 × 3 epochs, batch 32", || {
        mode::stages::train::fit_fresh(&p, &s.train).unwrap()
    });
    let ih = time("input feature model (784 → 10, linfa)", || {
        layers::input_head(&p, &s.train, None).unwrap()
    });
    let shared = Shared {
        train: &s.train,
        pool: &s.pool,
        test: &s.test,
        initial: &net,
        arch: &arch,
        input_head: Some(&ih),
    };
    let train_acts = time("probe train (30 000)", || {
        probe::probe(&net, &arch, &s.train).unwrap()
    });
    let test_acts = time("probe test (10 000)", || {
        probe::probe(&net, &arch, &s.test).unwrap()
    });
    let sel = time("layers (2 hidden heads, parallel)", || {
        layers::select(&p, &train_acts, &test_acts, Some((&ih, &s.test.pixels))).unwrap()
    });
    let _ = time("probe + layers + heatmap (analyse_model)", || {
        analyse_model(&p, &shared, &net, false).unwrap()
    });
    let _ = sel;
    let pool = s.pool.pool_rows();
    // θ = 0.99 so that some label is faulty and a full batch is selected and retrained on.
    let mut q = p.clone();
    q.mode.theta = 0.99;
    let a = analyse_model(&q, &shared, &net, false).unwrap();
    let chosen = time("select (mode-dot, θ = 0.99)", || {
        select::choose(
            &q,
            Strategy::Mode,
            "mode-dot",
            1,
            &pool,
            &a.analysis.diagnosis,
            &a.analysis.maps,
            &MemStates {
                pool: &s.pool,
                acts: None,
            },
        )
        .unwrap()
    });
    assert_eq!(chosen.batch.len(), p.mode.batch, "a full batch");
    let ids: Vec<u32> = chosen.batch.iter().map(|b| b.id).collect();
    let batch = s.pool.take_ids(&ids, "batch").unwrap();
    let (net2, _) = time("retrain (2 000 × 3 epochs)", || {
        model::fit(
            net,
            &batch.pixels,
            &batch.labels,
            &p.retrain,
            derive_seed(1, "r"),
            |_, _| {},
        )
        .unwrap()
    });
    time("evaluate (10 000)", || {
        let probs = model::predict(&net2, &s.test.pixels, 10).unwrap();
        let tag = evaluate::EvalTag {
            arm: "bench".into(),
            iteration: 1,
            finished_early: false,
        };
        evaluate::metric_rows(&p, &tag, &s.test.labels, &probs, 10)
    });
    println!("peak RSS so far: {:.0} MB", peak_rss_mb());
    drop((s, src, a, train_acts, test_acts, batch));

    println!(
        "\n== pool scoring: 1 000 000 × 784 synthetic rows (uniform [0, 1)), {} threads ==",
        rayon::current_num_threads()
    );
    let n = 1_000_000;
    let d = 784;
    let rows = time("generate rows", || {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        Array2::from_shape_simple_fn((n, d), || rng.random::<f32>())
    });
    let reference: Vec<f32> = (0..d).map(|j| (j % 17) as f32 / 17.0).collect();
    for metric in Metric::ALL {
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
