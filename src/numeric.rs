//! Small numeric helpers every layer shares, each defined once: the arg-max, the row-wise
//! softmax, `exp` over a slice, per-channel means of feature maps and the finite check. Pure,
//! no dependencies on the rest of the crate.

use ndarray::{Array2, ArrayBase, ArrayView2, Axis, Data, Dimension, Ix2};

/// Index of the largest value (first on ties; NaN is never the largest; 0 when empty).
pub fn argmax(it: impl IntoIterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in it.into_iter().enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Row-wise softmax in place (max subtracted first).
pub fn softmax_rows(z: &mut Array2<f32>) {
    for mut row in z.axis_iter_mut(Axis(0)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        row.mapv_inplace(|v| v - max);
        match row.as_slice_mut() {
            Some(values) => exp_in_place(values),
            None => row.mapv_inplace(f32::exp),
        }
        let sum = row.sum();
        row /= sum;
    }
}

/// `*v = v.exp()` for every value, with the same bits as `f32::exp` where that is glibc's
/// `__expf_fma`.
///
/// On x86-64 Linux with glibc (≥ 2.27) and a CPU with AVX2 and FMA, `f32::exp` is glibc's
/// `__expf_fma` (ARM's optimized-routines algorithm: in double precision, 2^(k/32) from a table
/// of 32 and a cubic for the rest). This is the same algorithm, operation for operation (each
/// fused multiply-add where `__expf_fma` has one, the same table and constants), four values at
/// a time; below ln 2⁻¹⁵⁰ its +0 (without setting errno). The other values off its main path
/// (x ≥ 88, −104 < x ≤ −88, NaN, +∞) and the slice's last few go to `f32::exp`. Off x86-64
/// Linux-glibc, or without the two features, every value goes to `f32::exp`. (A glibc told by
/// `GLIBC_TUNABLES` to ignore AVX2 or FMA runs its SSE2 `expf`, whose bits differ on some
/// inputs.) The tests compare the two on every negative input and every positive one below 88,
/// the rest at a stride and around the thresholds (all 2³² agreed when it was written).
pub fn exp_in_place(v: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the two features the function is compiled for.
        unsafe { expf_x4::exp_in_place(v) };
        return;
    }
    for x in v {
        *x = x.exp();
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
mod expf_x4 {
    use std::arch::x86_64::*;

    /// glibc's `__exp2f_data.tab`: asuint64(2^(i/32)) − (i << 47), i = 0..32.
    static TAB: [u64; 32] = [
        0x3ff0000000000000,
        0x3fefd9b0d3158574,
        0x3fefb5586cf9890f,
        0x3fef9301d0125b51,
        0x3fef72b83c7d517b,
        0x3fef54873168b9aa,
        0x3fef387a6e756238,
        0x3fef1e9df51fdee1,
        0x3fef06fe0a31b715,
        0x3feef1a7373aa9cb,
        0x3feedea64c123422,
        0x3feece086061892d,
        0x3feebfdad5362a27,
        0x3feeb42b569d4f82,
        0x3feeab07dd485429,
        0x3feea47eb03a5585,
        0x3feea09e667f3bcd,
        0x3fee9f75e8ec5f74,
        0x3feea11473eb0187,
        0x3feea589994cce13,
        0x3feeace5422aa0db,
        0x3feeb737b0cdc5e5,
        0x3feec49182a3f090,
        0x3feed503b23e255d,
        0x3feee89f995ad3ad,
        0x3feeff76f2fb5e47,
        0x3fef199bdd85529c,
        0x3fef3720dcef9069,
        0x3fef5818dcfba487,
        0x3fef7c97337b9b5f,
        0x3fefa4afa2a490da,
        0x3fefd0765b6e4540,
    ];
    /// 32 / ln 2, the shift that rounds to an integer (1.5 · 2⁵²), and the cubic's
    /// coefficients scaled by 32⁻³, 32⁻², 32⁻¹ (`invln2_scaled`, `shift`, `poly_scaled`).
    const INV_LN2_N: u64 = 0x40471547652b82fe;
    const SHIFT: u64 = 0x4338000000000000;
    const C: [u64; 3] = [0x3ebc6af84b912394, 0x3f2ebfce50fac4f3, 0x3f962e42ff0c52d6];
    /// The top 12 bits of |x| above which `__expf_fma` leaves its main path (|x| ≥ 88).
    const ABSTOP_MAX: i32 = 0x42a;
    /// −0x1.9fe368p6 ≈ ln 2⁻¹⁵⁰ as bits: `__expf_fma` underflows to +0 below it.
    const UFLOW_BELOW: i32 = 0xc2cf_f1b4_u32 as i32;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_in_place(v: &mut [f32]) {
        let d = |bits: u64| _mm256_set1_pd(f64::from_bits(bits));
        let (inv, shift) = (d(INV_LN2_N), d(SHIFT));
        let (c0, c1, c2, one) = (d(C[0]), d(C[1]), d(C[2]), _mm256_set1_pd(1.0));
        let mut chunks = v.chunks_exact_mut(4);
        for c in &mut chunks {
            // SAFETY: `c` holds four f32; unaligned loads and stores.
            let x = unsafe { _mm_loadu_ps(c.as_ptr()) };
            let top = _mm_and_si128(
                _mm_srli_epi32::<20>(_mm_castps_si128(x)),
                _mm_set1_epi32(0x7ff),
            );
            // Below ln 2⁻¹⁵⁰ (and −∞) `__expf_fma` returns +0 (its underflow branch): those
            // lanes are set to 0 at the end; any other value off the main path goes to libm.
            let zero = _mm_cmplt_ps(x, _mm_castsi128_ps(_mm_set1_epi32(UFLOW_BELOW)));
            let off = _mm_cmpgt_epi32(top, _mm_set1_epi32(ABSTOP_MAX));
            if _mm_movemask_epi8(_mm_andnot_si128(_mm_castps_si128(zero), off)) != 0 {
                for e in c.iter_mut() {
                    *e = e.exp();
                }
                continue;
            }
            let xd = _mm256_cvtps_pd(x);
            // kd = round(x · 32/ln 2) by the shift; r = x · 32/ln 2 − kd (both fused).
            let shifted = _mm256_fmadd_pd(inv, xd, shift);
            let ki = _mm256_castpd_si256(shifted);
            let kd = _mm256_sub_pd(shifted, shift);
            let r = _mm256_fmsub_pd(inv, xd, kd);
            // s = 2^(k/32): the table's entry for k mod 32, k's high part in the exponent.
            let idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
            // SAFETY: every index is in 0..32.
            let t = unsafe { _mm256_i64gather_epi64::<8>(TAB.as_ptr() as *const i64, idx) };
            let s = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64::<47>(ki)));
            // (C0·r + C1)·r² + (C2·r + 1), times s, rounded to f32.
            let z = _mm256_fmadd_pd(r, c0, c1);
            let r2 = _mm256_mul_pd(r, r);
            let y = _mm256_fmadd_pd(r, c2, one);
            let y = _mm256_mul_pd(_mm256_fmadd_pd(z, r2, y), s);
            let y = _mm_andnot_ps(zero, _mm256_cvtpd_ps(y));
            // SAFETY: as the load.
            unsafe { _mm_storeu_ps(c.as_mut_ptr(), y) };
        }
        for e in chunks.into_remainder() {
            *e = e.exp();
        }
    }
}

