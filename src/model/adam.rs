//! Adam as Keras computes it, and its saved state.
//!
//! Keras 3's update (β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁷), per element, in f32:
//! `m += (g − m)(1 − β₁)`, `v += (g² − v)(1 − β₂)`,
//! `θ −= m · α / (√v + ε)` with `α = lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ)` at step t (1-based). The
//! state is the moments of every parameter and the step count, saved in burn's burnpack format
//! under the parameter's tensor name (`blocks.0.Dense.weight.moment_1`, …, `step`), so the same
//! state gives the same bytes.

use crate::artifacts::keys::OPTIMIZER_KEY;
use crate::artifacts::{Artifact, write_bytes};
use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::{Bytes, DType};
use std::path::Path;

pub const BETA1: f32 = 0.9;
pub const BETA2: f32 = 0.999;
pub const EPSILON: f32 = 1e-7;
/// `1 − β₁` and `1 − β₂` as Keras has them (the difference taken in double precision).
pub const ONE_MINUS_BETA1: f32 = (1.0f64 - 0.9) as f32;
pub const ONE_MINUS_BETA2: f32 = (1.0f64 - 0.999) as f32;

/// The step size of step `t` (1-based): `lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ)`, in f32 as Keras.
pub fn alpha(lr: f32, t: u64) -> f32 {
    let t = t as f32;
    lr * (1.0 - BETA2.powf(t)).sqrt() / (1.0 - BETA1.powf(t))
}

/// One model's Adam state: the step count and, per parameter (in [`super::Weights::params`]
/// order), the first and second moments.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    pub step: u64,
    pub moments: Vec<(Vec<f32>, Vec<f32>)>,
}

impl AdamState {
    /// A fresh state: step 0, zero moments of these sizes.
    pub fn fresh(sizes: &[usize]) -> AdamState {
        AdamState {
            step: 0,
            moments: sizes
                .iter()
                .map(|&n| (vec![0.0; n], vec![0.0; n]))
                .collect(),
        }
    }
}

/// Adam's state after a training, in burn's burnpack format laid out canonically (tensors in
/// name order), so the same state gives the same bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimState(pub Vec<u8>);

const STEP: &str = "step";
const KIND: &str = "adam (Keras: beta1 0.9, beta2 0.999, epsilon 1e-7)";

impl OptimState {
    /// Encode `state` for parameters of these names and shapes.
    pub fn encode(names: &[(String, Vec<usize>)], state: &AdamState) -> Result<OptimState> {
        if names.len() != state.moments.len() {
            bail!(
                "optimizer state: {} moments for {} parameters",
                state.moments.len(),
                names.len()
            );
        }
        let mut tensors = Vec::new();
        for ((name, shape), (m, v)) in names.iter().zip(&state.moments) {
            for (suffix, values) in [("moment_1", m), ("moment_2", v)] {
                let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
                tensors.push(burn_pack::Tensor::new(
                    format!("{name}.{suffix}"),
                    DType::F32,
                    shape.clone(),
                    None,
                    Bytes::from_bytes_vec(bytes),
                ));
            }
        }
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        let out = burn_pack::Writer::new(tensors)
            .with_metadata(OPTIMIZER_KEY, KIND)
            .with_scalar(STEP, burn_pack::Scalar::UInt(state.step))
            .into_bytes()
            .map_err(|e| anyhow!("saving the optimizer state: {e}"))?;
        Ok(OptimState(out.to_vec()))
    }

    /// The state for parameters of these names and shapes; a state of other parameters (or
    /// another optimizer) is an error.
    pub fn decode(&self, names: &[(String, Vec<usize>)]) -> Result<AdamState> {
        let r = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(self.0.clone()))
            .map_err(|e| anyhow!("not an optimizer state: {e}"))?;
        if r.metadata().get(OPTIMIZER_KEY).map(String::as_str) != Some(KIND) {
            bail!(
                "not the state of this Adam (made by an older mode?); train the initial model again (mode train)"
            );
        }
        let step = match r.scalars().get(STEP) {
            Some(burn_pack::Scalar::UInt(s)) => *s,
            _ => bail!("the optimizer state has no step count"),
        };
        let mut moments = Vec::with_capacity(names.len());
        for (name, shape) in names {
            let n: usize = shape.iter().product();
            let read = |suffix: &str| -> Result<Vec<f32>> {
                let key = format!("{name}.{suffix}");
                let bytes = r
                    .tensor_data(&key)
                    .map_err(|_| anyhow!("the optimizer state has no {key}: it belongs to a model of another architecture"))?;
                if bytes.len() != 4 * n {
                    bail!(
                        "the optimizer state's {key} has {} values, the parameter {n}",
                        bytes.len() / 4
                    );
                }
                Ok(bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect())
            };
            moments.push((read("moment_1")?, read("moment_2")?));
        }
        if r.tensor_names().len() != 2 * names.len() {
            bail!("the optimizer state holds other parameters than the model's");
        }
        Ok(AdamState { step, moments })
    }
}

impl Artifact for OptimState {
    fn write(&self, path: &Path) -> Result<()> {
        write_bytes(path, &self.0)
    }

    fn read(path: &Path) -> Result<OptimState> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot open the optimizer state {}", path.display()))?;
        burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.clone()))
            .map_err(|e| anyhow!("{}: not an optimizer state: {e}", path.display()))?;
        Ok(OptimState(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_is_canonical() {
        let names = vec![
            ("b.weight".to_string(), vec![2, 2]),
            ("a.bias".to_string(), vec![2]),
        ];
        let s = AdamState {
            step: 7,
            moments: vec![
                (vec![1.0, 2.0, 3.0, 4.0], vec![0.1, 0.2, 0.3, 0.4]),
                (vec![-1.0, 0.5], vec![0.0, 1e-9]),
            ],
        };
        let e = OptimState::encode(&names, &s).unwrap();
        assert_eq!(e.decode(&names).unwrap(), s);
        assert_eq!(OptimState::encode(&names, &s).unwrap(), e, "same bytes");
        assert!(e.decode(&names[..1]).is_err(), "other parameters");
        let other = vec![names[0].clone(), ("c.bias".to_string(), vec![2])];
        assert!(
            e.decode(&other)
                .unwrap_err()
                .to_string()
                .contains("c.bias.moment_1")
        );
    }

    #[test]
    fn keras_step_size() {
        // α₁ = lr · √(1 − β₂) / (1 − β₁) = 0.001 · √0.001 / 0.1
        let want = 0.001 * 0.001f32.sqrt() / 0.1;
        assert!((alpha(0.001, 1) - want).abs() < 1e-4 * want);
        assert!((alpha(0.001, 100_000) - 0.001).abs() < 1e-6);
    }
}
