//! Float image kernels of the builtin pipeline: robust normalisation, illumination flattening,
//! box means, and local standard deviation (the Gaussian smoothing is in `smooth.rs`). All are O(pixels),
//! non-generic and branch-light so they compile to tight loops.

use std::borrow::Cow;

/// A float image, row-major.
#[derive(Clone, Debug)]
pub(crate) struct Plane {
    pub(crate) w: usize,
    pub(crate) h: usize,
    pub(crate) data: Vec<f32>,
}

impl Plane {
    pub(crate) fn new(w: usize, h: usize, data: Vec<f32>) -> Self {
        debug_assert_eq!(data.len(), w * h);
        Plane { w, h, data }
    }
}

/// Histogram of `data` over `[lo, hi]` in `bins` bins (values outside go to the end bins).
pub(crate) fn histogram(data: &[f32], lo: f32, hi: f32, bins: usize) -> Vec<u64> {
    let scale = if hi > lo {
        (bins as f32 - 1.0) / (hi - lo)
    } else {
        0.0
    };
    let top = bins as i32 - 1;
    // Through i32 (saturating, NaN to 0), which is cheaper than to usize and the same bin.
    let bin = |v: f32| (((v - lo) * scale) as i32).clamp(0, top) as usize;
    // Four partial histograms where they fit in cache: neighbouring pixels mostly fall in the
    // same bin, and one counter would make every increment wait for the one before. Counted in
    // u32 over blocks small enough not to overflow; bins are found 64 at a time, a loop the
    // compiler vectorises.
    let parts = if bins <= 4096 { 4 } else { 1 };
    let mut part = vec![0u32; parts * bins];
    let mut hist = vec![0u64; bins];
    let mut idx = [0usize; 64];
    for block in data.chunks(1 << 30) {
        for chunk in block.chunks(64) {
            for (i, &v) in idx.iter_mut().zip(chunk) {
                *i = bin(v);
            }
            let idx = &idx[..chunk.len()];
            if parts == 4 {
                let mut quads = idx.chunks_exact(4);
                for q in &mut quads {
                    part[q[0]] += 1;
                    part[bins + q[1]] += 1;
                    part[2 * bins + q[2]] += 1;
                    part[3 * bins + q[3]] += 1;
                }
                for &i in quads.remainder() {
                    part[i] += 1;
                }
            } else {
                for &i in idx {
                    part[i] += 1;
                }
            }
        }
        for (i, h) in hist.iter_mut().enumerate() {
            *h += (0..parts)
                .map(|k| u64::from(part[k * bins + i]))
                .sum::<u64>();
        }
        part.fill(0);
    }
    hist
}

/// The smallest and largest value (NaN ignored); `(f32::MAX, f32::MIN)` for no values.
pub(crate) fn min_max(data: &[f32]) -> (f32, f32) {
    // Eight lanes the compiler keeps in vector registers, one pass for each end: written so
    // (a NaN compares false and leaves the lane alone) the loops become plain vector min and
    // max, several times faster than a fold or one loop doing both.
    let (mut lo, mut hi) = ([f32::MAX; 8], [f32::MIN; 8]);
    for c in data.chunks_exact(8) {
        for k in 0..8 {
            lo[k] = if c[k] < lo[k] { c[k] } else { lo[k] };
        }
    }
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        for k in 0..8 {
            hi[k] = if c[k] > hi[k] { c[k] } else { hi[k] };
        }
    }
    let rest = chunks.remainder();
    (
        rest.iter().chain(&lo).fold(f32::MAX, |a, &v| a.min(v)),
        rest.iter().chain(&hi).fold(f32::MIN, |a, &v| a.max(v)),
    )
}

