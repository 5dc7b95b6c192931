//! Target-layer selection: feature models (softmax heads, linfa-logistic) on each layer's
//! activations, and the Bhattacharyya distance between successive layers' predictions.

pub use crate::vocab::Direction;
use anyhow::{Result, anyhow};
use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2, ArrayView2, Axis};

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

/// A fitted softmax head: `classes × width` weights and `classes` intercepts.
#[derive(Debug, Clone)]
pub struct SoftmaxHead {
    pub weights: Array2<f32>,
    pub intercept: Vec<f32>,
}

impl SoftmaxHead {
    /// Class probabilities `softmax(x Wᵀ + b)`.
    pub fn probs(&self, x: ArrayView2<f32>) -> Array2<f32> {
        let mut z = x.dot(&self.weights.t());
        for mut row in z.rows_mut() {
            let mut max = f32::NEG_INFINITY;
            for (v, b) in row.iter_mut().zip(&self.intercept) {
                *v += b;
                max = max.max(*v);
            }
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            row.mapv_inplace(|v| v / sum);
        }
        z
    }
}

/// Fit a multinomial logistic regression (linfa-logistic, L-BFGS) on `x`, `y`.
/// Classes absent from `y` get zero weights and a very low intercept (never predicted).
pub fn fit_head(
    x: ArrayView2<f32>,
    y: &[u16],
    classes: usize,
    l2: f64,
    max_iterations: u64,
) -> Result<SoftmaxHead> {
    let width = x.ncols();
    let mut present: Vec<u16> = y.to_vec();
    present.sort_unstable();
    present.dedup();
    if present.len() < 2 {
        // A single class: predict it always.
        let mut intercept = vec![-30.0; classes];
        if let Some(&c) = present.first() {
            intercept[c as usize] = 0.0;
        }
        return Ok(SoftmaxHead {
            weights: Array2::zeros((classes, width)),
            intercept,
        });
    }
    // Fit on standardised features (L-BFGS converges in far fewer iterations), then fold the
    // scaling back into the weights so the head applies to the raw states.
    let n = x.nrows() as f64;
    let mean: Vec<f64> = x
        .columns()
        .into_iter()
        .map(|c| c.iter().map(|&v| v as f64).sum::<f64>() / n)
        .collect();
    let sd: Vec<f64> = x
        .columns()
        .into_iter()
        .zip(&mean)
        .map(|(c, m)| (c.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n).sqrt())
        .collect();
    // Rarely-active features (border pixels, dead-ish neurons) have tiny deviations; dividing
    // by them would blow those features up and wreck the conditioning, so the scale is floored
    // at a tenth of the mean deviation.
    let live: Vec<f64> = sd.iter().copied().filter(|&v| v > 1e-8).collect();
    let floor = if live.is_empty() {
        1.0
    } else {
        0.1 * live.iter().sum::<f64>() / live.len() as f64
    };
    let scale: Vec<f64> = sd.iter().map(|&v| v.max(floor)).collect();
    let mut xs = x.mapv(|v| v as f64);
    for mut row in xs.rows_mut() {
        for ((v, m), s) in row.iter_mut().zip(&mean).zip(&scale) {
            *v = (*v - m) / s;
        }
    }
    let targets = Array1::from_iter(y.iter().map(|&l| l as usize));
    // f64: linfa's L-BFGS line search stalls at the first step in f32.
    let dataset = DatasetBase::new(xs, targets);
    let fitted = MultiLogisticRegression::<f64>::default()
        .alpha(l2)
        .max_iterations(max_iterations)
        .fit(&dataset)
        .map_err(|e| anyhow!("feature model failed to fit: {e}"))?;
    let params = fitted.params(); // width × present classes
    let icpt = fitted.intercept();
    let mut weights = Array2::<f32>::zeros((classes, width));
    let mut intercept = vec![-30.0f32; classes];
    for (k, &c) in fitted.classes().iter().enumerate() {
        let w = params.index_axis(Axis(1), k);
        let mut b = icpt[k];
        for j in 0..width {
            weights[[c, j]] = (w[j] / scale[j]) as f32;
            b -= w[j] * mean[j] / scale[j];
        }
        intercept[c] = b as f32;
    }
    Ok(SoftmaxHead { weights, intercept })
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
        .filter(|(r, l)| crate::artifacts::maps::argmax(r.iter().copied()) == **l as usize)
        .count();
    correct as f64 / labels.len() as f64
}

/// Arg-max of each row.
pub fn predictions(probs: ArrayView2<f32>) -> Vec<u16> {
    probs
        .rows()
        .into_iter()
        .map(|r| crate::artifacts::maps::argmax(r.iter().copied()) as u16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

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
        let head = fit_head(x.view(), &y, 4, 100.0, 15).unwrap();
        let probs = head.probs(x.view());
        assert_eq!(probs.dim(), (60, 4));
        assert!(accuracy(probs.view(), &y) > 0.95);
        assert!(
            probs.column(3).iter().all(|&p| p < 1e-6),
            "absent class is never predicted"
        );
    }
}
