//! `mode ablate`: protocol settings × arms × seeds in one process — which key of the protocol
//! moves the verdict. Each setting is the pipeline with some keys overridden; each seed runs
//! every arm of every setting from that seed's initial model (shared by the settings that do
//! not change it), and each arm is compared with the control of the same setting and seed
//! ([`crate::engine::grid`]).
//!
//! Writes `ablation.parquet` (one row per setting × arm × seed, the overridden keys as columns),
//! `ablation_summary.parquet` and `.md` (per setting and arm, the columns of
//! `sweep_summary.parquet` — Δ vs control, 95% CI, paired t and Wilcoxon p, wins/losses, faulty
//! labels lifted past θ — then `setting` and the keys) and `ablation_manifest.json`.
//!
//! `--shard I/N` runs only shard I's (setting, seed) units and writes them as a part;
//! `--merge` turns the parts into the same files as one run (see [`crate::engine::shard`]).

use super::Ctx;
use crate::arm::{Arm, CONTROL};
use crate::artifacts::io::write_together;
use crate::artifacts::{
    AblationRow, Artifact, Grid, Manifest, SweepRow, SweepSummaryRow, Unit, write_bytes,
    write_frame_with,
};
use crate::config::{Pipeline, apply_override, fingerprint};
use crate::engine::grid::{self, ABLATION_KIND, Gathered, GridRun, SeedResult};
use crate::engine::shard::{self, Outcome, Plan};
use crate::vocab::IterStatus;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One setting: a label and its overrides (`key=value`).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub label: String,
    pub overrides: Vec<(String, String)>,
}

impl Setting {
    /// Parse "base" or "k=v; k=v".
    pub fn parse(text: &str) -> Result<Setting> {
        let text = text.trim();
        if text.is_empty() || text == "base" {
            return Ok(Setting {
                label: "base".into(),
                overrides: Vec::new(),
            });
        }
        let overrides = text
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .with_context(|| format!("ablation setting {text:?}: {kv:?} is not key=value"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Setting {
            label: overrides
                .iter()
                .map(|(k, v)| format!("{k}={}", v.trim_matches('"')))
                .collect::<Vec<_>>()
                .join("; "),
            overrides,
        })
    }

    /// The pipeline with this setting's overrides, checked.
    pub fn apply(&self, p: &Pipeline) -> Result<Pipeline> {
        let mut doc: toml::Table = toml::Value::try_from(p)?
            .try_into()
            .context("the pipeline as a TOML table")?;
        for (k, v) in &self.overrides {
            apply_override(&mut doc, &format!("{k}={v}"))
                .with_context(|| format!("setting {:?}", self.label))?;
        }
        let q: Pipeline = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| {
                anyhow::anyhow!("setting {:?}: {}", self.label, e.message())
            })?;
        q.validate()
            .with_context(|| format!("setting {:?}", self.label))?;
        Ok(q)
    }
}

pub struct AblateArgs {
    pub settings: Vec<Setting>,
    pub arms: Vec<Arm>,
    pub seeds: usize,
    pub idx_dir: Option<PathBuf>,
    /// Every (setting, seed) here, one shard's as a part, or a merge of the parts.
    pub plan: Plan,
}

pub struct AblateReport {
    /// Per setting (its label), the sweep summary rows of its arms.
    pub summary: Vec<(String, SweepSummaryRow)>,
    pub runs: usize,
    pub seconds: f64,
    pub out: PathBuf,
    /// How many shards were merged (0: the runs ran here).
    pub merged: usize,
}

impl std::fmt::Display for AblateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.merged > 0 {
            format!(" merged from {} shards", self.merged)
        } else {
            String::new()
        };
        write!(
            f,
            "ablate: {} runs (setting × seed){how} in {:.1} s → {}\n\n{}",
            self.runs,
            self.seconds,
            self.out.display(),
            markdown(&self.summary)
        )
    }
}

/// The ablation table in Markdown: per setting, its arms against its control.
pub fn markdown(rows: &[(String, SweepSummaryRow)]) -> String {
    let mut head = vec!["setting"];
    head.extend(grid::HEAD);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(setting, r)| {
            let mut c = vec![setting.clone()];
            c.extend(grid::cells(r));
            c
        })
        .collect();
    crate::markdown::table(&head, &cells)
}

/// The manifest of an ablation: the base settings, the settings and arms compared.
pub fn manifest(p: &Pipeline, a: &AblateArgs) -> Manifest {
    let settings: Vec<&str> = a.settings.iter().map(|s| s.label.as_str()).collect();
    let arms: Vec<String> = a.arms.iter().map(|x| x.to_string()).collect();
    Manifest::new(
        "ablation",
        &fingerprint(&serde_json::json!([p.fingerprint(), settings, arms, a.seeds]).to_string()),
        &p.initial_fingerprint(),
        (a.settings.len() * a.seeds) as u32,
    )
}

