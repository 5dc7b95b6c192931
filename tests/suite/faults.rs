//! A hostile user: runs killed at several points and rerun, a full disk, bad inputs of every
//! kind, stale and concurrent runs, and a seeded mutation loop over the readers. Every case
//! must end in either the right answer or one clear `error:` line with nothing half-written.

use crate::common::same_content;
use mode::arm::Arm;
use mode::artifacts::{
    Activations, Artifact, Layout, Manifest, MetricRow, Samples, Split, SummaryRow,
};
use mode::vocab::{IterStatus, RunStatus, Scope};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("faults")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `mode --pipeline pipelines/smoke.toml --root ROOT <args>`.
fn mode(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mode"));
    c.current_dir(repo())
        .arg("--pipeline")
        .arg("pipelines/smoke.toml")
        .arg("--root")
        .arg(root)
        .args(args);
    c
}

fn ok(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{:?} failed:\n{}",
        c,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A failure with exactly one `error:` line containing `needle`.
fn fails(c: &mut Command, needle: &str) -> String {
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "{c:?} must fail, stderr:\n{err}");
    assert_ne!(o.status.code(), Some(101), "a panic: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line, got:\n{err}");
    assert!(
        lines[0].contains(needle),
        "{needle:?} not in {:?}",
        lines[0]
    );
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_string()
}

/// The foundation of the smoke pipeline: splits, initial model and metrics.
fn foundation(root: &Path) {
    ok(&mut mode(root, &["split"]));
    ok(&mut mode(root, &["train"]));
    ok(&mut mode(root, &["evaluate"]));
}

/// Every file under `dir` (relative path → bytes), without locks and timings.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name == ".locks" || name == "timings.log" {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().into(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn assert_same_files(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    assert_eq!(
        fa.keys().collect::<Vec<_>>(),
        fb.keys().collect::<Vec<_>>(),
        "{} and {} hold different files",
        a.display(),
        b.display()
    );
    for (k, v) in &fa {
        assert!(same_content(k, v, &fb[k]), "{} differs", k.display());
    }
}

/// Start a command, kill -9 it after `ms`, wait for it.
fn kill_after(mut c: Command, ms: u64) {
    let mut child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    let _ = child.kill();
    let _ = child.wait();
}

const ARMS: &str = "mode-dot,random,uncertainty";

#[test]
fn killed_runs_rerun_to_the_uninterrupted_result() {
    let whole = scratch("whole");
    foundation(&whole);
    ok(&mut mode(&whole, &["experiment", "--arms", ARMS]));
    for (i, ms) in [40u64, 150, 400, 900].into_iter().enumerate() {
        let root = scratch(&format!("killed-{i}"));
        // split and train killed, then rerun
        kill_after(mode(&root, &["split"]), ms / 4);
        ok(&mut mode(&root, &["split"]));
        assert_same_files(&whole.join("splits"), &root.join("splits"));
        kill_after(mode(&root, &["train"]), ms / 2);
        ok(&mut mode(&root, &["train"]));
        ok(&mut mode(&root, &["evaluate"]));
        assert_same_files(&whole.join("initial"), &root.join("initial"));
        // the experiment killed, then rerun: it resumes and ends where the whole run ended
        kill_after(mode(&root, &["experiment", "--arms", ARMS]), ms);
        for e in std::fs::read_dir(root.join("runs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for it in std::fs::read_dir(e.path()).unwrap().flatten() {
                let name = it.file_name().to_string_lossy().to_string();
                if name.starts_with("iter-") {
                    assert!(
                        it.path().join("metrics.parquet").exists(),
                        "a visible iteration folder is complete: {}",
                        it.path().display()
                    );
                }
            }
        }
        ok(&mut mode(&root, &["experiment", "--arms", ARMS]));
        assert_same_files(&whole.join("runs"), &root.join("runs"));
        assert!(
            !files(&root)
                .keys()
                .any(|k| k.to_string_lossy().contains(".tmp-")),
            "no temporary file left"
        );
    }
}