/// The values at percentiles `pcts` (0..=100): a histogram of 65,536 bins over the whole range
/// finds the bin of each (exact for 8- and 16-bit images, whose values are whole numbers in a
/// range of at most 65,536); where a bin is wide against the spread of the percentiles (a few
/// extreme pixels stretched the range), a fine histogram inside that bin refines it.
pub(crate) fn percentiles<const N: usize>(data: &[f32], pcts: [f64; N]) -> [f32; N] {
    const BINS: usize = 65_536;
    const FINE: usize = 4096;
    let (min, max) = min_max(data);
    let mut out = [min; N];
    if max <= min || data.is_empty() {
        return out;
    }
    let width = (max - min) / BINS as f32;
    let coarse = histogram(data, min, max, BINS);
    let n = data.len() as u64;
    // For each percentile: its bin and how many samples lie below that bin.
    let mut found = [(0usize, 0u64, 0u64); N];
    for (k, &p) in pcts.iter().enumerate() {
        let target = ((p / 100.0) * (n - 1) as f64).round() as u64;
        let mut below = 0u64;
        for (i, &c) in coarse.iter().enumerate() {
            if below + c > target {
                found[k] = (i, below, target);
                break;
            }
            below += c;
        }
    }
    for (k, &(b, ..)) in found.iter().enumerate() {
        out[k] = min + (b as f32 + 0.5) * width;
    }
    let spread =
        out.iter().copied().fold(f32::MIN, f32::max) - out.iter().copied().fold(f32::MAX, f32::min);
    if width <= 1.0 || width * FINE as f32 <= spread.max(width) {
        return out;
    }
    let scale = (BINS as f32 - 1.0) / (max - min);
    let mut fine = vec![vec![0u64; FINE]; N];
    for &v in data {
        let bin = (((v - min) * scale) as usize).min(BINS - 1);
        for (k, &(b, _, _)) in found.iter().enumerate() {
            if bin == b {
                let lo = min + b as f32 * width;
                let f = (((v - lo) / width * FINE as f32) as usize).min(FINE - 1);
                fine[k][f] += 1;
            }
        }
    }
    for (k, &(b, below, target)) in found.iter().enumerate() {
        let lo = min + b as f32 * width;
        let mut acc = below;
        out[k] = lo + width;
        for (i, &c) in fine[k].iter().enumerate() {
            acc += c;
            if acc > target {
                out[k] = lo + width * (i as f32 + 0.5) / FINE as f32;
                break;
            }
        }
    }
    out
}

/// Statistics of a large image (its percentiles, its threshold's histogram) are taken from
/// about this many of its pixels.
const SAMPLE: usize = 1 << 18;

/// Every `k`-th value of `data`, `k` = its length / [`SAMPLE`] made odd upward (so that the
/// sample moves along the columns from row to row): at least two thirds of `SAMPLE` values, all
/// of `data` when it holds fewer than twice as many. The 0.5 % percentile of a 1024² image then
/// rests on some 1,000 samples and an Otsu split on 210,000, a fifth of the cost for a shift far
/// below one grey level.
pub(crate) fn sample(data: &[f32]) -> Cow<'_, [f32]> {
    let stride = (data.len() / SAMPLE) | 1;
    if stride > 1 {
        Cow::Owned(data.iter().step_by(stride).copied().collect())
    } else {
        Cow::Borrowed(data)
    }
}

/// Maps the image to [0, 1] between its `lo_pct` and `hi_pct` percentiles (clamped, taken from
/// a [`sample`]), so one dead or saturated pixel cannot set the scale.
pub(crate) fn normalize(data: &[f32], lo_pct: f64, hi_pct: f64) -> Vec<f32> {
    let [lo, hi] = percentiles(&sample(data), [lo_pct, hi_pct]);
    let (lo, hi) = if hi > lo { (lo, hi) } else { min_max(data) };
    if hi <= lo {
        return vec![0.5; data.len()];
    }
    let scale = 1.0 / (hi - lo);
    data.iter()
        .map(|&v| ((v - lo) * scale).clamp(0.0, 1.0))
        .collect()
}

