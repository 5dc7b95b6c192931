//! Composing a retraining batch: the targeted share from a ranking, the rest at random.

use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// DeepGini impurity `1 − Σ p²` of each row (higher = more uncertain).
pub fn gini(probs: ndarray::ArrayView2<f32>) -> Vec<f64> {
    probs
        .rows()
        .into_iter()
        .map(|r| 1.0 - r.iter().map(|&p| (p as f64) * (p as f64)).sum::<f64>())
        .collect()
}

/// The batch: up to `n_targeted` ids from the front of `ranked` (fewer when it is shorter),
/// then `batch − taken` ids drawn at random (seeded) from the rest of `pool`.
/// Returns (targeted, random); the two are disjoint and all come from `pool`.
pub fn compose(
    ranked: &[u32],
    pool: &[u32],
    n_targeted: usize,
    batch: usize,
    seed: u64,
) -> (Vec<u32>, Vec<u32>) {
    let n_targeted = n_targeted.min(batch);
    let targeted: Vec<u32> = ranked.iter().copied().take(n_targeted).collect();
    let taken: HashSet<u32> = targeted.iter().copied().collect();
    let mut rest: Vec<u32> = pool
        .iter()
        .copied()
        .filter(|id| !taken.contains(id))
        .collect();
    rest.sort_unstable();
    rest.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    rest.truncate(batch - targeted.len());
    (targeted, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes_disjoint_batch() {
        let pool: Vec<u32> = (0..100).collect();
        let ranked = [7, 3, 99, 50];
        let (t, r) = compose(&ranked, &pool, 3, 10, 1);
        assert_eq!(t, vec![7, 3, 99]);
        assert_eq!(r.len(), 7);
        assert!(r.iter().all(|id| !t.contains(id) && pool.contains(id)));
        assert_eq!(
            compose(&ranked, &pool, 3, 10, 1),
            (t.clone(), r.clone()),
            "seeded"
        );
        let (t2, r2) = compose(&ranked, &pool, 10, 10, 1);
        assert_eq!(
            (t2.len(), r2.len()),
            (4, 6),
            "fewer candidates than asked: take all, fill at random"
        );
        let (t3, r3) = compose(&[], &pool[..5], 2, 10, 1);
        assert_eq!((t3.len(), r3.len()), (0, 5), "pool smaller than the batch");
    }

    #[test]
    fn gini_impurity() {
        let p = ndarray::arr2(&[[1.0f32, 0.0], [0.5, 0.5]]);
        assert_eq!(gini(p.view()), vec![0.0, 0.5]);
    }
}
