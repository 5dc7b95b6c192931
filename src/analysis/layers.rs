//! Target-layer selection: feature models (softmax heads, [`super::logistic`]) on each layer's
//! activations, and the Bhattacharyya distance between successive layers' predictions.

use super::logistic;
use crate::artifacts::SoftmaxHead;
pub use crate::vocab::Direction;
use anyhow::{Result, bail};
use ndarray::{Array2, ArrayView2};

/// Bhattacharyya distance `1 − Σ √(p·q)` between two prediction matrices, each normalised
/// to sum to 1 over all entries. 0 = identical distributions, 1 = disjoint.
pub fn bhattacharyya(p: ArrayView2<f32>, q: ArrayView2<f32>) -> f64 {
    assert_eq!(p.dim(), q.dim(), "prediction matrices differ in shape");
    let sp: f64 = p.iter().map(|&x| x as f64).sum();
    let sq: f64 = q.iter().map(|&x| x as f64).sum();
    if sp <= 0.0 || sq <= 0.0 {
        return 1.0;
    }
    let bc: f64 = p
        .iter()
        .zip(q.iter())
        .map(|(&a, &b)| ((a as f64 / sp) * (b as f64 / sq)).max(0.0).sqrt())
        .sum();
    (1.0 - bc).max(0.0)
}

/// For layers `probs[0..n]` (input first, output last), the distance of each layer to its
/// neighbour in scan order (the first scanned layer against a uniform matrix), and the target:
/// the first scanned layer whose distance is ≤ `threshold`, else the output layer (n − 1).
pub fn select_target<'a>(
    probs: &[ArrayView2<'a, f32>],
    threshold: f64,
    dir: Direction,
) -> (Vec<f64>, usize) {
    let n = probs.len();
    assert!(n > 0);
    let uniform = Array2::<f32>::from_elem(probs[0].dim(), 1.0);
    let order: Vec<usize> = match dir {
        Direction::Forward => (0..n).collect(),
        Direction::Backward => (0..n).rev().collect(),
    };
    let mut dist = vec![0.0; n];
    let mut target = None;
    for (k, &i) in order.iter().enumerate() {
        dist[i] = if k == 0 {
            bhattacharyya(probs[i].view(), uniform.view())
        } else {
            bhattacharyya(probs[i].view(), probs[order[k - 1]].view())
        };
        if target.is_none() && dist[i] <= threshold {
            target = Some(i);
        }
    }
    (dist, target.unwrap_or(n - 1))
}

/// How a feature model is fitted: its L2 strength (on the summed log-loss of standardised
/// features) and its L-BFGS iterations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadFit {
    pub l2: f64,
    pub max_iterations: u64,
}

/// Fit a multinomial logistic regression ([`logistic::fit`]: linfa-logistic's objective and
/// L-BFGS, f32 sgemm) on `x`, `y`. Classes absent from `y` get zero weights and a very low
/// intercept (never predicted).
pub fn fit_head(
    x: ArrayView2<f32>,
    y: &[u16],
    classes: usize,
    cfg: HeadFit,
) -> Result<SoftmaxHead> {
    let width = x.ncols();
    if y.len() != x.nrows() {
        bail!(
            "feature model failed to fit: {} rows but {} labels",
            x.nrows(),
            y.len()
        );
    }
    let present = present_classes(y);
    if present.len() < 2 {
        return Ok(single_class(&present, classes, width));
    }
    if crate::numeric::first_non_finite(x).is_some() {
        bail!("feature model failed to fit: the features hold NaN or infinite values");
    }
    let st = Standardised::new(x);
    let labels: Vec<usize> = y
        .iter()
        .map(|l| present.binary_search(l).expect("a present class"))
        .collect();
    let opts = logistic::Options::new(cfg.l2, cfg.max_iterations);
    let fitted = logistic::fit(st.x.view(), &labels, present.len(), &opts);
    Ok(st.fold_back(
        fitted.weights.view(),
        fitted.intercept.as_slice().expect("owned"),
        &st.kept,
        &present,
        classes,
    ))
}

