//! End-to-end: `make all PIPELINE=smoke` (split → train → evaluate, then two MODE iterations
//! of all 21 arms in one process) into cargo's scratch folder, then checks of every artifact
//! with our own reader and with external readers (DuckDB and python-polars); and
//! `make chain` (one make target per stage) for two arms, which must give the same files.

use crate::common::same_content;
use mode::artifacts::tensor::TensorFile;
use mode::artifacts::{
    Activations, Artifact, BatchRow, DiagnosisRow, Heatmaps, IterDir, LayerRow, Layout, Manifest,
    MetricRow, PoolRow, Predictions, Samples, ScoreRow, Split, SummaryRow, TrainLogRow, read_pool,
};
use mode::vocab::{Direction, MapKind, Origin, RunStatus, Scope};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const ARMS: [&str; 4] = ["mode-dot", "random", "label-random", "uncertainty"];
const ITERS: u32 = 2;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `make <args…>` with the test's binary into `out`; panics with the target when it fails.
fn make(out: &Path, args: &[&str]) {
    let status = Command::new("make")
        .current_dir(repo())
        .arg("--no-print-directory")
        .args(args)
        .arg(format!("OUT={}", out.display()))
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_mode")))
        .arg("CARGO_BUILD=true")
        .status()
        .expect("make runs");
    assert!(status.success(), "make {args:?} failed");
}

/// Run the smoke pipeline once for all tests of this file.
fn smoke() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        // Under cargo's scratch folder for integration tests; replaced on every run.
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-smoke");
        let _ = std::fs::remove_dir_all(&out);
        make(&out, &["all", "PIPELINE=smoke", "METRIC=dot"]);
        out
    })
}

fn layout() -> Layout {
    Layout::new(smoke())
}

fn iter_dir(arm: &str, k: u32) -> IterDir {
    layout().iter(arm, k)
}

