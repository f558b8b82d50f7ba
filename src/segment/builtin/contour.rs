//! Boundary tracing on the pixel grid and Douglas-Peucker simplification of closed rings.
//!
//! A region's boundary is followed along pixel edges (vertices at pixel corners), so the traced
//! ring encloses exactly the region's pixels: its shoelace area equals the pixel count, with no
//! half-pixel bias as centre-based tracing has.

use crate::outline::Point;

/// Follows the boundary of the region `inside` that contains the pixel `start`, which must be its
/// topmost-leftmost pixel. The region is kept on the right of the walk (clockwise on screen).
/// With `eight`, pixels that touch only at a corner belong together (objects); without, they do
/// not (holes). Returns the corners of the ring, without repeating the first.
pub(crate) fn trace(
    start: (u32, u32),
    eight: bool,
    inside: impl Fn(i64, i64) -> bool,
) -> Vec<Point> {
    // Directions: 0 right, 1 down, 2 left, 3 up (y grows downwards).
    const STEP: [(i64, i64); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];
    // Pixels ahead-right and ahead-left of vertex (x, y) when moving in each direction.
    const AHEAD_RIGHT: [(i64, i64); 4] = [(0, 0), (-1, 0), (-1, -1), (0, -1)];
    const AHEAD_LEFT: [(i64, i64); 4] = [(0, -1), (0, 0), (-1, 0), (-1, -1)];
    let (sx, sy) = (i64::from(start.0), i64::from(start.1));
    let (mut x, mut y, mut d) = (sx, sy, 0usize);
    let mut ring = vec![Point::new(sx as f64, sy as f64)];
    loop {
        x += STEP[d].0;
        y += STEP[d].1;
        let ar = inside(x + AHEAD_RIGHT[d].0, y + AHEAD_RIGHT[d].1);
        let al = inside(x + AHEAD_LEFT[d].0, y + AHEAD_LEFT[d].1);
        let next = match (al, ar) {
            (true, true) => (d + 3) % 4,   // the region turns in front: turn left
            (false, true) => d,            // straight on
            (false, false) => (d + 1) % 4, // the region ends: turn right
            (true, false) if eight => (d + 3) % 4, // corner contact belongs to the region
            (true, false) => (d + 1) % 4,
        };
        if x == sx && y == sy && next == 0 {
            break;
        }
        if next != d {
            ring.push(Point::new(x as f64, y as f64));
        }
        d = next;
    }
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
