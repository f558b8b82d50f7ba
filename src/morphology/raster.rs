//! Polygons back to pixels: the runs of pixels whose centres lie inside an object (even-odd over
//! its outer ring and holes), for intensities and binary masks; clipped to the image, never out
//! of bounds.

use crate::outline::{Object, Point};

/// The pixel runs `(y, x_start, x_end_exclusive)` whose centres lie inside the object (even-odd
/// over its outer ring and holes), clipped to `width` × `height`.
pub fn spans(object: &Object, width: u32, height: u32) -> Vec<(u32, u32, u32)> {
    let rings: Vec<&Vec<Point>> = std::iter::once(&object.outer)
        .chain(&object.holes)
        .collect();
    let mut edges: Vec<(Point, Point)> = Vec::new();
    let (mut miny, mut maxy) = (f64::MAX, f64::MIN);
    for r in &rings {
        let n = r.len();
        for i in 0..n {
            let (p, q) = (r[i], r[(i + 1) % n]);
            if p.y != q.y {
                edges.push(if p.y < q.y { (p, q) } else { (q, p) });
            }
            miny = miny.min(p.y);
            maxy = maxy.max(p.y);
        }
    }
    let mut out = Vec::new();
    if edges.is_empty() {
        return out;
    }
    edges.sort_by(|a, b| a.0.y.total_cmp(&b.0.y));
    let y0 = (miny - 0.5).ceil().max(0.0) as u32;
    let y1 = ((maxy - 0.5).ceil().max(0.0) as u32).min(height);
    let mut xs: Vec<f64> = Vec::new();
    let mut active: Vec<usize> = Vec::new();
    let mut next = 0;
    for y in y0..y1 {
        let yc = y as f64 + 0.5;
        while next < edges.len() && edges[next].0.y <= yc {
            active.push(next);
            next += 1;
        }
        active.retain(|&e| edges[e].1.y > yc);
        xs.clear();
        for &e in &active {
            let (p, q) = edges[e];
            xs.push(p.x + (yc - p.y) * (q.x - p.x) / (q.y - p.y));
        }
        xs.sort_by(f64::total_cmp);
        for pair in xs.chunks_exact(2) {
            let a = (pair[0] - 0.5).ceil().clamp(0.0, width as f64) as u32;
            let b = (pair[1] - 0.5).ceil().clamp(0.0, width as f64) as u32;
            if b > a {
                out.push((y, a, b));
            }
        }
    }
    out
}

/// A binary mask (0 or 255 per pixel, row-major) of the objects with their holes cut out.
pub fn rasterize(objects: &[Object], width: u32, height: u32) -> Vec<u8> {
    let mut mask = vec![0u8; width as usize * height as usize];
    for o in objects {
        for (y, a, b) in spans(o, width, height) {
            let row = y as usize * width as usize;
            mask[row + a as usize..row + b as usize].fill(255);
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::morphology::tests::rect;

    #[test]
    fn rasterized_mask_has_the_polygon_area_and_cuts_holes() {
        let o = Object {
            outer: rect(2.0, 3.0, 10.0, 6.0),
            holes: vec![rect(4.0, 5.0, 2.0, 2.0)],
        };
        let mask = rasterize(std::slice::from_ref(&o), 20, 12);
        assert_eq!(mask.iter().filter(|&&v| v == 255).count(), 60 - 4);
        assert_eq!(mask[5 * 20 + 4], 0, "inside the hole");
        assert_eq!(mask[3 * 20 + 2], 255, "top-left pixel of the object");
        assert_eq!(mask[3 * 20 + 12], 0, "just right of it");
        // Clipped at the image edge, never out of bounds.
        let big = Object {
            outer: rect(-5.0, -5.0, 100.0, 100.0),
            holes: vec![],
        };
        assert_eq!(
            rasterize(&[big], 7, 3)
                .iter()
                .filter(|&&v| v == 255)
                .count(),
            21
        );
    }
}
