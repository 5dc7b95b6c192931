//! The answer first: which labels are buggy, at which layer and decided by whom, and which
//! selection fixed them best — from a run's diagnosis, layer selection and summary (and, when
//! there is one for these settings, a sweep's intervals). Pure; the CLI prints it and the
//! report opens with it.

use crate::artifacts::{DiagnosisRow, LayerRow, SummaryRow, SweepSummaryRow};
use crate::vocab::{Action, Decider, Direction, RunStatus};
use std::fmt::Write as _;

/// One label of the diagnosis.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelLine {
    pub label: u16,
    pub name: String,
    /// The model's own accuracy and the target layer's feature model's (analysis split).
    pub model_acc: f64,
    pub target_acc: f64,
    pub action: Action,
    pub faultiest: bool,
}

/// One arm against the control.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmLine {
    pub arm: String,
    /// Final accuracy − the control's, in points (×100).
    pub delta: f64,
    pub status: RunStatus,
    /// Over a sweep's seeds: the mean Δ and its 95 % interval in points, the paired t-test's p.
    pub sweep: Option<(f64, f64, f64, Option<f64>)>,
}

/// What a run found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The arm whose first iteration's diagnosis (of the initial model) is shown.
    pub shown: String,
    pub theta: f64,
    /// The target layer (of the heat maps) and whose predictions decided the diagnosis.
    pub target: String,
    pub decided_by: Decider,
    pub labels: Vec<LabelLine>,
    /// Checks that fired, as sentences.
    pub notes: Vec<String>,
    pub initial: f64,
    pub control: f64,
    /// Best first.
    pub arms: Vec<ArmLine>,
    /// Seeds of the sweep behind the intervals, if any.
    pub seeds: Option<u32>,
}

/// The inputs: the shown arm's first diagnosis and layer selection, the summary rows, the
/// sweep's rows when they belong to these settings, and the class names (empty: numbers).
pub struct Facts<'a> {
    pub shown: &'a str,
    pub diagnosis: &'a [DiagnosisRow],
    pub layers: &'a [LayerRow],
    pub summary: &'a [SummaryRow],
    pub control: f64,
    pub sweep: Option<&'a [SweepSummaryRow]>,
    pub class_names: &'a [String],
}

fn name_of(names: &[String], l: u16) -> String {
    names
        .get(l as usize)
        .cloned()
        .unwrap_or_else(|| l.to_string())
}

/// The verdict of a run.
pub fn verdict(f: &Facts) -> Verdict {
    let first = f.diagnosis.first();
    let target = f
        .layers
        .iter()
        .find(|r| r.is_target && r.direction == Direction::Forward);
    let notes = notes(f, target);
    let arms = arms(f);
    Verdict {
        shown: f.shown.to_string(),
        theta: first.map_or(f64::NAN, |d| d.theta),
        target: target.map_or_else(|| "output".into(), |t| t.layer.clone()),
        decided_by: first.map_or(Decider::Model, |d| d.decided_by),
        labels: f
            .diagnosis
            .iter()
            .map(|d| LabelLine {
                label: d.label,
                name: name_of(f.class_names, d.label),
                model_acc: d.model_acc,
                target_acc: d.target_acc,
                action: d.action,
                faultiest: d.faultiest,
            })
            .collect(),
        notes,
        initial: f.summary.first().map_or(f64::NAN, |r| r.initial_acc),
        control: f.control,
        arms,
        seeds: f.sweep.and_then(|s| s.first().map(|r| r.seeds)),
    }
}