/// Rows `idx` of `x`, in that order (as `x.select(Axis(0), idx)`, which concatenates one view
/// per row): each row copied as one slice. Panics on an index out of range, as `select` does.
pub fn select_rows<T: Copy, S: Data<Elem = T>>(x: &ArrayBase<S, Ix2>, idx: &[usize]) -> Array2<T> {
    let d = x.ncols();
    let mut out = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        extend_values(&mut out, &x.row(i));
    }
    Array2::from_shape_vec((idx.len(), d), out).expect("idx.len() rows of d values")
}

/// Append `a`'s values in logical order: one slice copy when it is in standard layout, value
/// by value otherwise.
pub fn extend_values<T: Copy, S: Data<Elem = T>, D: Dimension>(
    out: &mut Vec<T>,
    a: &ArrayBase<S, D>,
) {
    match a.as_slice() {
        Some(values) => out.extend_from_slice(values),
        None => out.extend(a.iter().copied()),
    }
}

/// The rows of `parts` one after another (as `ndarray::concatenate(Axis(0), parts)`); `None`
/// when their widths differ.
pub fn concat_rows<T: Copy>(parts: &[ArrayView2<T>]) -> Option<Array2<T>> {
    let d = parts.first().map_or(0, |p| p.ncols());
    if parts.iter().any(|p| p.ncols() != d) {
        return None;
    }
    let n: usize = parts.iter().map(|p| p.nrows()).sum();
    let mut out = Vec::with_capacity(n * d);
    for p in parts {
        extend_values(&mut out, p);
    }
    Array2::from_shape_vec((n, d), out).ok()
}

