//! Range checks of a pipeline, run before any stage does work.

use super::{ConfigError, Pipeline};
use crate::vocab::MapKind;

type Result<T> = std::result::Result<T, ConfigError>;

/// Reject the pipeline: `$key` is the key the message starts with.
macro_rules! reject {
    ($key:expr, $($msg:tt)+) => {
        return Err(ConfigError::OutOfRange {
            key: $key.to_string(),
            message: format!($($msg)+),
        })
    };
}

/// Every check, in the order their errors are reported.
pub(super) fn validate(p: &Pipeline) -> Result<()> {
    name(p)?;
    split(p)?;
    model(p)?;
    training(p)?;
    mode(p)?;
    layers(p)?;
    select(p)?;
    classes(p)?;
    needs(p)?;
    data(p)?;
    onnx(p)?;
    skew_labels(p)
}

/// A share in [0, 1].
fn unit(name: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) || !v.is_finite() {
        reject!(name, "{name} = {v} is out of range: it must lie in [0, 1]");
    }
    Ok(())
}

/// The name is a file name.
fn name(p: &Pipeline) -> Result<()> {
    if p.name.is_empty()
        || !p
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        reject!(
            "name",
            "name = {:?} must be a non-empty file name (letters, digits, '-', '_')",
            p.name
        );
    }
    Ok(())
}

/// The split's shares.
fn split(p: &Pipeline) -> Result<()> {
    if p.split.pool_fraction < 0.0 || p.split.pool_fraction >= 1.0 {
        reject!(
            "split.pool_fraction",
            "split.pool_fraction = {} is out of range: it must lie in [0, 1)",
            p.split.pool_fraction
        );
    }
    unit("split.skew_keep", p.split.skew_keep)?;
    if !(0.0..1.0).contains(&p.split.noise_rate) {
        reject!(
            "split.noise_rate",
            "split.noise_rate = {} is out of range: it must lie in [0, 1)",
            p.split.noise_rate
        );
    }
    Ok(())
}

/// The MLP preset's hidden layers.
fn model(p: &Pipeline) -> Result<()> {
    if p.model.layers.is_none()
        && p.model.preset == super::ModelPreset::Mlp
        && (p.model.hidden.is_empty() || p.model.hidden.iter().any(|&h| h == 0 || h > 65_536))
    {
        reject!(
            "model.hidden",
            "model.hidden = {:?}: give at least one hidden layer, each of 1 to 65536 units",
            p.model.hidden
        );
    }
    Ok(())
}

/// Epochs, batch size and learning rate of the training and of the retraining.
fn training(p: &Pipeline) -> Result<()> {
    for (section, t) in [("train", &p.train), ("retrain", &p.retrain.train())] {
        if t.epochs == 0 || t.epochs > 10_000 {
            reject!(
                format!("{section}.epochs"),
                "{section}.epochs = {} is out of range: 1 to 10000",
                t.epochs
            );
        }
        if t.batch_size == 0 {
            reject!(
                format!("{section}.batch_size"),
                "{section}.batch_size must be at least 1"
            );
        }
        if !(t.learning_rate > 0.0 && t.learning_rate < 10.0) {
            reject!(
                format!("{section}.learning_rate"),
                "{section}.learning_rate = {} is out of range: (0, 10)",
                t.learning_rate
            );
        }
    }
    Ok(())
}

/// The MODE loop: the target, the shares, the batch and the number of iterations.
fn mode(p: &Pipeline) -> Result<()> {
    match p.mode.theta {
        super::Theta::Absolute(t) => unit("mode.theta", t)?,
        super::Theta::Relative { relative } => {
            if !(relative > 0.0 && relative <= 1.5) {
                reject!(
                    "mode.theta",
                    "mode.theta = {{ relative = {relative} }} is out of range: the share of the model's accuracy must lie in (0, 1.5]"
                );
            }
        }
    }
    unit("mode.gamma", p.mode.gamma)?;
    unit("mode.alpha", p.mode.alpha)?;
    match p.mode.batch {
        super::Amount::Count(0) => reject!("mode.batch", "mode.batch must be at least 1"),
        super::Amount::Fraction(f) if !(f > 0.0 && f < 1.0) => reject!(
            "mode.batch",
            "mode.batch = {f}: a fraction of the pool must lie in (0, 1); a whole number is a count of samples"
        ),
        _ => {}
    }
    if p.mode.max_iter == 0 || p.mode.max_iter > 1000 {
        reject!(
            "mode.max_iter",
            "mode.max_iter = {} is out of range: 1 to 1000",
            p.mode.max_iter
        );
    }
    Ok(())
}

