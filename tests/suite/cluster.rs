//! Sharded sweeps and ablations on smoke data: shards run by hand merge into exactly the files
//! of one process (every column but the wall-clock `seconds`); the merge refuses a missing
//! shard, a shard made twice with different results, a changed part, parts of other settings,
//! of another grid or of two shardings, and then writes nothing; and a real Dask cluster —
//! `dask scheduler` and two one-thread `dask worker`s, every one bound to 127.0.0.1 — runs the
//! shards through `scale/dask_sweep.py`, also when a worker is killed (-9) mid-task.
//!
//! Dask is installed from PyPI into `<target>/dask-venv` once (kept for later runs). The
//! cluster's processes are owned by a guard that kills them by pid when dropped, also when an
//! assertion fails; every wait is bounded.

use mode::artifacts::manifest::sum_file;
use mode::artifacts::{Artifact, Layout, PartManifest, PartRow, SweepRow, SweepSummaryRow};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const ARMS: &str = "mode-dot,uncertainty,random";
const SEEDS: &str = "4";
/// The pinned Dask (the driver needs only `distributed.Client`).
const DASK: &str = "dask[distributed]==2026.8.0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh folder under cargo's scratch folder for integration tests.
fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cluster-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A process with its output read on the side; killed (by pid) if dropped while running.
struct Running {
    what: String,
    child: Option<Child>,
    out: Option<std::thread::JoinHandle<Vec<u8>>>,
    err: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    fn start(cmd: &mut Command) -> Running {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let drain = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = r.read_to_end(&mut v);
                v
            })
        };
        let out = drain(Box::new(child.stdout.take().unwrap()));
        let err = drain(Box::new(child.stderr.take().unwrap()));
        Running {
            what,
            child: Some(child),
            out: Some(out),
            err: Some(err),
        }
    }

    /// Wait for the end, at most `limit` (then kill it and fail).
    fn finish(mut self, limit: Duration) -> Output {
        let mut child = self.child.take().unwrap();
        let status = wait_bounded(&mut child, limit)
            .unwrap_or_else(|| panic!("{} took longer than {limit:?}; killed", self.what));
        Output {
            status,
            stdout: self.out.take().unwrap().join().unwrap(),
            stderr: self.err.take().unwrap().join().unwrap(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait for a child at most `limit`; on time-out kill it (SIGKILL, by its pid) and reap it.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(cmd: &mut Command, limit: Duration) -> Output {
    Running::start(cmd).finish(limit)
}

/// `mode --pipeline pipelines/smoke.toml --root <root> <args…>`, bounded.
fn mode(root: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mode"));
    c.current_dir(repo())
        .args(["--pipeline", "pipelines/smoke.toml", "--root"])
        .arg(root)
        .args(args);
    run(&mut c, Duration::from_secs(600))
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// The command fails with one `error: …` line containing `want`.
fn fails(o: Output, want: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "should fail ({want}), but ran:\n{err}");
    assert!(err.contains(want), "expected {want:?} in:\n{err}");
    err
}

/// The sweep options every run of this file uses (shards, merges, the one-process sweep).
fn sweep(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["--quiet", "sweep", "--seeds", SEEDS, "--arms", ARMS]
        .map(String::from)
        .to_vec();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The one-process sweep all merges are compared with (two threads: seeds in parallel).
fn reference() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = scratch("reference");
        ok(mode(&root, &args(&sweep(&["--threads", "2"]))));
        root
    })
}

/// `b` holds the sweep `a` holds: the same rows and values in every column but `seconds`,
/// the same summary, Markdown and manifest bytes.
fn assert_same_sweep(a: &Path, b: &Path) {
    let (la, lb) = (Layout::new(a), Layout::new(b));
    let rows = |l: &Layout| {
        let mut r = Vec::<SweepRow>::read(&l.sweep()).unwrap();
        r.iter_mut().for_each(|x| x.seconds = 0.0);
        r
    };
    let (ra, rb) = (rows(&la), rows(&lb));
    let mut seeds: Vec<i64> = ra.iter().map(|r| r.seed).collect();
    seeds.dedup();
    assert_eq!(
        seeds,
        [7, 8, 9, 10],
        "the smoke pipeline's seed 7 and the next three"
    );
    assert_eq!(ra, rb, "sweep.parquet but seconds");
    assert_eq!(
        Vec::<SweepSummaryRow>::read(&la.sweep_summary()).unwrap(),
        Vec::<SweepSummaryRow>::read(&lb.sweep_summary()).unwrap()
    );
    for f in [la.sweep_summary(), la.sweep_markdown(), la.sweep_manifest()] {
        let g = b.join(f.strip_prefix(a).unwrap());
        assert!(
            std::fs::read(&f).unwrap() == std::fs::read(&g).unwrap(),
            "{} differs",
            g.display()
        );
    }
}

/// Nothing a merge writes is there.
fn assert_nothing_merged(root: &Path) {
    let l = Layout::new(root);
    for f in [
        l.sweep(),
        l.sweep_summary(),
        l.sweep_markdown(),
        l.sweep_manifest(),
    ] {
        assert!(!f.exists(), "{} was written", f.display());
    }
}

/// The part manifests under a root's parts/ (sorted).
fn manifests(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Layout::new(root).parts_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    v
}

/// The manifest of shard `i` under a root.
fn manifest_of(root: &Path, i: usize) -> (PathBuf, PartManifest) {
    manifests(root)
        .into_iter()
        .map(|p| {
            let m = PartManifest::read(&p).unwrap();
            (p, m)
        })
        .find(|(_, m)| m.shard.index == i)
        .expect("a part of the shard")
}

/// Copy a root's parts into a fresh root.
fn copy_parts(from: &Path, name: &str) -> PathBuf {
    let root = scratch(name);
    let to = Layout::new(&root).parts_dir();
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(Layout::new(from).parts_dir()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
    root
}

/// Write `rows` as another attempt of a shard, `token` naming it, with a manifest that
/// matches them (what a second run of that shard would leave).
fn write_attempt(root: &Path, mut m: PartManifest, rows: &[PartRow], token: &str) -> PathBuf {
    let l = Layout::new(root);
    let path = l.part("sweep", m.shard.index, m.shard.count, token);
    rows.to_vec().write(&path).unwrap();
    m.file = path.file_name().unwrap().to_string_lossy().to_string();
    m.rows = rows.len();
    m.sum = sum_file(&path).unwrap();
    m.write(&Layout::part_manifest(&path)).unwrap();
    path
}

/// `scale/slurm_sweep.sh shard|merge` as a Slurm array task `task` of `count` would run it.
fn slurm(root: &Path, what: &str, task: usize, count: usize) -> Output {
    let mode_args = format!(
        "--pipeline pipelines/smoke.toml --root {} --threads 1 {}",
        root.display(),
        sweep(&[]).join(" ")
    );
    let mut c = Command::new("bash");
    c.current_dir(repo())
        .args(["scale/slurm_sweep.sh", what])
        .env("BIN", env!("CARGO_BIN_EXE_mode"))
        .env("MODE_ARGS", mode_args)
        .env("SLURM_ARRAY_TASK_ID", task.to_string())
        .env("SLURM_ARRAY_TASK_COUNT", count.to_string());
    run(&mut c, Duration::from_secs(600))
}

/// The shards run one after another, as the tasks of a Slurm job array would (the array's
/// script run with the variables Slurm sets), then the merge.
#[test]
fn shards_of_a_job_array_merge_into_the_one_process_sweep_and_wrong_parts_are_refused() {
    let root = scratch("by-hand");
    for i in 0..3 {
        let out = ok(slurm(&root, "shard", i, 3));
        assert!(out.contains(&format!("sweep shard {i}/3")), "{out}");
    }
    assert_nothing_merged(&root);
    assert_eq!(manifests(&root).len(), 3);
    // The fixed assignment: 4 seeds in 3 blocks, [7], [8], [9, 10].
    let seeds: Vec<Vec<u64>> = (0..3).map(|i| manifest_of(&root, i).1.seeds).collect();
    assert_eq!(seeds, [vec![7], vec![8], vec![9, 10]]);
    let out = ok(slurm(&root, "merge", 0, 1));
    assert!(out.contains("merged from 3 shards"), "{out}");
    assert_same_sweep(reference(), &root);
    let merge = sweep(&["--merge"]);

    // A missing shard, and one whose part has no manifest (it did not finish).
    let r = copy_parts(&root, "missing");
    let (m1, _) = manifest_of(&r, 1);
    std::fs::remove_file(&m1).unwrap();
    let e = fails(
        mode(&r, &args(&merge)),
        "shard 1/3 (seeds 8) of this sweep is missing: no finished part in",
    );
    assert!(e.contains("without a manifest"), "{e}");
    assert!(e.contains("--shard I/3"), "{e}");
    assert_nothing_merged(&r);

    // Shard 0 made twice: identical but for seconds → merged; different → refused.
    let r = copy_parts(&root, "twice");
    let (p0, m0) = manifest_of(&r, 0);
    let rows = Vec::<PartRow>::read(&p0.with_extension("parquet")).unwrap();
    let mut again = rows.clone();
    again.iter_mut().for_each(|x| x.seconds += 1.0);
    write_attempt(&r, m0.clone(), &again, "other-host-1");
    ok(mode(&r, &args(&merge)));
    assert_same_sweep(reference(), &r);
    let r = copy_parts(&root, "twice-different");
    let mut wrong = rows.clone();
    let at = wrong.iter().position(|x| x.iteration == 1).unwrap();
    wrong[at].accuracy += 0.001;
    write_attempt(&r, m0.clone(), &wrong, "other-host-2");
    let e = fails(
        mode(&r, &args(&merge)),
        "shard 0/3 was made twice with different results",
    );
    assert!(
        e.contains("differ in accuracy at setting \"base\", seed 7, arm mode-dot, iteration 1"),
        "{e}"
    );
    assert_nothing_merged(&r);

    // Shard 0 again, by another binary: the parts of one grid come from one binary.
    let r = copy_parts(&root, "two-binaries");
    let mut m = m0.clone();
    m.binary.crc32 = "0badc0de".into();
    write_attempt(&r, m, &rows, "other-build-4");
    fails(
        mode(&r, &args(&merge)),
        "were made by different mode binaries",
    );
    assert_nothing_merged(&r);

    // A part changed after its shard wrote it.
    let r = copy_parts(&root, "changed");
    let (p2, _) = manifest_of(&r, 2);
    let part = p2.with_extension("parquet");
    let mut rows2 = Vec::<PartRow>::read(&part).unwrap();
    rows2[0].accuracy = 0.5;
    rows2.write(&part).unwrap();
    fails(
        mode(&r, &args(&merge)),
        "was changed since its shard wrote it",
    );
    assert_nothing_merged(&r);

    // Parts of other settings, of another grid, and the shard count above the units.
    let r = copy_parts(&root, "foreign");
    let mut other = merge.clone();
    other.extend(["--set".to_string(), "mode.theta=0.9".to_string()]);
    fails(mode(&r, &args(&other)), "was made with other settings");
    let five = args(&merge)
        .iter()
        .map(|a| if *a == SEEDS { "5" } else { a })
        .collect::<Vec<_>>();
    fails(mode(&r, &five), "belongs to another grid: 4 seeds from 7");
    let two_arms = args(&merge)
        .iter()
        .map(|a| if *a == ARMS { "mode-dot,random" } else { a })
        .collect::<Vec<_>>();
    fails(mode(&r, &two_arms), "belongs to another grid");
    fails(
        mode(&r, &args(&sweep(&["--shard", "0/5"]))),
        "has 4 (setting, seed) units, so at most 4 shards",
    );
    assert_nothing_merged(&r);

    // Parts of two shardings: shard 0/2 (seeds 7, 8) made from the rows of 0/3 and 1/3.
    let (p1, _) = manifest_of(&r, 1);
    let mut both = rows.clone();
    both.extend(Vec::<PartRow>::read(&p1.with_extension("parquet")).unwrap());
    let mut m = m0.clone();
    m.shard.count = 2;
    m.units.push(mode::artifacts::Unit {
        seed: 1,
        setting: 0,
    });
    m.seeds = vec![7, 8];
    write_attempt(&r, m, &both, "elsewhere-3");
    fails(
        mode(&r, &args(&merge)),
        "holds parts of 2 shardings of this sweep (sweep-*-of-2, sweep-*-of-3)",
    );
    assert_nothing_merged(&r);
}

/// `mode ablate` sharded into four: the merged files equal the one-process ablation's bytes.
#[test]
fn sharded_ablation_merges_into_the_one_process_ablation() {
    let base = ["--quiet", "--set", "mode.max_iter=1", "ablate"];
    let one = scratch("ablate-one");
    ok(mode(&one, &[&base[..], &["--threads", "2"]].concat()));
    let sharded = scratch("ablate-shards");
    for i in 0..4 {
        let shard = format!("{i}/4");
        ok(mode(
            &sharded,
            &[&base[..], &["--threads", "1", "--shard", &shard]].concat(),
        ));
    }
    // 3 settings × 2 seeds = 6 units in blocks of 1, 2, 1, 2 (seed-major).
    let units: Vec<usize> = (0..4)
        .map(|i| manifest_of(&sharded, i).1.units.len())
        .collect();
    assert_eq!(units, [1, 2, 1, 2]);
    let out = ok(mode(&sharded, &[&base[..], &["--merge"]].concat()));
    assert!(out.contains("merged from 4 shards"), "{out}");
    let (a, b) = (Layout::new(&one), Layout::new(&sharded));
    for (f, g) in [
        (a.ablation(), b.ablation()),
        (a.ablation_summary(), b.ablation_summary()),
        (a.ablation_markdown(), b.ablation_markdown()),
        (a.ablation_manifest(), b.ablation_manifest()),
    ] {
        assert!(
            std::fs::read(&f).unwrap() == std::fs::read(&g).unwrap(),
            "{} differs from {}",
            g.display(),
            f.display()
        );
    }
}

// ---- the Dask cluster -------------------------------------------------------------------------

/// The virtual environment with Dask: `<target>/dask-venv`, made and filled once.
fn venv() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let venv = target.join("dask-venv");
    let py = venv.join("bin/python");
    let has_dask = || {
        py.exists()
            && run(
                Command::new(&py).args(["-c", "import distributed"]),
                Duration::from_secs(60),
            )
            .status
            .success()
    };
    if !has_dask() {
        let _ = std::fs::remove_dir_all(&venv);
        ok(run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            Duration::from_secs(120),
        ));
        ok(run(
            Command::new(&py).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                DASK,
            ]),
            Duration::from_secs(900),
        ));
        assert!(has_dask(), "Dask installed into {}", venv.display());
    }
    venv
}