#[test]
fn splits_have_schema_counts_and_disjoint_ids() {
    let l = layout();
    let train = Samples::read(&l.split(Split::Train)).unwrap();
    let pool = Samples::read(&l.split(Split::Pool)).unwrap();
    let test = Samples::read(&l.split(Split::Test)).unwrap();
    assert_eq!((train.len(), pool.len(), test.len()), (2000, 2000, 1000));
    assert_eq!(
        (train.meta.height, train.meta.width, train.meta.classes),
        (28, 28, 10)
    );
    let t = TensorFile::read(&l.split(Split::Train)).unwrap();
    assert_eq!(t.column_names(), ["id", "label", "true_label", "pixels"]);
    let mut ids: HashSet<u32> = HashSet::new();
    for s in [&train, &pool, &test] {
        for &id in &s.ids {
            assert!(ids.insert(id), "id {id} appears twice");
        }
        assert!(s.pixels.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }
    assert!(
        test.ids.iter().all(|&id| id >= 60_000),
        "test ids are offset by the training file's size"
    );
}

#[test]
fn initial_model_beats_accuracy_floor() {
    let init = layout().initial();
    let m = Vec::<MetricRow>::read(&init.metrics()).unwrap();
    assert_eq!(m.len(), 11, "one overall row and ten label rows");
    let overall = &m[0];
    assert_eq!(
        (overall.scope, overall.label, overall.n),
        (Scope::Overall, None, 1000)
    );
    assert!(
        overall.accuracy > 0.80,
        "smoke model accuracy {} below the floor",
        overall.accuracy
    );
    let p = TensorFile::read(&init.predictions()).unwrap();
    assert_eq!(
        p.column_names(),
        ["id", "label", "predicted", "confidence", "probs"]
    );
    assert_eq!(
        Predictions::read(&init.predictions()).unwrap().probs.dim(),
        (1000, 10)
    );
    let log = Vec::<TrainLogRow>::read(&init.train_log()).unwrap();
    assert_eq!(log.len(), 3, "one row per epoch of the smoke pipeline");
}

#[test]
fn probe_layers_heatmap_artifacts() {
    let d = iter_dir("mode-dot", 1);
    let a = Activations::read(&d.activations("train")).unwrap();
    assert_eq!(a.layer_names(), ["dense_1", "dense_2", "output"]);
    assert_eq!(a.layer("dense_1").unwrap().dim(), (2000, 28));
    assert_eq!(a.layer("output").unwrap().dim(), (2000, 10));
    let layers = Vec::<LayerRow>::read(&d.layers()).unwrap();
    let fwd: Vec<_> = layers
        .iter()
        .filter(|r| r.direction == Direction::Forward)
        .collect();
    assert_eq!(
        fwd.iter().map(|r| r.layer.as_str()).collect::<Vec<_>>(),
        ["input", "dense_1", "dense_2", "output"]
    );
    assert_eq!(fwd.iter().filter(|r| r.is_target).count(), 1);
    assert!(fwd.iter().all(|r| (0.0..=1.0).contains(&r.probe_accuracy)));
    let diag = Vec::<DiagnosisRow>::read(&d.diagnosis()).unwrap();
    assert_eq!(diag.len(), 10);
    assert!(diag.iter().filter(|r| r.faultiest).count() <= 1);
    let maps = Heatmaps::read(&d.heatmaps()).unwrap();
    assert_eq!(maps.rows.len(), 10 * 5 + 10 * 9);
    assert!(
        maps.rows
            .iter()
            .all(|m| m.values.len() == 784 && m.values.iter().all(|v| v.is_finite()))
    );
}

#[test]
fn selection_invariants_over_iterations() {
    let initial_pool: HashSet<u32> = read_pool(&layout().split(Split::Pool))
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    for arm in ARMS {
        let mut seen: HashSet<u32> = HashSet::new();
        let mut pool_before = initial_pool.len();
        for k in 1..=ITERS {
            let d = iter_dir(arm, k);
            let batch = Vec::<BatchRow>::read(&d.batch()).unwrap();
            let pool = Vec::<PoolRow>::read(&d.pool()).unwrap();
            assert_eq!(
                pool.len(),
                pool_before - batch.len(),
                "{arm} iter {k}: pool shrinks by the batch size"
            );
            pool_before = pool.len();
            for b in &batch {
                assert!(
                    initial_pool.contains(&b.id),
                    "{arm}: id {} not from the initial pool",
                    b.id
                );
                assert!(seen.insert(b.id), "{arm}: id {} chosen twice", b.id);
                assert_eq!((b.arm.as_str(), b.iteration), (arm, k));
            }
            if arm == "random" {
                assert_eq!(batch.len(), 200);
                assert!(batch.iter().all(|b| b.origin == Origin::Random));
            } else if arm == "uncertainty" {
                let diag = Vec::<DiagnosisRow>::read(&d.diagnosis()).unwrap();
                if diag.iter().any(|r| r.faultiest) {
                    let scores = Vec::<ScoreRow>::read(&d.scores()).unwrap();
                    let targeted: HashSet<u32> = batch
                        .iter()
                        .filter(|b| b.origin == Origin::Targeted)
                        .map(|b| b.id)
                        .collect();
                    assert_eq!(targeted.len(), 50);
                    // the targeted share is the 50 highest Gini impurities
                    assert!(
                        scores
                            .iter()
                            .filter(|s| s.rank <= 50)
                            .all(|s| targeted.contains(&s.id))
                    );
                }
            } else {
                let diag = Vec::<DiagnosisRow>::read(&d.diagnosis()).unwrap();
                match diag.iter().find(|r| r.faultiest) {
                    Some(f) => {
                        assert_eq!(batch.len(), 200);
                        let targeted: Vec<_> = batch
                            .iter()
                            .filter(|b| b.origin == Origin::Targeted)
                            .collect();
                        assert!(!targeted.is_empty() && targeted.len() <= 50);
                        assert!(
                            targeted.iter().all(|b| b.label == f.label),
                            "targeted ids carry the faulty label"
                        );
                        // The seed's batch makeup: the random share never draws the faulty
                        // label, so it is exactly α of the batch (when the pool has as many).
                        assert_eq!(
                            batch.iter().filter(|b| b.label == f.label).count(),
                            targeted.len(),
                            "{arm} iteration {k}: the faulty label only in the targeted share"
                        );
                        if arm == "mode-dot" {
                            let scores = Vec::<ScoreRow>::read(&d.scores()).unwrap();
                            assert!(
                                scores
                                    .iter()
                                    .all(|s| s.label == f.label && s.metric == "dot")
                            );
                            // rank 1 is the most similar: for dot, the highest score
                            let best = scores.iter().find(|s| s.rank == 1).unwrap();
                            assert!(scores.iter().all(|s| s.score <= best.score));
                        }
                    }
                    None => assert!(batch.is_empty(), "no faulty label: empty batch"),
                }
            }
            let m = Vec::<MetricRow>::read(&d.metrics()).unwrap();
            assert_eq!(m.len(), 11);
            assert!(m.iter().all(|r| r.arm == arm && r.iteration == k));
        }
    }
}

#[test]
fn summary_has_both_tables() {
    let rows = Vec::<SummaryRow>::read(&layout().summary()).unwrap();
    assert_eq!(
        rows.len(),
        26,
        "18 MODE arms and eight baselines against the control"
    );
    assert_eq!(rows.iter().filter(|r| r.layer_select).count(), 17);
    let r = rows.iter().find(|r| r.arm == "mode-dot").unwrap();
    assert_eq!((r.metric.as_str(), r.iterations), ("dot", ITERS));
    assert!((r.diff_f_c - (r.final_acc - r.control_acc)).abs() < 1e-12);
    assert!(
        rows.iter()
            .any(|r| r.arm == "mode-wasserstein-nols" && !r.layer_select)
    );
    assert!(
        rows.iter()
            .all(|r| matches!(r.status, RunStatus::Complete | RunStatus::FinishedEarly)),
        "every run complete"
    );
    let m = Manifest::read(&layout().manifest("mode-dot")).unwrap();
    assert_eq!((m.completed, m.planned), (ITERS, ITERS));
}

/// The per-stage Makefile chain and the in-process experiment write the same artifacts.
#[test]
fn chain_matches_experiment() {
    let exp = smoke();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-chain");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    // Same splits and initial model, so only the loop differs.
    for d in ["splits", "initial"] {
        let status = Command::new("cp")
            .arg("-a")
            .arg(exp.join(d))
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
    }
    make(&out, &["chain", "PIPELINE=smoke", "ARMS=mode-dot random"]);
    for arm in ["mode-dot", "random"] {
        let a = files_under(&exp.join("runs").join(arm));
        let b = files_under(&out.join("runs").join(arm));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{arm}: the chain and the experiment write the same files"
        );
        assert!(a.len() > 10, "{arm}: {} files", a.len());
        for (rel, bytes) in &a {
            assert!(
                same_content(rel, bytes, &b[rel]),
                "{arm}/{}: the chain's file differs from the experiment's",
                rel.display()
            );
        }
    }
}

