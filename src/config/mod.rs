//! The one typed configuration of a pipeline.
//!
//! A pipeline is a TOML file (`pipelines/<name>.toml`). Every field has a default, unknown keys
//! are rejected, and [`Pipeline::validate`] checks every range before any stage does work.
//! Command-line overrides (`--set section.key=value`) are applied to the TOML document before
//! it is deserialised, so they go through exactly the same checks; an error they cause names
//! the `--set` that caused it.

mod check;
mod error;
mod sections;

pub use error::ConfigError;
pub use sections::*;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// All parameters of one pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pipeline {
    /// Name of the pipeline; outputs go to `output/<name>/`.
    pub name: String,
    /// Master seed: every random choice (split, weights, shuffling, selection) derives from it.
    pub seed: u64,
    pub data: DataConfig,
    pub split: SplitConfig,
    pub model: ModelConfig,
    pub probe: ProbeConfig,
    pub train: TrainConfig,
    pub mode: ModeConfig,
    pub layers: LayersConfig,
    pub heatmap: HeatmapConfig,
    pub select: SelectConfig,
    pub retrain: RetrainConfig,
    /// What `mode ablate` sweeps (not part of a run's settings).
    pub ablate: AblateConfig,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self {
            name: "mnist".into(),
            seed: 123,
            data: DataConfig::default(),
            split: SplitConfig::default(),
            model: ModelConfig::default(),
            probe: ProbeConfig::default(),
            train: TrainConfig::default(),
            mode: ModeConfig::default(),
            layers: LayersConfig::default(),
            heatmap: HeatmapConfig::default(),
            select: SelectConfig::default(),
            retrain: RetrainConfig::default(),
            ablate: AblateConfig::default(),
        }
    }
}

impl Pipeline {
    /// Load a pipeline file (or the defaults), apply `section.key=value` overrides in order,
    /// and validate.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Pipeline, ConfigError> {
        let origin = path.map_or_else(|| "defaults".to_string(), |p| p.display().to_string());
        let mut doc: toml::Table = match path {
            Some(p) => read_doc(p, &[])?,
            None => toml::Table::new(),
        };
        let decode = |doc: &toml::Table| -> Result<Pipeline, ConfigError> {
            toml::Value::Table(doc.clone())
                .try_into()
                .map_err(|e: toml::de::Error| {
                    ConfigError::decoding(plain(&one_line(&e.to_string())))
                })
        };
        decode(&doc).map_err(|e| e.at(&origin))?;
        for o in overrides {
            apply_override(&mut doc, o).map_err(|e| e.at(format!("--set {o}")))?;
            decode(&doc).map_err(|e| e.at(format!("--set {o}")))?;
        }
        let pipeline = decode(&doc)?;
        pipeline.validate().map_err(|e| {
            // Name the override that set the offending key, else the file.
            let msg = e.to_string();
            let culprit = overrides.iter().rev().find(|o| {
                o.split_once('=')
                    .is_some_and(|(k, _)| msg.starts_with(k.trim()))
            });
            match culprit {
                Some(o) => e.at(format!("--set {o}")),
                None => e.at(&origin),
            }
        })?;
        Ok(pipeline)
    }

    /// Check every range; the message starts with the key that is wrong and says what is
    /// allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check::validate(self)
    }

    /// The split's seed.
    pub fn split_seed(&self) -> u64 {
        self.split
            .seed
            .unwrap_or_else(|| derive_seed(self.seed, "split"))
    }

    /// The weight-initialisation seed.
    pub fn model_seed(&self) -> u64 {
        self.model
            .seed
            .unwrap_or_else(|| derive_seed(self.seed, "model"))
    }

    /// A fingerprint of every setting that shapes a run (16 hex digits): equal fingerprints,
    /// equal results. The `[ablate]` plan is not one of them.
    pub fn fingerprint(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.remove("ablate");
            m.insert("engine".into(), ENGINE.into());
        }
        fingerprint(&v.to_string())
    }

    /// A fingerprint of the settings the splits depend on (data and split sections, seeds).
    pub fn splits_fingerprint(&self) -> String {
        fingerprint(
            &serde_json::json!([self.split_seed(), self.seed, &self.data, &self.split]).to_string(),
        )
    }

    /// A fingerprint of the settings the splits and the initial model depend on.
    pub fn initial_fingerprint(&self) -> String {
        fingerprint(
            &serde_json::json!([
                self.splits_fingerprint(),
                self.model_seed(),
                &self.model,
                &self.train,
                ENGINE
            ])
            .to_string(),
        )
    }

    /// The same pipeline with master seed `seed` and the split and weight seeds derived from
    /// it (a sweep's seed i).
    pub fn with_seed(&self, seed: u64) -> Pipeline {
        let mut q = self.clone();
        q.seed = seed;
        q.split.seed = None;
        q.model.seed = None;
        q
    }
}

