//! The convex hull of an outline and its calipers (Feret max and the true minimum width), for
//! solidity, convexity and the Feret measures.

use crate::outline::Point;

fn cross(o: Point, a: Point, b: Point) -> f64 {
    (a.x - o.x) * (b.y - o.y) - (a.y - o.y) * (b.x - o.x)
}

/// The convex hull, counter-clockwise in a y-up frame, without repeated or collinear vertices
/// (Andrew's monotone chain).
pub fn convex_hull(points: &[Point]) -> Vec<Point> {
    let mut p: Vec<Point> = points.to_vec();
    p.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
    p.dedup();
    if p.len() < 3 {
        return p;
    }
    let mut hull: Vec<Point> = Vec::with_capacity(p.len() + 1);
    for pass in 0..2 {
        let start = hull.len();
        let iter: Box<dyn Iterator<Item = &Point>> = if pass == 0 {
            Box::new(p.iter())
        } else {
            Box::new(p.iter().rev())
        };
        for &q in iter {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], q) <= 0.0
            {
                hull.pop();
            }
            hull.push(q);
        }
        hull.pop();
    }
    hull
}

/// Feret max and the true minimum caliper width of a convex hull.
pub fn calipers(hull: &[Point]) -> (f64, f64) {
    let n = hull.len();
    if n < 2 {
        return (0.0, 0.0);
    }
    let mut max2: f64 = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            let (dx, dy) = (hull[j].x - hull[i].x, hull[j].y - hull[i].y);
            max2 = max2.max(dx * dx + dy * dy);
        }
    }
    if n < 3 {
        return (max2.sqrt(), 0.0);
    }
    let mut min_width = f64::INFINITY;
    for i in 0..n {
        let (a, b) = (hull[i], hull[(i + 1) % n]);
        let len = (b.x - a.x).hypot(b.y - a.y);
        if len < 1e-12 {
            continue;
        }
        let far = hull
            .iter()
            .map(|&q| (cross(a, b, q) / len).abs())
            .fold(0.0, f64::max);
        min_width = min_width.min(far);
    }
    (
        max2.sqrt(),
        if min_width.is_finite() {
            min_width
        } else {
            0.0
        },
    )
}
