//! Active-learning selection strategies, as pure functions over ndarray: uncertainty scores
//! (DeepGini, margin, entropy, least confidence) that rank a pool, and the diversity
//! strategies core-set (k-center greedy) and BADGE (k-means++ on gradient embeddings) that
//! pick a set. Every function returns pool row indices, best first; ties go to the lower index.

use ndarray::{ArrayView1, ArrayView2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// An uncertainty score of a probability row: larger = more uncertain = picked first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncertainty {
    /// DeepGini impurity 1 − Σp².
    Gini,
    /// Negative margin: −(top-1 − top-2) (the smallest margin first).
    Margin,
    /// Entropy −Σ p ln p.
    Entropy,
    /// Least confidence 1 − max p.
    LeastConfidence,
}

impl Uncertainty {
    /// The name recorded in `scores.parquet` (`metric` column).
    pub fn name(self) -> &'static str {
        match self {
            Uncertainty::Gini => "gini",
            Uncertainty::Margin => "margin",
            Uncertainty::Entropy => "entropy",
            Uncertainty::LeastConfidence => "least-confidence",
        }
    }

    /// The score of one row, larger = more uncertain. For `Margin` this is the margin itself
    /// (top-1 − top-2, smaller = more uncertain); [`rank_uncertain`] orders accordingly.
    pub fn score(self, p: ArrayView1<f32>) -> f64 {
        match self {
            Uncertainty::Gini => 1.0 - p.iter().map(|&v| (v as f64).powi(2)).sum::<f64>(),
            Uncertainty::Entropy => -p
                .iter()
                .filter(|&&v| v > 0.0)
                .map(|&v| v as f64 * (v as f64).ln())
                .sum::<f64>(),
            Uncertainty::LeastConfidence => {
                1.0 - p.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64
            }
            Uncertainty::Margin => {
                let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
                for &v in p {
                    if v > a {
                        b = a;
                        a = v;
                    } else if v > b {
                        b = v;
                    }
                }
                if b == f32::NEG_INFINITY {
                    b = 0.0;
                }
                (a - b) as f64
            }
        }
    }

    /// Whether a smaller score is more uncertain (only the margin).
    pub fn smaller_first(self) -> bool {
        self == Uncertainty::Margin
    }
}

/// Scores of every row and the rows ranked most uncertain first.
pub fn rank_uncertain(probs: ArrayView2<f32>, u: Uncertainty) -> (Vec<f64>, Vec<usize>) {
    let scores: Vec<f64> = probs.rows().into_iter().map(|r| u.score(r)).collect();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    if u.smaller_first() {
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
    } else {
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    }
    (scores, order)
}

/// Squared Euclidean distance from every row of `x` to its nearest row of `centres`, by blocks
/// of a matrix product (‖x‖² + ‖c‖² − 2 x·c), rows of `x` in parallel.
pub fn nearest_sq_dist(x: ArrayView2<f32>, centres: ArrayView2<f32>) -> Vec<f32> {
    let n = x.nrows();
    if centres.nrows() == 0 {
        return vec![f32::INFINITY; n];
    }
    let cn: Vec<f32> = centres.rows().into_iter().map(|r| r.dot(&r)).collect();
    // Blocks of 512 rows × 4 096 centres (other shapes timed the same: sgemm-bound).
    let rows_per = 512;
    let centres_per = centres.nrows().min(4096);
    let mut out = vec![f32::INFINITY; n];
    out.par_chunks_mut(rows_per)
        .enumerate()
        .for_each(|(b, dst)| {
            let rows = x.slice(ndarray::s![b * rows_per..b * rows_per + dst.len(), ..]);
            let xn: Vec<f32> = rows.rows().into_iter().map(|r| r.dot(&r)).collect();
            // One block of products, reused: a product with β = 0 does not read it (each element
            // is the same k-term sum as in a block of its own; a test compares bit for bit).
            let mut prod = ndarray::Array2::<f32>::zeros((rows.nrows(), centres_per));
            for c0 in (0..centres.nrows()).step_by(centres_per) {
                let c = centres.slice(ndarray::s![c0..(c0 + centres_per).min(centres.nrows()), ..]);
                let mut p = prod.slice_mut(ndarray::s![.., ..c.nrows()]);
                crate::linalg::mat_mul(1.0, &rows, &c.t(), 0.0, &mut p);
                let cn = &cn[c0..c0 + c.nrows()];
                for (i, row) in p.axis_iter(Axis(0)).enumerate() {
                    let row = row.to_slice().expect("a row of the block is contiguous");
                    dst[i] = nearest_in_row(xn[i], row, cn, dst[i]);
                }
            }
        });
    out
}