/// Divides out a smooth illumination field. The background is estimated at reduced scale: block
/// means on a grid of about 64 cells on the long side, the cells that look like objects (the
/// darker or brighter side of an Otsu split, whichever covers fewer border cells) left out, and a
/// quadratic surface fitted to the rest by least squares. A surface, unlike a blur, is not pulled
/// down by a spheroid that fills half the field.
pub(crate) fn flatten(p: &mut Plane) {
    let cell = (p.w.max(p.h) / 64).max(4);
    let (gw, gh) = (p.w.div_ceil(cell), p.h.div_ceil(cell));
    if gw < 3 || gh < 3 {
        return;
    }
    let mut means = vec![0f32; gw * gh];
    let mut counts = vec![0u32; gw * gh];
    for y in 0..p.h {
        let row = &p.data[y * p.w..(y + 1) * p.w];
        let gy = y / cell;
        for (gx, chunk) in row.chunks(cell).enumerate() {
            means[gy * gw + gx] += chunk.iter().sum::<f32>();
            counts[gy * gw + gx] += chunk.len() as u32;
        }
    }
    for (m, &c) in means.iter_mut().zip(&counts) {
        *m /= c.max(1) as f32;
    }
    // Which side of the split is background: the one the border cells mostly fall on.
    let t = otsu(&histogram(&means, 0.0, 1.0, 256)) as f32 / 255.0;
    let mut border_above = 0i64;
    for gy in 0..gh {
        for gx in 0..gw {
            if gx == 0 || gy == 0 || gx == gw - 1 || gy == gh - 1 {
                border_above += if means[gy * gw + gx] > t { 1 } else { -1 };
            }
        }
    }
    let background = |v: f32| if border_above >= 0 { v > t } else { v <= t };
    // Least squares for b(x, y) = c0 + c1 x + c2 y + c3 x² + c4 xy + c5 y², coordinates in [-1, 1].
    let mut ata = [[0f64; 6]; 6];
    let mut atb = [0f64; 6];
    let mut used = 0;
    for gy in 0..gh {
        for gx in 0..gw {
            let v = means[gy * gw + gx];
            if !background(v) {
                continue;
            }
            let (u, w) = (
                2.0 * (gx as f64 + 0.5) / gw as f64 - 1.0,
                2.0 * (gy as f64 + 0.5) / gh as f64 - 1.0,
            );
            let f = [1.0, u, w, u * u, u * w, w * w];
            for i in 0..6 {
                atb[i] += f[i] * f64::from(v);
                for j in 0..6 {
                    ata[i][j] += f[i] * f[j];
                }
            }
            used += 1;
        }
    }
    let Some(c) = (used >= 12).then(|| solve6(ata, atb)).flatten() else {
        return;
    };
    let mean_bg = c[0].max(1e-3) as f32;
    // The x coordinate of each column, once.
    let us: Vec<f32> = (0..p.w)
        .map(|x| (2.0 * (x as f64 + 0.5) / p.w as f64 - 1.0) as f32)
        .collect();
    for y in 0..p.h {
        let w = 2.0 * (y as f64 + 0.5) / p.h as f64 - 1.0;
        let row = &mut p.data[y * p.w..(y + 1) * p.w];
        let (a0, a1, a2) = (
            (c[0] + c[2] * w + c[5] * w * w) as f32,
            (c[1] + c[4] * w) as f32,
            c[3] as f32,
        );
        for (v, &u) in row.iter_mut().zip(&us) {
            let b = (a0 + u * (a1 + u * a2)).max(1e-3);
            *v *= mean_bg / b;
        }
    }
}