/// What to be careful about in a run: an untrustworthy target layer, θ above every label, a
/// batch larger than the pool, a faultiest label with few candidates.
fn notes(f: &Facts, target: Option<&LayerRow>) -> Vec<String> {
    let first = f.diagnosis.first();
    let mut notes = Vec::new();
    if let Some(t) = target {
        if t.near_chance {
            notes.push(format!(
                "the feature model of the target layer {} is not clearly above chance ({:.3})",
                t.layer, t.probe_accuracy
            ));
        }
        if t.below_model {
            notes.push(format!(
                "the feature model of the target layer {} ({:.3}) is far below the model's own accuracy",
                t.layer, t.probe_accuracy
            ));
        }
    }
    if let Some(d) = first {
        if d.theta_above_all {
            notes.push(format!(
                "θ = {:.3} is above every label's accuracy: every label underfits",
                d.theta
            ));
        }
        if d.batch_exceeds_pool {
            notes.push("the batch is larger than the pool".into());
        }
    }
    if let Some(d) = f.diagnosis.iter().find(|r| r.faultiest && r.few_candidates) {
        notes.push(format!(
            "label {} has fewer pool samples than the targeted share",
            name_of(f.class_names, d.label)
        ));
    }
    notes
}

/// Every arm's line, best first.
fn arms(f: &Facts) -> Vec<ArmLine> {
    let mut arms: Vec<ArmLine> = f
        .summary
        .iter()
        .map(|r| ArmLine {
            arm: r.arm.clone(),
            delta: 100.0 * r.diff_f_c,
            status: r.status,
            sweep: f.sweep.and_then(|s| {
                s.iter().find(|x| x.arm == r.arm).and_then(|x| {
                    Some((
                        100.0 * x.mean_delta?,
                        100.0 * x.ci_low?,
                        100.0 * x.ci_high?,
                        x.t_p,
                    ))
                })
            }),
        })
        .collect();
    // By the sweep's mean when there is one (it is the better estimate), else by this run.
    arms.sort_by(|a, b| {
        let key = |x: &ArmLine| x.sweep.map_or(x.delta, |s| s.0);
        key(b).total_cmp(&key(a)).then(a.arm.cmp(&b.arm))
    });
    arms
}

impl Verdict {
    /// The faulty labels (the faultiest first), as "5 (underfit)".
    pub fn faulty(&self) -> Vec<String> {
        let mut v: Vec<&LabelLine> = self
            .labels
            .iter()
            .filter(|l| l.action != Action::None)
            .collect();
        v.sort_by_key(|l| (!l.faultiest, l.label));
        v.iter()
            .map(|l| {
                let kind = match l.action {
                    Action::FixUnderfit => "underfit",
                    Action::FixOverfit => "overfit",
                    Action::None => "",
                };
                format!("{} ({kind})", l.name)
            })
            .collect()
    }

    /// Whose predictions decided, in words.
    pub fn decided(&self) -> String {
        match self.decided_by {
            Decider::Model => "the model's own per-label accuracy".into(),
            Decider::FeatureModel => format!("the feature model at {}", self.target),
        }
    }

    /// An arm's Δ in points, with the sweep's interval and p when there is one.
    pub fn delta_text(a: &ArmLine) -> String {
        match a.sweep {
            Some((m, lo, hi, p)) => format!(
                "{m:+.2} [{lo:+.2}, {hi:+.2}]{}",
                p.map_or(String::new(), |p| format!(" p {p:.3}"))
            ),
            None => format!("{:+.2}", a.delta),
        }
    }
}

