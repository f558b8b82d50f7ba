//! The exact Euclidean distance transform (Felzenszwalb and Huttenlocher's lower envelope of
//! parabolas, one pass per axis): for every pixel of a mask, the distance to the nearest pixel
//! outside it (pixels beyond the edge of the mask count as outside). O(pixels).

/// Squared distances, as `f32`, of every pixel of `mask` (`w` × `h`, non-zero inside) to the
/// nearest outside pixel; 0 outside.
pub(crate) fn edt_squared(mask: &[u8], w: usize, h: usize) -> Vec<f32> {
    // Farther than any distance in the mask, and small enough for f32 sums to stay exact.
    let far = {
        let n = (w + h + 2) as f32;
        4.0 * n * n
    };
    let mut d: Vec<f32> = mask
        .iter()
        .map(|&m| if m != 0 { far } else { 0.0 })
        .collect();
    let n = w.max(h) + 2;
    let mut f = vec![0f32; n];
    let mut out = vec![0f32; n];
    let mut v = vec![0usize; n];
    let mut z = vec![0f32; n + 1];
    // Columns, with an outside pixel beyond each end.
    for x in 0..w {
        f[0] = 0.0;
        for y in 0..h {
            f[y + 1] = d[y * w + x];
        }
        f[h + 1] = 0.0;
        envelope(&f[..h + 2], &mut out[..h + 2], &mut v, &mut z);
        for y in 0..h {
            d[y * w + x] = out[y + 1];
        }
    }
    // Rows.
    for y in 0..h {
        f[0] = 0.0;
        f[1..=w].copy_from_slice(&d[y * w..(y + 1) * w]);
        f[w + 1] = 0.0;
        envelope(&f[..w + 2], &mut out[..w + 2], &mut v, &mut z);
        d[y * w..(y + 1) * w].copy_from_slice(&out[1..=w]);
    }
    d
}

/// One dimension: `out[q] = min_p (q - p)² + f[p]`.
fn envelope(f: &[f32], out: &mut [f32], v: &mut [usize], z: &mut [f32]) {
    let n = f.len();
    let mut k = 0usize;
    v[0] = 0;
    z[0] = f32::NEG_INFINITY;
    z[1] = f32::INFINITY;
    for q in 1..n {
        let mut s;
        loop {
            let p = v[k];
            s = ((f[q] + (q * q) as f32) - (f[p] + (p * p) as f32)) / (2.0 * (q - p) as f32);
            if s <= z[k] && k > 0 {
                k -= 1;
            } else {
                break;
            }
        }
        if s <= z[k] {
            // k == 0 and the new parabola is lower everywhere to the right of -∞.
            v[0] = q;
            z[1] = f32::INFINITY;
            continue;
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f32::INFINITY;
    }
    k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f32 {
            k += 1;
        }
        let p = v[k];
        let dq = q as f32 - p as f32;
        *o = dq * dq + f[p];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against brute force on a random-ish mask.
    #[test]
    fn matches_brute_force() {
        let (w, h) = (23, 17);
        let mask: Vec<u8> = (0..w * h)
            .map(|i| u8::from((i * 7919 % 13) > 3 || (i % w > 5 && i % w < 15 && i / w > 4)))
            .collect();
        let d = edt_squared(&mask, w, h);
        for y in 0..h {
            for x in 0..w {
                let mut best = f32::INFINITY;
                if mask[y * w + x] == 0 {
                    best = 0.0;
                }
                for yy in -1..=h as i64 {
                    for xx in -1..=w as i64 {
                        let outside = xx < 0
                            || yy < 0
                            || xx >= w as i64
                            || yy >= h as i64
                            || mask[yy as usize * w + xx as usize] == 0;
                        if outside {
                            let dd = ((xx - x as i64).pow(2) + (yy - y as i64).pow(2)) as f32;
                            best = best.min(dd);
                        }
                    }
                }
                assert_eq!(d[y * w + x], best, "at ({x}, {y})");
            }
        }
    }

    #[test]
    fn a_disc_peaks_at_its_radius() {
        let (w, h) = (41, 41);
        let mask: Vec<u8> = (0..w * h)
            .map(|i| u8::from(((i % w) as f64 - 20.0).hypot((i / w) as f64 - 20.0) < 15.0))
            .collect();
        let d = edt_squared(&mask, w, h);
        let peak = d.iter().cloned().fold(0.0f32, f32::max).sqrt();
        assert!((14.0..=15.1).contains(&peak), "{peak}");
        assert_eq!(d[20 * w + 20].sqrt(), peak);
    }
}