/// min(`init`, minⱼ max(0, xn + cnⱼ − 2 prodⱼ)): the squared distances of one row to a block
/// of centres, from its products with them. Eight independent running minima so the loop runs
/// in SIMD lanes; a minimum is exact whatever the order, so the result equals the plain loop.
fn nearest_in_row(xn: f32, prod: &[f32], cn: &[f32], init: f32) -> f32 {
    const LANES: usize = 8;
    let dist = |p: f32, c: f32| (xn + c - 2.0 * p).max(0.0);
    let keep_min = |m: &mut f32, v: f32| {
        if v < *m {
            *m = v;
        }
    };
    let whole = prod.len() / LANES * LANES;
    let mut lanes = [init; LANES];
    for (p, c) in prod[..whole]
        .chunks_exact(LANES)
        .zip(cn[..whole].chunks_exact(LANES))
    {
        for l in 0..LANES {
            keep_min(&mut lanes[l], dist(p[l], c[l]));
        }
    }
    let mut best = init;
    for v in lanes {
        keep_min(&mut best, v);
    }
    for (&p, &c) in prod[whole..].iter().zip(&cn[whole..]) {
        keep_min(&mut best, dist(p, c));
    }
    best
}

/// k-center greedy (the core-set baseline): repeatedly take the candidate farthest from every
/// centre so far. `centres` are the already-trained-on points; with none, the first pick is a
/// seeded random candidate. Returns `k` picks in order: (candidate row, its squared distance to
/// the nearest centre when picked; infinite for a seeded first pick).
pub fn k_center_greedy(
    candidates: ArrayView2<f32>,
    centres: ArrayView2<f32>,
    k: usize,
    seed: u64,
) -> Vec<(usize, f32)> {
    let n = candidates.nrows();
    let k = k.min(n);
    let mut picked = Vec::with_capacity(k);
    if k == 0 {
        return picked;
    }
    let mut dist = nearest_sq_dist(candidates, centres);
    // The candidates feature by feature (`d × n`): the update takes eight rows at a time.
    let xt = candidates.t().as_standard_layout().into_owned();
    let xt = xt.as_slice().expect("a standard layout");
    let centre = |c: usize| candidates.row(c).to_vec();
    if centres.nrows() == 0 {
        let first = ChaCha8Rng::seed_from_u64(seed).random_range(0..n);
        picked.push((first, f32::INFINITY));
        update_min(&mut dist, xt, &centre(first));
    }
    while picked.len() < k {
        let best = crate::numeric::argmax(dist.iter().copied());
        picked.push((best, dist[best]));
        update_min(&mut dist, xt, &centre(best));
    }
    picked
}

