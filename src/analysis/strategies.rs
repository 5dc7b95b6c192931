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

/// Rows of `x` per block of products in [`nearest_sq_dist`] (and candidates resolved at a time
/// by the lazy core-set greedy: the same block shape, so the same bits).
const ROWS_PER: usize = 512;
/// Centres per block of products (other shapes timed the same: sgemm-bound).
const CENTRES_PER: usize = 4096;

/// Squared Euclidean distance from every row of `x` to its nearest row of `centres`, by blocks
/// of a matrix product (‖x‖² + ‖c‖² − 2 x·c), rows of `x` in parallel.
pub fn nearest_sq_dist(x: ArrayView2<f32>, centres: ArrayView2<f32>) -> Vec<f32> {
    let n = x.nrows();
    if centres.nrows() == 0 {
        return vec![f32::INFINITY; n];
    }
    let cn = sq_norms(centres);
    let blocks = centres.nrows().div_ceil(centres.nrows().min(CENTRES_PER));
    let mut out = vec![f32::INFINITY; n];
    out.par_chunks_mut(ROWS_PER)
        .enumerate()
        .for_each(|(b, dst)| {
            let rows = x.slice(ndarray::s![b * ROWS_PER..b * ROWS_PER + dst.len(), ..]);
            nearest_in_blocks(rows, centres, &cn, 0..blocks, dst);
        });
    out
}

/// Every row's ‖r‖².
fn sq_norms(x: ArrayView2<f32>) -> Vec<f32> {
    x.rows().into_iter().map(|r| r.dot(&r)).collect()
}

/// Lower `dst[i]` to row i's squared distance to its nearest centre in the centre blocks
/// `blocks` (blocks of [`CENTRES_PER`] centres, or all of them when there are fewer).
fn nearest_in_blocks(
    rows: ArrayView2<f32>,
    centres: ArrayView2<f32>,
    cn: &[f32],
    blocks: std::ops::Range<usize>,
    dst: &mut [f32],
) {
    let xn = sq_norms(rows);
    let centres_per = centres.nrows().min(CENTRES_PER);
    // One block of products, reused: a product with β = 0 does not read it (each element is
    // the same k-term sum as in a block of its own; a test compares bit for bit).
    let mut prod = ndarray::Array2::<f32>::zeros((rows.nrows(), centres_per));
    for b in blocks {
        let c0 = b * centres_per;
        let c = centres.slice(ndarray::s![c0..(c0 + centres_per).min(centres.nrows()), ..]);
        let mut p = prod.slice_mut(ndarray::s![.., ..c.nrows()]);
        crate::linalg::mat_mul(1.0, &rows, &c.t(), 0.0, &mut p);
        let cn = &cn[c0..c0 + c.nrows()];
        for (i, row) in p.axis_iter(Axis(0)).enumerate() {
            let row = row.to_slice().expect("a row of the block is contiguous");
            dst[i] = nearest_in_row(xn[i], row, cn, dst[i]);
        }
    }
}

/// min(`init`, minⱼ max(0, xn + cnⱼ − 2 prodⱼ)): the squared distances of one row to a block
/// of centres, from its products with them. Eight independent running minima so the loop runs
/// in SIMD lanes; a minimum is exact whatever the order, so the result equals the plain loop.
fn nearest_in_row(xn: f32, prod: &[f32], cn: &[f32], init: f32) -> f32 {
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
///
/// A candidate's distance is min(its nearest centre's, its nearest pick's). With many centres
/// the first term is computed lazily ([`NearestCentre`]): an upper bound for every candidate,
/// the exact value only for those that could be the farthest. The picks and their distances
/// are those of computing every candidate's exact value first (a test compares): an exact
/// value is computed in a block of [`ROWS_PER`] rows, as [`nearest_sq_dist`] computes all but
/// its last block, and sgemm's sum for one element does not depend on the block's other rows
/// (the test's last blocks of 40 and 464 rows; a last block of a single row would take
/// sgemm's vector path instead).
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
    let mut near = NearestCentre::new(candidates, centres);
    // Each candidate's squared distance to its nearest pick so far.
    let mut to_picks = vec![f32::INFINITY; n];
    // The candidates feature by feature (`d × n`): the update takes eight rows at a time.
    let xt = candidates.t().as_standard_layout().into_owned();
    let xt = xt.as_slice().expect("a standard layout");
    let centre = |c: usize| candidates.row(c).to_vec();
    if centres.nrows() == 0 {
        let first = ChaCha8Rng::seed_from_u64(seed).random_range(0..n);
        picked.push((first, f32::INFINITY));
        update_min(&mut to_picks, xt, &centre(first));
    }
    while picked.len() < k {
        let best = near.farthest(&to_picks);
        picked.push((best, near.value[best].min(to_picks[best])));
        update_min(&mut to_picks, xt, &centre(best));
    }
    picked
}

