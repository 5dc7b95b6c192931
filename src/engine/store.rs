//! Where the iteration engine's artifacts live: on disk (the stage commands of a make chain)
//! or in memory (the in-process runners), optionally written through to disk.
//!
//! Artifacts are addressed by their layout paths in both cases, so the in-process runners and
//! the stage commands run the very same step functions and, when writing, produce the very
//! same files. In memory, an iteration being written is staged in a hidden folder and renamed
//! into place only when complete.

use crate::artifacts::{Artifact, IterDir, Layout};
use anyhow::{Context, Result, anyhow};
use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

type Entry = Arc<dyn Any + Send + Sync>;

/// A write handed to the writer: the staging folder it belongs to, the file, and the write.
struct Job {
    stage: PathBuf,
    file: PathBuf,
    write: Box<dyn FnOnce() -> Result<()> + Send>,
}

/// The writes queued, the files being written, the writes not done per staging folder, and
/// the first failure of each.
#[derive(Default)]
struct Queue {
    jobs: std::collections::VecDeque<Job>,
    writing: HashSet<PathBuf>,
    closed: bool,
    pending: HashMap<PathBuf, usize>,
    failed: HashMap<PathBuf, anyhow::Error>,
}

impl Queue {
    /// The first queued write whose file no thread is writing, marked as being written: two
    /// writes of one file never overlap (they would share its temporary name) and happen in
    /// the order they were put, so the later put is what the file holds.
    fn take(&mut self) -> Option<Job> {
        let i = self
            .jobs
            .iter()
            .position(|j| !self.writing.contains(&j.file))?;
        let job = self.jobs.remove(i).expect("a queued write");
        self.writing.insert(job.file.clone());
        Some(job)
    }
}

type Shared = Arc<(Mutex<Queue>, std::sync::Condvar)>;

/// One thread that writes the artifacts of open iterations while the runners compute (the
/// runners' threads would otherwise wait for every file they put), in the order they were
/// put. A thread that waits for an iteration's writes writes queued files meanwhile, so the
/// files left at a commit are written two at a time. Each file is written whole by one
/// thread, so the bytes do not depend on which. An iteration is committed only when all of
/// its writes are done and none failed.
struct Writer {
    thread: Option<std::thread::JoinHandle<()>>,
    state: Shared,
}

impl Writer {
    fn start() -> Writer {
        let state: Shared = Arc::default();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("mode-writer".into())
            .spawn(move || {
                while let Some(job) = next_job(&st) {
                    run_job(&st, job);
                }
            })
            .expect("the writer thread starts");
        Writer {
            thread: Some(thread),
            state,
        }
    }

    fn send(&self, stage: PathBuf, file: PathBuf, write: Box<dyn FnOnce() -> Result<()> + Send>) {
        let (lock, wake) = &*self.state;
        let mut q = lock.lock().expect("writer lock");
        *q.pending.entry(stage.clone()).or_insert(0) += 1;
        q.jobs.push_back(Job { stage, file, write });
        wake.notify_all();
    }

