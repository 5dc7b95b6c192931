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
            let bits = |x: &Array2<f32>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&one), bits(&many), "{m} × {k} × {n}");
            // A transposed operand (as the logits take the data).
            let bt = b.t().to_owned();
            let mut many_t = Array2::<f32>::zeros((m, n));
            pool.install(|| mat_mul_par(1.0, &a.view(), &bt.t(), 0.0, &mut many_t.view_mut()));
            assert_eq!(bits(&one), bits(&many_t), "{m} × {k} × {n}, transposed");
        }
    }
}
