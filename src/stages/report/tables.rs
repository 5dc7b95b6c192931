//! Tables 1 and 2 (the seed's summary, with and without layer selection) and the sweep over
//! seeds (table and forest plot) — each shown only when it belongs to these settings.

use super::Inputs;
use super::header::is_flagged;
use super::html::{esc, flag, img, table, warn};
use crate::arm::Arm;
use crate::artifacts::{Artifact, Manifest, SummaryRow, SweepSummaryRow};
use crate::plots;
use anyhow::Result;
use std::fmt::Write as _;

pub(super) fn seed_tables(cx: &Inputs) -> Result<String> {
    let path = cx.layout.summary();
    if !path.exists() {
        return Ok(warn(
            "No seed summary yet (run `mode summary`): the accuracy tables are not shown.",
        ));
    }
    let rows = Vec::<SummaryRow>::read(&path)?;
    let mut html = String::new();
    let flagged: Vec<String> = rows
        .iter()
        .filter(|r| is_flagged(r.status))
        .map(|r| format!("{} ({})", r.arm, r.status))
        .collect();
    if !flagged.is_empty() {
        html += &warn(&format!(
            "The tables include runs that did not finish as planned, marked ⚠: {}.",
            flagged.join(", ")
        ));
    }
    let stale: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let now = r
                .arm
                .parse::<Arm>()
                .ok()
                .and_then(|a| cx.run_of(a))
                .map(|run| run.manifest.status);
            (now != Some(r.status)).then(|| r.arm.clone())
        })
        .collect();
    if !stale.is_empty() {
        html += &warn(&format!(
            "The summary is older than the runs (run `mode summary` again): its status differs from the run folders' for {}.",
            stale.join(", ")
        ));
    }
    for (title, layer_select) in [
        ("Table 1 — with layer selection", true),
        ("Table 2 — without layer selection", false),
    ] {
        let part: Vec<Vec<String>> = rows
            .iter()
            .filter(|r| r.layer_select == layer_select)
            .map(summary_cells)
            .collect();
        if !part.is_empty() {
            let _ = write!(html, "<h3>{}</h3>", esc(title));
            html += &table(
                &[
                    "arm",
                    "initial acc",
                    "final acc",
                    "control acc",
                    "finished early",
                    "status",
                    "diff I−F",
                    "diff F−C",
                ],
                &part,
            );
        }
    }
    Ok(html)
}

fn summary_cells(r: &SummaryRow) -> Vec<String> {
    vec![
        r.arm.clone(),
        format!("{:.4}", r.initial_acc),
        format!("{:.4}", r.final_acc),
        format!("{:.4}", r.control_acc),
        r.finished_early.to_string(),
        flag(r.status.as_str(), is_flagged(r.status)),
        format!("{:+.4}", r.diff_i_f),
        format!("{:+.4}", r.diff_f_c),
    ]
}

pub(super) fn sweep(cx: &Inputs) -> Result<String> {
    let path = cx.layout.sweep_summary();
    if !path.exists() {
        return Ok(String::new());
    }
    let s = Vec::<SweepSummaryRow>::read(&path)?;
    let note = match crate::engine::summary::sweep_check(cx.layout, cx.p, &s) {
        Ok(note) => note,
        Err(why) => {
            return Ok(String::from("<h2>Sweep</h2>")
                + &warn(&format!(
                    "A sweep summary is on disk, but {why}: it is not shown (run `mode sweep` again with these settings)."
                )));
        }
    };
    let seeds = s.first().map_or(0, |r| r.seeds);
    let mut html = format!("<h2>Sweep over {seeds} seeds</h2>");
    if !note.is_empty() {
        html += &warn(&note);
    }
    let forest: Vec<(String, f64, f64, f64)> = s
        .iter()
        .filter_map(|r| Some((r.arm.clone(), r.mean_delta?, r.ci_low?, r.ci_high?)))
        .collect();
    if !forest.is_empty() {
        let file = cx.figure("forest");
        plots::forest_png(&file, "Δ final accuracy vs the random control", &forest)?;
        html += &img(&file, "forest plot");
    }
    html += &sweep_table(&s);
    Ok(html)
}

fn sweep_table(s: &[SweepSummaryRow]) -> String {
    let rows: Vec<Vec<String>> = s.iter().map(crate::engine::grid::cells).collect();
    table(&crate::engine::grid::HEAD, &rows)
}

/// The ablation on disk (`mode ablate`), when it started from these splits and initial
/// settings: per setting and arm, Δ vs the control of the same setting, a forest plot and the
/// table.
pub(super) fn ablation(cx: &Inputs) -> Result<String> {
    let path = cx.layout.ablation_summary();
    if !path.exists() {
        return Ok(String::new());
    }
    let mut html = String::from("<h2>Ablation: which protocol key moves the result</h2>");
    let manifest = cx.layout.ablation_manifest();
    let same = manifest.exists()
        && Manifest::read(&manifest).is_ok_and(|m| m.initial == cx.p.initial_fingerprint());
    if !same {
        return Ok(html
            + &warn(
                "An ablation summary is on disk, but it was made from other data, split, model or training settings (or has no manifest): it is not shown (run `mode ablate` again).",
            ));
    }
    let df = crate::artifacts::table::read_frame(&path, None)?;
    let rows = <SweepSummaryRow as crate::artifacts::Table>::from_frame(&df)?;
    let settings: Vec<String> = crate::artifacts::table::Cell::read(&df, "setting")?;
    let forest: Vec<(String, f64, f64, f64)> = rows
        .iter()
        .zip(&settings)
        .filter_map(|(r, s)| {
            Some((
                format!("{s} · {}", r.arm),
                r.mean_delta?,
                r.ci_low?,
                r.ci_high?,
            ))
        })
        .collect();
    if !forest.is_empty() {
        let file = cx.figure("ablation");
        plots::forest_png(
            &file,
            "Δ final accuracy vs the control of the same setting",
            &forest,
        )?;
        html += &img(&file, "ablation forest plot");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .zip(&settings)
        .map(|(r, s)| {
            let mut c = vec![s.clone()];
            c.extend(crate::engine::grid::cells(r));
            c
        })
        .collect();
    let mut head = vec!["setting"];
    head.extend(crate::engine::grid::HEAD);
    html += &table(&head, &cells);
    Ok(html)
}