/// Solves a 6×6 system by Gaussian elimination with partial pivoting.
fn solve6(mut a: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
    for col in 0..6 {
        let pivot = (col..6).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for row in col + 1..6 {
            let f = a[row][col] / pivot_row[col];
            for (v, p) in a[row][col..].iter_mut().zip(&pivot_row[col..]) {
                *v -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0f64; 6];
    for row in (0..6).rev() {
        let s: f64 = (row + 1..6).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// Horizontal box mean of radius `r` with edge replication, `src` to `dst` (whole rows).
///
/// A running sum is one long chain of dependent additions, so rows go four at a time with their
/// chains interleaved; each row's arithmetic is exactly that of a row on its own.
pub(super) fn box_h(src: &[f32], dst: &mut [f32], w: usize, r: usize) {
    let norm = 1.0 / (2 * r + 1) as f32;
    // The ends, where the window reaches past the row, and the middle, where it does not.
    let lead = (r + 1).min(w);
    let tail = w.saturating_sub(r + 1).max(r + 1).min(w).max(lead);
    let ends = |s: &[f32], d: &mut [f32], xs: std::ops::Range<usize>, mut acc: f32| -> f32 {
        let at = |i: isize| s[i.clamp(0, w as isize - 1) as usize];
        for x in xs {
            d[x] = acc * norm;
            acc += at(x as isize + r as isize + 1) - at(x as isize - r as isize);
        }
        acc
    };
    for (s4, d4) in src.chunks(4 * w).zip(dst.chunks_mut(4 * w)) {
        let rows = s4.len() / w;
        let mut acc = [0f32; 4];
        for (k, a) in acc.iter_mut().enumerate().take(rows) {
            let s = &s4[k * w..(k + 1) * w];
            let start: f32 = (-(r as isize)..=r as isize)
                .map(|i| s[i.clamp(0, w as isize - 1) as usize])
                .sum();
            *a = ends(s, &mut d4[k * w..(k + 1) * w], 0..lead, start);
        }
        if rows == 4 {
            let (s0, rest) = s4.split_at(w);
            let (s1, rest) = rest.split_at(w);
            let (s2, s3) = rest.split_at(w);
            let (d0, rest) = d4.split_at_mut(w);
            let (d1, rest) = rest.split_at_mut(w);
            let (d2, d3) = rest.split_at_mut(w);
            let [mut a0, mut a1, mut a2, mut a3] = acc;
            for x in lead..tail {
                d0[x] = a0 * norm;
                d1[x] = a1 * norm;
                d2[x] = a2 * norm;
                d3[x] = a3 * norm;
                a0 += s0[x + r + 1] - s0[x - r];
                a1 += s1[x + r + 1] - s1[x - r];
                a2 += s2[x + r + 1] - s2[x - r];
                a3 += s3[x + r + 1] - s3[x - r];
            }
            acc = [a0, a1, a2, a3];
        } else {
            for (k, a) in acc.iter_mut().enumerate().take(rows) {
                let (s, d) = (&s4[k * w..(k + 1) * w], &mut d4[k * w..(k + 1) * w]);
                for x in lead..tail {
                    d[x] = *a * norm;
                    *a += s[x + r + 1] - s[x - r];
                }
            }
        }
        for (k, &a) in acc.iter().enumerate().take(rows) {
            let s = &s4[k * w..(k + 1) * w];
            ends(s, &mut d4[k * w..(k + 1) * w], tail..w, a);
        }
    }
}

/// Vertical box mean of radius `r` with edge replication, one row at a time (cache friendly).
fn box_v(src: &[f32], dst: &mut [f32], w: usize, h: usize, r: usize) {
    let norm = 1.0 / (2 * r + 1) as f32;
    let row = |y: isize| -> &[f32] {
        let y = y.clamp(0, h as isize - 1) as usize;
        &src[y * w..(y + 1) * w]
    };
    let mut acc = vec![0f32; w];
    for dy in -(r as isize)..=r as isize {
        for (a, &v) in acc.iter_mut().zip(row(dy)) {
            *a += v;
        }
    }
    for y in 0..h {
        let out = &mut dst[y * w..(y + 1) * w];
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = a * norm;
        }
        let (add, sub) = (
            row(y as isize + r as isize + 1),
            row(y as isize - r as isize),
        );
        for ((a, &p), &m) in acc.iter_mut().zip(add).zip(sub) {
            *a += p - m;
        }
    }
}

/// A separable box mean of radius `r` in place, using `tmp` (resized as needed).
fn box_mean_with(p: &mut Plane, r: usize, tmp: &mut Vec<f32>) {
    if r == 0 {
        return;
    }
    tmp.resize(p.data.len(), 0.0);
    box_h(&p.data, tmp, p.w, r);
    box_v(tmp, &mut p.data, p.w, p.h, r);
}

/// A separable box mean of radius `r` in place.
pub(crate) fn box_mean(p: &mut Plane, r: usize) {
    box_mean_with(p, r, &mut Vec::new());
}

/// Local standard deviation in a (2r+1)² window.
pub(crate) fn local_std(p: &Plane, r: usize) -> Plane {
    let mut mean = p.clone();
    box_mean(&mut mean, r);
    let mut sq = Plane::new(p.w, p.h, p.data.iter().map(|v| v * v).collect());
    box_mean(&mut sq, r);
    for (s, m) in sq.data.iter_mut().zip(&mean.data) {
        *s = (*s - m * m).max(0.0).sqrt();
    }
    sq
}

/// Otsu's threshold: the bin index that maximises the between-class variance. Where the maximum
/// is a plateau (empty bins between two classes), the middle of the plateau: the first maximum
/// would put the threshold right against one class.
pub(crate) fn otsu(hist: &[u64]) -> usize {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return hist.len() / 2;
    }
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum();
    let (mut w0, mut sum0) = (0f64, 0f64);
    let mut vars = vec![-1f64; hist.len()];
    for (i, &c) in hist.iter().enumerate() {
        w0 += c as f64;
        sum0 += i as f64 * c as f64;
        let w1 = total as f64 - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (sum_all - sum0) / w1);
        vars[i] = w0 * w1 * (m0 - m1) * (m0 - m1);
    }
    let best = vars.iter().copied().fold(-1f64, f64::max);
    if best <= 0.0 {
        return hist.len() / 2;
    }
    let close = |v: f64| v >= best * (1.0 - 1e-9);
    let first = vars.iter().position(|&v| close(v)).unwrap_or(0);
    let last = first + vars[first..].iter().take_while(|&&v| close(v)).count() - 1;
    (first + last) / 2
}

/// How well Otsu's split separates the histogram: between-class over total variance, in [0, 1].
pub(crate) fn separability(hist: &[u64], t: usize) -> f64 {
    let total: f64 = hist.iter().sum::<u64>() as f64;
    if total == 0.0 {
        return 0.0;
    }
    let mean: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum::<f64>()
        / total;
    let var: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| (i as f64 - mean).powi(2) * c as f64)
        .sum::<f64>()
        / total;
    let (mut w0, mut s0) = (0f64, 0f64);
    for (i, &c) in hist.iter().enumerate().take(t + 1) {
        w0 += c as f64;
        s0 += i as f64 * c as f64;
    }
    let w1 = total - w0;
    if w0 == 0.0 || w1 == 0.0 || var == 0.0 {
        return 0.0;
    }
    let (m0, m1) = (s0 / w0, (mean * total - s0) / w1);
    (w0 / total) * (w1 / total) * (m0 - m1).powi(2) / var
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_exact_to_a_fraction_of_a_bin() {
        let mut data: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32).collect();
        data.push(65_535.0); // one saturated pixel of a 16-bit image
        let [p1, p50, p99] = percentiles(&data, [1.0, 50.0, 99.0]);
        assert!((p1 - 10.0).abs() <= 1.0, "{p1}");
        assert!((p50 - 500.0).abs() <= 1.0, "{p50}");
        assert!((p99 - 990.0).abs() <= 1.0, "{p99}");
    }

    #[test]
    fn normalize_ignores_a_few_extreme_pixels() {
        let mut data: Vec<f32> = (0..10_000).map(|i| 100.0 + (i % 100) as f32).collect();
        data[0] = 0.0;
        data[1] = 65_535.0;
        let n = normalize(&data, 0.5, 99.5);
        assert_eq!(n[0], 0.0);
        assert_eq!(n[1], 1.0);
        let mid = n[50];
        assert!((mid - 0.5).abs() < 0.05, "{mid}");
    }

    /// Rows four at a time give what each row gives on its own, to the bit.
    #[test]
    fn box_h_interleaved_rows_match_single_rows() {
        for (w, h, r) in [(1, 5, 2), (3, 4, 1), (9, 9, 3), (64, 11, 2), (100, 8, 7)] {
            let src: Vec<f32> = (0..w * h).map(|i| ((i * 7919) % 97) as f32 / 9.7).collect();
            let mut together = vec![0f32; w * h];
            box_h(&src, &mut together, w, r);
            let mut alone = vec![0f32; w * h];
            for (s, d) in src.chunks_exact(w).zip(alone.chunks_exact_mut(w)) {
                box_h(s, d, w, r);
            }
            assert_eq!(together, alone, "{w}×{h} r{r}");
        }
    }

    #[test]
    fn otsu_splits_two_modes() {
        let mut hist = vec![0u64; 256];
        hist[50] = 1000;
        hist[200] = 1000;
        let t = otsu(&hist);
        assert_eq!(t, 124, "the middle of the empty stretch between the modes");
        assert!(separability(&hist, t) > 0.99);
        let flat = vec![10u64; 256];
        assert!(separability(&flat, otsu(&flat)) < 0.8);
    }

    #[test]
    fn flatten_removes_a_gradient_but_keeps_an_object() {
        let (w, h) = (256, 256);
        let mut data = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let bg = 0.5 + 0.3 * (x as f32 / w as f32) - 0.1 * (y as f32 / h as f32);
                let inside = (x as f32 - 128.0).hypot(y as f32 - 128.0) < 60.0;
                data[y * w + x] = if inside { bg * 0.4 } else { bg };
            }
        }
        let mut p = Plane::new(w, h, data);
        flatten(&mut p);
        let corners = [
            p.data[0],
            p.data[w - 1],
            p.data[(h - 1) * w],
            p.data[h * w - 1],
        ];
        let (lo, hi) = min_max(&corners);
        assert!(hi - lo < 0.02, "background flat after: {corners:?}");
        assert!(p.data[128 * w + 128] < 0.5 * lo, "the object stays dark");
    }

    #[test]
    fn local_std_is_high_on_texture_and_zero_on_flat() {
        let (w, h) = (64, 32);
        let data: Vec<f32> = (0..w * h)
            .map(|i| {
                if i % w < 32 {
                    0.5
                } else if (i / w + i % w) % 2 == 0 {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let s = local_std(&Plane::new(w, h, data), 2);
        assert!(s.data[16 * w + 8] < 1e-3);
        assert!(s.data[16 * w + 50] > 0.4);
    }
}
