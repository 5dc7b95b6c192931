//! An arm's run folder and its manifest: a run started with other settings is cleared, an
//! interrupted run resumes after its last complete iteration, and every complete iteration is
//! recorded — the same rules for the stage commands and the in-process runners.

use super::{Step, Store};
use crate::arm::Arm;
use crate::artifacts::{Artifact, Layout, Manifest, Split, Verify};
use crate::config::Pipeline;
use crate::vocab::IterStatus;
use anyhow::{Context, Result, bail};

/// The manifest an arm's run should have under these settings (nothing complete yet).
fn fresh(p: &Pipeline, arm: Arm) -> Manifest {
    Manifest::new(
        &arm.to_string(),
        &arm.pipeline(p).fingerprint(),
        &p.initial_fingerprint(),
        p.mode.max_iter as u32,
    )
}

/// The arm's manifest, if it has a run folder.
pub fn manifest(layout: &Layout, arm: &str) -> Result<Option<Manifest>> {
    let path = layout.manifest(arm);
    if !path.exists() {
        return Ok(None);
    }
    Manifest::read(&path).map(Some)
}

/// Remove every iteration folder of `arm` after iteration `last`.
pub fn remove_after(layout: &Layout, arm: &str, last: u32) -> Result<()> {
    let dir = layout.arm_dir(arm);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(k) = Layout::parse_iter(&name)
            && k > last
        {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("cannot remove {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// Where an in-process run of `arm` starts: after the last complete iteration of a run with
/// the same settings (stale later folders are removed), or at 1 after clearing a run made with
/// other settings. Returns the first iteration to run (max_iter + 1 when nothing is left).
pub fn resume_point(store: &Store, p: &Pipeline, arm: Arm) -> Result<u32> {
    let layout = store.layout();
    let name = arm.to_string();
    let want = fresh(p, arm);
    if !store.writes() {
        return Ok(1);
    }
    let have = manifest(layout, &name).unwrap_or(None);
    let start = match have {
        Some(mut m) if m.settings == want.settings && m.initial == want.initial => {
            // What the resume builds on must be what was recorded: an iteration whose files
            // were removed or changed is made again, with every later one.
            if let Some((k, what)) = m.first_broken(
                |k| layout.iter(&name, k).path().to_path_buf(),
                Verify::Contents,
            ) {
                tracing::warn!("runs/{name}: {what}; redoing the run from iteration {k}");
                m.truncate(k - 1);
                store.put(&layout.manifest(&name), m.clone())?;
            }
            remove_after(layout, &name, m.completed)?;
            m.completed + 1
        }
        Some(_) => {
            tracing::info!("runs/{name}: made with other settings; starting it again");
            clear(layout, &name)?;
            1
        }
        None => {
            clear(layout, &name)?;
            1
        }
    };
    if start == 1 {
        store.put(&layout.manifest(&name), want)?;
    } else if start <= p.mode.max_iter as u32 {
        tracing::info!("runs/{name}: resuming at iteration {start}");
    }
    Ok(start)
}

fn clear(layout: &Layout, arm: &str) -> Result<()> {
    let dir = layout.arm_dir(arm);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    Ok(())
}

/// Before a stage command writes into iteration k of an arm: iteration 1's first stage starts
/// a new run when the settings changed; any other stage refuses a run made with other
/// settings. Later iterations are marked incomplete until their evaluate step runs again.
pub fn begin_stage(store: &Store, s: &Step, first_stage: bool) -> Result<()> {
    let layout = store.layout();
    let name = s.arm_name();
    let want = fresh(&s.p, s.arm);
    let have = manifest(layout, &name)?;
    let mut m = match have {
        Some(m) if m.settings == want.settings && m.initial == want.initial => m,
        _ if s.k == 1 && first_stage => {
            clear(layout, &name)?;
            want
        }
        // Iteration 1 begun without a probe: the activations are the user's own (written
        // from any framework); the folder is kept.
        None if s.k == 1 => want,
        Some(_) => bail!(
            "{}: this run was made with other settings; run the arm again from iteration 1 (make chain, or mode experiment)",
            layout.arm_dir(&name).display()
        ),
        None => bail!(
            "{}: no run of this arm yet; start it at iteration 1",
            layout.arm_dir(&name).display()
        ),
    };
    m.truncate(s.k - 1);
    store.put(&layout.manifest(&name), m)?;
    Ok(())
}

/// Record iteration k of the step's arm as complete.
pub fn record(store: &Store, s: &Step, status: IterStatus) -> Result<Manifest> {
    let layout = store.layout();
    let name = s.arm_name();
    let mut m = match manifest(layout, &name)? {
        Some(m) if m.completed + 1 >= s.k => m,
        Some(m) => bail!(
            "{}: iteration {} is complete but iteration {} is not",
            layout.arm_dir(&name).display(),
            s.k,
            m.completed + 1
        ),
        None if !store.writes() => fresh(&s.p, s.arm),
        None => bail!("{}: no manifest", layout.manifest(&name).display()),
    };
    if store.writes() {
        let files = crate::artifacts::manifest::sum_dir(s.dir.path())?;
        m.complete_with(s.k, status, files);
        m.write(&layout.manifest(&name))?;
    } else {
        m.complete(s.k, status);
    }
    Ok(m)
}

/// Check that the splits in `layout` were made with the pipeline's settings (when they say so
/// in their metadata).
pub fn check_splits(store: &Store, p: &Pipeline) -> Result<()> {
    let layout = store.layout();
    let split = layout.split(Split::Train);
    let samples = store.get::<crate::artifacts::Samples>(&split)?;
    if let Some(h) = samples.info.get(crate::artifacts::keys::SETTINGS_KEY)
        && *h != p.splits_fingerprint()
    {
        bail!(
            "{}: the splits were made with other settings; run `mode split` again (make all does)",
            split.display()
        );
    }
    Ok(())
}

/// Check that the splits and the initial model in `layout` were made with the pipeline's
/// settings (when they say so in their metadata).
pub fn check_foundation(store: &Store, p: &Pipeline) -> Result<()> {
    check_splits(store, p)?;
    let layout = store.layout();
    let model = layout.initial().model();
    let net = store.get::<crate::model::Net>(&model)?;
    if !net.settings.is_empty() && net.settings != p.initial_fingerprint() {
        bail!(
            "{}: the initial model was trained with other settings; run `mode train` again (make all does)",
            model.display()
        );
    }
    net.check_pipeline(p, &model)?;
    Ok(())
}
