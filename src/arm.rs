//! An arm: one way of choosing the next training inputs, run from the shared initial model.
//!
//! Names: `mode-<metric>[-nols]` (MODE with a similarity metric, `-nols` = without layer
//! selection: the target is the output layer), the baselines `<strategy>[-nols]`, and the
//! control `random`. This is the only place arm names are parsed.

use crate::config::Pipeline;
use crate::vocab::Metric;
use anyhow::{Result, bail};
use std::fmt;
use std::str::FromStr;

crate::text_enum!(
    /// A selection strategy other than MODE's heat-map similarity. Each takes the α share of
    /// the batch (the rest is random); `mode.alpha = 1` gives the pure strategy.
    pub enum Baseline("baseline") {
        /// The whole batch at random from the pool: the control.
        Random = "random",
        /// The α share at random from the faultiest label.
        LabelRandom = "label-random",
        /// The α share = highest DeepGini impurity 1 − Σp² over the pool.
        Uncertainty = "uncertainty",
        /// Smallest top-1 − top-2 probability (margin sampling).
        Margin = "margin",
        /// Largest entropy −Σ p ln p.
        Entropy = "entropy",
        /// Smallest top-1 probability.
        LeastConfidence = "least-confidence",
        /// k-center greedy on the pool's activations at the target layer; the samples already
        /// trained on count as centres (core-set).
        Coreset = "coreset",
        /// k-means++ seeding on gradient embeddings (p − onehot(ŷ)) ⊗ h at the last hidden
        /// layer (BADGE).
        Badge = "badge",
        /// Margin sampling restricted to the faultiest label.
        LabelMargin = "label-margin",
    }
);

/// How an arm chooses the targeted share of each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// MODE: pool samples of the faultiest label ranked by similarity to its heat map.
    Mode(Metric),
    Baseline(Baseline),
}

impl Strategy {
    /// Whether the strategy needs the model's diagnosis (probe → layers → heatmap).
    pub fn needs_diagnosis(self) -> bool {
        self != Strategy::Baseline(Baseline::Random)
    }

    /// Whether the strategy needs the pool's activations.
    pub fn needs_pool_states(self) -> bool {
        matches!(self, Strategy::Baseline(b) if !matches!(b, Baseline::Random | Baseline::LabelRandom))
    }

    /// Whether the strategy needs heat maps.
    pub fn needs_heatmaps(self) -> bool {
        matches!(self, Strategy::Mode(_))
    }

    /// Whether the targeted share comes from the faulty label(s) only (else from the whole
    /// pool).
    pub fn label_restricted(self) -> bool {
        matches!(
            self,
            Strategy::Mode(_) | Strategy::Baseline(Baseline::LabelRandom | Baseline::LabelMargin)
        )
    }
}

/// One arm of an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arm {
    pub strategy: Strategy,
    /// Layer selection on (the pipeline's `layers.enabled` still applies) or off (`-nols`).
    pub layer_select: bool,
}

/// The control every arm is compared with.
pub const CONTROL: Arm = Arm {
    strategy: Strategy::Baseline(Baseline::Random),
    layer_select: true,
};

const NOLS: &str = "-nols";

impl Arm {
    pub fn mode(metric: Metric, layer_select: bool) -> Arm {
        Arm {
            strategy: Strategy::Mode(metric),
            layer_select,
        }
    }

    pub fn baseline(b: Baseline) -> Arm {
        Arm {
            strategy: Strategy::Baseline(b),
            layer_select: true,
        }
    }

    pub fn is_control(&self) -> bool {
        *self == CONTROL
    }

