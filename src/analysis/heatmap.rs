//! Heat maps (mean states of groups of inputs) and the per-label diagnosis.
//!
//! For label c, over the inputs and a model's (or feature model's) predictions:
//! - HC: inputs of label c predicted c (correct);
//! - HM: inputs of other labels predicted c (false positives);
//! - HW: inputs of label c predicted otherwise (false negatives);
//! - DH_CM = HC − HM, DH_CW = HC − HW, DH_CC(c, k) = HC_c − HC_k.
//!
//! An empty group has n = 0 and all-zero values, never NaN. A difference map's n is the
//! smaller of its two groups' sizes, so n = 0 flags a difference with an empty side.

use crate::config::UnderfitRule;
use crate::vocab::{Action, MapKind};
use ndarray::{Array1, Array2, ArrayView2};

/// One heat map before it is tagged with space and layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    pub label: u16,
    pub other: Option<u16>,
    pub kind: MapKind,
    pub n: u32,
    pub values: Array1<f32>,
}

/// HC, HM, HW, DH_CM, DH_CW for every label, then DH_CC for every ordered pair of labels.
pub fn heatmaps(
    states: ArrayView2<f32>,
    labels: &[u16],
    predicted: &[u16],
    classes: usize,
) -> Vec<Map> {
    let g = Groups::sum(states, labels, predicted, classes);
    let map = |label: u16, other: Option<u16>, kind, (n, values)| Map {
        label,
        other,
        kind,
        n,
        values,
    };
    let mut out = Vec::new();
    for c in 0..classes {
        let l = c as u16;
        for (k, kind) in [(HC, MapKind::Hc), (HM, MapKind::Hm), (HW, MapKind::Hw)] {
            out.push(map(l, None, kind, (g.counts[k][c], g.mean(k, c))));
        }
        out.push(map(l, None, MapKind::DhCm, g.diff((HC, c), (HM, c))));
        out.push(map(l, None, MapKind::DhCw, g.diff((HC, c), (HW, c))));
    }
    for c in 0..classes {
        for k in 0..classes {
            if c != k {
                let (n, v) = g.diff((HC, c), (HC, k));
                out.push(map(c as u16, Some(k as u16), MapKind::DhCc, (n, v)));
            }
        }
    }
    out
}

/// The three groups of samples per class: correctly predicted (HC), wrongly predicted as the
/// class (HM), of the class but predicted as another (HW).
const HC: usize = 0;
const HM: usize = 1;
const HW: usize = 2;

/// Per group and class, the sum of the samples' states (in f64) and their count.
struct Groups {
    sums: [Array2<f64>; 3],
    counts: [Vec<u32>; 3],
    d: usize,
}

impl Groups {
    fn sum(states: ArrayView2<f32>, labels: &[u16], predicted: &[u16], classes: usize) -> Groups {
        let d = states.ncols();
        let mut sums = [
            Array2::<f64>::zeros((classes, d)),
            Array2::zeros((classes, d)),
            Array2::zeros((classes, d)),
        ];
        let mut counts = [
            vec![0u32; classes],
            vec![0u32; classes],
            vec![0u32; classes],
        ];
        for (i, row) in states.rows().into_iter().enumerate() {
            let (l, q) = (labels[i] as usize, predicted[i] as usize);
            let targets: &[(usize, usize)] = if l == q {
                &[(HC, l)]
            } else {
                &[(HM, q), (HW, l)]
            };
            for &(g, c) in targets {
                if c < classes {
                    counts[g][c] += 1;
                    let mut s = sums[g].row_mut(c);
                    s.zip_mut_with(&row, |a, &b| *a += b as f64);
                }
            }
        }
        Groups { sums, counts, d }
    }

    /// The mean state of group `g` of class `c` (zeros when empty).
    fn mean(&self, g: usize, c: usize) -> Array1<f32> {
        let n = self.counts[g][c];
        if n == 0 {
            Array1::zeros(self.d)
        } else {
            self.sums[g].row(c).mapv(|v| (v / n as f64) as f32)
        }
    }

    /// Mean `a` minus mean `b`, with the smaller of the two counts (zeros when either is
    /// empty).
    fn diff(&self, a: (usize, usize), b: (usize, usize)) -> (u32, Array1<f32>) {
        let n = self.counts[a.0][a.1].min(self.counts[b.0][b.1]);
        if n == 0 {
            (0, Array1::zeros(self.d))
        } else {
            (n, self.mean(a.0, a.1) - self.mean(b.0, b.1))
        }
    }
}

/// Per-label accuracy and count.
pub fn per_label_accuracy(labels: &[u16], predicted: &[u16], classes: usize) -> Vec<(f64, u32)> {
    let mut n = vec![0u32; classes];
    let mut ok = vec![0u32; classes];
    for (&l, &p) in labels.iter().zip(predicted) {
        if (l as usize) < classes {
            n[l as usize] += 1;
            ok[l as usize] += (l == p) as u32;
        }
    }
    // A label without samples has accuracy 0: nothing of it is recognised.
    (0..classes)
        .map(|c| {
            (
                if n[c] == 0 {
                    0.0
                } else {
                    ok[c] as f64 / n[c] as f64
                },
                n[c],
            )
        })
        .collect()
}

/// The diagnosis of one label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelDiagnosis {
    pub label: u16,
    pub train_acc: f64,
    pub test_acc: f64,
    pub gap: f64,
    pub underfit: bool,
    pub overfit: bool,
    pub faultiest: bool,
    pub action: Action,
    pub n_train: u32,
    pub n_test: u32,
}

