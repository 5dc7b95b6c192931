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

/// One Adam step of the parameters `th` with moments `m`, `v` from the gradient `g` at step
/// size `alpha`, in place, element by element in f32 (the formulas above, in that order).
///
/// A ReLU unit that stops receiving gradient leaves its first moment decaying by β₁ a step
/// into f32's subnormal range, where it can stay for good; every f32 operation on a subnormal
/// takes the processor's slow microcode path (a LeNet-5 step spent 0.5–1 ms there instead of
/// 0.13 ms). So in a block of elements with a tiny first moment, the elements whose moments
/// or gradient are tiny but not zero take an exact path instead: a dead unit's step in
/// integer multiples of 2⁻¹⁴⁹, any other in f64 with each f32 operation rounded to f32 by hand
/// (one operation of `+ − × ÷ √` in a format of 53 bits, then rounded to 24, is the operation
/// rounded to 24 once). Every other element, and every block without a tiny first moment,
/// goes through the vectorised f32 loop. The bits are the plain loop's either way; a test
/// compares them.
///
/// On a processor with AVX2 the same code runs compiled for it (eight floats per division and
/// square root instead of the baseline build's four): `+ − × ÷ √` are each rounded once in
/// either width and nothing is fused, so the bits are the same.
pub fn update(th: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], alpha: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2, checked on the line above.
        return unsafe { update_avx2(th, m, v, g, alpha) };
    }
    update_any(th, m, v, g, alpha)
}

/// [`update_any`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn update_avx2(th: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], alpha: f32) {
    update_any(th, m, v, g, alpha)
}

/// [`update`] for whatever the build targets.
#[inline(always)]
fn update_any(th: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], alpha: f32) {
    const BLOCK: usize = 256;
    let n = th.len();
    assert!(
        m.len() == n && v.len() == n && g.len() == n,
        "one moment each"
    );
    let mut slow_at = [0u32; BLOCK];
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        let (th, m, v, g) = (
            &mut th[start..end],
            &mut m[start..end],
            &mut v[start..end],
            &g[start..end],
        );
        // A tiny first moment is what puts an element on the slow path in practice (tiny
        // second moments and gradients take it too, below, but are not looked for here: in
        // the plain loop they cost time, never bits).
        if m.iter().fold(0, |a, &x| a | tiny_mask(x, TINY)) == 0 {
            // No tiny first moment in the block (the usual case): the plain loop.
            for (((t, m), v), &g) in th.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                (*t, *m, *v) = keras_step(*t, *m, *v, g, alpha);
            }
            continue;
        }
        for ((((t, m), v), &g), at) in th
            .iter_mut()
            .zip(m.iter_mut())
            .zip(v.iter_mut())
            .zip(g)
            .zip(&mut slow_at)
        {
            // A slow element goes through with zeros, which meet no subnormal and leave its
            // parameter as it is, and keeps its moments for the exact pass below. Masks, not
            // branches, and the mask stored rather than reduced, keep the loop vectorised.
            let slow = tiny_mask(*m, TINY) | tiny_mask(*v, TINY) | tiny_mask(g, TINY_GRADIENT);
            *at = slow;
            let keep = !slow;
            let mi = f32::from_bits(m.to_bits() & keep);
            let vi = f32::from_bits(v.to_bits() & keep);
            let gi = f32::from_bits(g.to_bits() & keep);
            let (t1, m1, v1) = keras_step(*t, mi, vi, gi, alpha);
            *t = t1;
            *m = f32::from_bits((m1.to_bits() & keep) | (m.to_bits() & slow));
            *v = f32::from_bits((v1.to_bits() & keep) | (v.to_bits() & slow));
        }
        for i in (0..th.len()).filter(|&i| slow_at[i] != 0) {
            (th[i], m[i], v[i]) = match dead_step(th[i], m[i], v[i], g[i], alpha) {
                Some(r) => r,
                None => exact_step(th[i], m[i], v[i], g[i], alpha),
            };
        }
    }
}

/// Keras' step of one element in f32, the formulas above in their order: (θ, m, v) after it.
#[inline(always)]
fn keras_step(t: f32, m: f32, v: f32, g: f32, alpha: f32) -> (f32, f32, f32) {
    let m1 = m + (g - m) * ONE_MINUS_BETA1;
    let v1 = v + (g * g - v) * ONE_MINUS_BETA2;
    (t - (m1 * alpha) / (v1.sqrt() + EPSILON), m1, v1)
}

