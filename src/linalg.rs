//! Matrix products for every layer of the crate: the sgemm of the `gemm` crate (the one burn's
//! Flex backend builds), behind an ndarray-shaped call.

use ndarray::{ArrayView2, ArrayViewMut2};

/// `c = β·c + α·a·b` with the sgemm of the `gemm` crate, on this thread: the same inputs give
/// the same bits (it splits no sum), and it is faster than matrixmultiply on the small and
/// flat products of these layers (measured 1.3–2.4×).
pub fn mat_mul(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    product(alpha, a, b, beta, c, gemm::Parallelism::None)
}

/// [`mat_mul`] with the output's blocks spread over the thread pool (for one large product
/// that has the pool to itself): every element is still the one sum over `k` in the same
/// order, so the bits are [`mat_mul`]'s.
pub fn mat_mul_par(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    product(alpha, a, b, beta, c, gemm::Parallelism::Rayon(0))
}

/// [`mat_mul`] in the orientation that fills sgemm's register tiles best: as `cᵀ = bᵀ·aᵀ`
/// (transposed views, no copies) when `c` has fewer rows than columns by tiles. sgemm's tiles
/// are 16 rows × 6 columns, so a product with a few rows (a convolution's output channels
/// against an image's pixels) spends most of each tile on padding. Every element is still
/// the one sum over `k` in the same order (the blocking of `k` depends on `k` alone, and a
/// product's two factors commute exactly): the same bits, which a test checks.
pub fn mat_mul_oriented(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
) {
    let (m, n) = c.dim();
    let tiles = |rows: usize, cols: usize| rows.div_ceil(16) * cols.div_ceil(6);
    if tiles(n, m) < tiles(m, n) {
        let mut ct = c.view_mut().reversed_axes();
        product(
            alpha,
            &b.t(),
            &a.t(),
            beta,
            &mut ct,
            gemm::Parallelism::None,
        )
    } else {
        product(alpha, a, b, beta, c, gemm::Parallelism::None)
    }
}

fn product(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
    parallelism: gemm::Parallelism,
) {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert_eq!(k, k2, "inner dimensions");
    assert_eq!(c.dim(), (m, n), "the output's shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.mapv_inplace(|v| v * beta);
        return;
    }
    let (sa, sb) = (a.strides(), b.strides());
    let sc = [c.strides()[0], c.strides()[1]];
    // SAFETY: the pointers and strides come from ndarray views of exactly these shapes, so
    // every element the product touches lies inside them; `c` is a unique borrow and cannot
    // alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            sc[1],
            sc[0],
            beta != 0.0,
            a.as_ptr(),
            sa[1],
            sa[0],
            b.as_ptr(),
            sb[1],
            sb[0],
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};

    fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((rows, cols), |_| r.random_range(-1.0f32..1.0))
    }

    fn bits(x: &Array2<f32>) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// The pool's threads split the output, never a sum: the bits of one thread, on the shapes
    /// of the feature models (logits and gradient) and on odd ones.
    #[test]
    fn parallel_product_has_the_bits_of_one_thread() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (m, k, n) in [
            (10, 681, 10_000),
            (10, 10_000, 681),
            (37, 1_001, 523),
            (1, 300, 7),
        ] {
            let a = random(m, k, 1);
            let b = random(k, n, 2);
            let mut one = Array2::<f32>::zeros((m, n));
            mat_mul(1.0, &a.view(), &b.view(), 0.0, &mut one.view_mut());
            let mut many = Array2::<f32>::from_elem((m, n), f32::NAN);
            pool.install(|| mat_mul_par(1.0, &a.view(), &b.view(), 0.0, &mut many.view_mut()));
            assert_eq!(bits(&one), bits(&many), "{m} × {k} × {n}");
            // A transposed operand (as the logits take the data).
            let bt = b.t().to_owned();
            let mut many_t = Array2::<f32>::zeros((m, n));
            pool.install(|| mat_mul_par(1.0, &a.view(), &bt.t(), 0.0, &mut many_t.view_mut()));
            assert_eq!(bits(&one), bits(&many_t), "{m} × {k} × {n}, transposed");
        }
    }

    /// Turned around or not, the bits of [`mat_mul`]: on a convolution's shapes (few output
    /// channels × many pixels, short and long patches), a gradient's long `k`, and with β.
    #[test]
    fn oriented_product_has_the_same_bits() {
        for (m, k, n) in [
            (6, 25, 784),
            (16, 150, 100),
            (6, 6272, 25),
            (25, 6, 6272),
            (40, 700, 3),
        ] {
            let a = random(m, k, 3);
            let b = random(k, n, 4);
            for beta in [0.0f32, 1.0] {
                let c0 = random(m, n, 5);
                let (mut one, mut turned) = (c0.clone(), c0.clone());
                mat_mul(1.0, &a.view(), &b.view(), beta, &mut one.view_mut());
                mat_mul_oriented(1.0, &a.view(), &b.view(), beta, &mut turned.view_mut());
                assert_eq!(bits(&one), bits(&turned), "{m} × {k} × {n}, β {beta}");
            }
        }
    }
}