/// Layer selection: the threshold, the solver's iterations and the penalty.
fn layers(p: &Pipeline) -> Result<()> {
    if !(p.layers.threshold >= 0.0 && p.layers.threshold <= 1.0) {
        reject!(
            "layers.threshold",
            "layers.threshold = {} is out of range: [0, 1]",
            p.layers.threshold
        );
    }
    if p.layers.max_iterations == 0 {
        reject!(
            "layers.max_iterations",
            "layers.max_iterations must be at least 1"
        );
    }
    if let super::Penalty::Fixed(l2) = p.layers.l2
        && !(l2 > 0.0 && l2.is_finite())
    {
        reject!(
            "layers.l2",
            "layers.l2 = {l2} must be positive (or \"auto\")"
        );
    }
    if p.layers.l2_grid.is_empty()
        || p.layers
            .l2_grid
            .iter()
            .any(|v| !(*v > 0.0 && v.is_finite()))
    {
        reject!(
            "layers.l2_grid",
            "layers.l2_grid = {:?}: give one or more positive strengths",
            p.layers.l2_grid
        );
    }
    if !(p.layers.l2_holdout > 0.0 && p.layers.l2_holdout < 1.0) {
        reject!(
            "layers.l2_holdout",
            "layers.l2_holdout = {} is out of range: it must lie in (0, 1)",
            p.layers.l2_holdout
        );
    }
    unit("layers.max_gap", p.layers.max_gap)
}

/// Selection: the Minkowski exponent and the two map kinds.
fn select(p: &Pipeline) -> Result<()> {
    if !(p.select.minkowski_p >= 1.0 && p.select.minkowski_p.is_finite()) {
        reject!(
            "select.minkowski_p",
            "select.minkowski_p = {} must be a finite number >= 1",
            p.select.minkowski_p
        );
    }
    for (key, kind) in [
        ("select.underfit_kind", p.select.underfit_kind),
        ("select.overfit_kind", p.select.overfit_kind),
    ] {
        if kind == MapKind::DhCc {
            reject!(
                key,
                "{key} = \"DH_CC\" is a map between two labels: choose HC, HM, HW, DH_CM or DH_CW"
            );
        }
    }
    Ok(())
}

/// The number of classes and their names.
fn classes(p: &Pipeline) -> Result<()> {
    if let Some(c) = p.data.classes {
        if !(1..=65_536).contains(&c) {
            reject!(
                "data.classes",
                "data.classes = {c} is out of range: 1 to 65536"
            );
        }
        if !p.data.class_names.is_empty() && p.data.class_names.len() != c {
            reject!(
                "data.classes",
                "data.classes = {c} but data.class_names has {} names: give one name per class",
                p.data.class_names.len()
            );
        }
    }
    Ok(())
}

/// Keys that need another: a holdout for the heatmap, layer selection for a forced target.
fn needs(p: &Pipeline) -> Result<()> {
    if p.heatmap.split == super::AnalysisSplit::Holdout && p.split.holdout == 0 {
        reject!(
            "heatmap.split",
            "heatmap.split = \"holdout\" needs a holdout: set split.holdout to the number of pool samples to set aside"
        );
    }
    if let Some(t) = &p.layers.force_target
        && t.trim().is_empty()
    {
        reject!(
            "layers.force_target",
            "layers.force_target = \"\": name a layer (e.g. \"dense_2\") or leave the key out"
        );
    }
    if let (false, Some(t)) = (p.layers.enabled, &p.layers.force_target)
        && t != "output"
    {
        reject!(
            "layers.force_target",
            "layers.force_target = {t:?} needs layer selection: set layers.enabled = true or leave force_target out"
        );
    }
    Ok(())
}