/// Every candidate's squared distance to its nearest centre, computed lazily: `value[i]` is
/// exact where `exact[i]`, an upper bound of it elsewhere (the candidates in `open`).
struct NearestCentre<'x, 'c> {
    candidates: ArrayView2<'x, f32>,
    centres: ArrayView2<'c, f32>,
    centre_norms: Vec<f32>,
    value: Vec<f32>,
    exact: Vec<bool>,
    open: Vec<usize>,
}

impl<'x, 'c> NearestCentre<'x, 'c> {
    /// Exact values at once for a few candidates or centres (one block of products, or too
    /// few centres to cluster); bounds otherwise.
    fn new(candidates: ArrayView2<'x, f32>, centres: ArrayView2<'c, f32>) -> Self {
        let n = candidates.nrows();
        let lazy = n > 2 * ROWS_PER && centres.nrows() >= 2 * ROWS_PER && candidates.ncols() > 2;
        let centre_norms = sq_norms(centres);
        let (value, exact) = if lazy {
            (
                upper_bounds(candidates, centres, &centre_norms),
                vec![false; n],
            )
        } else {
            (nearest_sq_dist(candidates, centres), vec![true; n])
        };
        let open = (0..n).filter(|&i| !exact[i]).collect();
        NearestCentre {
            candidates,
            centres,
            centre_norms,
            value,
            exact,
            open,
        }
    }

    /// The farthest candidate: the first row of the largest min(value, `to_picks`), as with
    /// every value exact. When that row's value is exact it is the one: a row with a bound is
    /// at most its bound, which is below the largest (or equal to it, at a later row). When it
    /// is a bound, the [`ROWS_PER`] largest bounds are computed exactly, and again.
    fn farthest(&mut self, to_picks: &[f32]) -> usize {
        loop {
            let dist = |i: usize| self.value[i].min(to_picks[i]);
            let best = crate::numeric::argmax((0..self.value.len()).map(dist));
            if self.exact[best] {
                return best;
            }
            let mut rows = self.open.clone();
            if rows.len() > ROWS_PER {
                let by_distance =
                    |a: &usize, b: &usize| dist(*b).total_cmp(&dist(*a)).then(a.cmp(b));
                rows.select_nth_unstable_by(ROWS_PER - 1, by_distance);
                rows.truncate(ROWS_PER);
            }
            let values = self.exact_values(&rows);
            for (&i, v) in rows.iter().zip(values) {
                debug_assert!(v <= self.value[i], "a bound below the exact value");
                self.value[i] = v;
                self.exact[i] = true;
            }
            let exact = &self.exact;
            self.open.retain(|&i| !exact[i]);
        }
    }