#[test]
fn summary_refuses_incomplete_and_stale_runs() {
    let root = scratch("stale");
    foundation(&root);
    ok(&mut mode(
        &root,
        &["experiment", "--arms", "mode-dot,random"],
    ));
    ok(&mut mode(&root, &["summary"]));
    // An arm cut back to iteration 1 (as a killed run leaves it) is refused, or flagged.
    let l = Layout::new(&root);
    let mut m = Manifest::read(&l.manifest("mode-dot")).unwrap();
    m.completed = 1;
    m.iterations.truncate(1);
    m.status = RunStatus::Interrupted;
    m.write(&l.manifest("mode-dot")).unwrap();
    fails(&mut mode(&root, &["summary"]), "1 of 2 iterations complete");
    ok(&mut mode(&root, &["summary", "--allow-incomplete"]));
    let rows = Vec::<SummaryRow>::read(&l.summary()).unwrap();
    assert_eq!(rows[0].status, RunStatus::Interrupted);
    // Other settings: the summary refuses; the experiment starts those runs again.
    fails(
        &mut mode(&root, &["--set", "mode.alpha=0.5", "summary"]),
        "made with other settings",
    );
    ok(&mut mode(
        &root,
        &[
            "--set",
            "mode.max_iter=1",
            "experiment",
            "--arms",
            "mode-dot,random",
        ],
    ));
    assert!(
        !l.iter("mode-dot", 2).path().exists(),
        "no stale iteration 2"
    );
    ok(&mut mode(&root, &["--set", "mode.max_iter=1", "summary"]));
    fails(&mut mode(&root, &["summary"]), "made with other settings");
}

#[test]
fn an_exhausted_pool_is_not_finished_early() {
    let root = scratch("exhausted");
    let set = ["--set", "mode.batch=1500"];
    ok(&mut mode(&root, &[&set[..], &["split"]].concat()));
    ok(&mut mode(&root, &[&set[..], &["train"]].concat()));
    ok(&mut mode(
        &root,
        &[&set[..], &["experiment", "--arms", "random"]].concat(),
    ));
    let l = Layout::new(&root);
    // 2 000 pool samples: iteration 1 takes 1 500, iteration 2 the last 500.
    let m = Vec::<MetricRow>::read(&l.iter("random", 2).metrics()).unwrap();
    assert_eq!(m[0].status, IterStatus::PoolExhausted);
    assert!(!m[0].finished_early);
    let man = Manifest::read(&l.manifest("random")).unwrap();
    assert_eq!(man.status, RunStatus::PoolExhausted);
}

