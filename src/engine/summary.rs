//! What the summary and the report read from the runs of a seed: every arm's run, checked
//! against the pipeline, the seed's table rows (one per arm other than the control), whether
//! a sweep on disk belongs to these runs, and the verdict.

use super::runs;
use crate::arm::{Arm, CONTROL};
use crate::artifacts::{Artifact, Layout, Manifest, MetricRow, SummaryRow};
use crate::config::Pipeline;
use crate::vocab::{IterStatus, Scope};
use anyhow::{Result, bail};

/// One arm's run as the summary sees it.
pub struct ArmRun {
    pub arm: Arm,
    pub manifest: Manifest,
    /// The overall metrics row of the last complete iteration.
    pub last: MetricRow,
}

/// The rows of the tables (pure). `initial` is the initial model's overall accuracy.
pub fn summary_rows(initial: f64, runs: &[ArmRun]) -> Result<Vec<SummaryRow>> {
    let control = runs
        .iter()
        .find(|r| r.arm.is_control())
        .ok_or_else(|| anyhow::anyhow!("no run of the control arm `{CONTROL}`"))?;
    let control_acc = control.last.accuracy;
    Ok(runs
        .iter()
        .filter(|r| !r.arm.is_control())
        .map(|r| SummaryRow {
            arm: r.arm.to_string(),
            metric: r.arm.metric_name().into(),
            layer_select: r.arm.layer_select,
            iterations: r.manifest.completed,
            initial_acc: initial,
            final_acc: r.last.accuracy,
            control_acc,
            finished_early: r.manifest.iterations.contains(&IterStatus::FinishedEarly),
            diff_i_f: r.last.accuracy - initial,
            diff_f_c: r.last.accuracy - control_acc,
            status: r.manifest.status,
        })
        .collect())
}

/// Every arm run under the layout, checked against the pipeline.
pub fn arm_runs(layout: &Layout, p: &Pipeline, allow_incomplete: bool) -> Result<Vec<ArmRun>> {
    let mut out = Vec::new();
    for name in run_names(layout)? {
        if let Some(run) = checked_run(layout, p, &name, allow_incomplete)? {
            out.push(run);
        }
    }
    Ok(out)
}