    /// The exact values of the candidates `rows` (at most [`ROWS_PER`]), as
    /// [`nearest_sq_dist`] computes them: one block of [`ROWS_PER`] rows (the last one
    /// repeated to fill it), so every product runs through the same sgemm kernels; the centre
    /// blocks spread over the threads (a minimum is exact in any order).
    fn exact_values(&self, rows: &[usize]) -> Vec<f32> {
        let mut idx = rows.to_vec();
        idx.resize(ROWS_PER, *rows.last().expect("at least one row"));
        let x = crate::numeric::select_rows(&self.candidates, &idx);
        let m = self.centres.nrows();
        let blocks = m.div_ceil(m.min(CENTRES_PER));
        let per_thread = blocks.div_ceil(rayon::current_num_threads()).max(1);
        let parts: Vec<Vec<f32>> = (0..blocks)
            .step_by(per_thread)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|b| {
                let mut d = vec![f32::INFINITY; ROWS_PER];
                let end = (b + per_thread).min(blocks);
                nearest_in_blocks(x.view(), self.centres, &self.centre_norms, b..end, &mut d);
                d
            })
            .collect();
        (0..rows.len())
            .map(|i| parts.iter().map(|d| d[i]).fold(f32::INFINITY, f32::min))
            .collect()
    }
}

/// An upper bound of every candidate's squared distance to its nearest centre: the nearest
/// among the centres of its own cluster (the centres grouped by their nearest of a few evenly
/// spaced centres, each candidate put with its nearest of those), plus a margin that covers
/// the rounding. The bound is of the value [`nearest_sq_dist`] computes, ‖x‖² + ‖c‖² − 2x·c in
/// f32: a product of `d` terms summed in any order is within (d+2)·ε·(‖x‖² + ‖c‖²) of that
/// sum in another order (ε = `f32::EPSILON`), so a margin of 16 (d+2)·ε·(‖x‖² + ‖c‖²) is
/// sixteen times what rounding can move it.
fn upper_bounds(candidates: ArrayView2<f32>, centres: ArrayView2<f32>, cn: &[f32]) -> Vec<f32> {
    let m = centres.nrows();
    let groups = (m / 128).clamp(1, 256);
    let seeds: Vec<usize> = (0..groups).map(|g| g * m / groups).collect();
    let seeds = crate::numeric::select_rows(&centres, &seeds);
    let centre_group = nearest_seed(centres, seeds.view());
    let candidate_group = nearest_seed(candidates, seeds.view());
    let mut members = vec![(Vec::new(), Vec::new()); groups];
    for (c, &g) in centre_group.iter().enumerate() {
        members[g].0.push(c);
    }
    for (x, &g) in candidate_group.iter().enumerate() {
        members[g].1.push(x);
    }
    let xn = sq_norms(candidates);
    let margin = 16.0 * (candidates.ncols() + 2) as f32 * f32::EPSILON;
    let bounds: Vec<Vec<(usize, f32)>> = members
        .par_iter()
        .map(|(cs, xs)| {
            if xs.is_empty() {
                return Vec::new();
            }
            if cs.is_empty() {
                return xs.iter().map(|&i| (i, f32::INFINITY)).collect();
            }
            let c = crate::numeric::select_rows(&centres, cs);
            let x = crate::numeric::select_rows(&candidates, xs);
            let mut prod = ndarray::Array2::<f32>::zeros((xs.len(), cs.len()));
            crate::linalg::mat_mul(1.0, &x.view(), &c.t(), 0.0, &mut prod.view_mut());
            xs.iter()
                .zip(prod.rows())
                .map(|(&i, p)| {
                    let bound = p
                        .iter()
                        .zip(cs)
                        .map(|(&p, &j)| {
                            let scale = xn[i] + cn[j];
                            (scale - 2.0 * p).max(0.0) + margin * scale
                        })
                        .fold(f32::INFINITY, f32::min);
                    (i, bound)
                })
                .collect()
        })
        .collect();
    let mut out = vec![f32::INFINITY; candidates.nrows()];
    for (i, b) in bounds.into_iter().flatten() {
        out[i] = b;
    }
    out
}