/// Underfitting (accuracy < θ by `rule`) and overfitting (train − test > γ) per label; the
/// faultiest label is the underfitting one with the lowest test accuracy, or, when none
/// underfits, the overfitting one with the largest gap (underfitting is fixed first).
pub fn diagnose(
    train: &[(f64, u32)],
    test: &[(f64, u32)],
    theta: f64,
    gamma: f64,
    rule: UnderfitRule,
) -> Vec<LabelDiagnosis> {
    let mut rows: Vec<LabelDiagnosis> = train
        .iter()
        .zip(test)
        .enumerate()
        .map(|(c, (&(tr, ntr), &(te, nte)))| {
            let underfit = match rule {
                UnderfitRule::Test => te < theta,
                UnderfitRule::Both => tr < theta && te < theta,
            } && nte > 0;
            let gap = tr - te;
            let overfit = gap > gamma && nte > 0;
            LabelDiagnosis {
                label: c as u16,
                train_acc: tr,
                test_acc: te,
                gap,
                underfit,
                overfit,
                faultiest: false,
                action: if underfit {
                    Action::FixUnderfit
                } else if overfit {
                    Action::FixOverfit
                } else {
                    Action::None
                },
                n_train: ntr,
                n_test: nte,
            }
        })
        .collect();
    let worst_under = rows
        .iter()
        .filter(|r| r.underfit)
        .min_by(|a, b| {
            a.test_acc
                .total_cmp(&b.test_acc)
                .then(a.label.cmp(&b.label))
        })
        .map(|r| r.label);
    let worst_over = rows
        .iter()
        .filter(|r| r.overfit)
        .max_by(|a, b| a.gap.total_cmp(&b.gap).then(b.label.cmp(&a.label)))
        .map(|r| r.label);
    if let Some(l) = worst_under.or(worst_over) {
        rows[l as usize].faultiest = true;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    #[test]
    fn groups_and_differences() {
        // label 0: rows 0 (correct), 1 (predicted 1); label 1: row 2 (correct), 3 (correct)
        let x = arr2(&[[1.0f32, 0.0], [0.0, 1.0], [2.0, 2.0], [4.0, 0.0]]);
        let maps = heatmaps(x.view(), &[0, 0, 1, 1], &[0, 1, 1, 1], 3);
        let get = |l: u16, k: &str| {
            let k: MapKind = k.parse().unwrap();
            maps.iter()
                .find(|m| m.label == l && m.kind == k && m.other.is_none())
                .unwrap()
        };
        assert_eq!(get(0, "HC").values.to_vec(), vec![1.0, 0.0]);
        assert_eq!(get(0, "HW").values.to_vec(), vec![0.0, 1.0]);
        assert_eq!(get(0, "HM").n, 0);
        assert_eq!(
            get(0, "HM").values.to_vec(),
            vec![0.0, 0.0],
            "empty group is zeros, not NaN"
        );
        assert_eq!(get(1, "HC").values.to_vec(), vec![3.0, 1.0]);
        assert_eq!(get(1, "HM").values.to_vec(), vec![0.0, 1.0]);
        assert_eq!(get(1, "DH_CM").values.to_vec(), vec![3.0, 0.0]);
        assert_eq!(get(0, "DH_CW").values.to_vec(), vec![1.0, -1.0]);
        assert_eq!(get(0, "DH_CM").n, 0, "difference with an empty side");
        assert!(get(2, "HC").values.iter().all(|v| v.is_finite()));
        let pair = maps
            .iter()
            .find(|m| m.kind == MapKind::DhCc && m.label == 1 && m.other == Some(0))
            .unwrap();
        assert_eq!(pair.values.to_vec(), vec![2.0, 1.0]);
        assert_eq!(maps.len(), 3 * 5 + 3 * 2);
    }

    #[test]
    fn diagnosis_prefers_underfitting() {
        let train = [(0.99, 10), (0.95, 10), (0.80, 10)];
        let test = [(0.97, 10), (0.80, 10), (0.85, 10)];
        let d = diagnose(&train, &test, 0.92, 0.10, UnderfitRule::Test);
        assert!(!d[0].underfit && !d[0].overfit);
        assert!(d[1].underfit && d[1].overfit);
        assert!(d[2].underfit);
        assert!(
            d[1].faultiest,
            "lowest test accuracy among underfitting labels"
        );
        let d = diagnose(&train, &test, 0.92, 0.10, UnderfitRule::Both);
        assert!(!d[1].underfit, "train accuracy 0.95 is above θ");
        assert!(d[2].underfit && d[2].faultiest);
        let d = diagnose(
            &[(0.99, 5), (0.99, 5)],
            &[(0.95, 5), (0.97, 5)],
            0.9,
            0.01,
            UnderfitRule::Test,
        );
        assert!(d[0].faultiest && d[0].action == Action::FixOverfit);
        let d = diagnose(&[(0.99, 5)], &[(0.99, 5)], 0.9, 0.1, UnderfitRule::Test);
        assert!(!d[0].faultiest && d[0].action == Action::None);
    }

    #[test]
    fn per_label_accuracy_counts() {
        let a = per_label_accuracy(&[0, 0, 1, 2], &[0, 1, 1, 0], 4);
        assert_eq!(a, vec![(0.5, 2), (1.0, 1), (0.0, 1), (0.0, 0)]);
    }
}