/// The skewed labels fit the label type.
fn skew_labels(p: &Pipeline) -> Result<()> {
    if p.split.skew_labels.iter().any(|&l| l > 4095) {
        reject!(
            "split.skew_labels",
            "split.skew_labels = {:?}: labels must be below 4096",
            p.split.skew_labels
        );
    }
    Ok(())
}

/// The data source keys: one source; shape keys and the test share only where they apply.
fn data(p: &Pipeline) -> Result<()> {
    let d = &p.data;
    if d.images.is_some() && d.table.is_some() {
        reject!(
            "data.images",
            "data.images and data.table are both set: give one source"
        );
    }
    let own = d.images.is_some() || d.table.is_some();
    for (key, set) in [
        ("data.channels", d.channels.is_some()),
        ("data.height", d.height.is_some()),
        ("data.width", d.width.is_some()),
        ("data.test_fraction", d.test_fraction.is_some()),
    ] {
        if set && !own {
            reject!(
                key,
                "{key} applies to data.images and data.table only (idx files carry their own size and test file)"
            );
        }
    }
    for (key, set) in [
        ("data.label_column", d.label_column.is_some()),
        ("data.pixels_column", d.pixels_column.is_some()),
        ("data.scale", d.scale.is_some()),
    ] {
        if set && d.table.is_none() {
            reject!(key, "{key} applies to data.table only");
        }
    }
    if let Some(c) = d.channels
        && (c == 0 || (d.images.is_some() && c != 1 && c != 3) || c > 4096)
    {
        reject!(
            "data.channels",
            "data.channels = {c}: image folders take 1 (grayscale) or 3 (RGB); tables 1 to 4096"
        );
    }
    for (key, v) in [("data.height", d.height), ("data.width", d.width)] {
        if let Some(v) = v
            && !(1..=65_536).contains(&v)
        {
            reject!(key, "{key} = {v} is out of range: 1 to 65536");
        }
    }
    if d.height.is_some() != d.width.is_some() {
        reject!(
            "data.height",
            "data.height and data.width: give both or neither"
        );
    }
    if let Some(f) = d.test_fraction
        && !(f > 0.0 && f < 1.0)
    {
        reject!(
            "data.test_fraction",
            "data.test_fraction = {f} is out of range: it must lie in (0, 1)"
        );
    }
    if let Some(s) = d.scale
        && !(s > 0.0 && s.is_finite())
    {
        reject!("data.scale", "data.scale = {s} must be a positive number");
    }
    Ok(())
}

/// The ONNX keys: layer names usable as columns, a normalisation that fits.
fn onnx(p: &Pipeline) -> Result<()> {
    let m = &p.model;
    for name in &m.onnx_layers {
        if name.trim().is_empty() || name.contains(',') {
            reject!(
                "model.onnx_layers",
                "model.onnx_layers: {name:?} is not a node output name (empty, or holds a comma)"
            );
        }
    }
    for (key, v) in [
        ("model.input_mean", &m.input_mean),
        ("model.input_std", &m.input_std),
    ] {
        if v.iter().any(|x| !x.is_finite()) {
            reject!(key, "{key} = {v:?}: every value must be finite");
        }
    }
    if m.input_std.iter().any(|&s| s <= 0.0) {
        reject!(
            "model.input_std",
            "model.input_std = {:?}: every value must be positive",
            m.input_std
        );
    }
    if !m.input_mean.is_empty() && !m.input_std.is_empty() {
        let (a, b) = (m.input_mean.len(), m.input_std.len());
        if a != b && a != 1 && b != 1 {
            reject!(
                "model.input_mean",
                "model.input_mean has {a} values and model.input_std {b}: give one value, or one per channel, to each"
            );
        }
    }
    Ok(())
}