/// Each row's nearest seed (approximately: only the grouping depends on it).
fn nearest_seed(x: ArrayView2<f32>, seeds: ArrayView2<f32>) -> Vec<usize> {
    let sn = sq_norms(seeds);
    let mut out = vec![0; x.nrows()];
    out.par_chunks_mut(1024).enumerate().for_each(|(b, dst)| {
        let rows = x.slice(ndarray::s![b * 1024..b * 1024 + dst.len(), ..]);
        let mut prod = ndarray::Array2::<f32>::zeros((rows.nrows(), seeds.nrows()));
        crate::linalg::mat_mul(1.0, &rows, &seeds.t(), 0.0, &mut prod.view_mut());
        for (d, p) in dst.iter_mut().zip(prod.rows()) {
            *d = crate::numeric::argmax(p.iter().zip(&sn).map(|(&p, &s)| 2.0 * p - s));
        }
    });
    out
}

/// Lower every row's distance to the new centre `c` (`d` values), the rows given feature by
/// feature in `xt` (`d × n`), by chunks of rows in parallel. Each row's squared distance is
/// Σⱼ (xⱼ − cⱼ)², summed over j in order as a plain loop over the row would: eight rows side by
/// side (SIMD lanes), each its own sum, the same bits whatever the chunks.
fn update_min(dist: &mut [f32], xt: &[f32], c: &[f32]) {
    let n = dist.len();
    debug_assert_eq!(xt.len(), c.len() * n, "xt holds d × n values");
    lower_in_lanes(dist, |r, len| {
        let mut acc = [0f32; LANES];
        if len == LANES {
            for (j, &cj) in c.iter().enumerate() {
                let col = &xt[j * n + r..j * n + r + LANES];
                for l in 0..LANES {
                    let t = col[l] - cj;
                    acc[l] += t * t;
                }
            }
        } else {
            for (j, &cj) in c.iter().enumerate() {
                for (l, a) in acc.iter_mut().take(len).enumerate() {
                    let t = xt[j * n + r + l] - cj;
                    *a += t * t;
                }
            }
        }
        acc
    });
}