    /// The selection metric, or the baseline's name (the `metric` column of the tables).
    pub fn metric_name(&self) -> &'static str {
        match self.strategy {
            Strategy::Mode(m) => m.as_str(),
            Strategy::Baseline(b) => b.as_str(),
        }
    }

    /// The 21 arms of the full replication: nine metrics with and without layer selection,
    /// the two baselines and the control.
    pub fn replication() -> Vec<Arm> {
        let mut v = Vec::new();
        for &m in Metric::ALL {
            v.push(Arm::mode(m, true));
            v.push(Arm::mode(m, false));
        }
        v.extend(
            [
                Baseline::LabelRandom,
                Baseline::Uncertainty,
                Baseline::Random,
            ]
            .map(Arm::baseline),
        );
        v
    }

    /// The control and every baseline.
    pub fn baselines() -> Vec<Arm> {
        Baseline::ALL.iter().map(|&b| Arm::baseline(b)).collect()
    }

    /// Named sets of arms usable wherever a list is: `replication` (the seed's 21 arms),
    /// `baselines` (the control and every baseline), `all` (both), `core` (the best MODE arms
    /// with the strongest baselines and the control).
    pub fn set(name: &str) -> Option<Vec<Arm>> {
        match name {
            "replication" => Some(Arm::replication()),
            "baselines" => Some(Arm::baselines()),
            "all" => {
                let mut v = Arm::replication();
                for b in Arm::baselines() {
                    if !v.contains(&b) {
                        v.push(b);
                    }
                }
                Some(v)
            }
            "core" => Some(
                [
                    "mode-dot",
                    "mode-cosine",
                    "uncertainty",
                    "margin",
                    "label-random",
                    "random",
                ]
                .iter()
                .map(|a| a.parse().expect("a known arm"))
                .collect(),
            ),
            _ => None,
        }
    }

    /// The names of the sets, for messages.
    pub const SETS: &'static str = "all, replication, baselines, core";

    /// A comma-separated list of arms and set names, deduplicated in order.
    pub fn parse_list(list: &str) -> Result<Vec<Arm>> {
        let mut out: Vec<Arm> = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let arms = match Arm::set(item) {
                Some(v) => v,
                None => vec![item.parse()?],
            };
            for a in arms {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        if out.is_empty() {
            bail!(
                "no arms given: name arms (e.g. mode-dot,random) or a set ({})",
                Arm::SETS
            );
        }
        Ok(out)
    }

    /// The pipeline this arm runs with: its metric, and for `-nols` layer selection off and
    /// the output layer as the target (`layers.force_target` applies to arms with layer
    /// selection only).
    pub fn pipeline(&self, p: &Pipeline) -> Pipeline {
        let mut q = p.clone();
        q.layers.enabled = p.layers.enabled && self.layer_select;
        if !self.layer_select {
            q.layers.force_target = None;
        }
        if let Strategy::Mode(m) = self.strategy {
            q.select.metric = m;
        }
        q
    }
}

impl fmt::Display for Arm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.strategy {
            Strategy::Mode(m) => write!(f, "mode-{m}")?,
            Strategy::Baseline(b) => f.write_str(b.as_str())?,
        }
        if !self.layer_select {
            f.write_str(NOLS)?;
        }
        Ok(())
    }
}

impl FromStr for Arm {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Arm> {
        let err = || {
            anyhow::anyhow!(
                "unknown arm {s:?}: use mode-<metric>[-nols] (metric: {}), {}[-nols], random, or a set ({})",
                Metric::ALL
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                Baseline::ALL
                    .iter()
                    .filter(|b| **b != Baseline::Random)
                    .map(|b| b.as_str())
                    .collect::<Vec<_>>()
                    .join("[-nols], "),
                Arm::SETS
            )
        };
        let (base, layer_select) = match s.strip_suffix(NOLS) {
            Some(b) => (b, false),
            None => (s, true),
        };
        let strategy = if let Some(m) = base.strip_prefix("mode-") {
            Strategy::Mode(Metric::parse(m).ok_or_else(err)?)
        } else {
            Strategy::Baseline(Baseline::parse(base).ok_or_else(err)?)
        };
        let arm = Arm {
            strategy,
            layer_select,
        };
        if arm.strategy == CONTROL.strategy && !layer_select {
            return Err(err());
        }
        Ok(arm)
    }
}

impl serde::Serialize for Arm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Arm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Arm, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nols_arm_targets_the_output_layer_whatever_force_target_says() {
        let mut p = Pipeline::default();
        p.layers.force_target = Some("dense_2".into());
        let with: Arm = "mode-dot".parse().unwrap();
        let without: Arm = "mode-dot-nols".parse().unwrap();
        assert_eq!(
            with.pipeline(&p).layers.force_target.as_deref(),
            Some("dense_2")
        );
        let q = without.pipeline(&p);
        assert!(!q.layers.enabled);
        assert_eq!(q.layers.force_target, None);
    }

    #[test]
    fn names_round_trip() {
        for a in Arm::replication() {
            assert_eq!(a.to_string().parse::<Arm>().unwrap(), a);
        }
        assert_eq!(Arm::replication().len(), 21);
        assert_eq!("random".parse::<Arm>().unwrap(), CONTROL);
        let a: Arm = "mode-cosine-nols".parse().unwrap();
        assert_eq!((a.metric_name(), a.layer_select), ("cosine", false));
    }

    #[test]
    fn one_error_text() {
        for bad in ["mode-foo", "bogus", "random-nols", "mode-", "-nols"] {
            let e = bad.parse::<Arm>().unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("unknown arm {bad:?}: use mode-<metric>")),
                "{e}"
            );
        }
    }

    #[test]
    fn lists_and_sets() {
        let v = Arm::parse_list("mode-dot, random,replication").unwrap();
        assert_eq!(v.len(), 21);
        assert_eq!(Arm::parse_list("all").unwrap().len(), 27);
        assert_eq!(Arm::parse_list("core,baselines").unwrap().len(), 11);
        assert_eq!(v[0].to_string(), "mode-dot");
        assert!(Arm::parse_list(" , ").is_err());
    }

    #[test]
    fn arm_pipeline() {
        let p = Pipeline::default();
        let q = "mode-chebyshev-nols".parse::<Arm>().unwrap().pipeline(&p);
        assert_eq!(q.select.metric, Metric::Chebyshev);
        assert!(!q.layers.enabled);
    }
}
