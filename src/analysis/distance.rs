//! The nine selection metrics, with scipy's definitions, and parallel scoring of many rows.
//!
//! Orientation rule (one for all metrics): **rank 1 is the most similar sample**. `dot` is a
//! similarity (larger = more similar); the other eight are distances (smaller = more similar).
//! Scores are stored as the metric's own value, never negated.
//!
//! Degenerate cases, where scipy would return NaN: cosine distance with a zero vector is 1
//! (0 when both are zero); Bray–Curtis with Σ|u+v| = 0 is 0; Canberra skips 0/0 terms as scipy
//! does.

use crate::vocab::Metric;
use ndarray::ArrayView2;
use rayon::prelude::*;

/// Whether larger scores mean more similar.
pub fn higher_is_similar(metric: Metric) -> bool {
    matches!(metric, Metric::Dot)
}

const LANES: usize = 8;

/// Σ f(u_i, v_i) with 8 independent f32 lanes so the compiler vectorises it.
#[inline(always)]
fn lane_sum(u: &[f32], v: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut acc = [0f32; LANES];
    let uc = u.chunks_exact(LANES);
    let vc = v.chunks_exact(LANES);
    let (ur, vr) = (uc.remainder(), vc.remainder());
    for (a, b) in uc.zip(vc) {
        for k in 0..LANES {
            acc[k] += f(a[k], b[k]);
        }
    }
    let mut s: f64 = acc.iter().map(|&x| x as f64).sum();
    for (a, b) in ur.iter().zip(vr) {
        s += f(*a, *b) as f64;
    }
    s
}

#[inline(always)]
fn lane_max(u: &[f32], v: &[f32]) -> f64 {
    let mut acc = [0f32; LANES];
    let uc = u.chunks_exact(LANES);
    let vc = v.chunks_exact(LANES);
    let (ur, vr) = (uc.remainder(), vc.remainder());
    for (a, b) in uc.zip(vc) {
        for k in 0..LANES {
            acc[k] = acc[k].max((a[k] - b[k]).abs());
        }
    }
    let mut m = acc.iter().copied().fold(0f32, f32::max);
    for (a, b) in ur.iter().zip(vr) {
        m = m.max((a - b).abs());
    }
    m as f64
}

/// Precomputed facts about the reference vector (the heat map).
#[derive(Debug, Clone)]
pub struct Reference {
    pub values: Vec<f32>,
    norm: f64,
    sorted: Vec<f32>,
}

impl Reference {
    pub fn new(values: &[f32]) -> Self {
        let norm = values
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt();
        let mut sorted = values.to_vec();
        sorted.sort_by(f32::total_cmp);
        Self {
            values: values.to_vec(),
            norm,
            sorted,
        }
    }
}

/// The metric between `u` (a sample) and the reference `r`.
pub fn score(u: &[f32], r: &Reference, metric: Metric, p: f64) -> f64 {
    let v = &r.values[..];
    debug_assert_eq!(u.len(), v.len());
    match metric {
        Metric::Dot => lane_sum(u, v, |a, b| a * b),
        Metric::Cosine => {
            let dot = lane_sum(u, v, |a, b| a * b);
            let nu = lane_sum(u, u, |a, b| a * b).sqrt();
            match (nu == 0.0, r.norm == 0.0) {
                (true, true) => 0.0,
                (true, false) | (false, true) => 1.0,
                _ => 1.0 - dot / (nu * r.norm),
            }
        }
        Metric::Manhattan => lane_sum(u, v, |a, b| (a - b).abs()),
        Metric::Euclidean => lane_sum(u, v, |a, b| (a - b) * (a - b)).sqrt(),
        Metric::Minkowski => {
            // Integer p (the default 3) with repeated multiplication: vectorises, unlike powf.
            let s = if p.fract() == 0.0 && (1.0..=16.0).contains(&p) {
                let k = p as i32;
                lane_sum(u, v, |a, b| (a - b).abs().powi(k))
            } else {
                let pf = p as f32;
                lane_sum(u, v, |a, b| (a - b).abs().powf(pf))
            };
            s.powf(1.0 / p)
        }
        Metric::Chebyshev => lane_max(u, v),
        Metric::Wasserstein => {
            // scipy.stats.wasserstein_distance(u, v): the 1-D earth mover's distance between
            // the two empirical distributions of values; for equal sizes, mean |sort(u) − sort(v)|.
            let mut su = u.to_vec();
            su.sort_unstable_by(f32::total_cmp);
            wasserstein_sorted(&su, &r.sorted)
        }
        Metric::Canberra => lane_sum(u, v, |a, b| {
            let d = a.abs() + b.abs();
            if d == 0.0 { 0.0 } else { (a - b).abs() / d }
        }),
        Metric::Braycurtis => {
            let num = lane_sum(u, v, |a, b| (a - b).abs());
            let den = lane_sum(u, v, |a, b| (a + b).abs());
            if den == 0.0 { 0.0 } else { num / den }
        }
    }
}