#[test]
fn one_writer_per_root() {
    let root = scratch("lock");
    foundation(&root);
    let mut first = mode(&root, &["experiment", "--arms", "all"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let e = fails(
        &mut mode(&root, &["experiment", "--arms", "random"]),
        "is being written by another run",
    );
    assert!(e.contains("pid"), "{e}");
    fails(
        &mut mode(&root, &["train"]),
        "is being written by another run",
    );
    let _ = first.kill();
    let _ = first.wait();
    // The killed holder's lock is gone with it.
    ok(&mut mode(&root, &["experiment", "--arms", "random"]));
}

#[test]
fn same_seed_same_model_bytes() {
    let (a, b) = (scratch("bytes-a"), scratch("bytes-b"));
    for r in [&a, &b] {
        ok(&mut mode(r, &["split"]));
        ok(&mut mode(r, &["train"]));
    }
    let l = |r: &Path| Layout::new(r).initial().model();
    assert!(std::fs::read(l(&a)).unwrap() == std::fs::read(l(&b)).unwrap());
}

/// Write a split with one NaN pixel; train and the analysis must refuse it.
#[test]
fn non_finite_values_are_refused() {
    let root = scratch("nan");
    foundation(&root);
    let l = Layout::new(&root);
    let train = l.split(Split::Train);
    let mut s = Samples::read(&train).unwrap();
    s.pixels[[17, 300]] = f32::NAN;
    s.write(&train).unwrap();
    let e = fails(
        &mut mode(
            &root,
            &["train", "--out", root.join("nan-model").to_str().unwrap()],
        ),
        "non-finite",
    );
    assert!(e.contains("\"pixels\"") && e.contains("row 17"), "{e}");
    assert!(!root.join("nan-model").exists());
    // Activations with a NaN: layers refuses them.
    let fresh = scratch("nan2");
    foundation(&fresh);
    ok(&mut mode(
        &fresh,
        &["probe", "--arm", "mode-dot", "--iteration", "1"],
    ));
    let lf = Layout::new(&fresh);
    let path = lf.iter("mode-dot", 1).activations("test");
    let mut a = Activations::read(&path).unwrap();
    a.layers[0].1[[3, 2]] = f32::INFINITY;
    a.write(&path).unwrap();
    let e = fails(
        &mut mode(&fresh, &["layers", "--arm", "mode-dot", "--iteration", "1"]),
        "non-finite",
    );
    assert!(e.contains("dense_1") && e.contains("row 3"), "{e}");
    assert!(!lf.iter("mode-dot", 1).layers().exists());
}

/// idx folders with bad contents: each is a clear error and no split is written.
#[test]
fn degenerate_idx_data_is_refused() {
    use mode::idx::encode_pair;
    let write = |dir: &Path, train: (usize, u8), test: (usize, u8)| {
        std::fs::create_dir_all(dir).unwrap();
        for (name, (n, bad_label)) in [("train", train), ("t10k", test)] {
            let mut labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
            if let Some(l) = labels.first_mut() {
                *l = bad_label;
            }
            let (i, lb) = encode_pair(28, 28, &vec![9u8; n * 784], &labels);
            std::fs::write(dir.join(format!("{name}-images-idx3-ubyte")), i).unwrap();
            std::fs::write(dir.join(format!("{name}-labels-idx1-ubyte")), lb).unwrap();
        }
    };
    let root = scratch("idx");
    // (train images, first label), (test images, first label), the error expected ("" = none)
    type Case = ((usize, u8), (usize, u8), &'static str);
    let cases: [Case; 3] = [
        ((100, 0), (0, 0), "hold no images"),
        ((100, 255), (20, 0), "never occurs"),
        ((100, 0), (20, 0), ""),
    ];
    for (i, (train, test, needle)) in cases.into_iter().enumerate() {
        let dir = root.join(format!("case-{i}"));
        write(&dir, train, test);
        let out = root.join(format!("out-{i}"));
        let mut c = mode(&out, &["split", "--idx-dir", dir.to_str().unwrap()]);
        if needle.is_empty() {
            ok(&mut c);
        } else {
            fails(&mut c, needle);
            assert!(!out.join("splits").exists(), "no split written");
        }
    }
    // The MNIST pipeline names 10 classes: a label 255 is refused with that count.
    let dir = root.join("case-255");
    write(&dir, (100, 255), (20, 0));
    fails(
        Command::new(env!("CARGO_BIN_EXE_mode"))
            .current_dir(repo())
            .args(["--pipeline", "pipelines/mnist.toml", "--root"])
            .arg(root.join("out-255"))
            .args(["split", "--idx-dir", dir.to_str().unwrap()]),
        "not below the 10 classes",
    );
    // A crafted header (2^22 × 2^21 × 2^21) is a clean error, not an abort.
    let crafted = root.join("crafted");
    write(&crafted, (10, 0), (10, 0));
    let mut h = 0x0803u32.to_be_bytes().to_vec();
    for d in [1u32 << 22, 1 << 21, 1 << 21] {
        h.extend_from_slice(&d.to_be_bytes());
    }
    std::fs::write(crafted.join("train-images-idx3-ubyte"), h).unwrap();
    fails(
        &mut mode(
            &root.join("out-crafted"),
            &["split", "--idx-dir", crafted.to_str().unwrap()],
        ),
        "corrupt",
    );
}

#[test]
fn mismatched_models_are_refused() {
    let root = scratch("mismatch");
    foundation(&root);
    // The pipeline describes another architecture than the model file.
    fails(
        &mut mode(
            &root,
            &[
                "--set",
                "model.hidden=[16]",
                "probe",
                "--arm",
                "mode-dot",
                "--iteration",
                "1",
            ],
        ),
        "trained with other settings",
    );
    let e = fails(
        &mut mode(
            &root,
            &[
                "--set",
                "model.hidden=[16]",
                "evaluate",
                "--out",
                root.join("ev16").to_str().unwrap(),
            ],
        ),
        "the pipeline describes",
    );
    assert!(e.contains("Dense 28"), "{e}");
    // A model of 10 classes on data of another class count.
    let l = Layout::new(&root);
    let test = l.split(Split::Test);
    let mut s = Samples::read(&test).unwrap();
    s.meta.classes = 12;
    let other = root.join("test12.parquet");
    s.write(&other).unwrap();
    fails(
        &mut mode(
            &root,
            &[
                "evaluate",
                "--data",
                other.to_str().unwrap(),
                "--out",
                root.join("ev").to_str().unwrap(),
            ],
        ),
        "12 classes",
    );
    assert!(!root.join("ev").exists());
}

#[test]
fn set_errors_name_the_override() {
    let root = scratch("set");
    let e = fails(
        &mut mode(&root, &["--set", "mode.theta=2", "split"]),
        "--set mode.theta=2",
    );
    assert!(e.contains("mode.theta = 2"), "{e}");
    fails(
        &mut mode(&root, &["--set", "select.metric=\"nope\"", "split"]),
        "--set select.metric",
    );
    fails(
        &mut mode(&root, &["--set", "nonsense", "split"]),
        "--set nonsense",
    );
    // Numbers out of a key's range say the key, the range and the value.
    let e = fails(
        &mut mode(
            &root,
            &["--set", "split.seed=99999999999999999999", "split"],
        ),
        "split.seed must be a whole number from 0 to 18446744073709551615, not string \"99999999999999999999\"",
    );
    assert!(e.starts_with("error: --set split.seed="), "{e}");
    fails(
        &mut mode(&root, &["--set", "split.seed=1e20", "split"]),
        "split.seed must be a whole number from 0 to 18446744073709551615, not floating point",
    );
    fails(
        &mut mode(&root, &["--set", "mode.batch=-3", "split"]),
        "--set mode.batch=-3: -3 samples: a batch cannot be negative in `mode.batch`",
    );
}

#[test]
fn an_extends_cycle_is_named_once() {
    let t = scratch("extends");
    std::fs::write(t.join("a.toml"), "extends = \"b.toml\"\n").unwrap();
    std::fs::write(t.join("b.toml"), "extends = \"a.toml\"\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mode"))
        .current_dir(repo())
        .arg("--pipeline")
        .arg(t.join("a.toml"))
        .args(["info", "max-iter"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success());
    let a = std::fs::canonicalize(t.join("a.toml")).unwrap();
    let b = std::fs::canonicalize(t.join("b.toml")).unwrap();
    assert_eq!(
        err.trim(),
        format!(
            "error: `extends` makes a cycle: {} → {} → {}; the last file must not extend the first",
            a.display(),
            b.display(),
            a.display()
        )
    );
    // A pipeline outside pipelines/ extends a shipped one by its name.
    std::fs::write(
        t.join("mine.toml"),
        "extends = \"smoke.toml\"\nname = \"mine\"\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mode"))
        .current_dir(repo())
        .arg("--pipeline")
        .arg(t.join("mine.toml"))
        .args(["info", "max-iter"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "2");
    // A name is a pipeline of pipelines/.
    let o = Command::new(env!("CARGO_BIN_EXE_mode"))
        .current_dir(repo())
        .args(["-p", "smoke", "info", "max-iter"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "2");
}

/// A resumed run verifies what it builds on: an iteration whose files were removed or changed
/// by hand is refused by `summary` and made again by the next `experiment`.
#[test]
fn a_resume_verifies_the_files_it_builds_on() {
    let root = scratch("verify");
    foundation(&root);
    let arms = ["experiment", "--arms", "mode-dot,random"];
    ok(&mut mode(&root, &arms));
    let l = Layout::new(&root);
    let whole = files(&l.runs_dir());
    // iter-1 removed by hand: summary refuses, naming it; a rerun makes it (and 2) again.
    std::fs::remove_dir_all(l.iter("mode-dot", 1).path()).unwrap();
    fails(
        &mut mode(&root, &["summary"]),
        &format!(
            "{} is missing, though its manifest records iteration 1 complete",
            l.iter("mode-dot", 1).path().display()
        ),
    );
    ok(&mut mode(&root, &arms));
    assert_same_files_map(&whole, &files(&l.runs_dir()));
    ok(&mut mode(&root, &["summary"]));
    // iter-2's model changed (same size) or removed: the rerun makes iteration 2 again.
    let model = l.iter("mode-dot", 2).model();
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&model, &bytes).unwrap();
    let o = ok(&mut mode(&root, &arms));
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(
        log.contains(
            "model.safetensors was changed since it was written; redoing the run from iteration 2"
        ),
        "{log}"
    );
    assert_same_files_map(&whole, &files(&l.runs_dir()));
    std::fs::remove_file(&model).unwrap();
    fails(
        &mut mode(&root, &["summary"]),
        "model.safetensors is missing, though its manifest records iteration 2 complete",
    );
    ok(&mut mode(&root, &arms));
    assert_same_files_map(&whole, &files(&l.runs_dir()));
}

fn assert_same_files_map(a: &BTreeMap<PathBuf, Vec<u8>>, b: &BTreeMap<PathBuf, Vec<u8>>) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in a {
        assert!(same_content(k, v, &b[k]), "{} differs", k.display());
    }
}

/// A failing iteration leaves no staging folder behind, whichever step fails.
#[test]
fn a_failed_iteration_leaves_no_staging_folder() {
    let root = scratch("failed-iter");
    foundation(&root);
    fails(
        &mut mode(
            &root,
            &[
                "--set",
                "layers.force_target=\"nope\"",
                "experiment",
                "--arms",
                "mode-dot,mode-cosine,random",
            ],
        ),
        "layers.force_target = \"nope\" is not a layer of this model",
    );
    let left: Vec<PathBuf> = files(&Layout::new(&root).runs_dir())
        .into_keys()
        .filter(|k| {
            k.to_string_lossy().contains(".partial-") || k.to_string_lossy().contains("/iter-")
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A missing input names the command that makes it.
#[test]
fn a_missing_artifact_names_its_stage() {
    let root = scratch("missing");
    foundation(&root);
    let at = ["--arm", "mode-dot", "--iteration", "1"];
    ok(&mut mode(&root, &[&["probe"][..], &at].concat()));
    let l = Layout::new(&root);
    fails(
        &mut mode(&root, &[&["heatmap"][..], &at].concat()),
        &format!(
            "cannot open {}: it does not exist; `mode layers --arm mode-dot --iteration 1` (iteration 1 of the arm's run) makes it",
            l.iter("mode-dot", 1).layers().display()
        ),
    );
}

#[test]
fn temporaries_of_killed_runs_are_swept() {
    let root = scratch("sweep-tmp");
    foundation(&root);
    let stale = root.join("initial/.model.safetensors.tmp-4000000000");
    std::fs::write(&stale, b"half").unwrap();
    ok(&mut mode(&root, &["evaluate"]));
    assert!(!stale.exists());
}

/// Whether this process may mount a tmpfs. A test that needs one and cannot run fails, unless
/// MODE_SKIP_ROOT_TESTS=1 says to skip it (then it says so).
fn may_mount() -> bool {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if !is_root {
        assert!(
            std::env::var("MODE_SKIP_ROOT_TESTS").as_deref() == Ok("1"),
            "this test mounts a small tmpfs and needs root (CI runs as root); run it as root, or set MODE_SKIP_ROOT_TESTS=1 to skip it"
        );
        eprintln!("skipped (MODE_SKIP_ROOT_TESTS=1): not root, cannot mount a tmpfs");
    }
    is_root
}

/// A tmpfs of `mb` megabytes at a fresh folder; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(name: &str, mb: u32) -> Tmpfs {
        let mnt = scratch(name);
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs at {}", mnt.display());
        Tmpfs(mnt)
    }

    /// Fill it up but for `free` bytes.
    fn fill_but(&self, free: u64) {
        let o = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .unwrap();
        let avail: u64 = String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let f = std::fs::File::create(self.0.join("filler")).unwrap();
        use std::io::Write;
        let mut w = std::io::BufWriter::new(f);
        let block = vec![1u8; 4096];
        let mut left = avail.saturating_sub(free);
        while left > 0 {
            let n = left.min(4096) as usize;
            if w.write_all(&block[..n]).is_err() {
                break;
            }
            left -= n as u64;
        }
        let _ = w.flush();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn copy_into(from: &Path, what: &[&str], to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for d in what {
        let s = Command::new("cp")
            .arg("-a")
            .arg(from.join(d))
            .arg(to)
            .status()
            .unwrap();
        assert!(s.success());
    }
}

#[test]
fn full_disk_leaves_no_half_iteration() {
    if !may_mount() {
        return;
    }
    let base = scratch("disk");
    foundation(&base);
    let disk = Tmpfs::new("disk-mnt", 40);
    let root = disk.0.join("root");
    copy_into(&base, &["splits", "initial"], &root);
    let o = mode(&root, &["experiment", "--arms", "all"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    // What is visible is complete: no staging folder, every iteration folder has its metrics.
    let mut half = Vec::new();
    for e in std::fs::read_dir(root.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for it in std::fs::read_dir(e.path()).unwrap().flatten() {
            let name = it.file_name().to_string_lossy().to_string();
            if name.starts_with('.')
                || (name.starts_with("iter-") && !it.path().join("metrics.parquet").exists())
            {
                half.push(it.path());
            }
        }
    }
    drop(disk);
    assert!(!o.status.success(), "40 MB cannot hold 27 arms");
    assert!(err.contains("error:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(half.is_empty(), "half-written: {half:?}");
}

/// A full disk during `train` leaves no log or optimizer state without their model, and
/// during `report` no partial figure: a clear error naming the file, the old state kept.
#[test]
fn full_disk_in_train_and_report_leaves_nothing_half_written() {
    if !may_mount() {
        return;
    }
    let base = scratch("disk2");
    foundation(&base);
    ok(&mut mode(
        &base,
        &["experiment", "--arms", "mode-dot,random"],
    ));
    // train: room for the log but not for Adam's state and the model.
    let disk = Tmpfs::new("disk2-train", 16);
    let root = disk.0.join("root");
    copy_into(&base, &["splits"], &root);
    disk.fill_but(60_000);
    let e = fails(&mut mode(&root, &["train"]), "No space left on device");
    assert!(e.contains("initial/"), "names the file: {e}");
    let init = Layout::new(&root).initial();
    for f in [init.train_log(), init.optimizer(), init.model()] {
        assert!(!f.exists(), "{} written without its model", f.display());
    }
    let left: Vec<PathBuf> = files(&root)
        .into_keys()
        .filter(|k| k.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporaries left: {left:?}");
    drop(disk);
    // report: the figures do not fit.
    let disk = Tmpfs::new("disk2-report", 40);
    let root = disk.0.join("root");
    copy_into(&base, &["splits", "initial", "runs"], &root);
    disk.fill_but(150_000);
    let e = fails(&mut mode(&root, &["report"]), "No space left on device");
    assert!(
        e.contains(".png") || e.contains("index.html"),
        "names the file: {e}"
    );
    assert!(!e.contains("BackendError"), "not a Debug dump: {e}");
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("report") || n.contains(".partial-")),
        "no report folder, whole or partial: {names:?}"
    );
}

#[test]
fn mutated_files_never_panic() {
    use rand::{Rng, SeedableRng};
    let root = scratch("mutate");
    foundation(&root);
    let l = Layout::new(&root);
    let parquet = std::fs::read(l.split(Split::Test)).unwrap();
    let (images, labels) = mode::idx::encode_pair(4, 4, &[7u8; 5 * 16], &[0, 1, 2, 3, 4]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let target = root.join("mutant.parquet");
    let mut refused = 0;
    for round in 0..300 {
        let mut p = parquet.clone();
        let mut i = images.clone();
        match round % 3 {
            0 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..p.len());
                    p[at] = rng.random();
                    let at = rng.random_range(0..i.len());
                    i[at] = rng.random();
                }
            }
            1 => {
                p.truncate(rng.random_range(0..p.len()));
                i.truncate(rng.random_range(0..i.len()));
            }
            _ => {
                let at = rng.random_range(0..p.len().saturating_sub(8));
                p[at..at + 8].copy_from_slice(&rng.random::<u64>().to_le_bytes());
                let at = rng.random_range(0..i.len().saturating_sub(4));
                i[at..at + 4].copy_from_slice(&rng.random::<u32>().to_be_bytes());
            }
        }
        std::fs::write(&target, &p).unwrap();
        let r = std::panic::catch_unwind(|| Samples::read(&target).is_err());
        assert!(
            r.is_ok(),
            "round {round}: reading a mutated Parquet file panicked"
        );
        refused += r.unwrap() as usize;
        let r = std::panic::catch_unwind(|| {
            mode::idx::parse_pair(Path::new("i"), &i, Path::new("l"), &labels).is_err()
        });
        assert!(
            r.is_ok(),
            "round {round}: parsing a mutated idx file panicked"
        );
    }
    assert!(refused > 100, "most mutants are refused ({refused})");
    let _ = (Arm::parse_list("all"), Scope::Overall);
}