/// Lower every row's distance to the new centre `c` (`d` values), the rows given feature by
/// feature in `xt` (`d × n`), by chunks of rows in parallel. Each row's squared distance is
/// Σⱼ (xⱼ − cⱼ)², summed over j in order as a plain loop over the row would: eight rows side by
/// side (SIMD lanes), each its own sum, the same bits whatever the chunks.
fn update_min(dist: &mut [f32], xt: &[f32], c: &[f32]) {
    const ROWS: usize = 2048;
    const LANES: usize = 8;
    let n = dist.len();
    debug_assert_eq!(xt.len(), c.len() * n, "xt holds d × n values");
    dist.par_chunks_mut(ROWS)
        .enumerate()
        .for_each(|(b, chunk)| {
            for (g, dv) in chunk.chunks_mut(LANES).enumerate() {
                let r = b * ROWS + g * LANES;
                let mut acc = [0f32; LANES];
                if dv.len() == LANES {
                    for (j, &cj) in c.iter().enumerate() {
                        let col = &xt[j * n + r..j * n + r + LANES];
                        for l in 0..LANES {
                            let t = col[l] - cj;
                            acc[l] += t * t;
                        }
                    }
                } else {
                    for (j, &cj) in c.iter().enumerate() {
                        for (l, a) in acc.iter_mut().take(dv.len()).enumerate() {
                            let t = xt[j * n + r + l] - cj;
                            *a += t * t;
                        }
                    }
                }
                for (v, &a) in dv.iter_mut().zip(&acc) {
                    if a < *v {
                        *v = a;
                    }
                }
            }
        });
}

/// The residual u = p − onehot(ŷ) of one sample's probabilities at its predicted label ŷ.
/// BADGE's gradient embedding is u ⊗ h (the gradient of the cross-entropy at ŷ with respect to
/// the last layer's weights, `classes × width` values), never formed: see [`badge`].
fn residual(p: ArrayView1<f32>) -> Vec<f32> {
    let yhat = crate::numeric::argmax(p.iter().copied());
    p.iter()
        .enumerate()
        .map(|(c, &v)| v - if c == yhat { 1.0 } else { 0.0 })
        .collect()
}

/// BADGE: k-means++ seeding over the gradient embeddings of the candidates (probabilities `p`,
/// last hidden layer `h`). The first pick is the largest embedding; each next one is drawn
/// with probability ∝ its squared distance to the nearest pick (seeded). The embeddings are
/// rank one, so a distance costs classes + width products instead of classes × width.
/// Returns `k` picks in order: (candidate row, its squared distance to the nearest earlier pick;
/// the first: its squared norm).
pub fn badge(p: ArrayView2<f32>, h: ArrayView2<f32>, k: usize, seed: u64) -> Vec<(usize, f32)> {
    let mut scores = Vec::new();
    let picks = badge_rows(p, h, k, seed, &mut scores);
    picks.into_iter().zip(scores).collect()
}