/// The classes that occur in `y`, ascending.
fn present_classes(y: &[u16]) -> Vec<u16> {
    let mut present: Vec<u16> = y.to_vec();
    present.sort_unstable();
    present.dedup();
    present
}

/// The head of a single class (or none): predict it always.
fn single_class(present: &[u16], classes: usize, width: usize) -> SoftmaxHead {
    let mut intercept = vec![-30.0; classes];
    if let Some(&c) = present.first() {
        intercept[c as usize] = 0.0;
    }
    SoftmaxHead {
        weights: Array2::zeros((classes, width)),
        intercept,
    }
}

/// Features standardised for the fit (L-BFGS converges in far fewer iterations), with what it
/// takes to fold the scaling back into weights on the raw features.
///
/// Constant features (deviation exactly 0: MNIST's border pixels, dead neurons) are left out of
/// the fit's matrix: standardised they are exactly 0, so their gradient is exactly 0 and their
/// weights stay at the start, 0, in linfa's fit as in ours; leaving them out changes nothing
/// but the size of the products (103 of MNIST's 784 pixels on 10 000 train images).
struct Standardised {
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// The features that vary (indices into the raw features).
    kept: Vec<usize>,
    /// `(x − mean) / scale` of the kept features, rounded to f32.
    x: Array2<f32>,
}