/// The ablation rows of one setting's seed.
fn ablation_rows(
    setting: &Setting,
    seed: u64,
    r: &SeedResult,
    theta: crate::config::Theta,
) -> Vec<AblationRow> {
    let last = r.rows.iter().map(|x| x.iteration).max().unwrap_or(0);
    let finals: BTreeMap<&str, &SweepRow> = r
        .rows
        .iter()
        .filter(|x| x.iteration == last)
        .map(|x| (x.arm.as_str(), x))
        .collect();
    let control = finals.get(CONTROL.to_string().as_str()).map(|x| x.accuracy);
    let initial = r
        .rows
        .iter()
        .find(|x| x.iteration == 0)
        .map_or(f64::NAN, |x| x.accuracy);
    let theta = theta.at(initial);
    let ended =
        |arm: &str, status: IterStatus| r.rows.iter().any(|y| y.arm == arm && y.status == status);
    finals
        .values()
        .map(|x| {
            let fin = r
                .final_label_acc
                .iter()
                .find(|(a, _)| *a == x.arm)
                .map(|(_, v)| v.as_slice())
                .unwrap_or(&[]);
            let (faulty, lifted) = grid::lifted_labels(&r.initial_label_acc, fin, theta);
            AblationRow {
                setting: setting.label.clone(),
                seed: seed as i64,
                arm: x.arm.clone(),
                metric: x.metric.clone(),
                layer_select: x.layer_select,
                initial_acc: initial,
                final_acc: x.accuracy,
                control_acc: control,
                delta: control.map(|c| x.accuracy - c),
                faulty_labels: faulty,
                lifted,
                finished_early: ended(&x.arm, IterStatus::FinishedEarly),
                pool_exhausted: ended(&x.arm, IterStatus::PoolExhausted),
            }
        })
        .collect()
}

/// The ablation's grid: seeds × settings × arms.
pub fn grid(p: &Pipeline, a: &AblateArgs) -> Grid {
    Grid {
        kind: ABLATION_KIND.into(),
        pipeline: p.fingerprint(),
        initial: p.initial_fingerprint(),
        first_seed: p.seed,
        seeds: a.seeds,
        arms: a.arms.iter().map(|x| x.to_string()).collect(),
        settings: a.settings.iter().map(|s| s.label.clone()).collect(),
    }
}

/// The settings checked before any work: at least one seed, the control among the arms, at
/// least one setting and each once; every setting's pipeline.
fn check(p: &Pipeline, a: &AblateArgs) -> Result<Vec<Pipeline>> {
    if a.seeds == 0 {
        bail!("ablate: at least one seed (ablate.seeds or --seeds)");
    }
    if !a.arms.contains(&CONTROL) {
        bail!("the ablation compares against the control arm `{CONTROL}`: include it in the arms");
    }
    if a.settings.is_empty() {
        bail!("ablate: no settings (ablate.settings or --setting)");
    }
    for (k, s) in a.settings.iter().enumerate() {
        if a.settings[..k].iter().any(|t| t.label == s.label) {
            bail!(
                "ablate: the setting {:?} is given twice (ablate.settings or --setting): give each once",
                s.label
            );
        }
    }
    a.settings.iter().map(|s| s.apply(p)).collect()
}

/// Run the (setting, seed) units (all, or a shard's) and write the ablation's files — or,
/// for a shard, its part; or merge the parts.
pub fn run(ctx: &Ctx, a: &AblateArgs) -> Result<Outcome<AblateReport>> {
    let (p, layout) = (&ctx.pipeline, &ctx.layout);
    let pipelines = check(p, a)?;
    let t0 = Instant::now();
    let grid = grid(p, a);
    grid::run_plan(
        layout,
        &grid,
        a.plan,
        t0,
        |units| {
            let src = crate::sources::load(p, a.idx_dir.as_deref())?;
            let g = GridRun {
                grid: &grid,
                pipelines: &pipelines,
                arms: &a.arms,
                src: &src,
                keep: false,
            };
            grid::run_units(layout, &g, units, "ablate")
        },
        |u, r| {
            let last = pipelines[u.setting].mode.max_iter as u32;
            shard::part_rows(&a.settings[u.setting].label, last, r)
        },
        |results, merged| finish(ctx, a, &pipelines, results, t0, merged),
    )
}