/// Every file under `dir` (relative path → bytes).
fn files_under(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = Default::default();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn external_readers_need_no_help() {
    let out = smoke();
    let script = repo().join("tests/read_outputs.py");
    let o = Command::new("python3")
        .arg(&script)
        .arg(out)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "external readers failed (install them with `python3 -m pip install duckdb polars`):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("duckdb ok") && stdout.contains("polars ok"),
        "{stdout}"
    );
}

#[test]
fn report_has_every_figure() {
    let r = smoke().join("report");
    let html = std::fs::read_to_string(r.join("index.html")).unwrap();
    let figures = [
        "verdict.png",
        "delta_mode_ls.png",
        "delta_mode_nols.png",
        "delta_baselines.png",
        "batches.png",
        "layers_accuracy.png",
        "layers_bhattacharyya.png",
        "heatmaps.png",
        "pair.png",
        "misclassified.png",
        "per_label.png",
        "similar_dot.png",
    ];
    for f in &figures {
        assert!(
            html.contains(&format!("src=\"{f}\"")),
            "{f} not in the page"
        );
        let bytes = std::fs::read(r.join(f)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{f} is not a PNG");
    }
    assert!(html.contains("Table 1") && html.contains("Table 2"));
    assert!(!html.contains("<script"), "no JavaScript");
    // The answer comes first: the verdict before any figure of the details.
    let (answer, layers) = (
        html.find("The answer").unwrap(),
        html.find("Layer selection").unwrap(),
    );
    assert!(
        answer < layers && html.contains("Best selection:") && html.contains("Faulty labels"),
        "{html}"
    );
}

/// Right way up and the right label: each label's HC map correlates best with that label's
/// mean test image.
#[test]
fn hc_map_correlates_with_its_label_mean_image() {
    let maps = Heatmaps::read(&iter_dir("mode-dot", 1).heatmaps()).unwrap();
    let test = Samples::read(&layout().split(Split::Test)).unwrap();
    let mean = |l: u16| -> Vec<f32> {
        let rows: Vec<usize> = (0..test.len()).filter(|&i| test.labels[i] == l).collect();
        let mut m = vec![0f32; 784];
        for &i in &rows {
            for (a, b) in m.iter_mut().zip(test.pixels.row(i)) {
                *a += b / rows.len() as f32;
            }
        }
        m
    };
    let means: Vec<Vec<f32>> = (0..10).map(mean).collect();
    for m in maps
        .rows
        .iter()
        .filter(|m| m.kind == MapKind::Hc && m.n > 0)
    {
        let corr: Vec<f64> = means
            .iter()
            .map(|x| mode::stages::report::correlation(&m.values, x))
            .collect();
        let best = corr
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert_eq!(
            best, m.label as usize,
            "HC of {} correlates best with {best}: {corr:?}",
            m.label
        );
    }
}

/// The convolutional path end to end: a tiny LeNet-5 pipeline through `make all`.
#[test]
fn lenet_runs_through_every_stage() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-lenet");
    let _ = std::fs::remove_dir_all(&out);
    make(
        &out,
        &[
            "all",
            "PIPELINE=smoke-lenet",
            "EXPERIMENT_ARMS=mode-dot,uncertainty,random",
        ],
    );
    let l = Layout::new(&out);
    let d = l.iter("mode-dot", 1);
    let a = Activations::read(&d.activations("train")).unwrap();
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
    let widths: Vec<usize> = a.layers.iter().map(|(_, m)| m.ncols()).collect();
    assert_eq!(
        widths,
        [
            6 * 28 * 28,
            6 * 14 * 14,
            16 * 10 * 10,
            16 * 5 * 5,
            120,
            84,
            10
        ],
        "conv layers as full maps (probe.conv = full)"
    );
    assert_eq!(
        a.info.get("mode.probe.conv").map(String::as_str),
        Some("full")
    );
    let layers = Vec::<LayerRow>::read(&d.layers()).unwrap();
    assert!(
        layers
            .iter()
            .any(|r| r.layer == "conv2d_2" && r.probe_accuracy > 0.3)
    );
    let maps = Heatmaps::read(&d.heatmaps()).unwrap();
    assert!(
        maps.rows
            .iter()
            .all(|m| m.values.iter().all(|v| v.is_finite()))
    );
    let m = Vec::<MetricRow>::read(&l.initial().metrics()).unwrap();
    assert!(
        m[0].accuracy > 0.8,
        "LeNet on 2 000 images: {}",
        m[0].accuracy
    );
    let html = std::fs::read_to_string(Layout::report_index(&l.report_dir())).unwrap();
    let target = maps.rows[0].layer.clone();
    if target.starts_with("conv2d") || target.starts_with("max_pool2d") {
        assert!(
            html.contains("channels_hc.png"),
            "conv heat maps per channel"
        );
    }
    assert!(html.contains("Protocol"), "the protocol in the header");
}

