//! The low-contrast flag: how far a part's mean feature is from its surroundings', the
//! background of its clump's crop that the part does not cover, or the whole image's
//! background when the crop has none.

use super::{Crop, Image};

/// A part is of low contrast when its mean feature differs from its surroundings' by less than
/// this fraction of the feature's range.
pub(super) const LOW_CONTRAST: f32 = 0.1;

/// The mean feature over the pixels `keep` accepts (by image index).
fn mean_where(img: &Image<'_>, keep: impl Fn(usize) -> bool) -> Option<f32> {
    let (mut sum, mut n) = (0f64, 0u64);
    for (i, &v) in img.feature.data.iter().enumerate() {
        if keep(i) {
            sum += f64::from(v);
            n += 1;
        }
    }
    (n > 0).then(|| (sum / n as f64) as f32)
}

/// The sum and count of the feature over the background (of the thresholded mask) in `crop`.
pub(super) fn background_of(img: &Image<'_>, crop: Crop) -> (f64, u64) {
    let w = img.feature.w;
    let (mut sum, mut n) = (0f64, 0u64);
    for y in crop.y0..crop.y0 + crop.h {
        let row = y * w + crop.x0..y * w + crop.x0 + crop.w;
        // A row at a time in eight f32 lanes without a branch (a row of values in [0, 1]
        // sums exactly enough), which the compiler vectorises.
        let (values, mask) = (&img.feature.data[row.clone()], &img.mask[row]);
        let (mut lanes, mut count) = ([0f32; 8], 0u32);
        let mut pairs = values.chunks_exact(8).zip(mask.chunks_exact(8));
        for (v, m) in &mut pairs {
            for k in 0..8 {
                let out = u8::from(m[k] == 0);
                lanes[k] += v[k] * f32::from(out);
                count += u32::from(out);
            }
        }
        let rest = values.len() - values.len() % 8;
        for (&v, &m) in values[rest..].iter().zip(&mask[rest..]) {
            let out = u8::from(m == 0);
            lanes[0] += v * f32::from(out);
            count += u32::from(out);
        }
        sum += lanes.iter().map(|&l| f64::from(l)).sum::<f64>();
        n += u64::from(count);
    }
    (sum, n)
}

/// How far the part's mean feature (over `region`, which covers `part`) is from its
/// surroundings': the background pixels of its clump's crop that are not in the region
/// (`around`: that crop's background sum and count), or the whole background when there are
/// none.
pub(super) fn contrast(
    img: &Image<'_>,
    region: &[u8],
    part: Crop,
    around: (f64, u64),
    background: &mut Option<Option<f32>>,
) -> f32 {
    let w = img.feature.w;
    let (mut inside, mut ni, mut taken, mut nt) = (0f64, 0u64, 0f64, 0u64);
    for (y, row) in region.chunks_exact(part.w).enumerate() {
        let g0 = (part.y0 + y) * w + part.x0;
        for (x, _) in row.iter().enumerate().filter(|(_, r)| **r != 0) {
            let v = f64::from(img.feature.data[g0 + x]);
            inside += v;
            ni += 1;
            if img.mask[g0 + x] == 0 {
                taken += v;
                nt += 1;
            }
        }
    }
    let inside = if ni > 0 { inside / ni as f64 } else { 0.0 };
    let (out, na) = (around.0 - taken, around.1 - nt);
    let around = if na > 0 {
        out / na as f64
    } else {
        let mean = *background.get_or_insert_with(|| mean_where(img, |i| img.mask[i] == 0));
        f64::from(mean.unwrap_or(inside as f32))
    };
    (inside - around).abs() as f32
}
