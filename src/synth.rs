//! Synthetic brightfield spheroid images with known truth, for tests, benchmarks, fixtures and
//! `spheroseg demo-images`.
//!
//! A spheroid's outline is r(θ) = R (1 + Σ aₖ cos(kθ + φₖ)): a few low harmonics make lobes, many
//! small high ones make the surface rough. Inside it is darker than the field and textured, with a
//! thin darker rim along the boundary; outside the boundary a bright halo fades into the field.
//! Optionally a lumen (a real hole, background-bright) or a necrotic core (darker, not a hole).
//! The field has uneven illumination, debris specks and noise. Pixels on the boundary are
//! supersampled, so the image is anti-aliased like a camera's; the truth mask counts a pixel in
//! when its centre is inside.
//!
//! - `plate`: what real wells show besides: touching and bridged spheroids, a halo of loose cells
//!   with fingers, debris, defocus; rendered with a truth label image (one label per spheroid)
//! - `score`: a segmentation against truth labels: matches, IoU, extra objects, area error

mod plate;
mod score;

use std::f64::consts::PI;

use crate::morphology::Gray;
pub use plate::{Blob, Body, Halo, Plate, PlateKind};
pub use score::{Score, TruthMatch};

/// A deterministic generator (splitmix64): the same seed draws the same scene everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
    }
}

/// One spheroid.
#[derive(Clone, Debug, PartialEq)]
pub struct Spheroid {
    pub cx: f64,
    pub cy: f64,
    pub radius: f64,
    /// `(k, amplitude, phase)` harmonics of the outline.
    pub harmonics: Vec<(u32, f64, f64)>,
    /// A lumen: a real hole at `(dx, dy)` from the centre with this radius.
    pub lumen: Option<(f64, f64, f64)>,
    /// A darker necrotic core, as a fraction of the outline (not a hole).
    pub core: Option<f64>,
}

impl Spheroid {
    /// The outline radius at angle `theta`.
    pub fn r(&self, theta: f64) -> f64 {
        let s: f64 = self
            .harmonics
            .iter()
            .map(|&(k, a, p)| a * (f64::from(k) * theta + p).cos())
            .sum();
        self.radius * (1.0 + s)
    }

    /// Whether the point is in the spheroid (outline minus lumen).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        if dx.hypot(dy) >= self.r(dy.atan2(dx)) {
            return false;
        }
        !self
            .lumen
            .is_some_and(|(lx, ly, lr)| (dx - lx).hypot(dy - ly) < lr)
    }

    /// The area inside the outline, minus the lumen, by integrating ½ r(θ)² finely.
    pub fn area(&self) -> f64 {
        let n = 20_000;
        let outer: f64 = (0..n)
            .map(|i| 0.5 * self.r(2.0 * PI * i as f64 / n as f64).powi(2))
            .sum::<f64>()
            * 2.0
            * PI
            / n as f64;
        outer - self.lumen.map_or(0.0, |(_, _, lr)| PI * lr * lr)
    }

    /// The length of the outline, by integrating √(r² + r'²).
    pub fn perimeter(&self) -> f64 {
        let n = 20_000;
        let pts: Vec<(f64, f64)> = (0..n)
            .map(|i| {
                let t = 2.0 * PI * i as f64 / n as f64;
                let r = self.r(t);
                (self.cx + r * t.cos(), self.cy + r * t.sin())
            })
            .collect();
        (0..n)
            .map(|i| {
                let (a, b) = (pts[i], pts[(i + 1) % n]);
                (b.0 - a.0).hypot(b.1 - a.1)
            })
            .sum()
    }
}

/// A whole image to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    pub width: u32,
    pub height: u32,
    /// 8 or 16.
    pub bit_depth: u8,
    pub spheroids: Vec<Spheroid>,
    /// Debris specks `(x, y, radius)`.
    pub debris: Vec<(f64, f64, f64)>,
    /// Illumination gradient across the field (fraction) and vignetting strength.
    pub gradient: (f64, f64),
    pub vignette: f64,
    /// Noise standard deviation, as a fraction of the field's brightness.
    pub noise: f64,
    pub seed: u64,
}

/// What kind of spheroid `Scene::random` draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Plain,
    Lumen,
    NecroticCore,
}