/// The version of the engine's numerics (training, inference, feature models), part of every
/// model and run fingerprint: results of another engine are never resumed or summarised as if
/// they were this one's. Raise it whenever a change moves results.
pub const ENGINE: &str = "2: Flex fleets, Keras-form Adam, gemm kernels";

/// FNV-1a 64 of a text, as 16 hex digits.
pub fn fingerprint(text: &str) -> String {
    format!("{:016x}", fnv1a(text.as_bytes()))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A seed for one named random stream, derived from the master seed (SplitMix64 over the
/// master seed and an FNV-1a hash of the stream's name).
pub fn derive_seed(seed: u64, stream: &str) -> u64 {
    let mut z = seed ^ fnv1a(stream.as_bytes());
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key by which a pipeline file extends another (a path relative to its own folder).
const EXTENDS: &str = "extends";

/// A pipeline file as a TOML table, with the file it `extends` merged under it.
fn read_doc(path: &Path, chain: &[PathBuf]) -> Result<toml::Table, ConfigError> {
    let me = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if let Some(i) = chain.iter().position(|p| *p == me) {
        let files = chain[i..]
            .iter()
            .chain([&me])
            .map(|p| p.display().to_string())
            .collect();
        return Err(ConfigError::ExtendsCycle { files });
    }
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::MissingFile {
        path: path.display().to_string(),
        source,
    })?;
    let mut doc = text
        .parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: path.display().to_string(),
            message: one_line(&e.to_string()),
        })?;
    match doc.remove(EXTENDS) {
        None => Ok(doc),
        Some(toml::Value::String(base)) => {
            let base_path = extended(path, &base)?;
            let mut chain = chain.to_vec();
            chain.push(me);
            let mut merged = read_doc(&base_path, &chain)?;
            merge(&mut merged, doc);
            Ok(merged)
        }
        Some(_) => Err(ConfigError::ExtendsNotAName {
            path: path.display().to_string(),
        }),
    }
}

/// The file `extends = base` names in the pipeline file `path`: beside it, else in the
/// project's `pipelines/` folder (so a pipeline kept elsewhere can extend `mnist.toml`).
fn extended(path: &Path, base: &str) -> Result<PathBuf, ConfigError> {
    let beside = path.parent().unwrap_or(Path::new(".")).join(base);
    if beside.exists() {
        return Ok(beside);
    }
    let shipped = Path::new(PIPELINES_DIR).join(base);
    if shipped.exists() {
        return Ok(shipped);
    }
    Err(ConfigError::ExtendsMissing {
        path: path.display().to_string(),
        base: base.to_string(),
        beside: beside.display().to_string(),
        shipped: shipped.display().to_string(),
    })
}

/// Where the shipped pipelines live (relative to the project folder).
pub const PIPELINES_DIR: &str = "pipelines";

/// The pipeline file a `--pipeline` argument names: a path, or a bare name (`mnist`) of a file
/// in `pipelines/` (`pipelines/mnist.toml`).
pub fn pipeline_file(arg: &Path) -> PathBuf {
    let bare = arg.components().count() == 1 && arg.extension().is_none();
    let named = Path::new(PIPELINES_DIR).join(arg).with_extension("toml");
    if !arg.exists() && bare && named.exists() {
        named
    } else {
        arg.to_path_buf()
    }
}

