//! A result corrected by hand: the polygons a person saved, checked and measured again by the
//! server with the code that measures every segmenter's result, so a corrected metric means what
//! an automatic one means.
//!
//! Checks, each naming the polygon it refuses: a flat list the format allows (holes after a known
//! parent), unique ids, rings of at least three distinct points that enclose some area (a closing
//! point equal to the first is dropped), every point inside the image (half a pixel of slack, as
//! for an ML service's polygons), holes inside their outline (half a pixel again), and no two
//! edges of a ring crossing. Touching is not crossing:
//! traced outlines pinch at a pixel corner. A ring equal to one of the base version's is taken as
//! it is, since the segmenter that made it is the judge of its own output.

use std::collections::HashSet;
use std::time::{Instant, SystemTime};

use super::result::{MlOrigin, geometric_flags, measure_all};
use super::{Decoded, SegmentResult};
use crate::morphology::ring_area;
use crate::outline::{Object, OutlineError, Point, Polygon, from_polygons};

/// The most points one ring may have (the crossing check compares every pair of edges).
pub const MAX_RING_POINTS: usize = 20_000;

/// Why a correction was refused. Every variant names the polygon by its id.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CorrectionError {
    #[error(transparent)]
    Outline(#[from] OutlineError),
    /// Two polygons share an id.
    #[error("polygon id {id} is used twice")]
    DuplicateId { id: String },
    /// A ring has too few distinct points, or encloses (almost) no area.
    #[error("polygon {id} is not an outline: {reason}")]
    Degenerate { id: String, reason: String },
    /// A point lies outside the image.
    #[error("polygon {id} has point ({x}, {y}) outside the {width}×{height} image")]
    Outside {
        id: String,
        x: f64,
        y: f64,
        width: u32,
        height: u32,
    },
    /// A hole reaches outside the outline it belongs to.
    #[error("hole {id} has point ({x}, {y}) outside its outline {parent}")]
    HoleOutside {
        id: String,
        parent: String,
        x: f64,
        y: f64,
    },
    /// Two edges of a ring cross.
    #[error(
        "polygon {id} crosses itself: its edge {a} (from point {a}) crosses edge {b}; redraw it"
    )]
    SelfIntersecting { id: String, a: usize, b: usize },
}

/// The point of `objects` (object index and point) furthest from being inside a `w`×`h` image
/// by more than half a pixel, if any is.
pub(crate) fn outside_image(objects: &[Object], w: f64, h: f64) -> Option<(usize, Point)> {
    objects.iter().enumerate().find_map(|(i, o)| {
        std::iter::once(&o.outer)
            .chain(&o.holes)
            .flatten()
            .find(|p| p.x < -0.5 || p.y < -0.5 || p.x > w + 0.5 || p.y > h + 0.5)
            .map(|p| (i, *p))
    })
}

/// The objects of `polygons`, checked as outlines of `base`'s image (see the module doc).
pub fn checked(base: &SegmentResult, polygons: &[Polygon]) -> Result<Vec<Object>, CorrectionError> {
    let mut seen = HashSet::new();
    if let Some(p) = polygons.iter().find(|p| !seen.insert(p.id.as_str())) {
        return Err(CorrectionError::DuplicateId { id: p.id.clone() });
    }
    let known: HashSet<Vec<(u64, u64)>> = base
        .objects
        .iter()
        .flat_map(|o| std::iter::once(&o.outer).chain(&o.holes))
        .map(|r| key(r))
        .collect();
    let mut cleaned = polygons.to_vec();
    for p in &mut cleaned {
        if p.points.len() > 3 && p.points.first() == p.points.last() {
            p.points.pop();
        }
    }
    let objects = from_polygons(&cleaned)?;
    // The ids of the rings in the order `from_polygons` put them: each outline, then its holes.
    let mut ids = ring_ids(&cleaned);
    for o in &objects {
        let outer_id = ids.next().unwrap_or_default();
        check_ring(&o.outer, outer_id, known.contains(&key(&o.outer)))?;
        for hole in &o.holes {
            let id = ids.next().unwrap_or_default();
            let unchanged = known.contains(&key(hole));
            check_ring(hole, id, unchanged)?;
            if !unchanged && let Some(p) = hole.iter().find(|p| !within(**p, &o.outer)) {
                return Err(CorrectionError::HoleOutside {
                    id: id.to_owned(),
                    parent: outer_id.to_owned(),
                    x: p.x,
                    y: p.y,
                });
            }
        }
    }
    let (w, h) = (base.image.width, base.image.height);
    if let Some((i, p)) = outside_image(&objects, f64::from(w), f64::from(h)) {
        let id = cleaned
            .iter()
            .filter(|p| p.kind == crate::outline::PolygonKind::External)
            .nth(i)
            .map_or_else(String::new, |p| p.id.clone());
        return Err(CorrectionError::Outside {
            id,
            x: p.x,
            y: p.y,
            width: w,
            height: h,
        });
    }
    Ok(objects)
}