impl Scene {
    /// A random scene of one spheroid, `size` × `size`.
    pub fn random(seed: u64, size: u32, bit_depth: u8, kind: Kind) -> Scene {
        let mut rng = Rng::new(seed);
        let s = f64::from(size);
        let radius = s * rng.range(0.16, 0.26);
        let mut harmonics = vec![
            (2, rng.range(0.02, 0.06), rng.range(0.0, 2.0 * PI)),
            (3, rng.range(0.01, 0.04), rng.range(0.0, 2.0 * PI)),
            (5, rng.range(0.005, 0.015), rng.range(0.0, 2.0 * PI)),
        ];
        for k in 12..24 {
            harmonics.push((k, rng.range(0.0005, 0.0015), rng.range(0.0, 2.0 * PI)));
        }
        let cx = s / 2.0 + rng.range(-0.08, 0.08) * s;
        let cy = s / 2.0 + rng.range(-0.08, 0.08) * s;
        let spheroid = Spheroid {
            cx,
            cy,
            radius,
            harmonics,
            lumen: (kind == Kind::Lumen).then(|| {
                (
                    rng.range(-0.1, 0.1) * radius,
                    rng.range(-0.1, 0.1) * radius,
                    radius * rng.range(0.25, 0.35),
                )
            }),
            core: (kind == Kind::NecroticCore).then(|| rng.range(0.35, 0.5)),
        };
        let mut debris = Vec::new();
        while debris.len() < 12 {
            let (x, y) = (rng.range(0.03, 0.97) * s, rng.range(0.03, 0.97) * s);
            if (x - cx).hypot(y - cy) > radius * 1.6 {
                debris.push((x, y, rng.range(0.5, 1.6) * s / 1024.0 + 1.0));
            }
        }
        Scene {
            width: size,
            height: size,
            bit_depth,
            spheroids: vec![spheroid],
            debris,
            gradient: (rng.range(-0.15, 0.15), rng.range(-0.15, 0.15)),
            vignette: rng.range(0.05, 0.15),
            noise: 0.015,
            seed,
        }
    }

    /// Brightness in [0, 1] at a point, before illumination and noise.
    fn shade(&self, x: f64, y: f64, tex: f64) -> f64 {
        const FIELD: f64 = 0.62;
        let px = f64::from(self.width.max(self.height)) / 1024.0;
        let mut v = FIELD;
        for (i, s) in self.spheroids.iter().enumerate() {
            let (dx, dy) = (x - s.cx, y - s.cy);
            let d = dx.hypot(dy);
            let r = s.r(dy.atan2(dx));
            let rim = (0.012 * s.radius).max(2.0 * px);
            let halo = (0.03 * s.radius).max(4.0 * px);
            if d < r {
                if let Some((lx, ly, lr)) = s.lumen {
                    let dl = (dx - lx).hypot(dy - ly);
                    if dl < lr {
                        v = FIELD + 0.08;
                        continue;
                    }
                }
                v = if r - d < rim {
                    0.16
                } else if s.core.is_some_and(|c| d < c * r) {
                    0.22 + 0.03 * tex
                } else {
                    0.36 + 0.06 * tex + 0.002 * i as f64
                };
            } else if d < r + 4.0 * halo {
                v = v.max(FIELD + 0.2 * (-(d - r) / halo).exp());
            }
        }
        for &(cxd, cyd, rd) in &self.debris {
            if (x - cxd).hypot(y - cyd) < rd {
                v = 0.3;
            }
        }
        v
    }