/// `mode ablate` on smoke: settings × arms × seeds, with the settings' keys as columns.
#[test]
fn ablation_table_has_a_row_per_setting_arm_and_seed() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-ablate");
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_mode"))
        .current_dir(repo())
        .args(["--pipeline", "pipelines/smoke.toml", "--root"])
        .arg(&out)
        .arg("ablate")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let l = Layout::new(&out);
    let rows = Vec::<mode::artifacts::AblationRow>::read(&l.ablation()).unwrap();
    assert_eq!(rows.len(), 3 * 3 * 2, "3 settings × 3 arms × 2 seeds");
    let df = mode::artifacts::table::read_frame(&l.ablation(), None).unwrap();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    for key in ["select.random_fill", "retrain.data"] {
        assert!(names.iter().any(|n| n == key), "{key} in {names:?}");
    }
    let data: Vec<String> = mode::artifacts::table::Cell::read(&df, "retrain.data").unwrap();
    assert!(data.iter().any(|v| v == "train+selected"));
    assert!(
        data.iter().any(|v| v == "batch"),
        "the base value where a setting leaves it"
    );
    let summary = Vec::<mode::artifacts::SweepSummaryRow>::read(&l.ablation_summary()).unwrap();
    assert_eq!(summary.len(), 3 * 3);
    let df = mode::artifacts::table::read_frame(&l.ablation_summary(), None).unwrap();
    let settings: Vec<String> = mode::artifacts::table::Cell::read(&df, "setting").unwrap();
    assert_eq!(settings[0], "base");
    for r in rows.iter().filter(|r| r.arm != "random") {
        let d = r.delta.expect("a control of the same setting and seed");
        assert!((d - (r.final_acc - r.control_acc.unwrap())).abs() < 1e-12);
    }
    assert!(l.ablation_markdown().exists() && l.ablation_manifest().exists());
}

