//! Boundary tracing on the pixel grid and Douglas-Peucker simplification of closed rings.
//!
//! A region's boundary is followed along pixel edges (vertices at pixel corners), so the traced
//! ring encloses exactly the region's pixels: its shoelace area equals the pixel count, with no
//! half-pixel bias as centre-based tracing has.

use crate::outline::Point;

/// Directions: 0 right, 1 down, 2 left, 3 up (y grows downwards).
const STEP: [(i64, i64); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];
/// Pixels ahead-right and ahead-left of vertex (x, y) when moving in each direction.
const AHEAD_RIGHT: [(i64, i64); 4] = [(0, 0), (-1, 0), (-1, -1), (0, -1)];
const AHEAD_LEFT: [(i64, i64); 4] = [(0, -1), (0, 0), (-1, 0), (-1, -1)];

/// Walks the boundary of the region `inside` that contains the pixel `start`, which must be its
/// topmost-leftmost pixel, keeping the region on the right (clockwise on screen). With `eight`,
/// pixels that touch only at a corner belong together (objects); without, they do not (holes).
/// Calls `step(x, y, d)` for every unit edge, leaving vertex (x, y) in direction `d`.
fn walk(
    start: (u32, u32),
    eight: bool,
    inside: impl Fn(i64, i64) -> bool,
    mut step: impl FnMut(i64, i64, usize),
) {
    let (sx, sy) = (i64::from(start.0), i64::from(start.1));
    let (mut x, mut y, mut d) = (sx, sy, 0usize);
    loop {
        step(x, y, d);
        x += STEP[d].0;
        y += STEP[d].1;
        let ar = inside(x + AHEAD_RIGHT[d].0, y + AHEAD_RIGHT[d].1);
        let al = inside(x + AHEAD_LEFT[d].0, y + AHEAD_LEFT[d].1);
        d = match (al, ar) {
            (true, true) => (d + 3) % 4,   // the region turns in front: turn left
            (false, true) => d,            // straight on
            (false, false) => (d + 1) % 4, // the region ends: turn right
            (true, false) if eight => (d + 3) % 4, // corner contact belongs to the region
            (true, false) => (d + 1) % 4,
        };
        if x == sx && y == sy && d == 0 {
            return;
        }
    }
}

/// The boundary as pixel corners: the ring encloses exactly the region's pixels.
#[cfg(test)]
pub(crate) fn trace(
    start: (u32, u32),
    eight: bool,
    inside: impl Fn(i64, i64) -> bool,
) -> Vec<Point> {
    let mut ring: Vec<Point> = Vec::new();
    let mut last = usize::MAX;
    walk(start, eight, inside, |x, y, d| {
        if d != last {
            ring.push(Point::new(x as f64, y as f64));
            last = d;
        }
    });
    ring
}

/// The boundary at sub-pixel precision: one point per boundary edge, on the segment between the
/// centres of the inside and the outside pixel, where `crossing(inside_px, outside_px)` says (0 at
/// the inside centre, 1 at the outside one; 0.5 is the edge itself). Pass the threshold crossing
/// of the smoothed feature, and the outline follows the image instead of the pixel staircase.
pub(crate) fn trace_subpixel(
    start: (u32, u32),
    eight: bool,
    inside: impl Fn(i64, i64) -> bool,
    crossing: impl Fn((i64, i64), (i64, i64)) -> f64,
) -> Vec<Point> {
    // For each direction: the inside (right) and outside (left) pixel of the edge leaving (x, y).
    const RIGHT_PX: [(i64, i64); 4] = [(0, 0), (-1, 0), (-1, -1), (0, -1)];
    const LEFT_PX: [(i64, i64); 4] = [(0, -1), (0, 0), (-1, 0), (-1, -1)];
    let mut ring = Vec::new();
    walk(start, eight, inside, |x, y, d| {
        let a = (x + RIGHT_PX[d].0, y + RIGHT_PX[d].1);
        let b = (x + LEFT_PX[d].0, y + LEFT_PX[d].1);
        let t = crossing(a, b).clamp(0.0, 1.0);
        let (ax, ay) = (a.0 as f64 + 0.5, a.1 as f64 + 0.5);
        let (bx, by) = (b.0 as f64 + 0.5, b.1 as f64 + 0.5);
        ring.push(Point::new(ax + t * (bx - ax), ay + t * (by - ay)));
    });
    ring
}

fn dist_to_segment(p: Point, a: Point, b: Point) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return (p.x - a.x).hypot(p.y - a.y);
    }
    ((p.x - a.x) * dy - (p.y - a.y) * dx).abs() / len2.sqrt()
}

