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
    let block = depth_block(m, n, k, a.strides(), b.strides(), c.strides());
    let mut beta = beta;
    for start in (0..k).step_by(block) {
        let end = (start + block).min(k);
        let (a, b) = (
            a.slice(ndarray::s![.., start..end]),
            b.slice(ndarray::s![start..end, ..]),
        );
        gemm_call(alpha, &a, &b, beta, c, parallelism);
        beta = 1.0;
    }
}

/// The depth blocks gemm would cut `k` into on a machine with a 32 KiB, 8-way L1 data cache,
/// or `k` itself where gemm's blocking does not depend on the machine.
///
/// gemm sums each element over one block of `k` at a time and adds the blocks into `c` in
/// order, so the block length is part of the result's bits. On its small paths (an output of
/// at most 16 × 16 elements with unit-stride operands, or one of at most 64 × 64, or `k` ≤ 2,
/// or a vector) the blocks are fixed; on the large ones they come from the L1 cache's size
/// and associativity — blocks of 392 for `k` = 784 on a 32 KiB 8-way L1, one block of 784 on
/// a 48 KiB 12-way one — and the same seed would give other bits on another processor. Cut
/// here into the 32 KiB rule's blocks (at most 512, the least gemm ever uses, so each call
/// is one block inside gemm on any cache), then added in order with β = 1, they are the
/// operations gemm does on such a cache: the same bits on every machine.
fn depth_block(m: usize, n: usize, k: usize, sa: &[isize], sb: &[isize], sc: &[isize]) -> usize {
    const LEAST: usize = 512;
    // gemm turns the product around when `c` is column-major (as `cᵀ = bᵀ·aᵀ`).
    let turned = sc[1].abs() < sc[0].abs();
    let (m, n, lhs_cs, lhs_rs, rhs_cs, rhs_rs, dst_cs, dst_rs) = if turned {
        (n, m, sb[0], sb[1], sa[0], sa[1], sc[0], sc[1])
    } else {
        (m, n, sa[1], sa[0], sb[1], sb[0], sc[1], sc[0])
    };
    let (lhs_cs, lhs_rs, rhs_cs, rhs_rs) = (lhs_cs.abs(), lhs_rs.abs(), rhs_cs.abs(), rhs_rs.abs());
    let (dst_cs, dst_rs) = (dst_cs.abs(), dst_rs.abs());
    let horizontal = lhs_cs == 1 && rhs_rs == 1 && m * n <= 16 * 16;
    let vector = (n <= 1 && ((lhs_rs == 1 && dst_rs == 1) || (lhs_cs == 1 && rhs_rs == 1)))
        || (m <= 1 && ((rhs_cs == 1 && dst_cs == 1) || (rhs_rs == 1 && lhs_cs == 1)));
    let small = m <= 64 && n <= 64;
    // (`k` ≤ 2, gemm's other fixed path, is inside `k` ≤ LEAST.)
    if k <= LEAST || horizontal || vector || small {
        return k;
    }
    k.div_ceil(k.div_ceil(LEAST))
}

fn gemm_call(
    alpha: f32,
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    beta: f32,
    c: &mut ArrayViewMut2<f32>,
    parallelism: gemm::Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
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

    /// gemm's arithmetic on a 32 KiB 8-way L1 data cache, element by element: `k` cut into
    /// ⌈k / 512⌉ equal depth blocks, each one fused multiply-add chain from zero, the first
    /// block's sum written, each later one added with one fused add.
    fn blocked_reference(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
        let k = a.ncols();
        let block = k.div_ceil(k.div_ceil(512));
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            let mut c = 0.0f32;
            for (s, start) in (0..k).step_by(block).enumerate() {
                let end = (start + block).min(k);
                let sum = (start..end).fold(0.0f32, |acc, t| a[(i, t)].mul_add(b[(t, j)], acc));
                c = if s == 0 { sum } else { sum.mul_add(1.0, c) };
            }
            c
        })
    }

    /// A product on gemm's large path sums in the depth blocks of a 32 KiB L1 cache whatever
    /// the machine's cache (gemm alone cuts `k` = 784 into two blocks on a 32 KiB 8-way L1 and
    /// into one on a 48 KiB 12-way L1, so the same seed gave other bits on another processor):
    /// the bits of the fused multiply-add chains gemm's kernels compute, on the shapes of the
    /// probe's first layer, the feature models' products and an output in column-major order.
    #[test]
    fn large_products_have_the_same_depth_blocks_on_every_cache() {
        for (m, k, n) in [
            (1_024, 784, 28),
            (10, 681, 2_000),
            (10, 3_000, 681),
            (300, 513, 70),
        ] {
            let a = random(m, k, 6);
            let b = random(k, n, 7);
            let want = bits(&blocked_reference(&a, &b));
            let differing = |c: &Array2<f32>| {
                let got = bits(c);
                got.iter().zip(&want).filter(|(g, w)| g != w).count()
            };
            let mut c = Array2::<f32>::zeros((m, n));
            mat_mul(1.0, &a.view(), &b.view(), 0.0, &mut c.view_mut());
            assert_eq!(
                differing(&c),
                0,
                "{m} × {k} × {n}: elements with other bits"
            );
            let mut par = Array2::<f32>::zeros((m, n));
            mat_mul_par(1.0, &a.view(), &b.view(), 0.0, &mut par.view_mut());
            assert_eq!(differing(&par), 0, "{m} × {k} × {n}, threaded");
            let mut ct = Array2::<f32>::zeros((n, m));
            mat_mul(
                1.0,
                &a.view(),
                &b.view(),
                0.0,
                &mut ct.view_mut().reversed_axes(),
            );
            assert_eq!(
                differing(&ct.t().to_owned()),
                0,
                "{m} × {k} × {n}, column-major"
            );
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