/// Lower every `dist[i]` to row i's new value, rows in chunks over the pool and eight side by
/// side (SIMD lanes): `values(r, len)` gives the values of rows `r..r + len` (`len` ≤
/// [`LANES`]; the lanes past `len` are ignored).
fn lower_in_lanes(dist: &mut [f32], values: impl Fn(usize, usize) -> [f32; LANES] + Sync) {
    const ROWS: usize = 2048;
    dist.par_chunks_mut(ROWS)
        .enumerate()
        .for_each(|(b, chunk)| {
            for (g, dv) in chunk.chunks_mut(LANES).enumerate() {
                let v = values(b * ROWS + g * LANES, dv.len());
                for (d, &v) in dv.iter_mut().zip(&v) {
                    if v < *d {
                        *d = v;
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
    // The residuals and hidden states feature by feature (`classes × n`, `width × n`).
    let mut ut = vec![0f32; p.ncols() * n];
    for (i, ui) in u.iter().enumerate() {
        for (c, &v) in ui.iter().enumerate() {
            ut[c * n + i] = v;
        }
    }
    let ht = h.t().as_standard_layout().into_owned();
    let rows = Features {
        u: &ut,
        h: ht.as_slice().expect("a standard layout"),
        norms: &norms,
    };
    while picked.len() < k {
        rows.lower(&mut dist, &u[last], &h.row(last).to_vec(), norms[last]);
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

/// BADGE's candidates feature by feature: residuals `u` (`classes × n`), last hidden states
/// `h` (`width × n`) and the embeddings' squared norms.
struct Features<'a> {
    u: &'a [f32],
    h: &'a [f32],
    norms: &'a [f32],
}

impl Features<'_> {
    /// Lower each row's squared distance to the embedding of a pick (residual `uc`, hidden
    /// state `hc`, squared norm `nc`): max(0, ‖gᵢ‖² + nc − 2 (uᵢ·uc)(hᵢ·hc)). Eight rows side by
    /// side (SIMD lanes), each with the operations of the row-by-row formula in its order:
    /// uᵢ·uc as `Iterator::sum` adds (from −0, in order) and hᵢ·hc as ndarray's `dot` of two
    /// slices (eight partial sums, combined (p0 + p4) + (p1 + p5) + …, then the tail), so the
    /// same bits (a test compares).
    fn lower(&self, dist: &mut [f32], uc: &[f32], hc: &[f32], nc: f32) {
        let n = dist.len();
        lower_in_lanes(dist, |r, len| {
            let cross = if len == LANES {
                self.group(uc, hc, |t, j| {
                    t[j * n + r..j * n + r + LANES].try_into().expect("8 lanes")
                })
            } else {
                self.group(uc, hc, |t, j| {
                    std::array::from_fn(|l| if l < len { t[j * n + r + l] } else { 0.0 })
                })
            };
            std::array::from_fn(|l| {
                let norm = self.norms.get(r + l).copied().unwrap_or(0.0);
                (norm + nc - 2.0 * cross[l]).max(0.0)
            })
        });
    }

    /// (uᵢ·uc)(hᵢ·hc) of eight rows, `get(table, j)` giving their feature j.
    #[inline(always)]
    fn group(
        &self,
        uc: &[f32],
        hc: &[f32],
        get: impl Fn(&[f32], usize) -> [f32; LANES],
    ) -> [f32; LANES] {
        let mut ud = [-0.0f32; LANES];
        for (c, &w) in uc.iter().enumerate() {
            let col = get(self.u, c);
            for l in 0..LANES {
                ud[l] += col[l] * w;
            }
        }
        let whole = hc.len() / 8 * 8;
        let mut p = [[0f32; LANES]; 8];
        for j0 in (0..whole).step_by(8) {
            for (k, pk) in p.iter_mut().enumerate() {
                let col = get(self.h, j0 + k);
                for l in 0..LANES {
                    pk[l] += col[l] * hc[j0 + k];
                }
            }
        }
        let mut hd = [0f32; LANES];
        for l in 0..LANES {
            hd[l] += p[0][l] + p[4][l];
            hd[l] += p[1][l] + p[5][l];
            hd[l] += p[2][l] + p[6][l];
            hd[l] += p[3][l] + p[7][l];
        }
        for (j, &w) in hc.iter().enumerate().skip(whole) {
            let col = get(self.h, j);
            for l in 0..LANES {
                hd[l] += col[l] * w;
            }
        }
        std::array::from_fn(|l| ud[l] * hd[l])
    }
}

/// Rows side by side in the lane loops.
const LANES: usize = 8;

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

    /// k-center greedy with every candidate's exact nearest-centre distance computed first.
    fn k_center_greedy_eager(
        x: ArrayView2<f32>,
        centres: ArrayView2<f32>,
        k: usize,
    ) -> Vec<(usize, f32)> {
        let mut dist = nearest_sq_dist(x, centres);
        let xt = x.t().as_standard_layout().into_owned();
        let mut picked = Vec::new();
        while picked.len() < k.min(x.nrows()) {
            let best = crate::numeric::argmax(dist.iter().copied());
            picked.push((best, dist[best]));
            update_min(&mut dist, xt.as_slice().unwrap(), &x.row(best).to_vec());
        }
        picked
    }

    #[test]
    fn lazy_k_center_picks_what_the_exact_distances_pick_bit_for_bit() {
        // Clustered activations (non-negative, as after a ReLU), some candidates equal to a
        // centre (distance 0) or to each other (ties); and small integers in 3 dimensions,
        // where most distances tie. 1 500 picks of 2 600 candidates resolve most bounds, in
        // blocks of 512 with a last one padded.
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let hubs = ndarray::Array2::from_shape_simple_fn((12, 28), || 4.0 * rng.random::<f32>());
        let point = |rng: &mut ChaCha8Rng| -> Vec<f32> {
            let h = rng.random_range(0..hubs.nrows());
            hubs.row(h)
                .iter()
                .map(|&c| (c + rng.random::<f32>() - 0.5).max(0.0))
                .collect()
        };
        let centres: Vec<f32> = (0..3_000).flat_map(|_| point(&mut rng)).collect();
        let centres = ndarray::Array2::from_shape_vec((3_000, 28), centres).unwrap();
        let mut x: Vec<f32> = (0..2_600).flat_map(|_| point(&mut rng)).collect();
        for i in 0..40 {
            let (dst, src) = (i * 60, i * 7);
            x.copy_within(src * 28..src * 28 + 28, dst * 28 + 28);
            x[dst * 28..dst * 28 + 28].copy_from_slice(&centres.row(i * 70).to_vec());
        }
        let x = ndarray::Array2::from_shape_vec((2_600, 28), x).unwrap();
        let small = |rows: usize, rng: &mut ChaCha8Rng| {
            ndarray::Array2::from_shape_simple_fn((rows, 3), || rng.random_range(0..5) as f32)
        };
        let (xs, cs) = (small(2_000, &mut rng), small(1_100, &mut rng));
        for (x, c, k) in [(&x, &centres, 1_500), (&x, &centres, 7), (&xs, &cs, 1_200)] {
            let bits = |p: Vec<(usize, f32)>| -> Vec<(usize, u32)> {
                p.into_iter().map(|(i, d)| (i, d.to_bits())).collect()
            };
            let want = bits(k_center_greedy_eager(x.view(), c.view(), k));
            assert_eq!(bits(k_center_greedy(x.view(), c.view(), k, 3)), want);
            assert!(
                !NearestCentre::new(x.view(), c.view()).open.is_empty(),
                "the lazy path"
            );
            let on_three = rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .unwrap();
            let lazy = on_three.install(|| k_center_greedy(x.view(), c.view(), k, 3));
            assert_eq!(bits(lazy), want, "on three threads");
        }
    }

    #[test]
    fn the_bounds_are_above_the_exact_distances() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let x = ndarray::Array2::from_shape_simple_fn((1_500, 40), || rng.random::<f32>());
        let c = ndarray::Array2::from_shape_simple_fn((2_000, 40), || rng.random::<f32>());
        let exact = nearest_sq_dist(x.view(), c.view());
        let bounds = upper_bounds(x.view(), c.view(), &sq_norms(c.view()));
        assert!(exact.iter().zip(&bounds).all(|(e, b)| e <= b));
        assert!(
            bounds.iter().all(|b| b.is_finite()),
            "each a distance to some centre"
        );
    }

    #[test]
    fn badge_distances_in_lanes_equal_the_row_by_row_formula_bit_for_bit() {
        // 2 061 rows: a parallel chunk and a tail of 5 (not a lane multiple); widths below,
        // at and beyond one group of eight, with and without a tail; some rows zero.
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (classes, width) in [(10, 28), (2, 3), (10, 8), (3, 13), (10, 31)] {
            let n = 2_061;
            let p = ndarray::Array2::from_shape_simple_fn((n, classes), || rng.random::<f32>());
            let mut h = ndarray::Array2::from_shape_simple_fn((n, width), || {
                (rng.random::<f32>() - 0.3).max(0.0)
            });
            h.row_mut(40).fill(0.0);
            let u: Vec<Vec<f32>> = p.rows().into_iter().map(residual).collect();
            let norms: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.7).collect();
            let ut: Vec<f32> = (0..classes)
                .flat_map(|c| u.iter().map(move |r| r[c]))
                .collect();
            let ht = h.t().as_standard_layout().into_owned();
            let rows = Features {
                u: &ut,
                h: ht.as_slice().unwrap(),
                norms: &norms,
            };
            for last in [7, 40, n - 1] {
                let mut dist: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 3.0).collect();
                let mut want = dist.clone();
                rows.lower(&mut dist, &u[last], &h.row(last).to_vec(), norms[last]);
                for (i, w) in want.iter_mut().enumerate() {
                    let ud = u[i].iter().zip(&u[last]).map(|(a, b)| a * b).sum::<f32>();
                    let cross = ud * h.row(i).dot(&h.row(last));
                    let v = (norms[i] + norms[last] - 2.0 * cross).max(0.0);
                    if v < *w {
                        *w = v;
                    }
                }
                let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&dist), bits(&want), "{classes} classes, width {width}");
            }
        }
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
