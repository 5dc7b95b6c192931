//! `mode summary`: every arm's run → `summary.parquet`, the verdict printed (and with `--tables`
//! the seed's two tables).
//!
//! One row per arm other than the control (`random`): initial accuracy (the shared initial
//! model), final accuracy (the arm's last iteration), control accuracy (the control's last
//! iteration), whether the arm finished early, `diff_i_f` = final − initial and
//! `diff_f_c` = final − control (the seed's tables: positive = better than the initial model /
//! the control, whatever the column names suggest). Only complete runs made with the
//! pipeline's settings are summarised; anything else is refused (or, with
//! `--allow-incomplete`, included and flagged by its status).

use super::Ctx;
use crate::artifacts::{Artifact, MetricRow, SummaryRow};
use crate::engine::summary::{arm_runs, load_verdict, shown_arm, summary_rows};
use crate::vocab::Scope;
use anyhow::Result;
use std::path::PathBuf;

pub struct SummaryArgs {
    pub out: PathBuf,
    pub allow_incomplete: bool,
    /// Print the seed's Tables 1 and 2 after the verdict.
    pub tables: bool,
}

/// The rows as the seed's table, in Markdown.
pub fn markdown(rows: &[SummaryRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.arm.clone(),
                r.metric.clone(),
                r.layer_select.to_string(),
                format!("{:.4}", r.initial_acc),
                format!("{:.4}", r.final_acc),
                format!("{:.4}", r.control_acc),
                r.status.to_string(),
                format!("{:+.4}", r.diff_i_f),
                format!("{:+.4}", r.diff_f_c),
            ]
        })
        .collect();
    crate::markdown::table(
        &[
            "arm",
            "metric",
            "layer sel.",
            "initial acc",
            "final acc",
            "control acc",
            "status",
            "diff I−F (final − initial)",
            "diff F−C (final − control)",
        ],
        &cells,
    )
}

pub struct SummaryReport {
    pub rows: Vec<SummaryRow>,
    pub verdict: Option<crate::analysis::verdict::Verdict>,
    /// Print the seed's tables too.
    pub tables: bool,
}

impl std::fmt::Display for SummaryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(v) = &self.verdict {
            writeln!(f, "{v}")?;
        }
        if !self.tables && self.verdict.is_some() {
            return Ok(());
        }
        let (with, without): (Vec<_>, Vec<_>) =
            self.rows.iter().cloned().partition(|r| r.layer_select);
        if !with.is_empty() {
            writeln!(f, "Table 1 (with layer selection)\n{}", markdown(&with))?;
        }
        if !without.is_empty() {
            writeln!(
                f,
                "Table 2 (without layer selection)\n{}",
                markdown(&without)
            )?;
        }
        Ok(())
    }
}

pub fn run(ctx: &Ctx, a: &SummaryArgs) -> Result<SummaryReport> {
    let initial = Vec::<MetricRow>::read(&ctx.layout.initial().metrics())?;
    let initial = initial
        .iter()
        .find(|r| r.scope == Scope::Overall)
        .ok_or_else(|| anyhow::anyhow!("no overall row in the initial metrics"))?
        .accuracy;
    let runs = arm_runs(&ctx.layout, &ctx.pipeline, a.allow_incomplete)?;
    let rows = summary_rows(initial, &runs)?;
    rows.write(&a.out)?;
    let verdict = match shown_arm(&ctx.pipeline, &runs) {
        Some(arm) => load_verdict(&ctx.layout, &ctx.pipeline, arm, &runs, &rows)?,
        None => None,
    };
    Ok(SummaryReport {
        rows,
        verdict,
        tables: a.tables,
    })
}
