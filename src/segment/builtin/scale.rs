//! The working scale of a large image: binned by `n` (each `n × n` block averaged, as ImageJ's
//! Image › Transform › Bin does) so that the pipeline sees 1,024 to 2,047 pixels on its long side,
//! the scale its default smoothing (sigma = long side / 1024) and morphology (radius = long side /
//! 1024) are defined at. Binning by `n` and then smoothing with sigma 1 keeps what smoothing the
//! full image with sigma `n` keeps, on `n²` times fewer pixels.
//!
//! Invariants: the binned image covers the whole image (a last row or column of blocks narrower
//! than `n` averages the pixels it has); parameters in pixels are converted to the binned
//! image's pixels on the way in and every length in the result back to the image's pixels on the
//! way out, outline points clamped to the image, so a result reads as if every pixel had been
//! segmented.

use super::Segmentation;
use crate::morphology::Gray;
use crate::outline::Point;
use crate::segment::params::{Resolution, SegmentParams};

/// The binning factor for a `w × h` image.
pub(super) fn factor(w: usize, h: usize, resolution: Resolution) -> usize {
    match resolution {
        Resolution::Full => 1,
        Resolution::Auto => (w.max(h) / 1024).max(1),
    }
}

/// Each `n × n` block's mean, the last blocks of a row or column over the pixels they have.
pub(super) fn bin(image: &Gray, n: usize) -> Gray {
    let (w, h) = (image.width as usize, image.height as usize);
    let (bw, bh) = (w.div_ceil(n), h.div_ceil(n));
    let whole = w / n;
    let mut sums = vec![0f32; bw];
    let mut out = Vec::with_capacity(bw * bh);
    for rows in image.data.chunks(n * w) {
        sums.fill(0.0);
        for row in rows.chunks_exact(w) {
            add_blocks(&row[..whole * n], &mut sums[..whole], n);
            if whole < bw {
                sums[whole] += row[whole * n..].iter().sum::<f32>();
            }
        }
        let count_y = rows.len() / w;
        let full = 1.0 / (n * count_y) as f32;
        out.extend(sums[..whole].iter().map(|&s| s * full));
        if whole < bw {
            out.push(sums[whole] / ((w - whole * n) * count_y) as f32);
        }
    }
    Gray::new(bw as u32, bh as u32, out)
}

/// Adds each block of `n` values of `row` to its sum; pairs (the usual case) in a loop the
/// compiler vectorises.
fn add_blocks(row: &[f32], sums: &mut [f32], n: usize) {
    if n == 2 {
        for (s, p) in sums.iter_mut().zip(row.chunks_exact(2)) {
            *s += p[0] + p[1];
        }
    } else {
        for (s, block) in sums.iter_mut().zip(row.chunks_exact(n)) {
            *s += block.iter().sum::<f32>();
        }
    }
}

/// `params` in the pixels of an image binned by `n`.
pub(super) fn binned_params(params: &SegmentParams, n: usize) -> SegmentParams {
    let n = n as f32;
    SegmentParams {
        smooth_sigma: params.smooth_sigma.map(|s| s / n),
        simplify_epsilon: params.simplify_epsilon / n,
        pixel_size_um: params.pixel_size_um.map(|p| p * n),
        ..params.clone()
    }
}

/// Scales what the pipeline found on the binned image back to the `w × h` image's pixels.
pub(super) fn scale_back(seg: &mut Segmentation, n: usize, w: usize, h: usize) {
    let (n, w, h) = (n as f64, w as f64, h as f64);
    let back = |p: &mut Point| {
        p.x = (p.x * n).min(w);
        p.y = (p.y * n).min(h);
    };
    for object in &mut seg.objects {
        object.outer.iter_mut().for_each(back);
        object.holes.iter_mut().flatten().for_each(back);
    }
    let d = &mut seg.decisions;
    d.bin = n as u32;
    d.sigma *= n as f32;
    d.morph_radius *= n as u32;
    for split in &mut d.splits {
        split.at = [split.at[0] * n, split.at[1] * n];
        split.neck_px *= n;
        split.diameters_px = [split.diameters_px[0] * n, split.diameters_px[1] * n];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_factor_keeps_the_long_side_between_1024_and_2047() {
        assert_eq!(factor(1000, 1000, Resolution::Auto), 1);
        assert_eq!(factor(2047, 100, Resolution::Auto), 1);
        assert_eq!(factor(2048, 2048, Resolution::Auto), 2);
        assert_eq!(factor(1200, 2560, Resolution::Auto), 2);
        assert_eq!(factor(4096, 3000, Resolution::Auto), 4);
        assert_eq!(factor(4096, 4096, Resolution::Full), 1);
    }

    #[test]
    fn bin_averages_blocks_and_the_ragged_edge_over_what_it_has() {
        // 5 × 3, binned by 2: blocks of 2 × 2, the last column 1 wide and the last row 1 high.
        let data: Vec<f32> = (0..15).map(|v| v as f32).collect();
        let b = bin(&Gray::new(5, 3, data), 2);
        assert_eq!((b.width, b.height), (3, 2));
        assert_eq!(
            b.data,
            vec![
                (0.0 + 1.0 + 5.0 + 6.0) / 4.0,
                (2.0 + 3.0 + 7.0 + 8.0) / 4.0,
                (4.0 + 9.0) / 2.0,
                (10.0 + 11.0) / 2.0,
                (12.0 + 13.0) / 2.0,
                14.0,
            ]
        );
    }
}