    /// Draws the image and its truth mask (1 where a pixel centre is inside a spheroid).
    pub fn render(&self) -> (Gray, Vec<u8>) {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut rng = Rng::new(self.seed ^ 0xA5A5_5A5A);
        let mut data = Vec::with_capacity(w * h);
        let mut truth = Vec::with_capacity(w * h);
        let max = if self.bit_depth == 16 {
            52_000.0
        } else {
            255.0
        };
        let offset = if self.bit_depth == 16 { 1_800.0 } else { 0.0 };
        for y in 0..h {
            for x in 0..w {
                let (xc, yc) = (x as f64 + 0.5, y as f64 + 0.5);
                // A cheap smooth texture: products of sines at cell scale.
                let tex =
                    ((xc * 0.37).sin() * (yc * 0.41).sin() + (xc * 0.11 + yc * 0.07).sin()) * 0.5;
                let near_edge = self.spheroids.iter().any(|s| {
                    let (dx, dy) = (xc - s.cx, yc - s.cy);
                    let edge = (dx.hypot(dy) - s.r(dy.atan2(dx))).abs() < 1.5;
                    let lumen_edge = s
                        .lumen
                        .is_some_and(|(lx, ly, lr)| ((dx - lx).hypot(dy - ly) - lr).abs() < 1.5);
                    edge || lumen_edge
                });
                let v = if near_edge {
                    let mut acc = 0.0;
                    for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                        acc += self.shade(x as f64 + sx, y as f64 + sy, tex);
                    }
                    acc / 4.0
                } else {
                    self.shade(xc, yc, tex)
                };
                let (u, t) = (2.0 * xc / w as f64 - 1.0, 2.0 * yc / h as f64 - 1.0);
                let light = 1.0 + self.gradient.0 * u + self.gradient.1 * t
                    - self.vignette * (u * u + t * t) / 2.0;
                let noisy = v * light + self.noise * rng.normal();
                data.push((offset + noisy.clamp(0.0, 1.0) * max).round() as f32);
                truth.push(u8::from(self.spheroids.iter().any(|s| s.contains(xc, yc))));
            }
        }
        (Gray::new(self.width, self.height, data), truth)
    }

    /// [`Scene::render`] with the truth as labels: `i + 1` where spheroid `i` holds the pixel
    /// centre (the first one, where they overlap), 0 elsewhere; and the number of spheroids.
    pub fn render_with_labels(&self) -> (Gray, Vec<u32>, usize) {
        let (img, truth) = self.render();
        let w = self.width as usize;
        let labels = truth
            .iter()
            .enumerate()
            .map(|(k, &t)| {
                if t == 0 {
                    return 0;
                }
                let (x, y) = ((k % w) as f64 + 0.5, (k / w) as f64 + 0.5);
                self.spheroids
                    .iter()
                    .position(|s| s.contains(x, y))
                    .map_or(0, |i| i as u32 + 1)
            })
            .collect();
        (img, labels, self.spheroids.len())
    }
}

/// Intersection over union of two masks of equal size (non-zero is inside).
pub fn iou(a: &[u8], b: &[u8]) -> f64 {
    let (mut inter, mut union) = (0u64, 0u64);
    for (&p, &q) in a.iter().zip(b) {
        let (p, q) = (p != 0, q != 0);
        inter += u64::from(p && q);
        union += u64::from(p || q);
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_scene() {
        let a = Scene::random(7, 128, 8, Kind::Lumen);
        assert_eq!(a, Scene::random(7, 128, 8, Kind::Lumen));
        assert_ne!(a, Scene::random(8, 128, 8, Kind::Lumen));
        let (img, truth) = a.render();
        assert_eq!(img.data.len(), 128 * 128);
        assert!(truth.contains(&1));
        assert!(img.data.iter().all(|&v| (0.0..=255.0).contains(&v)));
    }

    #[test]
    fn analytic_area_matches_the_truth_mask() {
        let scene = Scene::random(3, 512, 16, Kind::Lumen);
        let (_, truth) = scene.render();
        let count = truth.iter().filter(|&&t| t == 1).count() as f64;
        let area = scene.spheroids[0].area();
        assert!((count - area).abs() / area < 0.005, "{count} vs {area}");
        let circle = Spheroid {
            cx: 0.0,
            cy: 0.0,
            radius: 10.0,
            harmonics: vec![],
            lumen: None,
            core: None,
        };
        assert!((circle.perimeter() - 20.0 * PI).abs() < 1e-3);
        assert!((circle.area() - 100.0 * PI).abs() < 1e-6);
    }

    #[test]
    fn scene_labels_are_the_truth_mask() {
        let scene = Scene::random(5, 96, 8, Kind::Plain);
        let (img, truth) = scene.render();
        let (img2, labels, n) = scene.render_with_labels();
        assert_eq!((img, n), (img2, 1));
        assert!(truth.iter().zip(&labels).all(|(&t, &l)| u32::from(t) == l));
    }

    /// `Scene::random` draws what it always drew: tests, benches and fixtures depend on it.
    #[test]
    fn scenes_render_as_they_always_have() {
        let (img, truth) = Scene::random(11, 128, 16, Kind::NecroticCore).render();
        let sum: f64 = img.data.iter().map(|&v| f64::from(v)).sum();
        let inside = truth.iter().filter(|&&t| t == 1).count();
        assert_eq!((sum, inside), (510_289_874.0, 1891));
        let (img, _) = Scene::random(3, 64, 8, Kind::Lumen).render();
        let sum: f64 = img.data.iter().map(|&v| f64::from(v)).sum();
        assert_eq!(sum, 589_533.0);
    }

    #[test]
    fn iou_of_masks() {
        assert_eq!(iou(&[1, 1, 0, 0], &[1, 0, 1, 0]), 1.0 / 3.0);
        assert_eq!(iou(&[0, 0], &[0, 0]), 1.0);
    }
}
