//! Morphology metrics of segmented objects, computed from their polygons (not from pixel counts),
//! and rasterising polygons back into masks.
//!
//! Definitions (A area, P perimeter, H the convex hull of the outer ring):
//! - area: |outer| minus this object's own holes (never another object's);
//! - perimeter: length of the outer ring;
//! - circularity 4πA/P²; sphericity √(4πA)/P; equivalent diameter 2√(A/π);
//! - solidity A/A(H); convexity P(H)/P;
//! - compactness: equivalent diameter / Feret max, i.e. √(4A/π)/Feret_max (1 for a disc, smaller for
//!   elongated or ragged shapes; Russ, The Image Processing Handbook);
//! - Feret max: the largest caliper (distance between two hull vertices); Feret min: the true
//!   minimum caliper width, the smallest over hull edges of the hull's extent perpendicular to the
//!   edge (rotating calipers: the minimum width is always attained flush with an edge);
//! - aspect ratio Feret max / Feret min;
//! - ellipse: the ellipse with the same second moments as the region (ImageJ's "Fit Ellipse"):
//!   major and minor axis lengths and the major axis angle in degrees, counter-clockwise from the
//!   x axis with y pointing up, in [0, 180).
//!
//! Every ratio is 0 when its denominator is (near) zero, so a degenerate object never produces
//! NaN or infinity in an export. The hull and its calipers are in `morphology/hull.rs`; the
//! pixels inside a polygon (for intensities and masks) in `morphology/raster.rs`.

use serde::{Deserialize, Serialize};

use crate::outline::{Object, Point};

mod hull;
mod raster;

pub use hull::{calipers, convex_hull};
pub use raster::{rasterize, spans};

/// A gray image in its own intensity units (0-255 for 8-bit, 0-65535 for 16-bit), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Gray {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

impl Gray {
    pub fn new(width: u32, height: u32, data: Vec<f32>) -> Self {
        debug_assert_eq!(data.len(), width as usize * height as usize);
        Gray {
            width,
            height,
            data,
        }
    }
}

/// An axis-aligned box in pixels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// The moment-equivalent ellipse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ellipse {
    pub major: f64,
    pub minor: f64,
    pub angle_deg: f64,
}

/// Lengths and areas in micrometres, when the pixel size is known.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibrated {
    pub pixel_size_um: f64,
    pub area_um2: f64,
    pub perimeter_um: f64,
    pub equivalent_diameter_um: f64,
    pub convex_area_um2: f64,
    pub convex_perimeter_um: f64,
    pub feret_max_um: f64,
    pub feret_min_um: f64,
    pub ellipse_major_um: f64,
    pub ellipse_minor_um: f64,
}

/// Everything measured of one object, in pixels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub area: f64,
    pub perimeter: f64,
    pub circularity: f64,
    pub equivalent_diameter: f64,
    pub convex_area: f64,
    pub convex_perimeter: f64,
    pub solidity: f64,
    pub convexity: f64,
    pub sphericity: f64,
    pub compactness: f64,
    pub feret_max: f64,
    pub feret_min: f64,
    pub aspect_ratio: f64,
    pub centroid: Point,
    pub bounding_box: BoundingBox,
    pub ellipse: Ellipse,
    pub holes: usize,
    /// Mean and standard deviation of the image inside the object (holes excluded), in the
    /// image's own units; absent when measured without the image.
    pub mean_intensity: Option<f64>,
    pub std_intensity: Option<f64>,
    pub calibrated: Option<Calibrated>,
}

fn ratio(num: f64, den: f64) -> f64 {
    if den.abs() > 1e-12 && num.is_finite() {
        num / den
    } else {
        0.0
    }
}

/// Area moments of a ring, relative to `o`: signed area, first and second moments.
#[derive(Default, Clone, Copy)]
struct Moments {
    a: f64,
    mx: f64,
    my: f64,
    mxx: f64,
    myy: f64,
    mxy: f64,
}

fn moments(ring: &[Point], o: Point) -> Moments {
    let mut m = Moments::default();
    let n = ring.len();
    for i in 0..n {
        let (x0, y0) = (ring[i].x - o.x, ring[i].y - o.y);
        let (x1, y1) = (ring[(i + 1) % n].x - o.x, ring[(i + 1) % n].y - o.y);
        let c = x0 * y1 - x1 * y0;
        m.a += c;
        m.mx += (x0 + x1) * c;
        m.my += (y0 + y1) * c;
        m.mxx += (x0 * x0 + x0 * x1 + x1 * x1) * c;
        m.myy += (y0 * y0 + y0 * y1 + y1 * y1) * c;
        m.mxy += (x0 * y1 + 2.0 * x0 * y0 + 2.0 * x1 * y1 + x1 * y0) * c;
    }
    let s = if m.a < 0.0 { -1.0 } else { 1.0 };
    Moments {
        a: s * m.a / 2.0,
        mx: s * m.mx / 6.0,
        my: s * m.my / 6.0,
        mxx: s * m.mxx / 12.0,
        myy: s * m.myy / 12.0,
        mxy: s * m.mxy / 24.0,
    }
}