/// ∫ |F_u − F_v| for two sorted samples of any sizes (scipy's `_cdf_distance` with p = 1).
pub fn wasserstein_sorted(u: &[f32], v: &[f32]) -> f64 {
    if u.is_empty() || v.is_empty() {
        return 0.0;
    }
    if u.len() == v.len() {
        return u
            .iter()
            .zip(v)
            .map(|(a, b)| (a - b).abs() as f64)
            .sum::<f64>()
            / u.len() as f64;
    }
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut prev = u[0].min(v[0]) as f64;
    let mut total = 0.0;
    while i < u.len() || j < v.len() {
        let next = match (u.get(i), v.get(j)) {
            (Some(&a), Some(&b)) => a.min(b) as f64,
            (Some(&a), None) => a as f64,
            (None, Some(&b)) => b as f64,
            (None, None) => unreachable!(),
        };
        total += (i as f64 / nu - j as f64 / nv).abs() * (next - prev);
        prev = next;
        while i < u.len() && u[i] as f64 == next {
            i += 1;
        }
        while j < v.len() && v[j] as f64 == next {
            j += 1;
        }
    }
    total
}

/// Score every row of `rows` against `reference`, in parallel.
pub fn score_rows(rows: ArrayView2<f32>, reference: &[f32], metric: Metric, p: f64) -> Vec<f64> {
    assert_eq!(
        rows.ncols(),
        reference.len(),
        "rows and reference differ in width"
    );
    let r = Reference::new(reference);
    let mut out = vec![0.0; rows.nrows()];
    if let Some(slice) = rows.as_slice() {
        let w = rows.ncols().max(1);
        out.par_chunks_mut(1024).enumerate().for_each(|(c, dst)| {
            for (k, o) in dst.iter_mut().enumerate() {
                let i = c * 1024 + k;
                *o = score(&slice[i * w..(i + 1) * w], &r, metric, p);
            }
        });
    } else {
        out.par_iter_mut().enumerate().for_each(|(i, o)| {
            let row = rows.row(i).to_vec();
            *o = score(&row, &r, metric, p);
        });
    }
    out
}