/// A local Dask cluster: a scheduler and two one-thread workers (no nanny, so each worker is
/// one process), every listening socket on 127.0.0.1. Dropping it kills them by pid.
struct Cluster {
    dir: PathBuf,
    address: String,
    scheduler: Option<Child>,
    workers: Vec<Option<Child>>,
}

impl Cluster {
    fn start(venv: &Path, name: &str) -> Cluster {
        let dir = scratch(name);
        let file = dir.join("scheduler.json");
        let dask = venv.join("bin/dask");
        let log = |n: &str| std::fs::File::create(dir.join(n)).unwrap();
        let spawn = |c: &mut Command, n: &str| {
            c.current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log(n))
                .stderr(log(n.replace(".log", ".err").as_str()))
                .spawn()
                .unwrap()
        };
        let loopback = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"];
        let scheduler = spawn(
            Command::new(&dask)
                .arg("scheduler")
                .args(loopback)
                .args(["--port", "0", "--scheduler-file"])
                .arg(&file),
            "scheduler.log",
        );
        let mut c = Cluster {
            dir: dir.clone(),
            address: String::new(),
            scheduler: Some(scheduler),
            workers: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        c.address = loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(a) = v["address"].as_str()
            {
                break a.to_string();
            }
            assert!(
                c.scheduler.as_mut().unwrap().try_wait().unwrap().is_none(),
                "the scheduler exited"
            );
            assert!(Instant::now() < deadline, "no scheduler address in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(c.address.starts_with("tcp://127.0.0.1:"), "{}", c.address);
        for i in 0..2 {
            let w = spawn(
                Command::new(&dask)
                    .arg("worker")
                    .arg("--scheduler-file")
                    .arg(&file)
                    .args(loopback)
                    .args(["--nthreads", "1", "--no-nanny", "--name"])
                    .arg(format!("worker-{i}"))
                    .arg("--local-directory")
                    .arg(dir.join(format!("worker-{i}"))),
                &format!("worker-{i}.log"),
            );
            c.workers.push(Some(w));
        }
        c
    }

    fn pids(&self) -> Vec<u32> {
        self.scheduler
            .iter()
            .chain(self.workers.iter().flatten())
            .map(Child::id)
            .collect()
    }

    fn worker_pid(&self, i: usize) -> Option<u32> {
        self.workers[i].as_ref().map(Child::id)
    }

    /// kill -9 worker `i` (by its pid) and reap it.
    fn kill_worker(&mut self, i: usize) {
        let mut w = self.workers[i].take().expect("a live worker");
        w.kill().unwrap();
        w.wait().unwrap();
    }

    /// Every TCP socket the cluster's processes listen on or talk over is on 127.0.0.1.
    fn assert_loopback_only(&self) {
        let mut inodes = Vec::new();
        for pid in self.pids() {
            for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .flatten()
            {
                if let Ok(t) = std::fs::read_link(e.path()) {
                    let t = t.to_string_lossy().to_string();
                    if let Some(i) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                        inodes.push(i.to_string());
                    }
                }
            }
        }
        let mut seen = 0;
        for (table, loopback) in [
            ("/proc/net/tcp", &["0100007F"][..]),
            (
                "/proc/net/tcp6",
                &[
                    "00000000000000000000000001000000",
                    "0000000000000000FFFF00000100007F",
                ][..],
            ),
        ] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() > 9 && inodes.iter().any(|i| i == f[9]) {
                    seen += 1;
                    let local = f[1].split(':').next().unwrap();
                    assert!(
                        loopback.contains(&local),
                        "a cluster socket on {} ({table}: {line})",
                        f[1]
                    );
                }
            }
        }
        assert!(
            seen >= 3,
            "the scheduler's and the workers' sockets were found"
        );
    }

    /// The shard (`mode … --shard`) a worker runs now, if any: its pid.
    fn shard_of(&self, worker: u32) -> Option<u32> {
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<u32>().ok());
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if ppid == Some(worker) && String::from_utf8_lossy(&cmd).contains("--shard") {
                return Some(pid);
            }
        }
        None
    }

    fn tail(&self) -> String {
        let mut s = String::new();
        for n in ["scheduler", "worker-0", "worker-1"] {
            for ext in ["log", "err"] {
                let text = std::fs::read_to_string(self.dir.join(format!("{n}.{ext}")))
                    .unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                s += &format!(
                    "--- {n}.{ext}\n{}\n",
                    lines[lines.len().saturating_sub(15)..].join("\n")
                );
            }
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.tail());
        }
        for w in self
            .workers
            .iter_mut()
            .chain(std::iter::once(&mut self.scheduler))
        {
            if let Some(mut c) = w.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// `scale/dask_sweep.py` for the sweep of this file into `root`, 4 shards, started.
fn driver(venv: &Path, c: &Cluster, root: &Path) -> Running {
    driver_with(venv, c, root, Path::new(env!("CARGO_BIN_EXE_mode")), 2)
}

fn driver_with(venv: &Path, c: &Cluster, root: &Path, bin: &Path, workers: usize) -> Running {
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.current_dir(repo())
        .arg("scale/dask_sweep.py")
        .args(["--scheduler", &c.address, "--shards", "4", "--wait-workers"])
        .arg(workers.to_string())
        .args(["--connect-timeout", "60", "--task-timeout", "300", "--bin"])
        .arg(bin)
        .args(["--", "--pipeline", "pipelines/smoke.toml", "--root"])
        .arg(root)
        .args(["--threads", "1"])
        .args(sweep(&[]));
    Running::start(&mut cmd)
}

#[test]
fn a_dask_cluster_runs_the_shards_and_survives_a_killed_worker() {
    let venv = venv();
    let mut c = Cluster::start(&venv, "dask");

    // Run 1: four shards on two workers, then the merge, equal to one process.
    let root = scratch("dask-run");
    let out = ok(driver(&venv, &c, &root).finish(Duration::from_secs(300)));
    assert!(
        out.contains("dask: 2 workers, 2 threads at tcp://127.0.0.1:"),
        "{out}"
    );
    for i in 0..4 {
        assert!(out.contains(&format!("shard {i}/4 done on")), "{out}");
    }
    assert!(
        out.contains("sweep: 4 seeds × 3 arms × 2 iterations merged from 4 shards"),
        "{out}"
    );
    assert_eq!(manifests(&root).len(), 4);
    assert_same_sweep(reference(), &root);
    c.assert_loopback_only();

    // Run 2: kill -9 a worker while it runs a shard; the scheduler runs that task again on
    // the other worker, and the merged values are the same.
    let root = scratch("dask-kill");
    let d = driver(&venv, &c, &root);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (victim, shard) = loop {
        if let Some(hit) = (0..2).find_map(|i| Some((i, c.shard_of(c.worker_pid(i)?)?))) {
            break hit;
        }
        assert!(
            Instant::now() < deadline,
            "no worker started a shard in 120 s"
        );
        // Poll often: the shard is killed within a few ms of its start, long before its end.
        std::thread::sleep(Duration::from_millis(10));
    };
    let cmdline = std::fs::read(format!("/proc/{shard}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let killed = cmdline
        .split_once("--shard ")
        .map(|(_, s)| s.split_whitespace().next().unwrap().to_string())
        .expect("the shard's --shard I/N");
    c.kill_worker(victim);
    // The shard dies with its worker (PR_SET_PDEATHSIG): no orphan writes a late part.
    let gone = Instant::now() + Duration::from_secs(20);
    while Path::new(&format!("/proc/{shard}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{shard}/stat")).unwrap_or_default();
        if state
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            break; // a zombie: dead, waiting for its reaper
        }
        assert!(
            Instant::now() < gone,
            "the killed worker's shard {shard} still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = ok(d.finish(Duration::from_secs(300)));
    eprintln!("killed worker-{victim} while it ran shard {killed}; the driver said:\n{out}");
    for i in 0..4 {
        assert!(out.contains(&format!("shard {i}/4 done on")), "{out}");
    }
    let survivor = format!("worker-{}", 1 - victim);
    assert!(
        out.contains(&format!("shard {killed} done on {survivor}")),
        "shard {killed} (killed with worker-{victim}) was run again on {survivor}:\n{out}"
    );
    assert!(out.contains("merged from 4 shards"), "{out}");
    assert_same_sweep(reference(), &root);

    // Run 3 (on the one worker left): a shard that fails (its binary exits 1 for shard 2/4):
    // the driver reports it, exits non-zero and merges nothing.
    let root = scratch("dask-fail");
    let bin = root.join("failing-mode");
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\ncase \"$*\" in *'--shard 2/4'*) echo 'error: shard 2 broke' >&2; exit 1;; esac\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_mode")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = driver_with(&venv, &c, &root, &bin, 1).finish(Duration::from_secs(300));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("shard 2/4 failed") && err.contains("error: shard 2 broke"),
        "{err}"
    );
    assert!(
        err.contains("1 of 4 shards failed (2); nothing was merged"),
        "{err}"
    );
    assert_eq!(manifests(&root).len(), 3, "the other shards' parts stay");
    assert_nothing_merged(&root);
}
