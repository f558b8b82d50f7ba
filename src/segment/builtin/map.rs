//! Objects from a probability or label map that a model made (the `oip` protocol's reply):
//! everything above the threshold is foreground, each 8-connected component one object, traced
//! with its holes by the same boundary walk as the builtin pipeline, each boundary point at the
//! sub-pixel threshold crossing of the map, then simplified. Components under the minimum area
//! are dropped, as the builtin pipeline drops debris.

use super::binary::{Components, components};
use super::contour;
use crate::outline::Object;
#[cfg(test)]
use crate::outline::Point;

/// A map of one value per pixel, row-major, at the original image's size.
pub(crate) struct Map<'a> {
    pub(crate) w: usize,
    pub(crate) h: usize,
    pub(crate) data: &'a [f32],
}

/// The objects of `map`: components of values above `threshold`, at least `min_area` pixels,
/// in reading order of their first pixel, outlines simplified to within `epsilon` pixels.
pub(crate) fn objects_from_map(
    map: &Map<'_>,
    threshold: f32,
    min_area: f64,
    epsilon: f64,
) -> Vec<Object> {
    let (w, h) = (map.w, map.h);
    let mask: Vec<u8> = map.data.iter().map(|&v| u8::from(v > threshold)).collect();
    let comps = components(&mask, w, h, 1, true);
    let crossing = |a: (i64, i64), b: (i64, i64)| -> f64 {
        let at = |(x, y): (i64, i64)| {
            (x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h)
                .then(|| map.data[y as usize * w + x as usize])
        };
        match (at(a), at(b)) {
            (Some(fa), Some(fb)) if (fb - fa).abs() > 1e-6 => {
                f64::from((threshold - fa) / (fb - fa))
            }
            _ => 0.5,
        }
    };
    let mut objects = Vec::new();
    for (i, c) in comps.components.iter().enumerate() {
        if (c.area as f64) < min_area {
            continue;
        }
        let own = paint(&comps, i, w, h);
        let inside = |x: i64, y: i64| set(&own, w, h, x, y);
        let outer = contour::trace_subpixel(c.first, true, inside, crossing);
        let mut object = Object {
            outer: contour::simplify(&outer, epsilon),
            holes: Vec::new(),
        };
        let background = components(&own, w, h, 0, false);
        for (j, hole) in background.components.iter().enumerate() {
            if hole.touches_border {
                continue;
            }
            let hm = paint(&background, j, w, h);
            let in_hole = |x: i64, y: i64| set(&hm, w, h, x, y);
            // The hole's inside is the map's outside: the crossing is measured from its side.
            let ring = contour::trace_subpixel(hole.first, false, in_hole, crossing);
            object.holes.push(contour::simplify(&ring, epsilon));
        }
        objects.push(object);
    }
    objects
}

fn set(mask: &[u8], w: usize, h: usize, x: i64, y: i64) -> bool {
    x >= 0
        && y >= 0
        && (x as usize) < w
        && (y as usize) < h
        && mask[y as usize * w + x as usize] != 0
}

/// Component `i` of `c` as a mask.
fn paint(c: &Components, i: usize, w: usize, h: usize) -> Vec<u8> {
    let mut m = vec![0u8; w * h];
    for (run, &l) in c.runs.iter().zip(&c.run_label) {
        if l as usize == i {
            let row = run.y as usize * w;
            m[row + run.x0 as usize..row + run.x1 as usize].fill(1);
        }
    }
    m
}

/// Bilinear resampling of a `sw`×`sh` plane to `dw`×`dh`, pixel centres aligned (a model's
/// input from the image, and its output map back to the image's size).
pub(crate) fn resize(src: &[f32], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f32> {
    if (sw, sh) == (dw, dh) {
        return src.to_vec();
    }
    let axis = |d: usize, s: usize| -> Vec<(usize, usize, f32)> {
        let scale = s as f64 / d as f64;
        (0..d)
            .map(|i| {
                let p = ((i as f64 + 0.5) * scale - 0.5).clamp(0.0, (s - 1) as f64);
                let i0 = p.floor() as usize;
                let i1 = (i0 + 1).min(s - 1);
                (i0, i1, (p - i0 as f64) as f32)
            })
            .collect()
    };
    let (xs, ys) = (axis(dw, sw), axis(dh, sh));
    let mut out = Vec::with_capacity(dw * dh);
    for &(y0, y1, ty) in &ys {
        let (r0, r1) = (&src[y0 * sw..(y0 + 1) * sw], &src[y1 * sw..(y1 + 1) * sw]);
        for &(x0, x1, tx) in &xs {
            let top = r0[x0] + (r0[x1] - r0[x0]) * tx;
            let bottom = r1[x0] + (r1[x1] - r1[x0]) * tx;
            out.push(top + (bottom - top) * ty);
        }
    }
    out
}

/// The area of a ring (shoelace), for tests.
#[cfg(test)]
fn area(ring: &[Point]) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            a.x * b.y - b.x * a.y
        })
        .sum::<f64>()
        .abs()
        / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disc_with_a_hole_is_one_object_with_its_hole() {
        let (w, h) = (64, 64);
        let data: Vec<f32> = (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f64 - 31.5, (i / w) as f64 - 31.5);
                let r = x.hypot(y);
                if r < 20.0 && r > 6.0 { 1.0 } else { 0.0 }
            })
            .collect();
        let objects = objects_from_map(&Map { w, h, data: &data }, 0.5, 10.0, 0.0);
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].holes.len(), 1);
        let ring = area(&objects[0].outer) - area(&objects[0].holes[0]);
        let truth = std::f64::consts::PI * (20.0f64.powi(2) - 6.0f64.powi(2));
        assert!((ring - truth).abs() / truth < 0.1, "{ring} vs {truth}");
    }

    #[test]
    fn specks_under_the_minimum_area_are_dropped() {
        let mut data = vec![0.0f32; 32 * 32];
        data[5 * 32 + 5] = 1.0;
        assert!(
            objects_from_map(
                &Map {
                    w: 32,
                    h: 32,
                    data: &data
                },
                0.5,
                4.0,
                1.0
            )
            .is_empty()
        );
    }

    #[test]
    fn resizing_keeps_a_constant_and_interpolates_between_centres() {
        assert_eq!(resize(&[2.0; 4], 2, 2, 5, 3), vec![2.0; 15]);
        let up = resize(&[0.0, 1.0], 2, 1, 4, 1);
        assert_eq!(up, vec![0.0, 0.25, 0.75, 1.0]);
    }
}