/// Douglas-Peucker on a closed ring: splits it at the vertex farthest from the first, simplifies
/// both halves to within `epsilon`, and never returns fewer than 3 points.
pub(crate) fn simplify(ring: &[Point], epsilon: f64) -> Vec<Point> {
    let n = ring.len();
    if epsilon <= 0.0 || n <= 4 {
        return ring.to_vec();
    }
    let far = (1..n)
        .max_by(|&i, &j| {
            let di = (ring[i].x - ring[0].x).hypot(ring[i].y - ring[0].y);
            let dj = (ring[j].x - ring[0].x).hypot(ring[j].y - ring[0].y);
            di.total_cmp(&dj)
        })
        .unwrap_or(n / 2);
    let mut keep = vec![false; n + 1];
    keep[0] = true;
    keep[far] = true;
    keep[n] = true;
    let at = |i: usize| ring[i % n];
    let mut stack = vec![(0usize, far), (far, n)];
    while let Some((a, b)) = stack.pop() {
        if b <= a + 1 {
            continue;
        }
        let (pa, pb) = (at(a), at(b));
        let (mut best, mut best_d) = (a, -1.0f64);
        for i in a + 1..b {
            let d = dist_to_segment(at(i), pa, pb);
            if d > best_d {
                best_d = d;
                best = i;
            }
        }
        if best_d > epsilon {
            keep[best] = true;
            stack.push((a, best));
            stack.push((best, b));
        }
    }
    let out: Vec<Point> = (0..n).filter(|&i| keep[i]).map(|i| ring[i]).collect();
    if out.len() >= 3 { out } else { ring.to_vec() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::morphology::ring_area;

    fn region<'a>(rows: &'a [&'a str]) -> impl Fn(i64, i64) -> bool + 'a {
        move |x, y| {
            y >= 0
                && (y as usize) < rows.len()
                && x >= 0
                && (x as usize) < rows[0].len()
                && rows[y as usize].as_bytes()[x as usize] == b'#'
        }
    }

    #[test]
    fn a_single_pixel_is_a_unit_square() {
        let rows = ["...", ".#.", "..."];
        let ring = trace((1, 1), true, region(&rows));
        assert_eq!(
            ring,
            vec![
                Point::new(1.0, 1.0),
                Point::new(2.0, 1.0),
                Point::new(2.0, 2.0),
                Point::new(1.0, 2.0)
            ]
        );
    }

    #[test]
    fn traced_area_equals_the_pixel_count() {
        let rows = [
            "..........",
            "..####....",
            ".######...",
            ".##..###..",
            ".##...##..",
            "..#######.",
            "....##....",
        ];
        let count = rows.iter().map(|r| r.matches('#').count()).sum::<usize>();
        let hole_free = trace((2, 1), true, region(&rows));
        // The outer ring encloses the hole too: pixels plus the 5 hole pixels.
        assert_eq!(ring_area(&hole_free), (count + 5) as f64);
    }

    #[test]
    fn corner_contact_joins_objects_but_not_holes() {
        let rows = ["#.", ".#"];
        let eight = trace((0, 0), true, region(&rows));
        assert_eq!(ring_area(&eight), 2.0);
        let four = trace((0, 0), false, region(&rows));
        assert_eq!(ring_area(&four), 1.0);
    }

    #[test]
    fn subpixel_points_sit_on_the_crossing() {
        let rows = ["....", ".##.", ".##.", "...."];
        // Crossing at the edge itself: the ring of edge midpoints of a 2×2 square.
        let mid = trace_subpixel((1, 1), true, region(&rows), |_, _| 0.5);
        assert_eq!(mid.len(), 8);
        assert_eq!(ring_area(&mid), 4.0 - 0.5, "midpoints cut the four corners");
        // Crossing a quarter pixel outside every edge: a 2.5 × 2.5 square with cut corners.
        let out = trace_subpixel((1, 1), true, region(&rows), |_, _| 0.75);
        assert!(
            out.iter()
                .all(|p| p.x >= 0.75 && p.x <= 3.25 && p.y >= 0.75 && p.y <= 3.25)
        );
        assert!(ring_area(&out) > 4.0);
    }

    #[test]
    fn simplify_keeps_corners_and_drops_collinear_points() {
        let ring: Vec<Point> = (0..10)
            .map(|i| Point::new(i as f64, 0.0))
            .chain((0..10).map(|i| Point::new(10.0, i as f64)))
            .chain((0..10).map(|i| Point::new(10.0 - i as f64, 10.0)))
            .chain((0..10).map(|i| Point::new(0.0, 10.0 - i as f64)))
            .collect();
        let s = simplify(&ring, 0.5);
        assert_eq!(s.len(), 4);
        assert_eq!(ring_area(&s), 100.0);
        assert_eq!(simplify(&ring, 0.0).len(), ring.len());
    }
}
