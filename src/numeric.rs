//! Small numeric helpers every layer shares, each defined once: the arg-max, the row-wise
//! softmax, per-channel means of feature maps and the finite check. Pure, no dependencies on
//! the rest of the crate.

use ndarray::{Array2, Axis};

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
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row /= sum;
    }
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