/// Order of indices from most to least similar (ties broken by position, so stable).
pub fn rank_order(scores: &[f64], metric: Metric) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    if higher_is_similar(metric) {
        idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    } else {
        idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values computed with scipy 1.17.1 (scipy.spatial.distance / scipy.stats):
    //   u = [0.1, 0.0, 0.5, 0.9, 0.3, 0.0, 0.7, 0.2, 0.4, 1.0, 0.0]
    //   v = [0.2, 0.3, 0.0, 0.8, 0.3, 0.1, 0.0, 0.6, 0.5, 0.9, 0.0]
    const U: [f32; 11] = [0.1, 0.0, 0.5, 0.9, 0.3, 0.0, 0.7, 0.2, 0.4, 1.0, 0.0];
    const V: [f32; 11] = [0.2, 0.3, 0.0, 0.8, 0.3, 0.1, 0.0, 0.6, 0.5, 0.9, 0.0];

    fn s(m: Metric) -> f64 {
        score(&U, &Reference::new(&V), m, 3.0)
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }

    #[test]
    fn matches_scipy() {
        close(s(Metric::Dot), 2.05); // numpy.dot(u, v)
        close(s(Metric::Cosine), 0.19755792941709172); // distance.cosine
        close(s(Metric::Manhattan), 2.4); // distance.cityblock
        close(s(Metric::Euclidean), 1.0198039027185568); // distance.euclidean
        close(s(Metric::Minkowski), 0.8262149225665351); // distance.minkowski(u, v, 3)
        close(s(Metric::Chebyshev), 0.7); // distance.chebyshev
        close(s(Metric::Wasserstein), 0.03636363636363636); // stats.wasserstein_distance
        close(s(Metric::Canberra), 5.055899552803577); // distance.canberra
        close(s(Metric::Braycurtis), 0.3076923076923077); // distance.braycurtis
    }

    #[test]
    fn minkowski_fractional_p() {
        // distance.minkowski(u, v, 2.5) and (u, v, 1)
        close(
            score(&U, &Reference::new(&V), Metric::Minkowski, 2.5),
            0.8927442930451953,
        );
        close(score(&U, &Reference::new(&V), Metric::Minkowski, 1.0), 2.4);
    }

    #[test]
    fn wasserstein_unequal_sizes() {
        // stats.wasserstein_distance([0, 1, 3], [5, 6, 8, 9]) == 5.666666666666666
        close(
            wasserstein_sorted(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0, 9.0]),
            5.666666666666666,
        );
        // stats.wasserstein_distance([0, 1], [0, 0, 1]) == 1/6
        close(wasserstein_sorted(&[0.0, 1.0], &[0.0, 0.0, 1.0]), 1.0 / 6.0);
    }

    #[test]
    fn degenerate_cases_are_finite() {
        let z = [0.0f32; 4];
        let o = [1.0f32, 0.0, 0.0, 0.0];
        for &m in Metric::ALL {
            assert!(score(&z, &Reference::new(&z), m, 3.0).is_finite(), "{m:?}");
            assert!(score(&z, &Reference::new(&o), m, 3.0).is_finite(), "{m:?}");
        }
        assert_eq!(score(&z, &Reference::new(&o), Metric::Cosine, 3.0), 1.0);
    }

    #[test]
    fn ranking_orientation() {
        let rows = ndarray::arr2(&[[1.0f32, 0.0], [0.0, 1.0], [0.9, 0.1]]);
        let r = [1.0f32, 0.0];
        for &m in Metric::ALL {
            let sc = score_rows(rows.view(), &r, m, 3.0);
            let order = rank_order(&sc, m);
            assert_eq!(order[0], 0, "{m:?}: the identical row is the most similar");
            if m != Metric::Wasserstein {
                assert_eq!(
                    order[2], 1,
                    "{m:?}: the orthogonal row is the least similar"
                );
            }
        }
    }

    #[test]
    fn parallel_matches_serial() {
        let rows = ndarray::Array2::from_shape_fn((3000, 13), |(i, j)| {
            ((i * 7 + j * 3) % 11) as f32 / 10.0
        });
        let r: Vec<f32> = (0..13).map(|j| j as f32 / 13.0).collect();
        let par = score_rows(rows.view(), &r, Metric::Euclidean, 3.0);
        let reference = Reference::new(&r);
        for i in [0, 1023, 1024, 2999] {
            close(
                par[i],
                score(
                    rows.row(i).as_slice().unwrap(),
                    &reference,
                    Metric::Euclidean,
                    3.0,
                ),
            );
        }
    }
}