/// The mean of each channel of feature maps stored channel-major, `hw` values per channel
/// (`[n, c, h, w]` in standard layout → `n · c` means, in order).
///
/// Each channel's sum is `Iterator::sum`'s, value by value in order; eight channels are summed
/// side by side (eight independent chains of additions instead of one), so the sums are the
/// same bits, several times faster.
pub fn channel_means(maps: &[f32], hw: usize) -> Vec<f32> {
    const LANES: usize = 8;
    let hw = hw.max(1);
    let start = std::iter::empty::<f32>().sum::<f32>();
    let mut out = Vec::with_capacity(maps.len().div_ceil(hw));
    let grouped = maps.len() / (hw * LANES) * hw * LANES;
    for group in maps[..grouped].chunks_exact(hw * LANES) {
        let planes: [&[f32]; LANES] = std::array::from_fn(|l| &group[l * hw..(l + 1) * hw]);
        let mut acc = [start; LANES];
        for i in 0..hw {
            for (a, plane) in acc.iter_mut().zip(&planes) {
                *a += plane[i];
            }
        }
        out.extend(acc.iter().map(|a| a / hw as f32));
    }
    out.extend(
        maps[grouped..]
            .chunks(hw)
            .map(|p| p.iter().sum::<f32>() / hw as f32),
    );
    out
}