/// The common slow element, a unit without gradient (`g` = 0) whose first moment is
/// subnormal (with `v` and `θ` not tiny), in f32's own operations where no subnormal is met
/// and in integer multiples of 2⁻¹⁴⁹ where one is: `m` is `k · 2⁻¹⁴⁹`, `(0 − m)(1 − β₁)`
/// rounds to a multiple of 2⁻¹⁴⁹ and `m` plus it is exact; `m · α` likewise. `None` where
/// another case arises.
fn dead_step(t: f32, m: f32, v: f32, g: f32, alpha: f32) -> Option<(f32, f32, f32)> {
    if g != 0.0 || !m.is_subnormal() || v.abs() < TINY || t.abs() < TINY {
        return None;
    }
    let k = units(m);
    let m1 = from_units(k - nearest(k * ONE_MINUS_BETA1 as f64))?;
    let v1 = v + (g * g - v) * ONE_MINUS_BETA2;
    if t.abs() >= STILL && alpha <= 1.0 {
        // θ does not move: |m1 · α| < 2⁻¹²⁶ and √v1 + ε > 2⁻²⁴, so the step is below
        // 2⁻¹⁰², under a quarter of the last place of a θ of at least 2⁻⁷⁶.
        return Some((t, m1, v1));
    }
    let den = v1.sqrt() + EPSILON;
    let num = nearest(units(m1) * alpha as f64); // m1 · α, exact in f64, rounded to units
    let t1 = if num == 0.0 {
        // m1 · α rounds to a zero of m1's sign; the rest meets no subnormal.
        let zero = if m1.is_sign_negative() { -0.0f32 } else { 0.0 };
        t - zero / den
    } else {
        let num = from_units(num)?;
        let q = narrow(widen(num) / den as f64);
        // |θ| ≥ 2⁻⁹⁶ has a half unit in the last place of at least 2⁻¹²¹: θ − q is θ for a
        // subnormal q.
        if q.is_subnormal() { t } else { t - q }
    };
    Some((t1, m1, v1))
}

/// A subnormal or zero `x` as its signed multiple of 2⁻¹⁴⁹.
fn units(x: f32) -> f64 {
    let u = (x.to_bits() & 0x007f_ffff) as f64;
    if x.is_sign_negative() { -u } else { u }
}

/// The f32 of `u · 2⁻¹⁴⁹` for an integer `u` below 2²³ in magnitude (a subnormal; never
/// zero here), else `None`.
fn from_units(u: f64) -> Option<f32> {
    let a = u.abs();
    if a == 0.0 || a >= 8_388_608.0 {
        return None;
    }
    let sign = if u < 0.0 { 0x8000_0000 } else { 0 };
    Some(f32::from_bits(sign | a as u32))
}

/// `x` to the nearest integer, ties to even, by the f64 addition's own rounding (for
/// `|x|` < 2⁵¹).
fn nearest(x: f64) -> f64 {
    const SHIFT: f64 = 4_503_599_627_370_496.0; // 2⁵²
    if x < 0.0 {
        -((-x + SHIFT) - SHIFT)
    } else {
        (x + SHIFT) - SHIFT
    }
}

/// Moments of at least this magnitude (or zero) meet no subnormal in a step: with `α` ≥ 2⁻²⁰
/// the smallest product, `m · α`, is ≥ 2⁻¹¹⁶ (only speed depends on this bound, never bits).
const TINY: f32 = f32::from_bits((127 - 96) << 23); // 2⁻⁹⁶
/// Parameters of at least this magnitude are not moved by a dead unit's step (see
/// [`dead_step`]).
const STILL: f32 = f32::from_bits((127 - 76) << 23); // 2⁻⁷⁶
/// Gradients of at least this magnitude (or zero) have a normal square (≥ 2⁻¹²⁰).
const TINY_GRADIENT: f32 = f32::from_bits((127 - 60) << 23); // 2⁻⁶⁰

/// All ones when `x` is nonzero, finite and below `bound` in magnitude, else zero.
#[inline(always)]
fn tiny_mask(x: f32, bound: f32) -> u32 {
    let a = (x.to_bits() & 0x7fff_ffff) as i32;
    let yes = (a > 0) & (a < bound.to_bits() as i32);
    (yes as u32).wrapping_neg()
}

/// One element's step with every f32 operation done in f64 and rounded to f32 by hand: the
/// plain f32 loop's bits, without the processor's subnormal path.
fn exact_step(t: f32, m: f32, v: f32, g: f32, alpha: f32) -> (f32, f32, f32) {
    let (w, r) = (widen, narrow);
    let m1 = r(w(m) + w(r(w(r(w(g) - w(m))) * w(ONE_MINUS_BETA1))));
    let gg = r(w(g) * w(g));
    let v1 = r(w(v) + w(r(w(r(w(gg) - w(v))) * w(ONE_MINUS_BETA2))));
    let num = r(w(m1) * w(alpha));
    let den = r(w(r(w(v1).sqrt())) + w(EPSILON));
    let t1 = r(w(t) - w(r(w(num) / w(den))));
    (t1, m1, v1)
}

/// `x` as f64, exactly, a subnormal from its bits (no subnormal operand for the processor).
fn widen(x: f32) -> f64 {
    if x.is_subnormal() {
        units(x) * f64::powi(2.0, -149)
    } else {
        x as f64
    }
}

