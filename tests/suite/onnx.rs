//! ONNX models: tract's activations equal burn's on the same weights (the fixtures in
//! tests/fixtures were made from `mode train` models by tests/fixtures/make_onnx.py), the
//! probe and evaluate commands, and the bad ONNX inputs.

use mode::artifacts::{Activations, Artifact, DatasetMeta, MetricRow, Predictions};
use mode::config::{ConvProbe, OnnxInput, Pipeline};
use mode::model::{Classifier, Net, OnnxNet};
use ndarray::Array2;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn mnist_meta() -> DatasetMeta {
    DatasetMeta {
        dataset: "t".into(),
        channels: 1,
        height: 28,
        width: 28,
        classes: 10,
        class_names: vec![],
    }
}

/// 300 images with values in [0, 1] (deterministic).
fn pixels() -> Array2<f32> {
    let mut s = 12345u64;
    Array2::from_shape_simple_fn((300, 784), || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((s >> 40) as f32 / (1u64 << 24) as f32).powi(3)
    })
}

fn max_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every burn layer against its ONNX counterpart, ≤ 1e-5.
fn compare(burn: &Net, onnx: &OnnxNet, map: &[(&str, &str)]) {
    let x = pixels();
    let b = Classifier::activations(burn, &x).unwrap();
    let o = onnx.activations(&x).unwrap();
    let bn = Classifier::layer_names(burn);
    let on = onnx.layer_names();
    assert_eq!(bn.len(), map.len(), "every burn layer is mapped: {bn:?}");
    for (burn_name, onnx_name) in map {
        let i = bn.iter().position(|n| n == burn_name).unwrap();
        let j = on
            .iter()
            .position(|n| n == onnx_name)
            .unwrap_or_else(|| panic!("{onnx_name} not among {on:?}"));
        let d = max_diff(&b[i], &o[j]);
        assert!(d <= 1e-5, "{burn_name} vs {onnx_name}: max abs diff {d}");
    }
}

#[test]
fn tract_equals_burn_on_the_mlp() {
    let p = Pipeline::default();
    let burn = Net::read(&fixture("mlp.safetensors")).unwrap();
    let onnx = OnnxNet::load(&fixture("mlp.onnx"), &p, &mnist_meta()).unwrap();
    assert!(onnx.ends_in_softmax());
    // By default every Gemm and Relu output is recorded (not the model's own output).
    assert_eq!(
        onnx.layer_names(),
        [
            "/fc1/Gemm_output_0",
            "/relu1/Relu_output_0",
            "/fc2/Gemm_output_0",
            "/relu2/Relu_output_0",
            "logits",
            "output"
        ]
    );
    compare(
        &burn,
        &onnx,
        &[
            ("dense_1", "/relu1/Relu_output_0"),
            ("dense_2", "/relu2/Relu_output_0"),
            ("output", "output"),
        ],
    );
}

#[test]
fn tract_equals_burn_on_the_cnn() {
    for conv in [ConvProbe::Full, ConvProbe::Mean] {
        let mut p = Pipeline::default();
        p.probe.conv = conv;
        p.model.input = Some(OnnxInput::Image);
        p.model.onnx_layers = vec![
            "/relu1/Relu_output_0".into(),
            "/pool1/MaxPool_output_0".into(),
            "/relu2/Relu_output_0".into(),
        ];
        let burn = Net::read(&fixture("cnn.safetensors"))
            .unwrap()
            .with_probe(&p);
        let onnx = OnnxNet::load(&fixture("cnn.onnx"), &p, &mnist_meta()).unwrap();
        assert!(!onnx.ends_in_softmax(), "the CNN ends in logits");
        compare(
            &burn,
            &onnx,
            &[
                ("conv2d_1", "/relu1/Relu_output_0"),
                ("max_pool2d_1", "/pool1/MaxPool_output_0"),
                ("dense_1", "/relu2/Relu_output_0"),
                ("output", "output"),
            ],
        );
        let widths: Vec<usize> = onnx
            .activations(&pixels())
            .unwrap()
            .iter()
            .map(|a| a.ncols())
            .collect();
        let want = match conv {
            ConvProbe::Full => [4 * 26 * 26, 4 * 13 * 13, 16, 10],
            ConvProbe::Mean => [4, 4, 16, 10],
        };
        assert_eq!(widths, want);
    }
}

#[test]
fn a_fixed_batch_an_empty_sample_set_and_normalisation() {
    // A model declaring a batch of 3 runs in batches of 3 (the last one padded) and gives
    // what the same model with a symbolic batch gives.
    let mut p = Pipeline::default();
    p.model.input = Some(OnnxInput::Image);
    let fixed = OnnxNet::load(&fixture("cnn_batch3.onnx"), &p, &mnist_meta()).unwrap();
    let any = OnnxNet::load(&fixture("cnn.onnx"), &p, &mnist_meta()).unwrap();
    let x = pixels().slice(ndarray::s![..10, ..]).to_owned();
    let (a, b) = (fixed.activations(&x).unwrap(), any.activations(&x).unwrap());
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(&b) {
        assert_eq!(a.nrows(), 10);
        assert!(max_diff(a, b) <= 1e-6);
    }
    let p = Pipeline::default();
    let onnx = OnnxNet::load(&fixture("mlp.onnx"), &p, &mnist_meta()).unwrap();
    let none = onnx.activations(&Array2::zeros((0, 784))).unwrap();
    assert_eq!(
        none.iter().map(|a| a.dim()).collect::<Vec<_>>(),
        [(0, 28), (0, 28), (0, 28), (0, 28), (0, 10), (0, 10)]
    );
    let x = pixels();
    let probs = onnx.predict(&x).unwrap();
    for r in probs.rows() {
        assert!((r.sum() - 1.0).abs() < 1e-5);
    }
    // model.input_mean / input_std: the model sees (x − mean) / std.
    let mut q = Pipeline::default();
    q.model.input_mean = vec![0.5];
    q.model.input_std = vec![0.25];
    let normalised = OnnxNet::load(&fixture("mlp.onnx"), &q, &mnist_meta()).unwrap();
    let d = max_diff(
        &normalised.predict(&x).unwrap(),
        &onnx.predict(&x.mapv(|v| (v - 0.5) / 0.25)).unwrap(),
    );
    assert!(d <= 1e-6, "{d}");
}

