//! Raster primitives of a plate: blobs and haze multiplied into a transmission image, value noise
//! for texture, and a true Gaussian for defocus. Each touches only its bounding box.

use std::f64::consts::PI;

use super::{Blob, Halo, reach};

/// Multiplies the blob's transmission into `t`: anti-aliased at its edge, lighter towards it.
pub(super) fn paint_blob(t: &mut [f32], w: usize, h: usize, b: &Blob) {
    let reach = b.radius + 1.0;
    let x0 = (b.x - reach).floor().max(0.0) as usize;
    let x1 = ((b.x + reach).ceil().max(0.0) as usize).min(w);
    let y0 = (b.y - reach).floor().max(0.0) as usize;
    let y1 = ((b.y + reach).ceil().max(0.0) as usize).min(h);
    let absorb = 1.0 - b.transmission;
    for y in y0..y1 {
        let dy = y as f64 + 0.5 - b.y;
        for x in x0..x1 {
            let dx = x as f64 + 0.5 - b.x;
            let d = dx.hypot(dy);
            let c = (b.radius - d + 0.5).clamp(0.0, 1.0);
            if c > 0.0 {
                let q = (d / b.radius).min(1.0);
                let a = absorb * c * (1.0 - 0.35 * q * q);
                t[y * w + x] *= (1.0 - a) as f32;
            }
        }
    }
}

/// Multiplies the halo's haze into `t`: strongest at the centre, patchy, gone at the outline.
pub(super) fn paint_haze(t: &mut [f32], w: usize, h: usize, halo: &Halo, seed: u64) {
    const STEPS: usize = 720;
    let table: Vec<f64> = (0..STEPS)
        .map(|i| halo.r(2.0 * PI * i as f64 / STEPS as f64))
        .collect();
    let rmax = halo.radius * (1.0 + reach(&halo.harmonics));
    let x0 = (halo.cx - rmax).floor().max(0.0) as usize;
    let x1 = ((halo.cx + rmax).ceil().max(0.0) as usize).min(w);
    let y0 = (halo.cy - rmax).floor().max(0.0) as usize;
    let y1 = ((halo.cy + rmax).ceil().max(0.0) as usize).min(h);
    for y in y0..y1 {
        let dy = y as f64 + 0.5 - halo.cy;
        for x in x0..x1 {
            let dx = x as f64 + 0.5 - halo.cx;
            let d = dx.hypot(dy);
            if d >= rmax {
                continue;
            }
            let a = dy.atan2(dx).rem_euclid(2.0 * PI);
            let r = table[((a / (2.0 * PI) * STEPS as f64) as usize).min(STEPS - 1)];
            let rho = d / r;
            if rho < 1.0 {
                let n = value_noise(x as f64, y as f64, 0.05 * halo.radius, seed);
                let a = halo.haze * (1.0 - rho * rho) * (1.0 + 0.5 * n);
                t[y * w + x] *= (1.0 - a) as f32;
            }
        }
    }
}

/// A lattice value in [-1, 1) from the integer point and a seed (splitmix's finaliser).
fn lattice(ix: i64, iy: i64, seed: u64) -> f64 {
    let mut z = seed
        ^ (ix as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (iy as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Smooth value noise in about [-1, 1] with features `cell` pixels across.
pub(super) fn value_noise(x: f64, y: f64, cell: f64, seed: u64) -> f64 {
    let (fx, fy) = (x / cell, y / cell);
    let (ix, iy) = (fx.floor(), fy.floor());
    let (tx, ty) = (fx - ix, fy - iy);
    let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
    let (ix, iy) = (ix as i64, iy as i64);
    let top = lattice(ix, iy, seed) * (1.0 - sx) + lattice(ix + 1, iy, seed) * sx;
    let bottom = lattice(ix, iy + 1, seed) * (1.0 - sx) + lattice(ix + 1, iy + 1, seed) * sx;
    top * (1.0 - sy) + bottom * sy
}

/// A true Gaussian blur (separable, 3 sigma, edges clamped).
pub(super) fn gaussian(img: &mut [f32], w: usize, h: usize, sigma: f64) {
    let r = (3.0 * sigma).ceil() as usize;
    let mut k: Vec<f32> = (0..=2 * r)
        .map(|i| {
            let d = i as f64 - r as f64;
            (-d * d / (2.0 * sigma * sigma)).exp() as f32
        })
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    let mut tmp = vec![0f32; w * h];
    for y in 0..h {
        let row = &img[y * w..(y + 1) * w];
        for x in 0..w {
            let mut acc = 0.0;
            for (i, &kv) in k.iter().enumerate() {
                let xs = (x + i).saturating_sub(r).min(w - 1);
                acc += kv * row[xs];
            }
            tmp[y * w + x] = acc;
        }
    }
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (i, &kv) in k.iter().enumerate() {
                let ys = (y + i).saturating_sub(r).min(h - 1);
                acc += kv * tmp[ys * w + x];
            }
            img[y * w + x] = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gaussian_keeps_the_mean_and_spreads_a_point() {
        let (w, h) = (21, 21);
        let mut img = vec![0f32; w * h];
        img[10 * w + 10] = 1.0;
        gaussian(&mut img, w, h, 1.0);
        assert!((img.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let var: f32 = img
            .iter()
            .enumerate()
            .map(|(k, &v)| v * ((k % w) as f32 - 10.0).powi(2))
            .sum();
        assert!((var - 1.0).abs() < 0.02, "{var}");
    }
}