/// The position of the first NaN or infinite value, if any.
pub fn first_non_finite<'a>(values: impl IntoIterator<Item = &'a f32>) -> Option<usize> {
    values.into_iter().position(|v| !v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    /// The inputs (as bits) whose `exp_in_place` differs from `f32::exp` (NaN for NaN agrees).
    fn exp_mismatches(bits: impl Iterator<Item = u32>) -> Vec<u32> {
        let xs: Vec<f32> = bits.map(f32::from_bits).collect();
        let mut ys = xs.clone();
        exp_in_place(&mut ys);
        xs.iter()
            .zip(&ys)
            .filter(|(x, y)| x.exp().to_bits() != y.to_bits() && !(x.exp().is_nan() && y.is_nan()))
            .map(|(x, _)| x.to_bits())
            .collect()
    }

    #[test]
    fn exp_in_place_equals_f32_exp() {
        // Positive and negative finite values at a stride (about 2.5 million of each sign,
        // every binade), every value within 4 096 ulps of the main path's ends (±88, the
        // under- and overflow thresholds), ±0, ±∞ and NaNs, in slices of every length mod 4.
        let stride = 1733;
        let mut bits: Vec<u32> = (0..0x7f80_0000u32).step_by(stride).collect();
        bits.extend((0x8000_0000..0xff80_0000u32).step_by(stride));
        // 88, the overflow threshold, the two underflow thresholds, −88 (as bits).
        for e in [
            0x42b0_0000u32,
            0x42b1_7217,
            0xc2cf_f1b4,
            0xc2ce_8ecf,
            0xc2b0_0000,
        ] {
            bits.extend(e - 4096..e + 4096);
        }
        bits.extend([
            0,
            0x8000_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0xffc0_0001,
        ]);
        // The two inputs an unfused r gets wrong (see the next test).
        bits.extend([1_107_444_271, 3_262_932_441]);
        for cut in 0..4 {
            assert_eq!(
                exp_mismatches(bits[cut..].iter().copied()),
                Vec::<u32>::new()
            );
        }
    }

    #[test]
    fn exp_in_place_equals_f32_exp_on_every_negative_and_every_small_positive_input() {
        // Every f32 below 88 but the positive NaNs (3.3 · 10⁹ inputs, ≈ 9 s on two cores):
        // the only proof of equal bits — an r = x · 32/ln 2 − kd left unfused, for one,
        // differs on 2 of them.
        use rayon::prelude::*;
        let bad: Vec<u32> = (0..0x42b0u32)
            .chain(0x8000..0x1_0000)
            .collect::<Vec<_>>()
            .into_par_iter()
            .flat_map_iter(|hi| exp_mismatches((0..=u16::MAX as u32).map(move |lo| hi << 16 | lo)))
            .collect();
        assert_eq!(bad, Vec::<u32>::new());
    }

    /// The same bits as one `sum` per channel, whatever the number of channels (groups of
    /// eight and the rest), with signed zeros and a partial last plane.
    #[test]
    fn channel_means_are_plain_sums() {
        let plain = |m: &[f32], hw: usize| -> Vec<u32> {
            m.chunks(hw)
                .map(|p| (p.iter().sum::<f32>() / hw as f32).to_bits())
                .collect()
        };
        let mut x = 0.1f32;
        let maps: Vec<f32> = (0..23 * 49 + 5)
            .map(|i| {
                x = (x * 3.7 + 0.3).fract();
                match i % 7 {
                    0 => -0.0,
                    1 => 0.0,
                    _ => x * 1e3 - 500.0,
                }
            })
            .collect();
        for (len, hw) in [
            (23 * 49, 49),
            (23 * 49 + 5, 49),
            (16 * 49, 49),
            (7, 1),
            (64, 8),
        ] {
            let m = &maps[..len];
            let got: Vec<u32> = channel_means(m, hw).iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, plain(m, hw), "{len} values, {hw} per channel");
        }
        let zeros = [-0.0f32; 16];
        let got: Vec<u32> = channel_means(&zeros, 2)
            .iter()
            .map(|v| v.to_bits())
            .collect();
        assert_eq!(got, plain(&zeros, 2));
    }

    #[test]
    fn select_and_concat_rows_equal_ndarrays_own() {
        let x = Array2::from_shape_fn((7, 5), |(i, j)| (i * 10 + j) as f32);
        let idx = [6, 0, 3, 3, 1];
        assert_eq!(select_rows(&x, &idx), x.select(Axis(0), &idx));
        assert_eq!(select_rows(&x, &[]), x.select(Axis(0), &[]));
        // A view that is not in standard layout takes the value-by-value path.
        let t = x.t();
        assert_eq!(select_rows(&t, &[4, 2]), t.select(Axis(0), &[4, 2]));
        let parts = [
            x.slice(ndarray::s![..2, ..]),
            x.slice(ndarray::s![4.., ..]),
            t.slice(ndarray::s![..0, ..5]),
        ];
        let want = ndarray::concatenate(Axis(0), &parts[..2]).unwrap();
        assert_eq!(concat_rows(&parts[..2]), Some(want));
        assert_eq!(
            concat_rows(&[x.view(), t.slice(ndarray::s![.., ..3])]),
            None
        );
        let odd = x.slice(ndarray::s![.., ..;2]);
        assert_eq!(
            concat_rows(&[odd, odd]),
            Some(ndarray::concatenate(Axis(0), &[odd, odd]).unwrap())
        );
    }

    #[test]
    fn argmax_takes_the_first_largest() {
        assert_eq!(argmax([0.1, 0.7, 0.7, 0.2]), 1);
        assert_eq!(argmax([f32::NAN, 0.3, 0.5]), 2);
        assert_eq!(argmax(Vec::<f32>::new()), 0);
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let mut z = arr2(&[[1.0f32, 2.0, 3.0], [1000.0, 1000.0, 0.0]]);
        softmax_rows(&mut z);
        for r in z.rows() {
            assert!((r.sum() - 1.0).abs() < 1e-6);
        }
        assert!(z[[0, 2]] > z[[0, 1]] && z[[0, 1]] > z[[0, 0]]);
        assert_eq!(z[[1, 0]], 0.5);
    }

    #[test]
    fn channel_means_average_each_map() {
        assert_eq!(
            channel_means(&[1.0, 3.0, 2.0, 2.0, 0.0, 4.0], 2),
            [2.0, 2.0, 2.0]
        );
    }

    #[test]
    fn finds_the_first_non_finite_value() {
        assert_eq!(first_non_finite(&[1.0, f32::INFINITY, f32::NAN]), Some(1));
        assert_eq!(first_non_finite(&[1.0, 2.0]), None);
    }
}