/// `base` with `objects` (from [`checked`]): measured on `decoded` (the job's image) with `base`'s
/// pixel size, flagged as the segmenter's results are, marked corrected. An object whose outline
/// and holes equal one of `base`'s keeps that object's flags.
pub fn corrected(base: &SegmentResult, objects: Vec<Object>, decoded: &Decoded) -> SegmentResult {
    let start = Instant::now();
    let metrics = measure_all(&objects, decoded, base.pixel_size);
    let mut flags = geometric_flags(&objects, &base.image);
    for (o, f) in objects.iter().zip(&mut flags) {
        if let Some(i) = base.objects.iter().position(|b| b == o) {
            *f = base.flags_of(i);
        }
    }
    SegmentResult {
        objects,
        metrics,
        flags,
        timings_ms: vec![("measure".into(), start.elapsed().as_secs_f64() * 1e3)],
        created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        corrected: true,
        // The service's polygon ids named its outlines, matched by their place in the list; a
        // corrected list has other outlines in those places. Its features stay.
        ml: base.ml.as_ref().map(|m| MlOrigin {
            polygon_ids: Vec::new(),
            features: m.features.clone(),
            model_input: m.model_input,
        }),
        ..base.clone()
    }
}

/// Whether `p` lies inside `ring` or within half a pixel of its boundary.
fn within(p: Point, ring: &[Point]) -> bool {
    let n = ring.len();
    let mut inside = false;
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        if (a.y > p.y) != (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x {
            inside = !inside;
        }
        // Distance from p to the edge a-b.
        let (dx, dy) = (b.x - a.x, b.y - a.y);
        let len2 = dx * dx + dy * dy;
        let t = if len2 > 0.0 {
            (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        if (a.x + t * dx - p.x).hypot(a.y + t * dy - p.y) <= 0.5 {
            return true;
        }
    }
    inside
}

/// A ring as exact bit patterns, to find the ones that are unchanged.
fn key(ring: &[Point]) -> Vec<(u64, u64)> {
    ring.iter()
        .map(|p| (p.x.to_bits(), p.y.to_bits()))
        .collect()
}

/// The polygon ids in the order of `from_polygons`' rings: each external polygon, then its holes.
fn ring_ids(list: &[Polygon]) -> impl Iterator<Item = &str> {
    use crate::outline::PolygonKind;
    list.iter()
        .filter(|p| p.kind == PolygonKind::External)
        .flat_map(move |outer| {
            std::iter::once(outer.id.as_str()).chain(
                list.iter()
                    .filter(move |h| {
                        h.kind == PolygonKind::Internal
                            && h.parent_id.as_deref() == Some(outer.id.as_str())
                    })
                    .map(|h| h.id.as_str()),
            )
        })
}

fn check_ring(ring: &[Point], id: &str, known: bool) -> Result<(), CorrectionError> {
    let degenerate = |reason: String| CorrectionError::Degenerate {
        id: id.to_owned(),
        reason,
    };
    if ring.len() > MAX_RING_POINTS {
        return Err(degenerate(format!(
            "{} points, more than the {MAX_RING_POINTS} a ring may have",
            ring.len()
        )));
    }
    let distinct: HashSet<(u64, u64)> = key(ring).into_iter().collect();
    if distinct.len() < 3 {
        return Err(degenerate(format!(
            "{} distinct points, fewer than three",
            distinct.len()
        )));
    }
    let area = ring_area(ring);
    if area < 0.5 {
        return Err(degenerate(format!(
            "it encloses {area:.2} px², less than half a pixel"
        )));
    }
    if known {
        return Ok(());
    }
    match crossing(ring) {
        Some((a, b)) => Err(CorrectionError::SelfIntersecting {
            id: id.to_owned(),
            a: a + 1,
            b: b + 1,
        }),
        None => Ok(()),
    }
}

/// The first pair of edges (by their first point's index) of a closed ring that properly cross:
/// each edge has an end strictly on either side of the other. Edges that share a point, touch or
/// overlap along a line do not count.
pub(crate) fn crossing(ring: &[Point]) -> Option<(usize, usize)> {
    let n = ring.len();
    let edge = |i: usize| (ring[i], ring[(i + 1) % n]);
    for i in 0..n {
        let (a, b) = edge(i);
        let (ax0, ax1) = (a.x.min(b.x), a.x.max(b.x));
        let (ay0, ay1) = (a.y.min(b.y), a.y.max(b.y));
        // Neighbouring edges share a point; the last edge neighbours the first.
        for j in i + 2..n {
            if i == 0 && j == n - 1 {
                continue;
            }
            let (c, d) = edge(j);
            if c.x.max(d.x) < ax0 || c.x.min(d.x) > ax1 || c.y.max(d.y) < ay0 || c.y.min(d.y) > ay1
            {
                continue;
            }
            let side = |p: Point, q: Point, r: Point| {
                let v = (q.x - p.x) * (r.y - p.y) - (q.y - p.y) * (r.x - p.x);
                if v > 0.0 {
                    1
                } else if v < 0.0 {
                    -1
                } else {
                    0
                }
            };
            let (s1, s2) = (side(a, b, c), side(a, b, d));
            let (s3, s4) = (side(c, d, a), side(c, d, b));
            if s1 * s2 < 0 && s3 * s4 < 0 {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f64, f64)]) -> Vec<Point> {
        v.iter().map(|&(x, y)| Point::new(x, y)).collect()
    }

    #[test]
    fn a_bow_tie_crosses_and_a_pinched_outline_does_not() {
        let bow = pts(&[(0.0, 0.0), (10.0, 10.0), (10.0, 0.0), (0.0, 10.0)]);
        assert_eq!(crossing(&bow), Some((0, 2)));
        let square = pts(&[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]);
        assert_eq!(crossing(&square), None);
        // Two squares meeting at the corner (5, 5), traced as one ring: touching only.
        let pinched = pts(&[
            (0.0, 0.0),
            (5.0, 0.0),
            (5.0, 5.0),
            (10.0, 5.0),
            (10.0, 10.0),
            (5.0, 10.0),
            (5.0, 5.0),
            (0.0, 5.0),
        ]);
        assert_eq!(crossing(&pinched), None);
    }

    #[test]
    fn a_point_is_within_a_ring_inside_or_on_its_edge() {
        let square = pts(&[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]);
        assert!(within(Point::new(5.0, 5.0), &square));
        assert!(
            within(Point::new(10.3, 5.0), &square),
            "half a pixel outside"
        );
        assert!(!within(Point::new(11.0, 5.0), &square));
        assert!(!within(Point::new(-3.0, -3.0), &square));
    }

    #[test]
    fn rings_without_area_or_points_are_named() {
        let line = pts(&[(0.0, 0.0), (5.0, 0.0), (10.0, 0.0)]);
        let e = check_ring(&line, "polygon-3", false).expect_err("no area");
        assert!(e.to_string().contains("polygon-3"), "{e}");
        let two = pts(&[(0.0, 0.0), (5.0, 5.0), (0.0, 0.0)]);
        let e = check_ring(&two, "polygon-4", false).expect_err("two points");
        assert!(e.to_string().contains("fewer than three"), "{e}");
    }
}