/// `make` with its output.
fn make_output(out: &Path, args: &[&str]) -> std::process::Output {
    Command::new("make")
        .current_dir(repo())
        .arg("--no-print-directory")
        .args(args)
        .arg(format!("OUT={}", out.display()))
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_mode")))
        .arg("CARGO_BUILD=true")
        .output()
        .expect("make runs")
}

/// A typo fails the make run with the binary's error; re-running one stage of an arm keeps the
/// documented flow working (the arm's later stages are redone, `make chain` and `make all`
/// then succeed and summarise every arm).
#[test]
fn make_fails_loudly_and_one_stage_reruns() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-make-flow");
    let _ = std::fs::remove_dir_all(&out);
    for (args, needle) in [
        (
            vec!["all", "PIPELINE=mnst"],
            "cannot read pipeline file pipelines/mnst.toml",
        ),
        (
            vec!["all", "PIPELINE=smoke", "EXPERIMENT_ARMS=mode-dott"],
            "unknown arm \"mode-dott\"",
        ),
        (
            vec!["chain", "PIPELINE=smoke", "ARMS=mode-dott random"],
            "unknown arm \"mode-dott\"",
        ),
        (
            vec!["all", "PIPELINE=smoke", "SET=mode.theta=3"],
            "--set mode.theta=3",
        ),
    ] {
        let o = make_output(&out, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "make {args:?} must fail: {err}");
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    make(&out, &["chain", "PIPELINE=smoke", "ARMS=mode-dot random"]);
    make(
        &out,
        &["select", "PIPELINE=smoke", "METRIC=cosine", "ITER=2"],
    );
    let l = Layout::new(&out);
    let m = Manifest::read(&l.manifest("mode-cosine")).unwrap();
    assert_eq!(
        (m.completed, m.status),
        (2, RunStatus::Complete),
        "the arm's run is whole again"
    );
    make(&out, &["chain", "PIPELINE=smoke", "ARMS=mode-dot random"]);
    let o = make_output(
        &out,
        &[
            "all",
            "PIPELINE=smoke",
            "EXPERIMENT_ARMS=mode-dot,mode-cosine,random",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("Verdict:") && stdout.contains("mode-cosine"),
        "{stdout}"
    );
}