/// `x` rounded to the nearest f32 (ties to even), a result in f32's subnormal range rounded
/// to its multiple of 2⁻¹⁴⁹ by hand.
fn narrow(x: f64) -> f32 {
    let a = x.abs();
    if a >= f32::MIN_POSITIVE as f64 || a == 0.0 || !a.is_finite() {
        return x as f32;
    }
    // At most 2²³, which is 2⁻¹²⁶'s bits.
    let units = nearest(a * f64::powi(2.0, 149)) as u32;
    let sign = if x.is_sign_negative() { 0x8000_0000 } else { 0 };
    f32::from_bits(sign | units)
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

    /// The plain loop, one element: the bits [`update`] must give.
    fn plain(t: f32, m: f32, v: f32, g: f32, alpha: f32) -> (f32, f32, f32) {
        let m1 = m + (g - m) * ONE_MINUS_BETA1;
        let v1 = v + (g * g - v) * ONE_MINUS_BETA2;
        (t - (m1 * alpha) / (v1.sqrt() + EPSILON), m1, v1)
    }

    #[test]
    fn update_has_the_plain_loops_bits_with_subnormal_moments() {
        use rand::{Rng, SeedableRng};
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // Magnitudes from subnormal through tiny normal to ordinary, zeros, both signs.
        let any = |r: &mut rand_chacha::ChaCha8Rng| -> f32 {
            let x = match r.random_range(0..6) {
                0 => 0.0,
                1 => f32::from_bits(r.random_range(1..0x0080_0000)),
                2 => f32::from_bits(r.random_range(0x0080_0000..0x1800_0000)),
                3 => f32::from_bits(r.random_range(1..64)),
                4 => f32::MIN_POSITIVE * r.random_range(0.5f32..2.0),
                _ => r.random_range(-1.0f32..1.0) * 10f32.powi(r.random_range(-12..1)),
            };
            if r.random_bool(0.5) { -x } else { x }
        };
        let n = 200_000;
        let (mut t, mut m, mut v, mut g) = (vec![], vec![], vec![], vec![]);
        for i in 0..n {
            if i < 2048 {
                // Blocks without a tiny first moment (the plain loop's).
                t.push(any(&mut r));
                m.push(r.random_range(-1.0f32..1.0) * 1e-3);
                v.push(any(&mut r).abs());
                g.push(any(&mut r));
            } else if i % 4 == 0 {
                // A unit without gradient, its first moment decayed into the subnormals; one
                // in four with a parameter below 2⁻⁷⁶, which the step may move.
                t.push(if i % 16 == 0 {
                    let small = f32::from_bits(r.random_range((127 - 96) << 23..(127 - 76) << 23));
                    if r.random_bool(0.5) { -small } else { small }
                } else {
                    r.random_range(-0.5f32..0.5)
                });
                m.push(f32::from_bits(
                    r.random_range(1..0x0080_0000) | (i as u32 / 4 % 2) << 31,
                ));
                v.push(r.random_range(0.0f32..1e-4));
                g.push(0.0);
            } else {
                t.push(any(&mut r));
                m.push(any(&mut r));
                v.push(any(&mut r).abs());
                g.push(any(&mut r));
            }
        }
        for alpha in [1e-3f32, 3.1e-4, 1e-6, 1.5] {
            let (mut t2, mut m2, mut v2) = (t.clone(), m.clone(), v.clone());
            update(&mut t2, &mut m2, &mut v2, &g, alpha);
            // The baseline build's loop gives the same bits as the one `update` dispatched to.
            let (mut t3, mut m3, mut v3) = (t.clone(), m.clone(), v.clone());
            update_any(&mut t3, &mut m3, &mut v3, &g, alpha);
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert!(bits(&t2) == bits(&t3) && bits(&m2) == bits(&m3) && bits(&v2) == bits(&v3));
            let (mut slow, mut dead) = (0, 0);
            for i in 0..n {
                let want = plain(t[i], m[i], v[i], g[i], alpha);
                let got = (t2[i], m2[i], v2[i]);
                assert_eq!(
                    (want.0.to_bits(), want.1.to_bits(), want.2.to_bits()),
                    (got.0.to_bits(), got.1.to_bits(), got.2.to_bits()),
                    "element {i}: t {} m {} v {} g {} alpha {alpha}",
                    t[i],
                    m[i],
                    v[i],
                    g[i]
                );
                slow += usize::from(
                    tiny_mask(m[i], TINY) | tiny_mask(v[i], TINY) | tiny_mask(g[i], TINY_GRADIENT)
                        != 0,
                );
                dead += usize::from(dead_step(t[i], m[i], v[i], g[i], alpha).is_some());
            }
            assert!(slow > n / 2, "the slow pass was taken ({slow} of {n})");
            assert!(
                dead > n / 10,
                "the dead unit's path was taken ({dead} of {n})"
            );
        }
    }

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