/// Merge `over` into `base`, table by table (values of `over` win).
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// serde's "invalid type: string \"9999…\", expected u64 in `split.seed`" as what a user can
/// act on: the key, what it must be, and what it got.
fn plain(msg: &str) -> String {
    let ranges = [
        ("u64", "18446744073709551615"),
        ("usize", "18446744073709551615"),
        ("u32", "4294967295"),
        ("u16", "65535"),
    ];
    for (ty, max) in ranges {
        let Some((got, key)) = msg
            .strip_prefix("invalid ")
            .and_then(|m| m.split_once(&format!(", expected {ty} in `")))
        else {
            continue;
        };
        let key = key.trim_end_matches('`');
        let got = got
            .trim_start_matches("type: ")
            .trim_start_matches("value: ");
        return format!("{key} must be a whole number from 0 to {max}, not {got}");
    }
    msg.to_string()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Apply one `a.b.c=value` override to the TOML document. The value is parsed as TOML
/// (`3`, `0.5`, `true`, `[1, 2]`, `"text"`); anything that is not valid TOML is taken as a string.
pub fn apply_override(doc: &mut toml::Table, spec: &str) -> Result<(), ConfigError> {
    let bad = |msg: String| Err(ConfigError::BadOverride(msg));
    let Some((key, raw)) = spec.split_once('=') else {
        return bad("an override must look like section.key=value (e.g. mode.theta=0.9)".into());
    };
    let key = key.trim();
    let raw = raw.trim();
    let value: toml::Value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return bad(format!("empty key segment in {key:?}"));
    }
    let mut table = doc;
    for part in &parts[..parts.len() - 1] {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => return bad(format!("{part} is not a section")),
        };
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Metric;

    #[test]
    fn defaults_validate() {
        Pipeline::default().validate().unwrap();
    }

    #[test]
    fn unknown_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.toml");
        std::fs::write(&p, "[mode]\nthetaa = 0.5\n").unwrap();
        let err = Pipeline::load(Some(&p), &[]).unwrap_err();
        match &err {
            ConfigError::In { origin, error } if origin.ends_with("p.toml") => {
                assert!(
                    matches!(&**error, ConfigError::UnknownKey(m) if m.contains("thetaa")),
                    "{err}"
                )
            }
            _ => panic!("{err:?}"),
        }
    }

    #[test]
    fn override_and_range_check() {
        let p = Pipeline::load(
            None,
            &["mode.theta=0.5".into(), "select.metric=cosine".into()],
        )
        .unwrap();
        assert_eq!(p.mode.theta, Theta::Absolute(0.5));
        assert_eq!(p.select.metric, Metric::Cosine);
        let err = |set: &str| Pipeline::load(None, &[set.to_string()]).unwrap_err();
        let e = err("mode.alpha=1.5");
        assert!(
            matches!(&e, ConfigError::In { origin, error } if origin == "--set mode.alpha=1.5"
                && matches!(&**error, ConfigError::OutOfRange { key, .. } if key == "mode.alpha")),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "--set mode.alpha=1.5: mode.alpha = 1.5 is out of range: it must lie in [0, 1]"
        );
        let e = err("select.metric=nope");
        assert!(
            matches!(&e, ConfigError::In { origin, .. } if origin == "--set select.metric=nope"),
            "{e:?}"
        );
        assert!(
            matches!(e.cause(), ConfigError::BadValue(m) if m.contains("nope")),
            "{e:?}"
        );
        let e = err("mode.bogus=1");
        assert!(
            matches!(e.cause(), ConfigError::UnknownKey(m) if m.contains("bogus")),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("--set mode.bogus=1:"), "{e}");
        assert!(matches!(
            err("nonsense").cause(),
            ConfigError::BadOverride(_)
        ));
        assert!(matches!(
            err("mode..theta=1").cause(),
            ConfigError::BadOverride(_)
        ));
    }

    #[test]
    fn force_target_needs_layer_selection() {
        let v = vec![
            "layers.enabled=false".to_string(),
            "layers.force_target=\"dense_2\"".into(),
        ];
        let err = Pipeline::load(None, &v).unwrap_err();
        assert!(
            matches!(err.cause(), ConfigError::OutOfRange { key, message }
                if key == "layers.force_target" && message.contains("needs layer selection")),
            "{err:?}"
        );
        let v = vec![
            "layers.enabled=false".to_string(),
            "layers.force_target=\"output\"".into(),
        ];
        assert!(Pipeline::load(None, &v).is_ok());
    }

    #[test]
    fn own_data_and_onnx_keys_are_checked() {
        // The key each wrong setting is reported under.
        let key = |sets: &[&str]| {
            let v: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            match Pipeline::load(None, &v).unwrap_err().cause() {
                ConfigError::OutOfRange { key, .. } => key.clone(),
                e => panic!("{sets:?}: {e:?}"),
            }
        };
        assert_eq!(key(&["data.height=5"]), "data.height");
        assert_eq!(
            key(&["data.images=\"a\"", "data.table=\"b\""]),
            "data.images"
        );
        assert_eq!(key(&["data.table=\"a\"", "data.width=5"]), "data.height");
        assert_eq!(
            key(&["data.images=\"a\"", "data.channels=2"]),
            "data.channels"
        );
        assert_eq!(
            key(&["data.table=\"a\"", "data.test_fraction=1.0"]),
            "data.test_fraction"
        );
        assert_eq!(key(&["data.label_column=\"y\""]), "data.label_column");
        assert_eq!(key(&["model.onnx_layers=[\"a,b\"]"]), "model.onnx_layers");
        assert_eq!(key(&["model.input_std=[0.0]"]), "model.input_std");
        let e = Pipeline::load(None, &["model.input=\"nchw\"".into()]).unwrap_err();
        assert!(
            matches!(e.cause(), ConfigError::BadValue(m) if m.contains("flat, image")),
            "{e:?}"
        );
        let p = Pipeline::load(
            None,
            &["data.images=\"a\"".into(), "model.input=\"image\"".into()],
        )
        .unwrap();
        assert_eq!(p.model.input, Some(OnnxInput::Image));
        // Unset, the new keys leave the settings' fingerprints as they were.
        let json = serde_json::to_string(&Pipeline::default()).unwrap();
        for key in [
            "images",
            "table",
            "test_fraction",
            "onnx_layers",
            "input_mean",
        ] {
            assert!(!json.contains(key), "{key} in {json}");
        }
    }

    #[test]
    fn a_pipeline_extends_another() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.toml"),
            "name = \"b\"\n[mode]\ntheta = 0.8\nalpha = 0.5\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("x.toml"),
            "extends = \"base.toml\"\nname = \"x\"\n[mode]\nalpha = 0.1\n",
        )
        .unwrap();
        let p = Pipeline::load(Some(&dir.path().join("x.toml")), &[]).unwrap();
        assert_eq!(
            (p.name.as_str(), p.mode.theta, p.mode.alpha),
            ("x", Theta::Absolute(0.8), 0.1)
        );
        std::fs::write(dir.path().join("loop.toml"), "extends = \"loop.toml\"\n").unwrap();
        let e = Pipeline::load(Some(&dir.path().join("loop.toml")), &[]).unwrap_err();
        assert!(
            matches!(&e, ConfigError::ExtendsCycle { files } if files.len() == 2
                && files.iter().all(|f| f.ends_with("loop.toml"))),
            "{e:?}"
        );
        std::fs::write(dir.path().join("far.toml"), "extends = \"nowhere.toml\"\n").unwrap();
        let e = Pipeline::load(Some(&dir.path().join("far.toml")), &[]).unwrap_err();
        assert!(
            matches!(&e, ConfigError::ExtendsMissing { base, .. } if base == "nowhere.toml"),
            "{e:?}"
        );
        let e = Pipeline::load(Some(&dir.path().join("absent.toml")), &[]).unwrap_err();
        assert!(matches!(&e, ConfigError::MissingFile { .. }), "{e:?}");
        std::fs::write(dir.path().join("broken.toml"), "[mode\n").unwrap();
        let e = Pipeline::load(Some(&dir.path().join("broken.toml")), &[]).unwrap_err();
        assert!(matches!(&e, ConfigError::Syntax { .. }), "{e:?}");
    }

    #[test]
    fn seeds_and_fingerprints() {
        assert_ne!(derive_seed(1, "split"), derive_seed(1, "model"));
        // Seeds and fingerprints are part of every stored run: they must not move.
        assert_eq!(derive_seed(7, "x"), 13_674_409_416_936_978_623);
        assert_eq!(fingerprint("abc"), "e71fa2190541574b");
        let p = Pipeline::default();
        let mut q = p.clone();
        q.mode.theta = Theta::Absolute(0.5);
        assert_ne!(p.fingerprint(), q.fingerprint());
        assert_eq!(p.initial_fingerprint(), q.initial_fingerprint());
        q.train.epochs = 4;
        assert_ne!(p.initial_fingerprint(), q.initial_fingerprint());
        assert_eq!(p.splits_fingerprint(), q.splits_fingerprint());
        assert_eq!(p.fingerprint().len(), 16);
    }
}