    /// Wait until every write into `stage` is done, writing queued files meanwhile; the first
    /// failure, if any.
    fn wait(&self, stage: &Path) -> Result<()> {
        let (lock, wake) = &*self.state;
        let mut q = lock.lock().expect("writer lock");
        while q.pending.contains_key(stage) {
            match q.take() {
                Some(job) => {
                    drop(q);
                    run_job(&self.state, job);
                    q = lock.lock().expect("writer lock");
                }
                None => q = wake.wait(q).expect("writer lock"),
            }
        }
        match q.failed.remove(stage) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The next queued write; none once the writer is closed and the queue empty.
fn next_job(state: &Shared) -> Option<Job> {
    let (lock, wake) = &**state;
    let mut q = lock.lock().expect("writer lock");
    loop {
        if let Some(job) = q.take() {
            return Some(job);
        }
        if q.closed && q.jobs.is_empty() {
            return None;
        }
        q = wake.wait(q).expect("writer lock");
    }
}

/// Run one write and record it as done (and its failure).
fn run_job(state: &Shared, Job { stage, file, write }: Job) {
    let result = write();
    let (lock, wake) = &**state;
    let mut q = lock.lock().expect("writer lock");
    q.writing.remove(&file);
    if let Err(e) = result {
        q.failed.entry(stage.clone()).or_insert(e);
    }
    if let Some(n) = q.pending.get_mut(&stage) {
        *n -= 1;
        if *n == 0 {
            q.pending.remove(&stage);
        }
    }
    wake.notify_all();
}

impl Drop for Writer {
    fn drop(&mut self) {
        {
            let (lock, wake) = &*self.state;
            lock.lock().expect("writer lock").closed = true;
            wake.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Files, or memory with optional write-through.
pub struct Store {
    layout: Layout,
    /// Keep artifacts in memory (else every read goes to disk).
    memory: bool,
    /// Write artifacts to disk.
    write: bool,
    cache: Mutex<HashMap<PathBuf, Entry>>,
    /// Iteration folders being written → their staging folders.
    staging: Mutex<Vec<(PathBuf, PathBuf)>>,
    /// Paths put by this process (its own results, not files it found).
    made: Mutex<HashSet<PathBuf>>,
    /// Writes the open iterations' files (memory with write-through only).
    writer: Option<Writer>,
}

impl Store {
    /// Read from and write to the files of `layout` (the stage commands).
    pub fn files(layout: Layout) -> Store {
        Store::new(layout, false, true)
    }

    /// Keep everything in memory; with `write`, also write every artifact where the stage
    /// commands would (the in-process runners).
    pub fn memory(layout: Layout, write: bool) -> Store {
        Store::new(layout, true, write)
    }

    fn new(layout: Layout, memory: bool, write: bool) -> Store {
        Store {
            layout,
            memory,
            write,
            cache: Mutex::new(HashMap::new()),
            staging: Mutex::new(Vec::new()),
            made: Mutex::new(HashSet::new()),
            writer: (memory && write).then(Writer::start),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether artifacts reach the disk.
    pub fn writes(&self) -> bool {
        self.write
    }

    fn cached<A: Artifact>(&self, path: &Path) -> Result<Option<Arc<A>>> {
        let cache = self.cache.lock().expect("store lock");
        match cache.get(path) {
            None => Ok(None),
            Some(e) => e.clone().downcast::<A>().map(Some).map_err(|_| {
                anyhow!(
                    "{}: held as another kind of artifact (internal error)",
                    path.display()
                )
            }),
        }
    }

    /// The artifact at `path`: from memory when held, else read from disk (and, in memory
    /// mode, kept).
    pub fn get<A: Artifact>(&self, path: &Path) -> Result<Arc<A>> {
        if let Some(a) = self.cached::<A>(path)? {
            return Ok(a);
        }
        let a = Arc::new(A::read(path)?);
        self.hold(path, a.clone());
        Ok(a)
    }

    /// Whether this process put the artifact at `path` (else it was found on disk: another
    /// process's, or a user's own file, which readers check).
    pub fn made_here(&self, path: &Path) -> bool {
        self.made.lock().expect("store lock").contains(path)
    }

    /// Whether an artifact is held in memory or exists on disk.
    pub fn has(&self, path: &Path) -> bool {
        self.cache.lock().expect("store lock").contains_key(path) || path.exists()
    }

    /// Store `value` at `path`: in memory, and on disk when writing (into the staging folder
    /// while its iteration is open).
    pub fn put<A: Artifact>(&self, path: &Path, value: A) -> Result<Arc<A>> {
        self.put_arc(path, Arc::new(value))
    }

    /// [`Store::put`] of a shared value (no copy in memory).
    pub fn put_arc<A: Artifact>(&self, path: &Path, value: Arc<A>) -> Result<Arc<A>> {
        if self.write {
            match (&self.writer, self.staging_of(path)) {
                // Into an open iteration: written by the writer thread, waited for at commit.
                (Some(w), Some((stage, to))) => {
                    let v = value.clone();
                    w.send(stage, to.clone(), Box::new(move || v.write(&to)));
                }
                // Inside an open iteration's staging folder, or in place.
                (_, staged) => {
                    value.write(&staged.map_or_else(|| path.to_path_buf(), |(_, to)| to))?
                }
            }
        }
        self.made
            .lock()
            .expect("store lock")
            .insert(path.to_path_buf());
        self.hold(path, value.clone());
        Ok(value)
    }

    /// Hold `value` at `path` in memory only — never written, gone with [`Store::forget`] of a
    /// folder above it: what one step computed that a later step of this process reuses. A
    /// store that is not in memory holds nothing.
    pub fn keep<A: Send + Sync + 'static>(&self, path: &Path, value: Arc<A>) {
        self.hold(path, value);
    }

    /// `entry` in memory at `path` (in memory mode; else nothing is held).
    fn hold(&self, path: &Path, entry: Entry) {
        if self.memory {
            self.cache
                .lock()
                .expect("store lock")
                .insert(path.to_path_buf(), entry);
        }
    }

    /// What [`Store::keep`] holds at `path`, left there.
    pub fn held<A: Send + Sync + 'static>(&self, path: &Path) -> Option<Arc<A>> {
        let cache = self.cache.lock().expect("store lock");
        cache.get(path)?.clone().downcast::<A>().ok()
    }

    /// Take what [`Store::keep`] holds at `path` (None when nothing of that kind is held).
    pub fn take<A: Send + Sync + 'static>(&self, path: &Path) -> Option<Arc<A>> {
        let mut cache = self.cache.lock().expect("store lock");
        let e = cache.remove(path)?;
        match e.downcast::<A>() {
            Ok(a) => Some(a),
            Err(e) => {
                cache.insert(path.to_path_buf(), e);
                None
            }
        }
    }

    /// The staging folder of the open iteration `path` lies in, and `path` inside it.
    fn staging_of(&self, path: &Path) -> Option<(PathBuf, PathBuf)> {
        let staging = self.staging.lock().expect("store lock");
        staging.iter().find_map(|(dir, stage)| {
            path.strip_prefix(dir)
                .ok()
                .map(|rest| (stage.clone(), stage.join(rest)))
        })
    }

    /// Wait for the writes into `stage` (none without a writer).
    fn written(&self, stage: &Path) -> Result<()> {
        match &self.writer {
            Some(w) => w.wait(stage),
            None => Ok(()),
        }
    }

    /// Open iteration `dir` for writing: in memory mode with write-through, its files go to
    /// `staging` until [`Store::commit`].
    pub fn open_iteration(&self, dir: &IterDir, staging: PathBuf) -> Result<()> {
        if !(self.memory && self.write) {
            return Ok(());
        }
        if self
            .staging
            .lock()
            .expect("store lock")
            .iter()
            .any(|(d, _)| d == dir.path())
        {
            return Ok(()); // already open
        }
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .with_context(|| format!("cannot clear {}", staging.display()))?;
        }
        self.staging
            .lock()
            .expect("store lock")
            .push((dir.path().to_path_buf(), staging));
        Ok(())
    }

    /// Make an opened iteration visible: rename its staging folder into place.
    pub fn commit(&self, dir: &IterDir) -> Result<()> {
        let staged = {
            let mut staging = self.staging.lock().expect("store lock");
            let i = staging.iter().position(|(d, _)| d == dir.path());
            i.map(|i| staging.remove(i))
        };
        if let Some((dir, stage)) = staged {
            if let Err(e) = self.written(&stage) {
                let _ = std::fs::remove_dir_all(&stage);
                self.forget(&dir, &[]);
                return Err(e);
            }
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot replace {}", dir.display()))?;
            }
            if stage.exists() {
                std::fs::rename(&stage, &dir).with_context(|| {
                    format!("cannot move {} to {}", stage.display(), dir.display())
                })?;
            }
        }
        Ok(())
    }

    /// Close an opened iteration by how its work ended: commit it after a success, abandon it
    /// after a failure (whose error is returned as it was).
    pub fn close_iteration<T>(&self, dir: &IterDir, outcome: Result<T>) -> Result<T> {
        match outcome {
            Ok(v) => {
                self.commit(dir)?;
                Ok(v)
            }
            Err(e) => {
                self.abandon(dir);
                Err(e)
            }
        }
    }

    /// Open iteration `dir` (staged under `staging`), run `body`, then commit the iteration
    /// when `body` succeeds or abandon it when it fails.
    pub fn staged<T>(
        &self,
        dir: &IterDir,
        staging: PathBuf,
        body: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        self.open_iteration(dir, staging)?;
        self.close_iteration(dir, body())
    }

    /// Drop an iteration that failed: its staging folder and its entries in memory.
    pub fn abandon(&self, dir: &IterDir) {
        let staged = {
            let mut staging = self.staging.lock().expect("store lock");
            let i = staging.iter().position(|(d, _)| d == dir.path());
            i.map(|i| staging.remove(i))
        };
        if let Some((_, stage)) = staged {
            // Its writes first: one still running would make the folder again.
            let _ = self.written(&stage);
            let _ = std::fs::remove_dir_all(stage);
        }
        self.forget(dir.path(), &[]);
    }

    /// Forget everything held in memory under `dir`, except the paths in `keep`.
    pub fn forget(&self, dir: &Path, keep: &[PathBuf]) {
        self.cache
            .lock()
            .expect("store lock")
            .retain(|p, _| !p.starts_with(dir) || keep.contains(p));
    }
}

/// A store dropped with iterations still open (a failure on the way) leaves no staging folder.
impl Drop for Store {
    fn drop(&mut self) {
        // The writes in flight end first (their folders are removed below).
        drop(self.writer.take());
        let open = std::mem::take(&mut *self.staging.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, stage) in open {
            let _ = std::fs::remove_dir_all(stage);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::{Manifest, PoolRow};

    #[test]
    fn memory_store_stages_and_commits() {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::new(t.path());
        let s = Store::memory(layout.clone(), true);
        let dir = layout.iter("random", 1);
        s.open_iteration(&dir, layout.iter_staging("random", 1))
            .unwrap();
        let rows = vec![PoolRow { id: 1, label: 2 }];
        s.put(&dir.pool(), rows.clone()).unwrap();
        assert!(!dir.pool().exists(), "invisible until committed");
        assert_eq!(*s.get::<Vec<PoolRow>>(&dir.pool()).unwrap(), rows);
        s.commit(&dir).unwrap();
        assert_eq!(Vec::<PoolRow>::read(&dir.pool()).unwrap(), rows);
        assert!(s.get::<Manifest>(&dir.pool()).is_err(), "wrong kind");
        s.forget(&layout.runs_dir(), &[]);
        assert_eq!(
            *s.get::<Vec<PoolRow>>(&dir.pool()).unwrap(),
            rows,
            "re-read"
        );
    }

    /// Writes slowly, or fails: an artifact to test the writer thread with.
    struct Slow(bool);
    impl Artifact for Slow {
        fn read(_: &Path) -> Result<Self> {
            anyhow::bail!("never read")
        }
        fn write(&self, path: &Path) -> Result<()> {
            std::thread::sleep(std::time::Duration::from_millis(50));
            if self.0 {
                anyhow::bail!("the disk is full (planted)");
            }
            crate::artifacts::write_bytes(path, b"ok")
        }
    }

    /// Files put into an open iteration are written by the writer thread: all of them are on
    /// disk once it is committed; a failed write fails the commit, and then nothing of the
    /// iteration is on disk and no staging folder is left.
    #[test]
    fn commit_waits_for_the_writer_and_fails_with_it() {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::new(t.path());
        let s = Store::memory(layout.clone(), true);
        let (ok, bad) = (layout.iter("random", 1), layout.iter("random", 2));
        s.open_iteration(&ok, layout.iter_staging("random", 1))
            .unwrap();
        s.open_iteration(&bad, layout.iter_staging("random", 2))
            .unwrap();
        for i in 0..4 {
            s.put(&ok.path().join(format!("f{i}")), Slow(false))
                .unwrap();
            s.put(&bad.path().join(format!("f{i}")), Slow(i == 2))
                .unwrap();
        }
        s.commit(&ok).unwrap();
        for i in 0..4 {
            assert!(
                ok.path().join(format!("f{i}")).exists(),
                "f{i} written before the commit"
            );
        }
        let e = s.commit(&bad).unwrap_err();
        assert!(format!("{e:#}").contains("the disk is full"), "{e:#}");
        assert!(!bad.path().exists());
        assert!(
            !layout.iter_staging("random", 2).exists(),
            "no staging folder left"
        );
    }

    /// A gate a test opens once; writes wait at it until then.
    #[derive(Clone, Default)]
    struct Gate(Arc<(Mutex<bool>, std::sync::Condvar)>);
    impl Gate {
        fn open(&self) {
            let (open, opened) = &*self.0;
            *open.lock().unwrap() = true;
            opened.notify_all();
        }
        fn pass(&self) {
            let (open, opened) = &*self.0;
            let mut o = open.lock().unwrap();
            while !*o {
                o = opened.wait(o).unwrap();
            }
        }
    }

    /// Says it started, then writes when a gate opens.
    struct Gated(Gate, Mutex<std::sync::mpsc::Sender<()>>);
    impl Artifact for Gated {
        fn read(_: &Path) -> Result<Self> {
            anyhow::bail!("never read")
        }
        fn write(&self, path: &Path) -> Result<()> {
            self.1.lock().unwrap().send(()).unwrap();
            self.0.pass();
            crate::artifacts::write_bytes(path, b"ok")
        }
    }

    /// A commit writes the files left in the queue itself: with the writer thread held by
    /// another iteration's file, the commit still ends, with every file of its iteration.
    #[test]
    fn a_commit_writes_queued_files_while_the_writer_is_busy() {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::new(t.path());
        let s = Store::memory(layout.clone(), true);
        let (held, ready) = (layout.iter("random", 1), layout.iter("random", 2));
        s.open_iteration(&held, layout.iter_staging("random", 1))
            .unwrap();
        s.open_iteration(&ready, layout.iter_staging("random", 2))
            .unwrap();
        let gate = Gate::default();
        let (started, writing) = std::sync::mpsc::channel();
        s.put(
            &held.path().join("gated"),
            Gated(gate.clone(), Mutex::new(started)),
        )
        .unwrap();
        writing.recv().unwrap();
        for i in 0..3 {
            s.put(&ready.path().join(format!("f{i}")), Slow(false))
                .unwrap();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                tx.send(s.commit(&ready).map_err(|e| format!("{e:#}")))
                    .unwrap()
            });
            let committed = rx.recv_timeout(std::time::Duration::from_secs(20));
            gate.open();
            assert_eq!(committed, Ok(Ok(())), "committed while the writer was held");
        });
        for i in 0..3 {
            assert!(ready.path().join(format!("f{i}")).exists());
        }
        s.commit(&held).unwrap();
        assert!(held.path().join("gated").exists());
    }

    /// Writes its bytes, saying first that it started.
    struct Signals(&'static [u8], Mutex<std::sync::mpsc::Sender<()>>);
    impl Artifact for Signals {
        fn read(_: &Path) -> Result<Self> {
            anyhow::bail!("never read")
        }
        fn write(&self, path: &Path) -> Result<()> {
            self.1.lock().unwrap().send(()).unwrap();
            crate::artifacts::write_bytes(path, self.0)
        }
    }

    /// A file put twice into an open iteration is written once after the other, never by two
    /// threads at once (they would share its temporary name): with the writer thread held on
    /// the first write, a committing thread leaves the second alone, and the file ends with
    /// the later put.
    #[test]
    fn two_writes_of_one_file_never_overlap() {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::new(t.path());
        let s = Store::memory(layout.clone(), true);
        let it = layout.iter("random", 1);
        s.open_iteration(&it, layout.iter_staging("random", 1))
            .unwrap();
        let gate = Gate::default();
        let (started, first) = std::sync::mpsc::channel();
        let file = it.path().join("twice");
        s.put(&file, Gated(gate.clone(), Mutex::new(started)))
            .unwrap();
        first.recv().unwrap();
        let (started, second) = std::sync::mpsc::channel();
        s.put(&file, Signals(b"later", Mutex::new(started)))
            .unwrap();
        std::thread::scope(|scope| {
            let commit = scope.spawn(|| s.commit(&it).map_err(|e| format!("{e:#}")));
            let early = second.recv_timeout(std::time::Duration::from_millis(500));
            gate.open();
            assert!(early.is_err(), "the second write started during the first");
            assert_eq!(commit.join().unwrap(), Ok(()));
        });
        assert_eq!(std::fs::read(&file).unwrap(), b"later");
    }

    /// What a step keeps is held as the value it was given: found by its type (and only by
    /// it), left in place by `held`, removed by `take`; a store on files holds nothing.
    #[test]
    fn kept_values_are_found_by_their_type() {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::new(t.path());
        let s = Store::memory(layout.clone(), false);
        let p = layout.root.join(".kept");
        s.keep(&p, Arc::new(vec![1.0f32, 2.0]));
        assert!(s.held::<Vec<u32>>(&p).is_none(), "another type");
        assert_eq!(*s.held::<Vec<f32>>(&p).unwrap(), vec![1.0, 2.0]);
        assert!(
            s.take::<Vec<u32>>(&p).is_none(),
            "another type is not taken"
        );
        assert_eq!(*s.take::<Vec<f32>>(&p).unwrap(), vec![1.0, 2.0]);
        assert!(s.take::<Vec<f32>>(&p).is_none(), "taken once");
        let files = Store::files(layout);
        files.keep(&p, Arc::new(1u8));
        assert!(files.held::<u8>(&p).is_none());
    }

    #[test]
    fn memory_only_store_writes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let layout = Layout::new(t.path().join("x"));
        let s = Store::memory(layout.clone(), false);
        let p = layout.iter("random", 1).pool();
        s.put(&p, vec![PoolRow { id: 1, label: 2 }]).unwrap();
        assert!(s.has(&p) && !p.exists() && !layout.root.exists());
    }
}