/// Per setting, the sweep summary rows of its arms (labelled with the setting), from the
/// units' results.
fn summaries(
    a: &AblateArgs,
    pipelines: &[Pipeline],
    first_seed: u64,
    results: &[(Unit, SeedResult)],
) -> Vec<(String, SweepSummaryRow)> {
    let mut gathered: Vec<Gathered> = a.settings.iter().map(|_| Gathered::default()).collect();
    for (u, res) in results {
        let seed = first_seed + u.seed as u64;
        gathered[u.setting].add(seed as i64, res.clone());
    }
    let mut summary = Vec::new();
    for (k, setting) in a.settings.iter().enumerate() {
        for s in grid::arm_summaries(&gathered[k].runs(pipelines[k].mode.theta)) {
            summary.push((setting.label.clone(), s));
        }
    }
    summary
}

/// One string column per overridden key for rows of the given settings (by label): the
/// setting's value, or the base value where a setting leaves the key.
fn key_columns(p: &Pipeline, a: &AblateArgs, labels: Vec<&str>) -> Vec<(String, Vec<String>)> {
    let keys: Vec<String> = {
        let mut k: Vec<String> = a
            .settings
            .iter()
            .flat_map(|s| s.overrides.iter().map(|(k, _)| k.clone()))
            .collect();
        k.sort();
        k.dedup();
        k
    };
    let value = |label: &str, key: &str| -> String {
        let s = a
            .settings
            .iter()
            .find(|s| s.label == label)
            .expect("a setting");
        match s.overrides.iter().find(|(k, _)| k == key) {
            Some((_, v)) => v.trim_matches('"').to_string(),
            None => base_value(p, key),
        }
    };
    keys.iter()
        .map(|k| (k.clone(), labels.iter().map(|l| value(l, k)).collect()))
        .collect()
}

/// Every (setting, seed) unit's result, in grid order → the ablation's rows, summaries and
/// manifest, written together: the one code path of a one-machine run and of a merge.
fn finish(
    ctx: &Ctx,
    a: &AblateArgs,
    pipelines: &[Pipeline],
    results: Vec<(Unit, SeedResult)>,
    t0: Instant,
    merged: usize,
) -> Result<AblateReport> {
    let (p, layout) = (&ctx.pipeline, &ctx.layout);
    let mut rows: Vec<AblationRow> = Vec::new();
    for (u, res) in &results {
        let (k, seed) = (u.setting, p.seed + u.seed as u64);
        rows.extend(ablation_rows(
            &a.settings[k],
            seed,
            res,
            pipelines[k].mode.theta,
        ));
    }
    let summary = summaries(a, pipelines, p.seed, &results);
    let row_keys = key_columns(p, a, rows.iter().map(|r| r.setting.as_str()).collect());
    let mut extra = vec![(
        "setting".to_string(),
        summary.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
    )];
    extra.extend(key_columns(
        p,
        a,
        summary.iter().map(|(l, _)| l.as_str()).collect(),
    ));
    let summary_rows: Vec<SweepSummaryRow> = summary.iter().map(|(_, r)| r.clone()).collect();
    let md = markdown(&summary);
    let mut m = manifest(p, a);
    m.complete(m.planned, IterStatus::Ran);
    write_together(vec![
        (
            layout.ablation(),
            Box::new(|f: &Path| write_frame_with(f, &rows, row_keys)),
        ),
        (
            layout.ablation_summary(),
            Box::new(|f: &Path| write_frame_with(f, &summary_rows, extra)),
        ),
        (
            layout.ablation_markdown(),
            Box::new(|f: &Path| write_bytes(f, md.as_bytes())),
        ),
        (layout.ablation_manifest(), Box::new(|f: &Path| m.write(f))),
    ])?;
    Ok(AblateReport {
        summary,
        runs: a.seeds * a.settings.len(),
        seconds: t0.elapsed().as_secs_f64(),
        out: layout.ablation_summary(),
        merged,
    })
}

/// A key's value in the base pipeline, as text.
fn base_value(p: &Pipeline, key: &str) -> String {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    for part in key.split('.') {
        v = v.get(part).cloned().unwrap_or(serde_json::Value::Null);
    }
    match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_apply() {
        let s = Setting::parse("retrain.data=\"train+selected\"; select.random_fill=any").unwrap();
        assert_eq!(
            s.label,
            "retrain.data=train+selected; select.random_fill=any"
        );
        let q = s.apply(&Pipeline::default()).unwrap();
        assert_eq!(q.retrain.data, crate::config::RetrainData::TrainSelected);
        assert_eq!(Setting::parse(" base ").unwrap().overrides.len(), 0);
        assert!(Setting::parse("nonsense").is_err());
        let bad = Setting::parse("mode.alpha=3").unwrap();
        assert!(
            bad.apply(&Pipeline::default())
                .unwrap_err()
                .to_string()
                .contains("mode.alpha")
        );
        assert_eq!(base_value(&Pipeline::default(), "select.order"), "most");
        assert_eq!(base_value(&Pipeline::default(), "mode.alpha"), "0.25");
    }
}
