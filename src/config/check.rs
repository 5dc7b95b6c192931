//! Range checks of a pipeline, run before any stage does work.

use super::Pipeline;
use crate::vocab::MapKind;
use anyhow::{Result, bail};

pub(super) fn validate(p: &Pipeline) -> Result<()> {
    fn unit(name: &str, v: f64, lo_open: bool) -> Result<()> {
        let ok = if lo_open {
            v > 0.0 && v <= 1.0
        } else {
            (0.0..=1.0).contains(&v)
        };
        if !ok || !v.is_finite() {
            bail!(
                "{name} = {v} is out of range: it must lie in {}0, 1]",
                if lo_open { "(" } else { "[" }
            );
        }
        Ok(())
    }
    if p.name.is_empty()
        || !p
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!(
            "name = {:?} must be a non-empty file name (letters, digits, '-', '_')",
            p.name
        );
    }
    if p.split.pool_fraction < 0.0 || p.split.pool_fraction >= 1.0 {
        bail!(
            "split.pool_fraction = {} is out of range: it must lie in [0, 1)",
            p.split.pool_fraction
        );
    }
    unit("split.skew_keep", p.split.skew_keep, false)?;
    if !(0.0..1.0).contains(&p.split.noise_rate) {
        bail!(
            "split.noise_rate = {} is out of range: it must lie in [0, 1)",
            p.split.noise_rate
        );
    }
    if p.model.layers.is_none()
        && p.model.preset == super::ModelPreset::Mlp
        && (p.model.hidden.is_empty() || p.model.hidden.iter().any(|&h| h == 0 || h > 65_536))
    {
        bail!(
            "model.hidden = {:?}: give at least one hidden layer, each of 1 to 65536 units",
            p.model.hidden
        );
    }
    for (section, t) in [("train", &p.train), ("retrain", &p.retrain.train())] {
        if t.epochs == 0 || t.epochs > 10_000 {
            bail!(
                "{section}.epochs = {} is out of range: 1 to 10000",
                t.epochs
            );
        }
        if t.batch_size == 0 {
            bail!("{section}.batch_size must be at least 1");
        }
        if !(t.learning_rate > 0.0 && t.learning_rate < 10.0) {
            bail!(
                "{section}.learning_rate = {} is out of range: (0, 10)",
                t.learning_rate
            );
        }
    }
    unit("mode.theta", p.mode.theta, false)?;
    unit("mode.gamma", p.mode.gamma, false)?;
    unit("mode.alpha", p.mode.alpha, false)?;
    if p.mode.batch == 0 {
        bail!("mode.batch must be at least 1");
    }
    if p.mode.max_iter == 0 || p.mode.max_iter > 1000 {
        bail!(
            "mode.max_iter = {} is out of range: 1 to 1000",
            p.mode.max_iter
        );
    }
    if !(p.layers.threshold >= 0.0 && p.layers.threshold <= 1.0) {
        bail!(
            "layers.threshold = {} is out of range: [0, 1]",
            p.layers.threshold
        );
    }
    if p.layers.max_iterations == 0 {
        bail!("layers.max_iterations must be at least 1");
    }
    if !(p.layers.l2 > 0.0 && p.layers.l2.is_finite()) {
        bail!("layers.l2 = {} must be positive", p.layers.l2);
    }
    if !(p.select.minkowski_p >= 1.0 && p.select.minkowski_p.is_finite()) {
        bail!(
            "select.minkowski_p = {} must be a finite number >= 1",
            p.select.minkowski_p
        );
    }
    for (key, kind) in [
        ("select.underfit_kind", p.select.underfit_kind),
        ("select.overfit_kind", p.select.overfit_kind),
    ] {
        if kind == MapKind::DhCc {
            bail!(
                "{key} = \"DH_CC\" is a map between two labels: choose HC, HM, HW, DH_CM or DH_CW"
            );
        }
    }
    if let Some(c) = p.data.classes {
        if !(1..=65_536).contains(&c) {
            bail!("data.classes = {c} is out of range: 1 to 65536");
        }
        if !p.data.class_names.is_empty() && p.data.class_names.len() != c {
            bail!(
                "data.classes = {c} but data.class_names has {} names: give one name per class",
                p.data.class_names.len()
            );
        }
    }
    if p.heatmap.split == super::AnalysisSplit::Holdout && p.split.holdout == 0 {
        bail!(
            "heatmap.split = \"holdout\" needs a holdout: set split.holdout to the number of pool samples to set aside"
        );
    }
    if let Some(t) = &p.layers.force_target
        && t.trim().is_empty()
    {
        bail!("layers.force_target = \"\": name a layer (e.g. \"dense_2\") or leave the key out");
    }
    if p.split.skew_labels.iter().any(|&l| l > 4095) {
        bail!(
            "split.skew_labels = {:?}: labels must be below 4096",
            p.split.skew_labels
        );
    }
    Ok(())
}
