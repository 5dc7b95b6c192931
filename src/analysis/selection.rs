//! Composing a retraining batch: the targeted shares, then the rest at random.

use rand::{SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;
use std::collections::HashSet;

/// `n` ids drawn at random (seeded) from `pool`, never one in `skip` (the targeted share, and
/// with `select.random_fill = "exclude_target"` every sample of the targeted labels). Fewer
/// when the pool has fewer.
pub fn random_fill(pool: &[u32], skip: &HashSet<u32>, n: usize, seed: u64) -> Vec<u32> {
    let mut rest: Vec<u32> = pool
        .iter()
        .copied()
        .filter(|id| !skip.contains(id))
        .collect();
    rest.sort_unstable();
    rest.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    rest.truncate(n);
    rest
}

/// Split `total` over `weights` in proportion (largest remainder, ties to the earlier one);
/// all-zero weights split evenly.
pub fn apportion(total: usize, weights: &[f64]) -> Vec<usize> {
    if weights.is_empty() {
        return Vec::new();
    }
    let sum: f64 = weights.iter().map(|w| w.max(0.0)).sum();
    let w: Vec<f64> = if sum > 0.0 {
        weights.iter().map(|x| x.max(0.0) / sum).collect()
    } else {
        vec![1.0 / weights.len() as f64; weights.len()]
    };
    let exact: Vec<f64> = w.iter().map(|x| x * total as f64).collect();
    let mut out: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut left = total - out.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..w.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for i in order {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_fill_skips_and_is_seeded() {
        let pool: Vec<u32> = (0..100).collect();
        let skip: HashSet<u32> = (0..50).collect();
        let r = random_fill(&pool, &skip, 10, 1);
        assert_eq!(r.len(), 10);
        assert!(r.iter().all(|id| *id >= 50));
        assert_eq!(r, random_fill(&pool, &skip, 10, 1));
        assert_ne!(r, random_fill(&pool, &skip, 10, 2));
        assert_eq!(random_fill(&pool, &skip, 80, 1).len(), 50, "what is left");
    }

    #[test]
    fn apportion_by_weight() {
        assert_eq!(apportion(500, &[0.3, 0.1, 0.1]), vec![300, 100, 100]);
        assert_eq!(apportion(10, &[1.0, 1.0, 1.0]), vec![4, 3, 3]);
        assert_eq!(apportion(5, &[0.0, 0.0]), vec![3, 2]);
        assert_eq!(apportion(7, &[2.0, 0.0, 1.0]).iter().sum::<usize>(), 7);
        assert!(apportion(3, &[]).is_empty());
    }
}