/// |area| of a ring.
pub fn ring_area(ring: &[Point]) -> f64 {
    moments(ring, Point::new(0.0, 0.0)).a
}

/// Length of a closed ring.
pub fn ring_length(ring: &[Point]) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (p, q) = (ring[i], ring[(i + 1) % n]);
            (q.x - p.x).hypot(q.y - p.y)
        })
        .sum()
}

/// Measures one object. `image` adds mean and std intensity; `pixel_size_um` adds micrometres.
pub fn measure(object: &Object, image: Option<&Gray>, pixel_size_um: Option<f64>) -> Metrics {
    let outer = &object.outer;
    if outer.len() < 3 {
        return Metrics::default();
    }
    let (mut minx, mut miny, mut maxx, mut maxy) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for p in outer {
        minx = minx.min(p.x);
        miny = miny.min(p.y);
        maxx = maxx.max(p.x);
        maxy = maxy.max(p.y);
    }
    // Moments relative to the box corner keep the sums well conditioned.
    let o = Point::new(minx, miny);
    let mut m = moments(outer, o);
    for h in &object.holes {
        let hm = moments(h, o);
        m.a -= hm.a;
        m.mx -= hm.mx;
        m.my -= hm.my;
        m.mxx -= hm.mxx;
        m.myy -= hm.myy;
        m.mxy -= hm.mxy;
    }
    let area = m.a.max(0.0);
    let perimeter = ring_length(outer);
    let hull = convex_hull(outer);
    let convex_area = ring_area(&hull);
    let convex_perimeter = ring_length(&hull);
    let (feret_max, feret_min) = calipers(&hull);
    let (cx, cy) = (ratio(m.mx, area), ratio(m.my, area));
    let mu20 = ratio(m.mxx, area) - cx * cx;
    let mu02 = ratio(m.myy, area) - cy * cy;
    let mu11 = ratio(m.mxy, area) - cx * cy;
    let half_sum = (mu20 + mu02) / 2.0;
    let root = (((mu20 - mu02) / 2.0).powi(2) + mu11 * mu11).sqrt();
    let (l1, l2) = ((half_sum + root).max(0.0), (half_sum - root).max(0.0));
    // Image y points down: negate to report the angle counter-clockwise with y up.
    let theta = -0.5 * (2.0 * mu11).atan2(mu20 - mu02);
    let angle_deg = theta.to_degrees().rem_euclid(180.0);
    let ellipse = Ellipse {
        major: 4.0 * l1.sqrt(),
        minor: 4.0 * l2.sqrt(),
        angle_deg,
    };
    let equivalent_diameter = 2.0 * (area / std::f64::consts::PI).sqrt();
    let (mean_intensity, std_intensity) = match image.and_then(|img| intensity(object, img)) {
        Some((mean, std)) => (Some(mean), Some(std)),
        None => (None, None),
    };
    let mut metrics = Metrics {
        area,
        perimeter,
        circularity: ratio(4.0 * std::f64::consts::PI * area, perimeter * perimeter),
        equivalent_diameter,
        convex_area,
        convex_perimeter,
        solidity: ratio(area, convex_area),
        convexity: ratio(convex_perimeter, perimeter),
        sphericity: ratio((4.0 * std::f64::consts::PI * area).sqrt(), perimeter),
        compactness: ratio(equivalent_diameter, feret_max),
        feret_max,
        feret_min,
        aspect_ratio: ratio(feret_max, feret_min),
        centroid: Point::new(cx + o.x, cy + o.y),
        bounding_box: BoundingBox {
            x: minx,
            y: miny,
            width: maxx - minx,
            height: maxy - miny,
        },
        ellipse,
        holes: object.holes.len(),
        mean_intensity,
        std_intensity,
        calibrated: None,
    };
    if let Some(s) = pixel_size_um.filter(|s| s.is_finite() && *s > 0.0) {
        metrics.calibrated = Some(Calibrated {
            pixel_size_um: s,
            area_um2: area * s * s,
            perimeter_um: perimeter * s,
            equivalent_diameter_um: equivalent_diameter * s,
            convex_area_um2: convex_area * s * s,
            convex_perimeter_um: convex_perimeter * s,
            feret_max_um: feret_max * s,
            feret_min_um: feret_min * s,
            ellipse_major_um: ellipse.major * s,
            ellipse_minor_um: ellipse.minor * s,
        });
    }
    metrics
}