impl Standardised {
    fn new(x: ArrayView2<f32>) -> Self {
        let n = x.nrows() as f64;
        // Column sums row by row (cache-friendly; each column still adds its rows in order).
        let mut mean = vec![0.0f64; x.ncols()];
        for row in x.rows() {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut sd = vec![0.0f64; x.ncols()];
        for row in x.rows() {
            for ((s, &v), m) in sd.iter_mut().zip(row).zip(&mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
        sd.iter_mut().for_each(|s| *s = (*s / n).sqrt());
        // Rarely-active features (border pixels, dead-ish neurons) have tiny deviations;
        // dividing by them would blow those features up and wreck the conditioning, so the
        // scale is floored at a tenth of the mean deviation.
        let live: Vec<f64> = sd.iter().copied().filter(|&v| v > 1e-8).collect();
        let floor = if live.is_empty() {
            1.0
        } else {
            0.1 * live.iter().sum::<f64>() / live.len() as f64
        };
        let scale: Vec<f64> = sd.iter().map(|&v| v.max(floor)).collect();
        let kept: Vec<usize> = (0..sd.len()).filter(|&j| sd[j] > 0.0).collect();
        // The kept features as runs of consecutive ones (contiguous slices vectorise).
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &j in &kept {
            match runs.last_mut() {
                Some((_, end)) if *end == j => *end += 1,
                _ => runs.push((j, j + 1)),
            }
        }
        // Written once, row by row (no zero-filled buffer first).
        let mut xs = Vec::with_capacity(x.nrows() * kept.len());
        let standardise = |v: f32, m: &f64, s: &f64| ((v as f64 - m) / s) as f32;
        for row in x.rows() {
            for &(a, b) in &runs {
                let (m, s) = (&mean[a..b], &scale[a..b]);
                match row.as_slice() {
                    Some(row) => xs.extend(
                        row[a..b]
                            .iter()
                            .zip(m)
                            .zip(s)
                            .map(|((&v, m), s)| standardise(v, m, s)),
                    ),
                    None => xs.extend(
                        row.slice(ndarray::s![a..b])
                            .iter()
                            .zip(m)
                            .zip(s)
                            .map(|((&v, m), s)| standardise(v, m, s)),
                    ),
                }
            }
        }
        let xs = Array2::from_shape_vec((x.nrows(), kept.len()), xs).expect("rows × kept features");
        Self {
            mean,
            scale,
            kept,
            x: xs,
        }
    }

    /// The head on raw features from `w` (`features × present classes`, the features of `cols`)
    /// and `icpt` fitted on the standardised ones; the other features get zero weights, absent
    /// classes zero weights and intercept −30.
    fn fold_back(
        &self,
        w: ArrayView2<f64>,
        icpt: &[f64],
        cols: &[usize],
        present: &[u16],
        classes: usize,
    ) -> SoftmaxHead {
        let width = self.mean.len();
        let mut weights = Array2::<f32>::zeros((classes, width));
        let mut intercept = vec![-30.0f32; classes];
        for (k, &c) in present.iter().enumerate() {
            let c = c as usize;
            let mut b = icpt[k];
            for (i, &j) in cols.iter().enumerate() {
                weights[[c, j]] = (w[[i, k]] / self.scale[j]) as f32;
                b -= w[[i, k]] * self.mean[j] / self.scale[j];
            }
            intercept[c] = b as f32;
        }
        SoftmaxHead { weights, intercept }
    }
}

/// The head fitted by linfa-logistic (f64, its L-BFGS): the reference the tests compare
/// [`fit_head`] with.
#[cfg(test)]
pub(crate) fn fit_head_linfa(
    x: ArrayView2<f32>,
    y: &[u16],
    classes: usize,
    cfg: HeadFit,
) -> Result<SoftmaxHead> {
    use linfa::prelude::*;
    use linfa_logistic::MultiLogisticRegression;
    let width = x.ncols();
    let present = present_classes(y);
    if present.len() < 2 {
        return Ok(single_class(&present, classes, width));
    }
    let st = Standardised::new(x);
    // f64 standardised features, as fit_head made them for linfa before.
    let mut xs = x.mapv(|v| v as f64);
    for mut row in xs.rows_mut() {
        for ((v, m), s) in row.iter_mut().zip(&st.mean).zip(&st.scale) {
            *v = (*v - m) / s;
        }
    }
    let targets = ndarray::Array1::from_iter(y.iter().map(|&l| l as usize));
    let fitted = MultiLogisticRegression::<f64>::default()
        .alpha(cfg.l2)
        .max_iterations(cfg.max_iterations)
        .fit(&DatasetBase::new(xs, targets))
        .map_err(|e| anyhow::anyhow!("feature model failed to fit: {e}"))?;
    assert_eq!(
        fitted
            .classes()
            .iter()
            .map(|&c| c as u16)
            .collect::<Vec<_>>(),
        present
    );
    let all: Vec<usize> = (0..width).collect();
    Ok(st.fold_back(
        fitted.params().view(),
        fitted.intercept().as_slice().expect("owned"),
        &all,
        &present,
        classes,
    ))
}

/// Fraction of rows whose arg-max equals the label.
pub fn accuracy(probs: ArrayView2<f32>, labels: &[u16]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let correct = probs
        .rows()
        .into_iter()
        .zip(labels)
        .filter(|(r, l)| crate::numeric::argmax(r.iter().copied()) == **l as usize)
        .count();
    correct as f64 / labels.len() as f64
}

/// Arg-max of each row.
pub fn predictions(probs: ArrayView2<f32>) -> Vec<u16> {
    probs
        .rows()
        .into_iter()
        .map(|r| crate::numeric::argmax(r.iter().copied()) as u16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;
    use std::sync::OnceLock;

    #[test]
    fn bhattacharyya_bounds() {
        let p = arr2(&[[0.5f32, 0.5], [1.0, 0.0]]);
        assert!(bhattacharyya(p.view(), p.view()).abs() < 1e-12);
        let a = arr2(&[[1.0f32, 0.0]]);
        let b = arr2(&[[0.0f32, 1.0]]);
        assert!((bhattacharyya(a.view(), b.view()) - 1.0).abs() < 1e-12);
        // p = [.25 .25 .5 0], q = [.25 .25 0 .5] (after normalising): BC = .25 + .25 = .5
        let p = arr2(&[[0.5f32, 0.5], [1.0, 0.0]]);
        let q = arr2(&[[0.5f32, 0.5], [0.0, 1.0]]);
        assert!((bhattacharyya(p.view(), q.view()) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn target_is_first_saturated_layer() {
        let uniform = arr2(&[[0.5f32, 0.5], [0.5, 0.5]]);
        let sharp = arr2(&[[0.9f32, 0.1], [0.1, 0.9]]);
        let sharp2 = arr2(&[[0.91f32, 0.09], [0.1, 0.9]]);
        let probs = [uniform.view(), sharp.view(), sharp2.view(), sharp2.view()];
        let (d, t) = select_target(&probs, 0.01, Direction::Forward);
        assert!(d[0] < 1e-12, "the first layer equals the uniform matrix");
        assert_eq!(t, 0);
        let probs = [sharp.view(), sharp2.view(), sharp2.view()];
        let (d, t) = select_target(&probs, 0.01, Direction::Forward);
        assert!(d[0] > 0.01 && d[1] <= 0.01);
        assert_eq!(t, 1);
        let (_, t) = select_target(&probs, 0.0, Direction::Forward);
        assert_eq!(t, 2, "nothing saturates below 0 except exact copies");
        let (db, tb) = select_target(&probs, 0.01, Direction::Backward);
        assert!(db[2] > 0.01);
        assert_eq!(tb, 1);
    }

    #[test]
    fn head_learns_separable_classes() {
        let x = Array2::from_shape_fn(
            (60, 2),
            |(i, j)| if (i % 3) == j { 1.0 } else { 0.0 } + (i as f32) * 1e-3,
        );
        let y: Vec<u16> = (0..60).map(|i| (i % 3) as u16).collect();
        let cfg = HeadFit {
            l2: 100.0,
            max_iterations: 15,
        };
        let head = fit_head(x.view(), &y, 4, cfg).unwrap();
        let probs = head.probs(x.view());
        assert_eq!(probs.dim(), (60, 4));
        assert!(accuracy(probs.view(), &y) > 0.95);
        assert!(
            probs.column(3).iter().all(|&p| p < 1e-6),
            "absent class is never predicted"
        );
    }

    #[test]
    fn single_class_and_bad_input() {
        let x = Array2::<f32>::ones((5, 3));
        let cfg = HeadFit {
            l2: 100.0,
            max_iterations: 15,
        };
        let head = fit_head(x.view(), &[2; 5], 4, cfg).unwrap();
        assert_eq!(head.intercept, vec![-30.0, -30.0, 0.0, -30.0]);
        assert!(head.weights.iter().all(|&w| w == 0.0));
        let mut bad = Array2::<f32>::zeros((4, 2));
        bad[[1, 1]] = f32::NAN;
        assert!(fit_head(bad.view(), &[0, 1, 0, 1], 2, cfg).is_err());
        assert!(fit_head(x.view(), &[0, 1], 2, cfg).is_err());
        // Two classes but only constant features: an intercept-only head (the class shares).
        let x = Array2::<f32>::from_elem((6, 3), 0.5);
        let head = fit_head(x.view(), &[0, 0, 0, 0, 1, 1], 2, cfg).unwrap();
        assert!(head.weights.iter().all(|&w| w == 0.0));
        let p = head.probs(x.view());
        assert!((p[[0, 0]] - 4.0 / 6.0).abs() < 1e-3, "{p}");
    }

    /// MNIST (the vendored idx files, pixels / 255): train and test images with labels.
    struct Mnist {
        train: Array2<f32>,
        train_labels: Vec<u16>,
        test: Array2<f32>,
        test_labels: Vec<u16>,
    }

    fn mnist() -> &'static Mnist {
        static DATA: OnceLock<Mnist> = OnceLock::new();
        DATA.get_or_init(|| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
            let (train, test) = crate::idx::load_dir(&dir).expect("data/mnist");
            let px = |s: &crate::idx::IdxImages| {
                let d = s.height * s.width;
                Array2::from_shape_vec(
                    (s.len(), d),
                    s.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
                )
                .unwrap()
            };
            let lab = |s: &crate::idx::IdxImages| s.labels.iter().map(|&l| l as u16).collect();
            Mnist {
                train: px(&train),
                train_labels: lab(&train),
                test: px(&test),
                test_labels: lab(&test),
            }
        })
    }

    /// Hidden-layer-like features: relu of a fixed random projection (Glorot-like scale).
    fn relu_features(x: ArrayView2<f32>, width: usize) -> Array2<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let a = (6.0 / (x.ncols() + width) as f32).sqrt();
        let r = Array2::from_shape_fn((x.ncols(), width), |_| rng.random_range(-a..a));
        x.dot(&r).mapv(|v| v.max(0.0))
    }

    /// The objective of a head in the standardised parameterisation it was fitted in
    /// (f64 arithmetic; the logits on raw features equal the standardised ones).
    fn head_objective(head: &SoftmaxHead, x: ArrayView2<f32>, y: &[u16], cfg: HeadFit) -> f64 {
        let st = Standardised::new(x);
        let present = present_classes(y);
        let w = head.weights.mapv(f64::from);
        let z = x.mapv(f64::from).dot(&w.t());
        let mut loss = 0.0;
        for (row, &l) in z.rows().into_iter().zip(y) {
            let v: Vec<f64> = present
                .iter()
                .map(|&c| row[c as usize] + head.intercept[c as usize] as f64)
                .collect();
            let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = v.iter().map(|a| (a - max).exp()).sum::<f64>().ln() + max;
            loss += lse - v[present.binary_search(&l).unwrap()];
        }
        let mut norm = 0.0;
        for &c in &present {
            for (j, &s) in st.scale.iter().enumerate() {
                norm += (w[[c as usize, j]] * s).powi(2);
            }
        }
        loss + 0.5 * cfg.l2 * norm
    }

    /// Ours and linfa's head on the same rows: (test accuracy, objective) of each.
    fn both(
        x: ArrayView2<f32>,
        y: &[u16],
        xt: ArrayView2<f32>,
        yt: &[u16],
        iters: u64,
    ) -> [(f64, f64); 2] {
        let cfg = HeadFit {
            l2: 100.0,
            max_iterations: iters,
        };
        assert_eq!(cfg.l2, 100.0);
        let ours = fit_head(x, y, 10, cfg).unwrap();
        let reference = fit_head_linfa(x, y, 10, cfg).unwrap();
        [ours, reference].map(|h| {
            (
                accuracy(h.probs(xt).view(), yt),
                head_objective(&h, x, y, cfg),
            )
        })
    }

    fn check(what: &str, [(ao, fo), (al, fl)]: [(f64, f64); 2], objective_tol: f64) {
        eprintln!(
            "{what}: accuracy {ao:.4} (linfa {al:.4}), objective {fo:.6} (linfa {fl:.6}, relative {:+.2e})",
            (fo - fl) / fl
        );
        assert!(
            (ao - al).abs() <= 0.001 + 1e-12,
            "{what}: accuracy {ao} vs linfa {al}"
        );
        assert!(
            ((fo - fl) / fl).abs() <= objective_tol,
            "{what}: objective {fo} vs linfa {fl}"
        );
    }

    /// MNIST pixels, as the input head of the pipelines (l2 = 100, 15 iterations) and run to
    /// convergence: test accuracy within 0.1 point of linfa's; converged objectives agree.
    #[test]
    fn agrees_with_linfa_on_mnist_pixels() {
        let m = mnist();
        let (n, nt) = (2000, 5000);
        let x = m.train.slice(ndarray::s![..n, ..]);
        let xt = m.test.slice(ndarray::s![..nt, ..]);
        let (y, yt) = (&m.train_labels[..n], &m.test_labels[..nt]);
        check("pixels, 15 iterations", both(x, y, xt, yt, 15), 1e-2);
        check("pixels, 200 iterations", both(x, y, xt, yt, 200), 1e-4);
    }

    /// Hidden-layer-like features (relu of a random projection to 28 dims), 15 iterations and
    /// converged.
    #[test]
    fn agrees_with_linfa_on_mnist_features() {
        let m = mnist();
        let (n, nt) = (10000, 10000);
        let x = relu_features(m.train.slice(ndarray::s![..n, ..]), 28);
        let xt = relu_features(m.test.slice(ndarray::s![..nt, ..]), 28);
        let (y, yt) = (&m.train_labels[..n], &m.test_labels[..nt]);
        check(
            "features, 15 iterations",
            both(x.view(), y, xt.view(), yt, 15),
            1e-2,
        );
        check(
            "features, 200 iterations",
            both(x.view(), y, xt.view(), yt, 200),
            1e-4,
        );
    }
}