fn load_err(model: &str, p: &Pipeline) -> String {
    format!(
        "{:#}",
        OnnxNet::load(&fixture(model), p, &mnist_meta()).unwrap_err()
    )
}

#[test]
fn bad_models_are_clear_errors() {
    let mut image = Pipeline::default();
    image.model.input = Some(OnnxInput::Image);
    let e = load_err("cnn_features.onnx", &image);
    assert!(e.contains("not a classifier"), "{e}");
    let e = load_err("cnn.onnx", &Pipeline::default());
    assert!(
        e.contains("N×1×28×28") && e.contains("N×784") && e.contains("model.input"),
        "both shapes: {e}"
    );
    let e = load_err("mlp.onnx", &image);
    assert!(e.contains("N×784") && e.contains("N×1×28×28"), "{e}");
    let mut missing = Pipeline::default();
    missing.model.onnx_layers = vec!["/fc9/Gemm_output_0".into()];
    let e = load_err("mlp.onnx", &missing);
    assert!(
        e.contains("no node output named \"/fc9/Gemm_output_0\"") && e.contains("/fc1/Gemm"),
        "{e}"
    );
    let mut out = Pipeline::default();
    out.model.onnx_layers = vec!["probs".into()];
    let e = load_err("mlp.onnx", &out);
    assert!(e.contains("the model's output"), "{e}");
    let e = load_err("cnn.safetensors", &Pipeline::default());
    assert!(e.contains("cannot read it as an ONNX model"), "{e}");
    let mut three = mnist_meta();
    three.classes = 3;
    let e = format!(
        "{:#}",
        OnnxNet::load(&fixture("mlp.onnx"), &Pipeline::default(), &three).unwrap_err()
    );
    assert!(
        e.contains("10 values per sample") && e.contains("3 classes"),
        "{e}"
    );
}

/// `mode --pipeline pipelines/smoke.toml --root ROOT <args>`.
fn mode(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mode"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--pipeline", "pipelines/smoke.toml", "--root"])
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: std::process::Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{err}");
    err
}

fn one_error(o: std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "must fail: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains(needle), "{needle:?} not in {err}");
}

#[test]
fn probe_and_evaluate_commands() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    ok(mode(&root, &["split"]));
    let model = fixture("cnn.onnx");
    let out = t.path().join("out");
    let onnx = model.to_str().unwrap();
    let image = ["--set", "model.input=\"image\""];
    let mut args = vec!["probe", "--onnx", onnx, "--out", out.to_str().unwrap()];
    args.extend(image);
    ok(mode(&root, &args));
    let a = Activations::read(&out.join("activations/test.parquet")).unwrap();
    assert_eq!(a.len(), 1000);
    assert_eq!(
        a.layer_names(),
        [
            "/conv1/Conv_output_0",
            "/relu1/Relu_output_0",
            "/fc1/Gemm_output_0",
            "/relu2/Relu_output_0",
            "output"
        ]
    );
    assert_eq!(a.info["mode.output"], "softmax applied");
    assert!(out.join("activations/train.parquet").exists());
    let ev = t.path().join("eval");
    let mut args = vec!["evaluate", "--onnx", onnx, "--out", ev.to_str().unwrap()];
    args.extend(image);
    ok(mode(&root, &args));
    let m = Vec::<MetricRow>::read(&ev.join("metrics.parquet")).unwrap();
    assert_eq!((m.len(), m[0].n), (11, 1000));
    assert!(m[0].accuracy > 0.8, "the fixture CNN: {}", m[0].accuracy);
    let pr = Predictions::read(&ev.join("predictions.parquet")).unwrap();
    assert_eq!(pr.probs.dim(), (1000, 10));
    // Bad input: nothing written.
    let bad = t.path().join("bad");
    let args = ["probe", "--onnx", onnx, "--out", bad.to_str().unwrap()];
    one_error(mode(&root, &args), "N×1×28×28");
    let mut args = vec!["probe", "--onnx", onnx, "--out", bad.to_str().unwrap()];
    args.extend(["--set", "model.onnx_layers=[\"nope\"]"]);
    args.extend(image);
    one_error(mode(&root, &args), "no node output named \"nope\"");
    let features = fixture("cnn_features.onnx");
    let mut args = vec!["evaluate", "--onnx", features.to_str().unwrap()];
    args.extend(["--out", bad.to_str().unwrap()]);
    args.extend(image);
    one_error(mode(&root, &args), "not a classifier");
    assert!(
        std::fs::read_dir(&bad).map_or(0, |d| d.count()) == 0,
        "nothing half-written"
    );
}