/// Mean and standard deviation of `image` over the object's pixels.
fn intensity(object: &Object, image: &Gray) -> Option<(f64, f64)> {
    let (mut n, mut sum, mut sum2) = (0u64, 0f64, 0f64);
    for (y, a, b) in spans(object, image.width, image.height) {
        let row = y as usize * image.width as usize;
        for &v in &image.data[row + a as usize..row + b as usize] {
            let v = f64::from(v);
            sum += v;
            sum2 += v * v;
        }
        n += u64::from(b - a);
    }
    if n == 0 {
        return None;
    }
    let mean = sum / n as f64;
    Some((mean, (sum2 / n as f64 - mean * mean).max(0.0).sqrt()))
}

#[cfg(test)]
mod tests {
    use std::f64::consts::PI;

    use super::*;

    /// The metrics of an object without holes, no image and no pixel size.
    fn measure_outline(outer: Vec<Point>) -> Metrics {
        measure(
            &Object {
                outer,
                holes: vec![],
            },
            None,
            None,
        )
    }

    /// An axis-aligned rectangle's ring.
    pub(super) fn rect(x: f64, y: f64, w: f64, h: f64) -> Vec<Point> {
        vec![
            Point::new(x, y),
            Point::new(x + w, y),
            Point::new(x + w, y + h),
            Point::new(x, y + h),
        ]
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    fn circle(cx: f64, cy: f64, r: f64, n: usize) -> Vec<Point> {
        (0..n)
            .map(|i| {
                let t = 2.0 * PI * i as f64 / n as f64;
                Point::new(cx + r * t.cos(), cy + r * t.sin())
            })
            .collect()
    }

    #[test]
    fn square_is_known_exactly() {
        let m = measure(
            &Object {
                outer: rect(10.0, 20.0, 10.0, 10.0),
                holes: vec![],
            },
            None,
            Some(0.5),
        );
        assert_eq!(m.area, 100.0);
        assert_eq!(m.perimeter, 40.0);
        assert!(close(m.circularity, PI / 4.0, 1e-12));
        assert!(close(m.feret_max, 200f64.sqrt(), 1e-12));
        assert!(close(m.feret_min, 10.0, 1e-12));
        assert_eq!((m.solidity, m.convexity), (1.0, 1.0));
        assert_eq!(m.centroid, Point::new(15.0, 25.0));
        assert_eq!(
            m.bounding_box,
            BoundingBox {
                x: 10.0,
                y: 20.0,
                width: 10.0,
                height: 10.0
            }
        );
        assert!(close(m.ellipse.major, m.ellipse.minor, 1e-9));
        let c = m.calibrated.expect("calibrated");
        assert_eq!((c.area_um2, c.perimeter_um), (25.0, 20.0));
    }

    #[test]
    fn circle_approaches_the_analytic_values() {
        let r = 100.0;
        let m = measure_outline(circle(500.0, 400.0, r, 4096));
        assert!(close(m.area, PI * r * r, 1e-5));
        assert!(close(m.perimeter, 2.0 * PI * r, 1e-5));
        assert!(close(m.circularity, 1.0, 1e-5));
        assert!(close(m.sphericity, 1.0, 1e-5));
        assert!(close(m.equivalent_diameter, 2.0 * r, 1e-5));
        assert!(close(m.feret_max, 2.0 * r, 1e-5));
        assert!(close(m.feret_min, 2.0 * r, 1e-5));
        assert!(close(m.compactness, 1.0, 1e-5));
        assert!(close(m.ellipse.major, 2.0 * r, 1e-4));
        assert!(close(m.ellipse.minor, 2.0 * r, 1e-4));
        assert!(close(m.centroid.x, 500.0, 1e-9) && close(m.centroid.y, 400.0, 1e-9));
    }

    /// The replaced design subtracted every hole in the image from every object; here only the
    /// object's own holes count.
    #[test]
    fn rectangle_with_a_hole_subtracts_only_its_own_hole() {
        let with_hole = Object {
            outer: rect(0.0, 0.0, 40.0, 20.0),
            holes: vec![rect(10.0, 5.0, 10.0, 10.0)],
        };
        let other = Object {
            outer: rect(100.0, 0.0, 10.0, 10.0),
            holes: vec![],
        };
        let m = measure(&with_hole, None, None);
        assert_eq!(m.area, 800.0 - 100.0);
        assert_eq!(m.perimeter, 120.0, "the outer ring only");
        assert_eq!(m.holes, 1);
        assert_eq!(m.convex_area, 800.0);
        assert!(close(m.solidity, 700.0 / 800.0, 1e-12));
        // The hole at x 10..20 pulls the centroid right of 20: (800*20 - 100*15) / 700.
        assert!(close(
            m.centroid.x,
            (800.0 * 20.0 - 100.0 * 15.0) / 700.0,
            1e-12
        ));
        assert_eq!(
            measure(&other, None, None).area,
            100.0,
            "a neighbour's hole is not subtracted"
        );
        assert!(close(m.feret_min, 20.0, 1e-12));
        assert!(close(m.aspect_ratio, (40f64.hypot(20.0)) / 20.0, 1e-12));
    }

    /// An L shape: Feret max corner to corner, the hull closes the notch.
    #[test]
    fn l_shape_has_the_true_minimum_caliper_width() {
        let l = vec![
            Point::new(0.0, 0.0),
            Point::new(10.0, 0.0),
            Point::new(10.0, 30.0),
            Point::new(30.0, 30.0),
            Point::new(30.0, 40.0),
            Point::new(0.0, 40.0),
        ];
        let m = measure_outline(l);
        assert_eq!(m.area, 10.0 * 40.0 + 20.0 * 10.0);
        assert_eq!(m.perimeter, 140.0);
        assert!(close(m.feret_max, 50.0, 1e-12), "corner (0,0) to (30,40)");
        // Hull (0,0) (10,0) (30,30) (30,40) (0,40): flush with the diagonal edge the width is 30.5,
        // flush with the vertical edges 30: the minimum.
        assert!(close(m.feret_min, 30.0, 1e-12), "{}", m.feret_min);
        assert!(close(m.convex_area, 30.0 * 40.0 - 0.5 * 20.0 * 30.0, 1e-12));
    }

    /// A 40 × 10 rectangle turned 30°: the true minimum caliper width is 10, far below the
    /// bounding box's sides; the replaced design reported a box side.
    #[test]
    fn rotated_rectangle_has_the_true_minimum_caliper_width() {
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let outer: Vec<Point> = rect(-20.0, -5.0, 40.0, 10.0)
            .into_iter()
            .map(|p| Point::new(100.0 + p.x * c - p.y * s, 100.0 + p.x * s + p.y * c))
            .collect();
        let m = measure_outline(outer);
        assert!(close(m.feret_min, 10.0, 1e-9), "{}", m.feret_min);
        assert!(close(m.feret_max, 1700f64.sqrt(), 1e-9));
        assert!(m.bounding_box.height > 25.0);
        assert!(close(m.aspect_ratio, 1700f64.sqrt() / 10.0, 1e-9));
        // Ellipse of a 40 × 10 rectangle: axes sqrt(12) * sqrt(variance): 40/sqrt(3)*2... i.e.
        // major = 4 * 40 / sqrt(12), along 30°.
        assert!(close(m.ellipse.major, 4.0 * 40.0 / 12f64.sqrt(), 1e-9));
        assert!(close(m.ellipse.minor, 4.0 * 10.0 / 12f64.sqrt(), 1e-9));
        // Rotated by +30° in image coordinates (y down) is -30° with y up, i.e. 150°.
        assert!(
            close(m.ellipse.angle_deg, 150.0, 1e-9),
            "{}",
            m.ellipse.angle_deg
        );
    }

    #[test]
    fn degenerate_objects_give_zeros_not_nan() {
        for outer in [
            vec![],
            vec![Point::new(1.0, 1.0); 3],
            rect(0.0, 0.0, 0.0, 5.0),
        ] {
            let m = measure_outline(outer);
            let json = serde_json::to_string(&m).expect("json");
            assert!(
                !json.contains("null") || json.contains("intensity\":null"),
                "{json}"
            );
            for v in [
                m.circularity,
                m.solidity,
                m.convexity,
                m.aspect_ratio,
                m.compactness,
            ] {
                assert!(v.is_finite());
            }
        }
    }

    #[test]
    fn intensity_inside_the_object_only() {
        let mut data = vec![10.0f32; 10 * 10];
        for y in 2..6 {
            for x in 2..6 {
                data[y * 10 + x] = if x < 4 { 100.0 } else { 200.0 };
            }
        }
        let img = Gray::new(10, 10, data);
        let m = measure(
            &Object {
                outer: rect(2.0, 2.0, 4.0, 4.0),
                holes: vec![],
            },
            Some(&img),
            None,
        );
        assert_eq!(m.mean_intensity, Some(150.0));
        assert_eq!(m.std_intensity, Some(50.0));
    }
}
