//! Bad input: a one-line error naming the problem, a non-zero exit, and no artifact left.

use flate2::{Compression, write::GzEncoder};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn idx_pair(n_images: usize, n_labels: usize) -> (Vec<u8>, Vec<u8>) {
    let labels = |n: usize| (0..n).map(|i| (i % 2) as u8).collect::<Vec<u8>>();
    let (i, _) = mode::idx::encode_pair(28, 28, &vec![7u8; n_images * 784], &labels(n_images));
    let (_, l) = mode::idx::encode_pair(28, 28, &[], &labels(n_labels));
    (i, l)
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A folder with valid gzip idx files (10 train, 4 test images).
fn idx_dir(root: &Path) -> PathBuf {
    let d = root.join("idx");
    std::fs::create_dir_all(&d).unwrap();
    let (ti, tl) = idx_pair(10, 10);
    let (si, sl) = idx_pair(4, 4);
    std::fs::write(d.join("train-images-idx3-ubyte.gz"), gz(&ti)).unwrap();
    std::fs::write(d.join("train-labels-idx1-ubyte.gz"), gz(&tl)).unwrap();
    std::fs::write(d.join("t10k-images-idx3-ubyte.gz"), gz(&si)).unwrap();
    std::fs::write(d.join("t10k-labels-idx1-ubyte.gz"), gz(&sl)).unwrap();
    d
}

/// Run `mode split` and return (success, stderr, files left in the output folder).
fn split(root: &Path, idx: &Path, extra: &[&str]) -> (bool, String, usize) {
    let out = root.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_mode"))
        .args(extra)
        .args(["split", "--idx-dir"])
        .arg(idx)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let left = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).to_string(),
        left,
    )
}

fn assert_clean_failure(ok: bool, stderr: &str, left: usize, needle: &str) {
    assert!(!ok, "must fail");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line, got: {stderr}");
    assert!(errors[0].contains(needle), "{needle:?} not in {stderr}");
    assert_eq!(left, 0, "no artifact may be left behind");
}

#[test]
fn good_input_splits() {
    let t = tempfile::tempdir().unwrap();
    let d = idx_dir(t.path());
    let (ok, stderr, left) = split(t.path(), &d, &[]);
    assert!(ok, "{stderr}");
    assert_eq!(left, 3);
}

#[test]
fn truncated_gzip() {
    let t = tempfile::tempdir().unwrap();
    let d = idx_dir(t.path());
    let p = d.join("train-images-idx3-ubyte.gz");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    let (ok, e, left) = split(t.path(), &d, &[]);
    assert_clean_failure(
        ok,
        &e,
        left,
        "train-images-idx3-ubyte.gz: corrupt or truncated gzip",
    );
}

#[test]
fn wrong_magic() {
    let t = tempfile::tempdir().unwrap();
    let d = idx_dir(t.path());
    let (_, l) = idx_pair(0, 4);
    std::fs::write(d.join("t10k-images-idx3-ubyte.gz"), gz(&l)).unwrap();
    let (ok, e, left) = split(t.path(), &d, &[]);
    assert_clean_failure(
        ok,
        &e,
        left,
        "t10k-images-idx3-ubyte.gz: wrong magic number",
    );
}

#[test]
fn count_mismatch() {
    let t = tempfile::tempdir().unwrap();
    let d = idx_dir(t.path());
    let (_, l) = idx_pair(0, 9);
    std::fs::write(d.join("train-labels-idx1-ubyte.gz"), gz(&l)).unwrap();
    let (ok, e, left) = split(t.path(), &d, &[]);
    assert_clean_failure(ok, &e, left, "has 10 images but");
}

#[test]
fn unknown_pipeline_key() {
    let t = tempfile::tempdir().unwrap();
    let d = idx_dir(t.path());
    let p = t.path().join("bad.toml");
    std::fs::write(&p, "name = \"x\"\n[mode]\ntheta = 0.9\nbogus = 1\n").unwrap();
    let (ok, e, left) = split(t.path(), &d, &["--pipeline", p.to_str().unwrap()]);
    assert_clean_failure(ok, &e, left, "bogus");
}

#[test]
fn out_of_range_value() {
    let t = tempfile::tempdir().unwrap();
    let d = idx_dir(t.path());
    let (ok, e, left) = split(t.path(), &d, &["--set", "mode.theta=1.5"]);
    assert_clean_failure(ok, &e, left, "mode.theta");
}

#[test]
fn missing_paths() {
    let t = tempfile::tempdir().unwrap();
    let (ok, e, left) = split(t.path(), &t.path().join("nope"), &[]);
    assert_clean_failure(ok, &e, left, "nope");
    let (ok, e, left) = split(
        t.path(),
        &t.path().join("nope"),
        &["--pipeline", "/no/such/pipeline.toml"],
    );
    assert_clean_failure(ok, &e, left, "/no/such/pipeline.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_mode"))
        .args(["evaluate", "--model", "/no/such/model.safetensors", "--out"])
        .arg(t.path().join("ev"))
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(e.contains("/no/such/model.safetensors"), "{e}");
    assert!(!t.path().join("ev").exists());
}

/// `--set KEY VALUE` says what is meant; `-p NAME` takes a name; `info pipelines` lists them.
#[test]
fn set_names_and_pipelines() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mode"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["--set", "mode.theta", "0.9", "info", "max-iter"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "error: --set mode.theta: give the key and its value in one argument, --set mode.theta=0.9"
    );
    let o = run(&["-p", "smoke", "info", "max-iter"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "2");
    let o = run(&["info", "pipelines"]);
    let list = String::from_utf8_lossy(&o.stdout);
    for name in ["mnist ", "own ", "smoke ", "paper "] {
        assert!(
            list.lines().any(|l| l.starts_with(name)),
            "{name} in {list}"
        );
    }
}
