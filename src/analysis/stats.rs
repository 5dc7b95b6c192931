//! Paired statistics for the sweep: mean difference with a Student-t confidence interval,
//! the paired t-test, and the Wilcoxon signed-rank test (distributions from statrs).

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Mean of the differences, its 95% CI and the two-sided paired t-test p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedT {
    pub n: usize,
    pub mean: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub t: f64,
    pub p: f64,
}

/// Paired t-test on differences `d` (e.g. arm − control per seed), as
/// `scipy.stats.ttest_1samp(d, 0)`, with the 95% Student-t interval of the mean.
pub fn paired_t(d: &[f64]) -> PairedT {
    let n = d.len();
    let mean = if n == 0 {
        f64::NAN
    } else {
        d.iter().sum::<f64>() / n as f64
    };
    if n < 2 {
        return PairedT {
            n,
            mean,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            t: f64::NAN,
            p: f64::NAN,
        };
    }
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let se = (var / n as f64).sqrt();
    let dist = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("valid degrees of freedom");
    let q = dist.inverse_cdf(0.975);
    if se == 0.0 {
        let p = if mean == 0.0 { 1.0 } else { 0.0 };
        return PairedT {
            n,
            mean,
            ci_low: mean,
            ci_high: mean,
            t: f64::NAN,
            p,
        };
    }
    let t = mean / se;
    let p = (2.0 * (1.0 - dist.cdf(t.abs()))).min(1.0);
    PairedT {
        n,
        mean,
        ci_low: mean - q * se,
        ci_high: mean + q * se,
        t,
        p,
    }
}

/// Two-sided Wilcoxon signed-rank test on differences `d`; zeros are dropped (scipy's
/// `zero_method="wilcox"`). Exact null distribution when there are no ties and at most 50
/// non-zero differences (scipy's default then), else the normal approximation with the tie
/// correction (no continuity correction, as scipy). Returns (statistic = min(W+, W−), p).
pub fn wilcoxon(d: &[f64]) -> (f64, f64) {
    let mut a: Vec<f64> = d
        .iter()
        .copied()
        .filter(|x| *x != 0.0 && x.is_finite())
        .collect();
    let n = a.len();
    if n == 0 {
        return (0.0, 1.0);
    }
    a.sort_by(|x, y| x.abs().total_cmp(&y.abs()));
    // Average ranks of |d|, and the tie groups.
    let mut ranks = vec![0.0; n];
    let mut ties = Vec::new();
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && a[j + 1].abs() == a[i].abs() {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        ranks[i..=j].iter_mut().for_each(|x| *x = r);
        if j > i {
            ties.push((j - i + 1) as f64);
        }
        i = j + 1;
    }
    let w_plus: f64 = a
        .iter()
        .zip(&ranks)
        .filter(|(x, _)| **x > 0.0)
        .map(|(_, r)| r)
        .sum();
    let total = n as f64 * (n as f64 + 1.0) / 2.0;
    let stat = w_plus.min(total - w_plus);
    if ties.is_empty() && n <= 50 {
        // counts[s] = number of subsets of {1..n} with rank sum s
        let max = n * (n + 1) / 2;
        let mut counts = vec![0f64; max + 1];
        counts[0] = 1.0;
        for k in 1..=n {
            for s in (k..=max).rev() {
                counts[s] += counts[s - k];
            }
        }
        let all = 2f64.powi(n as i32);
        let le: f64 = counts[..=(stat.floor() as usize)].iter().sum();
        return (stat, (2.0 * le / all).min(1.0));
    }
    let nf = n as f64;
    let mean = nf * (nf + 1.0) / 4.0;
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0
        - ties.iter().map(|t| t * t * t - t).sum::<f64>() / 48.0;
    if var <= 0.0 {
        return (stat, 1.0);
    }
    let z = (stat - mean) / var.sqrt();
    let normal = Normal::new(0.0, 1.0).expect("standard normal");
    (stat, (2.0 * normal.cdf(-z.abs())).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from scipy 1.17.1.
    const D: [f64; 10] = [
        0.011, -0.02, 0.03, 0.015, 0.005, -0.001, 0.021, 0.012, 0.007, 0.009,
    ];

    #[test]
    fn t_test_matches_scipy() {
        // stats.ttest_1samp([0.01,-0.02,0.03,0.015,0.005,-0.001,0.02,0.012,0.007,0.009], 0)
        let t = paired_t(&[
            0.01, -0.02, 0.03, 0.015, 0.005, -0.001, 0.02, 0.012, 0.007, 0.009,
        ]);
        assert!((t.t - 2.084268331733813).abs() < 1e-9, "{t:?}");
        assert!((t.p - 0.06680134460522232).abs() < 1e-9, "{t:?}");
        // CI half-width = t_{0.975, 9} (2.262157162798205) × se
        let se = t.mean / t.t;
        assert!((t.ci_high - t.mean - 2.262157162798205 * se).abs() < 1e-9);
    }

    #[test]
    fn wilcoxon_exact_matches_scipy() {
        // stats.wilcoxon(D) -> statistic 9.0, p 0.064453125
        let (w, p) = wilcoxon(&D);
        assert_eq!(w, 9.0);
        assert!((p - 0.064453125).abs() < 1e-12, "{p}");
    }

    #[test]
    fn wilcoxon_normal_matches_scipy() {
        // 60 differences: stats.wilcoxon(...) -> statistic 294.0, p 4.841171098703148e-06
        let big: Vec<f64> = (0..60).map(|i| D[i % 10] + i as f64 * 1e-5).collect();
        let (w, p) = wilcoxon(&big);
        assert_eq!(w, 294.0);
        assert!((p / 4.841171098703148e-06 - 1.0).abs() < 1e-6, "{p}");
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(wilcoxon(&[0.0, 0.0]), (0.0, 1.0));
        let t = paired_t(&[0.01, 0.01, 0.01]);
        assert_eq!((t.ci_low, t.ci_high, t.p), (0.01, 0.01, 0.0));
        assert!(paired_t(&[0.5]).p.is_nan());
    }
}