/// The names of the run folders under `runs/`, sorted.
fn run_names(layout: &Layout) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(layout.runs_dir()) else {
        bail!(
            "{}: no runs yet (run `make all`, or `mode experiment`)",
            layout.runs_dir().display()
        );
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// The run of arm `name`, checked: made with these settings, complete (or allowed not to be)
/// and unchanged since; `None` for a `mode debug` folder and a run with nothing complete.
fn checked_run(
    layout: &Layout,
    p: &Pipeline,
    name: &str,
    allow_incomplete: bool,
) -> Result<Option<ArmRun>> {
    let dir = layout.arm_dir(name);
    let arm: Arm = name
        .parse()
        .map_err(|e: anyhow::Error| e.context(format!("{}", dir.display())))?;
    let Some(m) = runs::manifest(layout, name)? else {
        // `mode debug` writes no manifest: its iterations are the user's own loop, not a
        // run of the engine to summarise.
        if layout.iter(name, 1).batch_csv().exists() {
            return Ok(None);
        }
        bail!(
            "{}: no manifest, so nothing says what made this run; delete the folder or run the arm again",
            dir.display()
        );
    };
    if m.settings != arm.pipeline(p).fingerprint() {
        bail!(
            "{}: made with other settings than {} (with these --set overrides); run it again (make all) or summarise with the settings that made it",
            dir.display(),
            p.name
        );
    }
    if !m.is_final() {
        if !allow_incomplete {
            bail!(
                "{}: {} of {} iterations complete ({}); finish the run: `make chain ARMS=\"{} random\"` (or make all, which resumes every arm), or pass --allow-incomplete",
                dir.display(),
                m.completed,
                m.planned,
                m.status,
                name
            );
        }
        tracing::warn!(
            "{}: incomplete ({} of {} iterations), included as `interrupted`",
            dir.display(),
            m.completed,
            m.planned
        );
    }
    if let Some((k, what)) = m.first_broken(
        |k| layout.iter(name, k).path().to_path_buf(),
        crate::artifacts::Verify::Sizes,
    ) {
        bail!(
            "{}: {what}, though its manifest records iteration {k} complete: the run was changed after it was written; run the loop again (make all resumes it and redoes iteration {k} on)",
            dir.display()
        );
    }
    if m.completed == 0 {
        return Ok(None);
    }
    let rows = Vec::<MetricRow>::read(&layout.iter(name, m.completed).metrics())?;
    let last = rows
        .into_iter()
        .find(|r| r.scope == Scope::Overall)
        .ok_or_else(|| anyhow::anyhow!("{}: no overall metrics row", dir.display()))?;
    Ok(Some(ArmRun {
        arm,
        manifest: m,
        last,
    }))
}

/// Whether the sweep on disk may be shown beside these runs: `Ok(note)` when its manifest says
/// it started from this pipeline's splits and initial settings (the note says how far that was
/// checked), `Err(reason)` otherwise.
pub fn sweep_check(
    layout: &Layout,
    p: &Pipeline,
    rows: &[crate::artifacts::SweepSummaryRow],
) -> std::result::Result<String, String> {
    let path = layout.sweep_manifest();
    if !path.exists() {
        return Err("it has no sweep manifest, so nothing says which settings made it".into());
    }
    let m = Manifest::read(&path).map_err(|e| format!("{e:#}"))?;
    if m.initial != p.initial_fingerprint() {
        return Err("it was made with other data, split, model or training settings".into());
    }
    // The settings fingerprint covers the arms in the order they were given; try the orders
    // the summary's arms can be recovered in.
    let arms: Vec<Arm> = rows.iter().filter_map(|r| r.arm.parse().ok()).collect();
    let in_replication: Vec<Arm> = Arm::replication()
        .into_iter()
        .filter(|a| arms.contains(a))
        .collect();
    let seeds = m.planned as usize;
    let same = [arms, in_replication]
        .iter()
        .any(|a| super::grid::sweep_manifest(p, seeds, a).settings == m.settings);
    Ok(if same {
        String::new()
    } else {
        "Made from the same splits and initial-model settings; whether its MODE settings equal these could not be confirmed.".into()
    })
}

/// The arm whose first diagnosis a verdict shows: MODE with the pipeline's metric and layer
/// selection when it ran, else the first arm that analysed the initial model.
pub fn shown_arm(p: &Pipeline, runs: &[ArmRun]) -> Option<Arm> {
    let want = Arm::mode(p.select.metric, true);
    runs.iter().map(|r| r.arm).find(|a| *a == want).or_else(|| {
        runs.iter()
            .map(|r| r.arm)
            .find(|a| a.strategy.needs_diagnosis())
    })
}

/// The verdict of the runs under `layout` (see [`crate::analysis::verdict`]): the shown arm's
/// diagnosis of the initial model, the summary rows, and a sweep of these settings if any.
pub fn load_verdict(
    layout: &Layout,
    p: &Pipeline,
    arm: Arm,
    runs: &[ArmRun],
    rows: &[SummaryRow],
) -> Result<Option<crate::analysis::verdict::Verdict>> {
    use crate::artifacts::{DiagnosisRow, LayerRow, Split, SweepSummaryRow};
    let iter1 = layout.iter(&arm.to_string(), 1);
    if !iter1.diagnosis().exists() {
        return Ok(None);
    }
    let diagnosis = Vec::<DiagnosisRow>::read(&iter1.diagnosis())?;
    let layers = Vec::<LayerRow>::read(&iter1.layers())?;
    let control = runs
        .iter()
        .find(|r| r.arm.is_control())
        .map_or(f64::NAN, |r| r.last.accuracy);
    let sweep = match layout.sweep_summary() {
        path if path.exists() => {
            let s = Vec::<SweepSummaryRow>::read(&path)?;
            sweep_check(layout, p, &s).ok().map(|_| s)
        }
        _ => None,
    };
    let names = crate::artifacts::tensor::read_metadata(&layout.split(Split::Test))
        .ok()
        .and_then(|m| {
            m.get(crate::artifacts::keys::CLASS_NAMES_KEY)
                .and_then(|j| serde_json::from_str::<Vec<String>>(j).ok())
        })
        .unwrap_or_default();
    Ok(Some(crate::analysis::verdict::verdict(
        &crate::analysis::verdict::Facts {
            shown: &arm.to_string(),
            diagnosis: &diagnosis,
            layers: &layers,
            summary: rows,
            control,
            sweep: sweep.as_deref(),
            class_names: &names,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::RunStatus;

    fn run_of(arm: &str, accs: &[f64], statuses: &[IterStatus]) -> ArmRun {
        let mut m = Manifest::new(arm, "s", "i", accs.len() as u32);
        for (k, s) in statuses.iter().enumerate() {
            m.complete(k as u32 + 1, *s);
        }
        ArmRun {
            arm: arm.parse().unwrap(),
            last: MetricRow {
                pipeline: "p".into(),
                seed: 1,
                arm: arm.into(),
                iteration: m.completed,
                scope: Scope::Overall,
                label: None,
                accuracy: *accs.last().unwrap(),
                loss: 0.0,
                n: 10,
                finished_early: false,
                status: IterStatus::Ran,
            },
            manifest: m,
        }
    }

    #[test]
    fn table_rows() {
        use IterStatus::*;
        let runs = vec![
            run_of("mode-dot", &[0.91, 0.93], &[Ran, FinishedEarly]),
            run_of("random", &[0.91, 0.92], &[Ran, Ran]),
            run_of("mode-dot-nols", &[0.89, 0.88], &[Ran, PoolExhausted]),
        ];
        let s = summary_rows(0.90, &runs).unwrap();
        assert_eq!(s.len(), 2);
        let d = &s[0];
        assert_eq!(
            (d.arm.as_str(), d.metric.as_str(), d.layer_select),
            ("mode-dot", "dot", true)
        );
        assert!((d.diff_i_f - (0.93 - 0.90)).abs() < 1e-12);
        assert!((d.diff_f_c - (0.93 - 0.92)).abs() < 1e-12);
        assert!(d.finished_early && d.status == RunStatus::FinishedEarly);
        assert_eq!(s[1].status, RunStatus::PoolExhausted);
        assert!(!s[1].layer_select && !s[1].finished_early);
        assert_eq!(s[1].iterations, 2);
        assert!(summary_rows(0.9, &runs[..1]).is_err(), "no control");
    }
}