fn badge_rows(
    p: ArrayView2<f32>,
    h: ArrayView2<f32>,
    k: usize,
    seed: u64,
    scores: &mut Vec<f32>,
) -> Vec<usize> {
    let n = p.nrows();
    let k = k.min(n);
    let mut picked = Vec::with_capacity(k);
    if k == 0 {
        return picked;
    }
    // u_i = p_i − onehot(ŷ_i); ‖g_i‖² = ‖u_i‖²‖h_i‖²; g_i·g_j = (u_i·u_j)(h_i·h_j).
    let u: Vec<Vec<f32>> = p.rows().into_iter().map(residual).collect();
    let uu: Vec<f32> = u.iter().map(|v| v.iter().map(|x| x * x).sum()).collect();
    let hh: Vec<f32> = h.rows().into_iter().map(|r| r.dot(&r)).collect();
    let norms: Vec<f32> = (0..n).map(|i| uu[i] * hh[i]).collect();
    let first = crate::numeric::argmax(norms.iter().copied());
    picked.push(first);
    scores.push(norms[first]);
    let mut dist = vec![f32::INFINITY; n];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut last = first;
    while picked.len() < k {
        let (uc, hc) = (&u[last], h.row(last));
        dist.par_iter_mut().enumerate().for_each(|(i, d)| {
            let cross = u[i].iter().zip(uc).map(|(a, b)| a * b).sum::<f32>() * h.row(i).dot(&hc);
            let v = (norms[i] + norms[last] - 2.0 * cross).max(0.0);
            if v < *d {
                *d = v;
            }
        });
        for &j in &picked {
            dist[j] = 0.0;
        }
        let total: f64 = dist.iter().map(|&d| d as f64).sum();
        let next = if total <= 0.0 {
            // Every remaining embedding coincides with a pick: take the first free row.
            (0..n).find(|i| !picked.contains(i)).expect("k ≤ n")
        } else {
            let mut t = rng.random::<f64>() * total;
            let mut chosen = n - 1;
            for (i, &d) in dist.iter().enumerate() {
                t -= d as f64;
                if t < 0.0 && d > 0.0 {
                    chosen = i;
                    break;
                }
            }
            if dist[chosen] <= 0.0 {
                chosen = crate::numeric::argmax(dist.iter().copied());
            }
            chosen
        };
        scores.push(dist[next]);
        picked.push(next);
        last = next;
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    /// BADGE's gradient embedding of one sample written out: u ⊗ h.
    fn badge_embedding(p: ArrayView1<f32>, h: ArrayView1<f32>) -> Vec<f32> {
        residual(p)
            .into_iter()
            .flat_map(|u| h.iter().map(move |&v| u * v))
            .collect()
    }

    #[test]
    fn margin_ranks_an_even_split_first() {
        let p = arr2(&[[0.9f32, 0.1], [0.5, 0.5], [0.7, 0.3]]);
        let (s, order) = rank_uncertain(p.view(), Uncertainty::Margin);
        assert!((s[1] - 0.0).abs() < 1e-9 && (s[0] - 0.8).abs() < 1e-6);
        assert_eq!(order, [1, 2, 0]);
        for u in [
            Uncertainty::Entropy,
            Uncertainty::LeastConfidence,
            Uncertainty::Gini,
        ] {
            assert_eq!(rank_uncertain(p.view(), u).1, [1, 2, 0], "{u:?}");
        }
        let (s, _) = rank_uncertain(p.view(), Uncertainty::Entropy);
        assert!((s[1] - std::f64::consts::LN_2).abs() < 1e-6);
        assert!((Uncertainty::LeastConfidence.score(p.row(0)) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn the_four_uncertainty_scores_pick_different_samples() {
        // Row 0: an even split of two classes (no margin); row 1: the lowest top
        // probability; row 2: three classes near-even (the most impurity); row 3: one likely
        // class and a long tail of small ones (the most entropy).
        let p = arr2(&[
            [0.5f32, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.36, 0.32, 0.32, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.41, 0.2, 0.2, 0.19, 0.0, 0.0, 0.0, 0.0],
            [0.55, 0.07, 0.07, 0.07, 0.06, 0.06, 0.06, 0.06],
        ]);
        let order = |u| rank_uncertain(p.view(), u).1;
        assert_eq!(order(Uncertainty::Margin), [0, 1, 2, 3]);
        assert_eq!(order(Uncertainty::LeastConfidence), [1, 2, 0, 3]);
        assert_eq!(order(Uncertainty::Gini), [2, 3, 1, 0]);
        assert_eq!(order(Uncertainty::Entropy), [3, 2, 1, 0]);
        let (gini, _) = rank_uncertain(p.view(), Uncertainty::Gini);
        assert!((gini[2] - 0.7158).abs() < 1e-6, "1 − Σp² = {}", gini[2]);
        let (entropy, _) = rank_uncertain(p.view(), Uncertainty::Entropy);
        assert!((entropy[0] - std::f64::consts::LN_2).abs() < 1e-6);
    }

    #[test]
    fn k_center_picks_the_farthest_point_first() {
        let x = arr2(&[[0.0f32, 0.0], [1.0, 0.0], [10.0, 0.0], [5.0, 5.0]]);
        let centres = arr2(&[[0.0f32, 0.0]]);
        let picks = k_center_greedy(x.view(), centres.view(), 3, 1);
        assert_eq!(picks[0], (2, 100.0), "10 away from the centre");
        assert_eq!(
            picks[1],
            (3, 50.0),
            "then the farthest from {{(0,0), (10,0)}}"
        );
        assert_eq!(picks[2].0, 1);
        let d = nearest_sq_dist(x.view(), arr2(&[[0.0f32, 0.0], [10.0, 0.0]]).view());
        assert_eq!(d, vec![0.0, 1.0, 0.0, 50.0]);
        // No centres: the first pick is seeded.
        let none = ndarray::Array2::<f32>::zeros((0, 2));
        let a = k_center_greedy(x.view(), none.view(), 2, 9);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].1, f32::INFINITY);
    }

    #[test]
    fn k_center_picks_the_same_on_one_thread_and_on_three() {
        // 9 000 rows: several chunks of the parallel update, run by different threads.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let x = ndarray::Array2::from_shape_simple_fn((9_000, 5), || rng.random::<f32>());
        let none = ndarray::Array2::<f32>::zeros((0, 5));
        let on = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    (
                        k_center_greedy(x.view(), none.view(), 12, 9),
                        k_center_greedy(x.view(), x.slice(ndarray::s![..3, ..]), 12, 9),
                    )
                })
        };
        let one = on(1);
        assert_eq!(one, on(3));
        assert_eq!(one.0.len(), 12);
    }

    #[test]
    fn update_min_equals_the_plain_row_sum_bit_for_bit() {
        // 4 101 rows: two parallel chunks and a tail of 5 (not a lane multiple); 13 features.
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let x = ndarray::Array2::from_shape_simple_fn((4_101, 13), || rng.random::<f32>() - 0.5);
        let xt = x.t().as_standard_layout().into_owned();
        let mut dist: Vec<f32> = (0..x.nrows()).map(|i| (i % 7) as f32 * 0.4).collect();
        let mut want = dist.clone();
        let c = x.row(17).to_vec();
        update_min(&mut dist, xt.as_slice().unwrap(), &c);
        for (w, row) in want.iter_mut().zip(x.rows()) {
            let v: f32 = row.iter().zip(&c).map(|(a, b)| (a - b) * (a - b)).sum();
            if v < *w {
                *w = v;
            }
        }
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&dist), bits(&want));
        assert_eq!(dist[17], 0.0);
    }

    #[test]
    fn nearest_distances_equal_a_fresh_block_per_centre_block_bit_for_bit() {
        // The distances as they were computed before the product block was reused: a fresh
        // block of each centre block's own width. 4 097 centres leave a last block of one
        // (sgemm's other path: the output's row stride is now 4 096, not 1), 4 500 of 404.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x = ndarray::Array2::from_shape_simple_fn((600, 28), || rng.random::<f32>());
        for nc in [4_097, 4_500] {
            let c = ndarray::Array2::from_shape_simple_fn((nc, 28), || rng.random::<f32>());
            let cn: Vec<f32> = c.rows().into_iter().map(|r| r.dot(&r)).collect();
            let xn: Vec<f32> = x.rows().into_iter().map(|r| r.dot(&r)).collect();
            let mut want = vec![f32::INFINITY; x.nrows()];
            for r0 in (0..x.nrows()).step_by(512) {
                let rows = x.slice(ndarray::s![r0..(r0 + 512).min(x.nrows()), ..]);
                for c0 in (0..nc).step_by(4096) {
                    let cb = c.slice(ndarray::s![c0..(c0 + 4096).min(nc), ..]);
                    let mut prod = ndarray::Array2::<f32>::zeros((rows.nrows(), cb.nrows()));
                    crate::linalg::mat_mul(1.0, &rows, &cb.t(), 0.0, &mut prod.view_mut());
                    for (i, row) in prod.rows().into_iter().enumerate() {
                        let w = &mut want[r0 + i];
                        let row = row.as_slice().unwrap();
                        *w = nearest_in_row(xn[r0 + i], row, &cn[c0..c0 + cb.nrows()], *w);
                    }
                }
            }
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&nearest_sq_dist(x.view(), c.view())),
                bits(&want),
                "{nc} centres"
            );
        }
    }

    #[test]
    fn nearest_distances_equal_the_plain_loop_bit_for_bit() {
        // Random rows and centres; 4 500 centres span two blocks of 4 096 and a tail that is
        // not a multiple of the lane count.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x = ndarray::Array2::from_shape_simple_fn((700, 13), || rng.random::<f32>());
        let c = ndarray::Array2::from_shape_simple_fn((4_500, 13), || rng.random::<f32>());
        let fast = nearest_sq_dist(x.view(), c.view());
        for (i, row) in x.rows().into_iter().enumerate() {
            let xn = row.dot(&row);
            let mut best = f32::INFINITY;
            for cr in c.rows() {
                let v = (xn + cr.dot(&cr) - 2.0 * row.dot(&cr)).max(0.0);
                if v < best {
                    best = v;
                }
            }
            // The products come from a matrix product (blocked sums), the reference from dot:
            // equal up to rounding; the lane minimum itself is exact.
            assert!((fast[i] - best).abs() <= 1e-4 * best.max(1.0), "row {i}");
        }
        let prod: Vec<f32> = (0..21).map(|j| (j as f32 * 0.37).sin()).collect();
        let cn: Vec<f32> = (0..21).map(|j| (j as f32 * 0.11).cos() + 1.0).collect();
        let mut plain = 5.0f32;
        for (p, c) in prod.iter().zip(&cn) {
            let v = (0.5 + c - 2.0 * p).max(0.0);
            if v < plain {
                plain = v;
            }
        }
        assert_eq!(
            nearest_in_row(0.5, &prod, &cn, 5.0).to_bits(),
            plain.to_bits()
        );
    }

    #[test]
    fn badge_embedding_has_classes_times_width_values() {
        let p = arr2(&[[0.7f32, 0.2, 0.1]]);
        let h = arr2(&[[1.0f32, 2.0]]);
        let g = badge_embedding(p.row(0), h.row(0));
        assert_eq!(g.len(), 3 * 2);
        // ŷ = 0: u = (−0.3, 0.2, 0.1)
        let want = [-0.3f32, -0.6, 0.2, 0.4, 0.1, 0.2];
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn badge_starts_with_the_largest_gradient_and_spreads_out() {
        // Rows 0 and 1 identical and confident; row 2 uncertain with a large h; row 3 mid.
        let p = arr2(&[[0.99f32, 0.01], [0.99, 0.01], [0.5, 0.5], [0.6, 0.4]]);
        let h = arr2(&[[1.0f32, 1.0], [1.0, 1.0], [5.0, 5.0], [1.0, -1.0]]);
        let picks = badge(p.view(), h.view(), 3, 3);
        assert_eq!(picks[0].0, 2);
        let mut sorted: Vec<usize> = picks.iter().map(|p| p.0).collect();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3, "distinct picks");
        // The rank-one distance equals the explicit one.
        let g: Vec<Vec<f32>> = (0..4)
            .map(|i| badge_embedding(p.row(i), h.row(i)))
            .collect();
        let explicit: f32 = g[2].iter().zip(&g[3]).map(|(a, b)| (a - b) * (a - b)).sum();
        let n = |i: usize| g[i].iter().map(|x| x * x).sum::<f32>();
        let cross: f32 = g[2].iter().zip(&g[3]).map(|(a, b)| a * b).sum();
        assert!((explicit - (n(2) + n(3) - 2.0 * cross)).abs() < 1e-4);
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| badge(p.view(), h.view(), 3, 3));
        assert_eq!(three, picks, "seeded, on any number of threads");
    }
}
