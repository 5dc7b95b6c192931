//! End-to-end: `make all PIPELINE=smoke` (split → train → evaluate, then two MODE iterations
//! of all 21 arms in one process) into cargo's scratch folder, then checks of every artifact
//! with our own reader and with external readers (DuckDB and python-polars); and
//! `make chain` (one make target per stage) for two arms, which must give the same files.

use mode::artifacts::{
    self, Activations, BatchRow, DiagnosisRow, LayerRow, MetricRow, PoolRow, Samples, Table,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const ARMS: [&str; 4] = ["mode-dot", "random", "label-random", "uncertainty"];
const ITERS: u32 = 2;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run the smoke pipeline once for all tests of this file.
fn smoke() -> &'static Path {
    static OUT: OnceLock<PathBuf> = OnceLock::new();
    OUT.get_or_init(|| {
        // Under cargo's scratch folder for integration tests; replaced on every run.
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-smoke");
        let _ = std::fs::remove_dir_all(&out);
        let status = Command::new("make")
            .current_dir(repo())
            .args([
                "--no-print-directory",
                "all",
                "PIPELINE=smoke",
                "METRIC=dot",
            ])
            .arg(format!("OUT={}", out.display()))
            .arg(format!("BIN={}", env!("CARGO_BIN_EXE_mode")))
            .arg("CARGO_BUILD=true")
            .status()
            .expect("make runs");
        assert!(status.success(), "make all PIPELINE=smoke failed");
        out
    })
}

fn iter_dir(arm: &str, k: u32) -> PathBuf {
    smoke().join("runs").join(arm).join(format!("iter-{k}"))
}

#[test]
fn splits_have_schema_counts_and_disjoint_ids() {
    let out = smoke();
    let train = Samples::read(&out.join("splits/train.parquet")).unwrap();
    let pool = Samples::read(&out.join("splits/pool.parquet")).unwrap();
    let test = Samples::read(&out.join("splits/test.parquet")).unwrap();
    assert_eq!((train.len(), pool.len(), test.len()), (2000, 2000, 1000));
    assert_eq!(
        (train.meta.height, train.meta.width, train.meta.classes),
        (28, 28, 10)
    );
    let t = artifacts::TensorFile::read(&out.join("splits/train.parquet")).unwrap();
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
    let m = MetricRow::read(&smoke().join("initial/metrics.parquet")).unwrap();
    assert_eq!(m.len(), 11, "one overall row and ten label rows");
    let overall = &m[0];
    assert_eq!(
        (overall.scope.as_str(), overall.label, overall.n),
        ("overall", None, 1000)
    );
    assert!(
        overall.accuracy > 0.80,
        "smoke model accuracy {} below the floor",
        overall.accuracy
    );
    let p = artifacts::TensorFile::read(&smoke().join("initial/predictions.parquet")).unwrap();
    assert_eq!(
        p.column_names(),
        ["id", "label", "predicted", "confidence", "probs"]
    );
    assert_eq!(p.tensor("probs").unwrap().dim(), (1000, 10));
    let log = artifacts::TrainLogRow::read(&smoke().join("initial/train_log.parquet")).unwrap();
    assert_eq!(log.len(), 3, "one row per epoch of the smoke pipeline");
}

#[test]
fn probe_layers_heatmap_artifacts() {
    let d = iter_dir("mode-dot", 1);
    let a = Activations::read(&artifacts::activations_path(&d, "train")).unwrap();
    assert_eq!(a.layer_names(), ["dense_1", "dense_2", "output"]);
    assert_eq!(a.layer("dense_1").unwrap().dim(), (2000, 28));
    assert_eq!(a.layer("output").unwrap().dim(), (2000, 10));
    let layers = LayerRow::read(&d.join("layers.parquet")).unwrap();
    let fwd: Vec<_> = layers.iter().filter(|r| r.direction == "forward").collect();
    assert_eq!(
        fwd.iter().map(|r| r.layer.as_str()).collect::<Vec<_>>(),
        ["input", "dense_1", "dense_2", "output"]
    );
    assert_eq!(fwd.iter().filter(|r| r.is_target).count(), 1);
    assert!(fwd.iter().all(|r| (0.0..=1.0).contains(&r.probe_accuracy)));
    let diag = DiagnosisRow::read(&d.join("diagnosis.parquet")).unwrap();
    assert_eq!(diag.len(), 10);
    assert!(diag.iter().filter(|r| r.faultiest).count() <= 1);
    let maps = artifacts::read_heatmaps(&d.join("heatmaps.parquet")).unwrap();
    assert_eq!(maps.len(), 10 * 5 + 10 * 9);
    assert!(
        maps.iter()
            .all(|m| m.values.len() == 784 && m.values.iter().all(|v| v.is_finite()))
    );
}