impl Verdict {
    /// The diagnosis part: the faulty labels, θ, the target layer and who decided, the
    /// per-label accuracies, the checks that fired.
    pub fn diagnosis_text(&self) -> String {
        let mut f = String::new();
        let faulty = self.faulty();
        let _ = writeln!(
            f,
            "Verdict: {} (θ {:.3}; target layer {}; decided by {})",
            if faulty.is_empty() {
                "no label is faulty".to_string()
            } else {
                format!("faulty labels {}", faulty.join(", "))
            },
            self.theta,
            self.target,
            self.decided()
        );
        let mut lines = String::new();
        for l in &self.labels {
            let _ = write!(
                lines,
                "  {}{} {:.3}/{:.3}",
                if l.faultiest { "*" } else { " " },
                l.name,
                l.model_acc,
                l.target_acc
            );
        }
        let _ = writeln!(
            f,
            "  per label, model / feature model at {}:{lines}",
            self.target
        );
        for n in &self.notes {
            let _ = writeln!(f, "  ⚠ {n}");
        }
        f
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.diagnosis_text())?;
        if self.arms.is_empty() {
            return Ok(());
        }
        let how = match self.seeds {
            Some(s) => format!("mean over {s} seeds, 95 % interval, paired t-test p"),
            None => "this run, one seed".into(),
        };
        writeln!(
            f,
            "Arms, Δ final accuracy vs the random control in points ({how}); initial {:.4}, control {:.4}:",
            self.initial, self.control
        )?;
        for a in &self.arms {
            let flag = if matches!(a.status, RunStatus::Interrupted | RunStatus::PoolExhausted) {
                format!(" ({})", a.status)
            } else {
                String::new()
            };
            writeln!(f, "  {:<22} {}{flag}", a.arm, Verdict::delta_text(a))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(label: u16, model: f64, action: Action, faultiest: bool) -> DiagnosisRow {
        DiagnosisRow {
            label,
            train_acc: model,
            test_acc: model,
            gap: 0.0,
            underfit: action == Action::FixUnderfit,
            overfit: false,
            faultiest,
            action,
            n_train: 10,
            n_test: 10,
            model_acc: model,
            target_acc: model + 0.01,
            theta: 0.92,
            layer: "output".into(),
            decided_by: Decider::Model,
            theta_above_all: false,
            few_candidates: faultiest,
            batch_exceeds_pool: false,
        }
    }

    fn summary(arm: &str, diff: f64) -> SummaryRow {
        SummaryRow {
            arm: arm.into(),
            metric: "dot".into(),
            layer_select: true,
            iterations: 5,
            initial_acc: 0.9,
            final_acc: 0.95 + diff,
            control_acc: 0.95,
            finished_early: false,
            diff_i_f: 0.05 + diff,
            diff_f_c: diff,
            status: RunStatus::Complete,
        }
    }

    #[test]
    fn faulty_labels_first_and_arms_ranked_in_points() {
        let d = [
            diag(0, 0.99, Action::None, false),
            diag(1, 0.90, Action::FixUnderfit, false),
            diag(2, 0.80, Action::FixUnderfit, true),
        ];
        let s = [summary("mode-dot", -0.0034), summary("margin", 0.0028)];
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let v = verdict(&Facts {
            shown: "mode-dot",
            diagnosis: &d,
            layers: &[],
            summary: &s,
            control: 0.95,
            sweep: None,
            class_names: &names,
        });
        assert_eq!(v.faulty(), ["c (underfit)", "b (underfit)"]);
        assert_eq!(v.arms[0].arm, "margin");
        assert!((v.arms[0].delta - 0.28).abs() < 1e-9 && (v.arms[1].delta + 0.34).abs() < 1e-9);
        let text = v.to_string();
        assert!(text.starts_with("Verdict: faulty labels c (underfit), b (underfit) (θ 0.920; target layer output; decided by the model's own per-label accuracy)"), "{text}");
        assert!(
            text.contains("  margin                 +0.28\n")
                && text.contains("  mode-dot               -0.34\n"),
            "{text}"
        );
        assert!(
            text.contains("⚠ label c has fewer pool samples than the targeted share"),
            "{text}"
        );
        // With a sweep: its mean decides the order, and the interval and p are shown.
        let sw = [SweepSummaryRow {
            arm: "mode-dot".into(),
            metric: "dot".into(),
            layer_select: true,
            seeds: 10,
            mean_initial: 0.9,
            mean_final: 0.95,
            mean_delta: Some(0.005),
            ci_low: Some(0.001),
            ci_high: Some(0.009),
            t_p: Some(0.02),
            wilcoxon_p: None,
            wins: 8,
            losses: 2,
            ties: 0,
            faulty_labels: 3,
            lifted: 1,
        }];
        let v = verdict(&Facts {
            shown: "mode-dot",
            diagnosis: &d,
            layers: &[],
            summary: &s,
            control: 0.95,
            sweep: Some(&sw),
            class_names: &[],
        });
        assert_eq!(v.arms[0].arm, "mode-dot");
        assert_eq!(
            Verdict::delta_text(&v.arms[0]),
            "+0.50 [+0.10, +0.90] p 0.020"
        );
        assert!(v.to_string().contains("mean over 10 seeds"));
    }
}