#[test]
fn selection_invariants_over_iterations() {
    let out = smoke();
    let initial_pool: HashSet<u32> = artifacts::read_ids(&out.join("splits/pool.parquet"))
        .unwrap()
        .into_iter()
        .collect();
    for arm in ARMS {
        let mut seen: HashSet<u32> = HashSet::new();
        let mut pool_before = initial_pool.len();
        for k in 1..=ITERS {
            let d = iter_dir(arm, k);
            let batch = BatchRow::read(&d.join("batch.parquet")).unwrap();
            let pool = PoolRow::read(&d.join("pool.parquet")).unwrap();
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
                assert!(batch.iter().all(|b| b.origin == "random"));
            } else if arm == "uncertainty" {
                let diag = DiagnosisRow::read(&d.join("diagnosis.parquet")).unwrap();
                if diag.iter().any(|r| r.faultiest) {
                    let scores = artifacts::ScoreRow::read(&d.join("scores.parquet")).unwrap();
                    let targeted: HashSet<u32> = batch
                        .iter()
                        .filter(|b| b.origin == "targeted")
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
                let diag = DiagnosisRow::read(&d.join("diagnosis.parquet")).unwrap();
                match diag.iter().find(|r| r.faultiest) {
                    Some(f) => {
                        assert_eq!(batch.len(), 200);
                        let targeted: Vec<_> =
                            batch.iter().filter(|b| b.origin == "targeted").collect();
                        assert!(!targeted.is_empty() && targeted.len() <= 50);
                        assert!(
                            targeted.iter().all(|b| b.label == f.label),
                            "targeted ids carry the faulty label"
                        );
                        if arm == "mode-dot" {
                            let scores =
                                artifacts::ScoreRow::read(&d.join("scores.parquet")).unwrap();
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
            let m = MetricRow::read(&d.join("metrics.parquet")).unwrap();
            assert_eq!(m.len(), 11);
            assert!(m.iter().all(|r| r.arm == arm && r.iteration == k));
        }
    }
}

#[test]
fn summary_has_both_tables() {
    let df = artifacts::read_frame(&smoke().join("summary.parquet")).unwrap();
    let rows = mode::artifacts::SummaryRow::from_frame(&df).unwrap();
    assert_eq!(
        rows.len(),
        20,
        "18 MODE arms and two baselines against the control"
    );
    assert_eq!(rows.iter().filter(|r| r.layer_select).count(), 11);
    let r = rows.iter().find(|r| r.arm == "mode-dot").unwrap();
    assert_eq!((r.metric.as_str(), r.iterations), ("dot", ITERS));
    assert!((r.diff_f_c - (r.final_acc - r.control_acc)).abs() < 1e-12);
    assert!(
        rows.iter()
            .any(|r| r.arm == "mode-wasserstein-nols" && !r.layer_select)
    );
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
    let status = Command::new("make")
        .current_dir(repo())
        .args([
            "--no-print-directory",
            "chain",
            "PIPELINE=smoke",
            "ARMS=mode-dot random",
        ])
        .arg(format!("OUT={}", out.display()))
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_mode")))
        .arg("CARGO_BUILD=true")
        .status()
        .unwrap();
    assert!(status.success(), "make chain failed");
    for arm in ["mode-dot", "random"] {
        for k in 1..=ITERS {
            let rel = PathBuf::from("runs").join(arm).join(format!("iter-{k}"));
            let a = MetricRow::read(&exp.join(&rel).join("metrics.parquet")).unwrap();
            let b = MetricRow::read(&out.join(&rel).join("metrics.parquet")).unwrap();
            assert_eq!(a, b, "{arm} iteration {k}: metrics differ");
            let a = BatchRow::read(&exp.join(&rel).join("batch.parquet")).unwrap();
            let b = BatchRow::read(&out.join(&rel).join("batch.parquet")).unwrap();
            assert_eq!(a, b, "{arm} iteration {k}: batches differ");
        }
    }
    let a = DiagnosisRow::read(&exp.join("runs/mode-dot/iter-2/diagnosis.parquet")).unwrap();
    let b = DiagnosisRow::read(&out.join("runs/mode-dot/iter-2/diagnosis.parquet")).unwrap();
    assert_eq!(a, b);
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
    let mut figures = vec![
        "layers_accuracy.png".to_string(),
        "layers_bhattacharyya.png".into(),
        "heatmaps.png".into(),
        "pair.png".into(),
        "misclassified.png".into(),
        "accuracy_ls.png".into(),
        "accuracy_nols.png".into(),
        "per_label.png".into(),
    ];
    figures.extend(
        mode::config::Metric::ALL
            .iter()
            .map(|m| format!("similar_{}.png", m.as_str())),
    );
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
}

/// Right way up and the right label: each label's HC map correlates best with that label's
/// mean test image.
#[test]
fn hc_map_correlates_with_its_label_mean_image() {
    let maps = artifacts::read_heatmaps(&iter_dir("mode-dot", 1).join("heatmaps.parquet")).unwrap();
    let test = Samples::read(&smoke().join("splits/test.parquet")).unwrap();
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
    for m in maps.iter().filter(|m| m.kind == "HC" && m.n > 0) {
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
