//! Plates: synthetic wells as real ones look, with a truth label image. Spheroids touching at a
//! short neck or joined by thin bridges of loose cells; a wide pale halo of loose single cells with
//! fingers of cells reaching out from the body; debris specks; uneven illumination; a little
//! defocus; 8- or 16-bit. The spheroids of one plate differ in darkness and texture: one dark and
//! even, the others lighter, textured, lighter still towards their edge (less tissue for the light
//! to pass) and to one side, as the lower spheroid of the real image is.
//!
//! Brightfield is transmitted light, so everything but a spheroid is drawn as a transmission that
//! multiplies what is behind it: the halo's haze, loose cells (of the halo, fingers and bridges)
//! and debris. A spheroid is opaque on top of them, anti-aliased along its outline by the radial
//! distance to it. Then illumination, defocus (a Gaussian blur of the image, not of the truth),
//! sensor noise and quantisation.
//!
//! Truth: a pixel is labelled `i + 1` when its centre is inside spheroid `i`, 0 elsewhere (halo,
//! fingers, bridges and debris are 0). Where two spheroids overlap, the pixel goes to the one of
//! lower power d² − r(θ)², which for two circles is the straight chord through the points where
//! their outlines cross: the line a person draws across the neck.
//!
//! Drawing is O(pixels): each spheroid, cell and speck touches only its bounding box, and the
//! outline harmonics are evaluated only in the band where the outline can be.
//!
//! - `layout`: the random draw: where everything goes and how each spheroid looks
//! - `paint`: blobs, haze, value noise and the Gaussian of defocus

mod layout;
mod paint;

use std::f64::consts::PI;

use super::{Rng, Spheroid};
use crate::morphology::Gray;
use paint::{gaussian, paint_blob, paint_haze, value_noise};

/// The field's brightness in [0, 1] before illumination: transmission 1.
const FIELD: f64 = 0.8;

/// What a plate shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlateKind {
    /// Two spheroids overlapping slightly: a short neck, a third to half the smaller diameter.
    TwoTouching,
    /// Three spheroids in a chain, neighbours touching at short necks.
    ThreeTouching,
    /// Three spheroids apart, neighbours joined by thin bridges of loose cells.
    ThreeBridged,
    /// One spheroid in a wide pale halo of loose single cells, with fingers of cells reaching out.
    HaloFingers,
    /// Two spheroids apart and debris specks, some in the field, some near a spheroid.
    Debris,
    /// Two spheroids apart, out of focus by a Gaussian of sigma 0.5-1.5 px.
    Defocus,
    /// All of it, as in the real image: two touching spheroids, one very dark and one lighter and
    /// textured, in one halo with fingers, debris around, a little defocus.
    TouchingInHalo,
}

impl PlateKind {
    pub const ALL: [PlateKind; 7] = [
        PlateKind::TwoTouching,
        PlateKind::ThreeTouching,
        PlateKind::ThreeBridged,
        PlateKind::HaloFingers,
        PlateKind::Debris,
        PlateKind::Defocus,
        PlateKind::TouchingInHalo,
    ];

    /// A kebab-case name for tables and file names.
    pub fn name(self) -> &'static str {
        match self {
            PlateKind::TwoTouching => "two-touching",
            PlateKind::ThreeTouching => "three-touching",
            PlateKind::ThreeBridged => "three-bridged",
            PlateKind::HaloFingers => "halo-fingers",
            PlateKind::Debris => "debris",
            PlateKind::Defocus => "defocus",
            PlateKind::TouchingInHalo => "touching-in-halo",
        }
    }
}

/// One spheroid of a plate and how it looks.
#[derive(Clone, Debug, PartialEq)]
pub struct Body {
    /// The outline (no lumen, no core).
    pub shape: Spheroid,
    /// Transmission at the centre, as a fraction of the field: 0.03 is nearly black, 0.45 pale.
    pub tone: f64,
    /// Relative amplitude of the texture inside (cell-scale and patch-scale value noise).
    pub texture: f64,
    /// Light passes through less tissue towards the outline: the transmission at depth
    /// √(1 − (d/r)²) is `tone` raised to `edge + (1 − edge) · depth`, so at the outline it is
    /// `tone^edge` (1 keeps it even; 0.5 makes a 0.25 centre 0.5 at the edge).
    pub edge: f64,
    /// A brightness gradient across the spheroid: the factor 1 + tilt · (dx, dy) / radius.
    pub tilt: (f64, f64),
}

/// A small dark blob: a loose cell (of the halo, a finger or a bridge) or a speck of debris.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Blob {
    pub x: f64,
    pub y: f64,
    pub radius: f64,
    /// Transmission at its centre; it lightens a little towards its edge.
    pub transmission: f64,
}

/// The pale haze of a halo of loose cells (the cells themselves are blobs).
#[derive(Clone, Debug, PartialEq)]
pub struct Halo {
    pub cx: f64,
    pub cy: f64,
    /// The mean outer radius; `harmonics` make it ragged.
    pub radius: f64,
    pub harmonics: Vec<(u32, f64, f64)>,
    /// How much light the haze takes at the centre (a fraction), fading to 0 at the outline.
    pub haze: f64,
}

impl Halo {
    pub(super) fn r(&self, theta: f64) -> f64 {
        let s: f64 = self
            .harmonics
            .iter()
            .map(|&(k, a, p)| a * (f64::from(k) * theta + p).cos())
            .sum();
        self.radius * (1.0 + s)
    }
}

/// A whole plate image to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct Plate {
    pub width: u32,
    pub height: u32,
    /// 8 or 16.
    pub bit_depth: u8,
    pub kind: PlateKind,
    /// The spheroids: truth labels 1..=n in this order.
    pub bodies: Vec<Body>,
    pub halos: Vec<Halo>,
    /// Loose cells: the halo's, the fingers' and the bridges'. Not spheroid.
    pub cells: Vec<Blob>,
    /// Debris specks. Not spheroid.
    pub debris: Vec<Blob>,
    /// Illumination gradient across the field (fraction) and vignetting strength.
    pub gradient: (f64, f64),
    pub vignette: f64,
    /// Defocus: the sigma in pixels of the Gaussian applied to the image; 0 is in focus.
    pub blur: f64,
    /// Noise standard deviation, as a fraction of full scale.
    pub noise: f64,
    pub seed: u64,
}

/// How far an outline can reach from its mean radius, as a fraction of it.
fn reach(harmonics: &[(u32, f64, f64)]) -> f64 {
    harmonics.iter().map(|h| h.1.abs()).sum()
}

impl Plate {
    /// A random plate of `kind`, `size` × `size`.
    pub fn random(seed: u64, size: u32, bit_depth: u8, kind: PlateKind) -> Plate {
        layout::random(seed, size, bit_depth, kind)
    }

    /// The truth labels alone (what `render_with_labels` returns beside the image).
    pub fn labels(&self) -> Vec<u32> {
        self.draw_bodies().0
    }

    /// Draws the image and its truth: labels (1..=n per spheroid, 0 elsewhere) and n.
    pub fn render_with_labels(&self) -> (Gray, Vec<u32>, usize) {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut t = vec![1f32; w * h];
        for halo in &self.halos {
            paint_haze(&mut t, w, h, halo, self.seed);
        }
        for b in self.cells.iter().chain(&self.debris) {
            paint_blob(&mut t, w, h, b);
        }
        let (labels, cover, tone) = self.draw_bodies();
        let mut img: Vec<f32> = Vec::with_capacity(w * h);
        for y in 0..h {
            let tv = 2.0 * (y as f64 + 0.5) / h as f64 - 1.0;
            for x in 0..w {
                let k = y * w + x;
                let u = 2.0 * (x as f64 + 0.5) / w as f64 - 1.0;
                let light = 1.0 + self.gradient.0 * u + self.gradient.1 * tv
                    - self.vignette * (u * u + tv * tv) / 2.0;
                let c = cover[k];
                let v = c * tone[k] + (1.0 - c) * t[k];
                img.push((f64::from(v) * FIELD * light) as f32);
            }
        }
        if self.blur > 0.0 {
            gaussian(&mut img, w, h, self.blur);
        }
        let mut rng = Rng::new(self.seed ^ 0xA5A5_5A5A);
        let (max, offset) = if self.bit_depth == 16 {
            (52_000.0, 1_800.0)
        } else {
            (255.0, 0.0)
        };
        for v in &mut img {
            let noisy = f64::from(*v) + self.noise * rng.normal();
            *v = (offset + noisy.clamp(0.0, 1.0) * max).round() as f32;
        }
        (
            Gray::new(self.width, self.height, img),
            labels,
            self.bodies.len(),
        )
    }

    /// Labels, coverage (how much of each pixel a spheroid covers) and the transmission of the
    /// spheroid that covers it.
    fn draw_bodies(&self) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
        let (w, h) = (self.width as usize, self.height as usize);
        let px = f64::from(self.width.max(self.height)) / 1024.0;
        let mut labels = vec![0u32; w * h];
        let mut cover = vec![0f32; w * h];
        let mut tone = vec![0f32; w * h];
        const STEPS: usize = 1024;
        for (i, body) in self.bodies.iter().enumerate() {
            let s = &body.shape;
            // The outline radius by angle, for the shading (the outline itself is exact).
            let table: Vec<f64> = (0..STEPS)
                .map(|j| s.r(2.0 * PI * j as f64 / STEPS as f64 - PI))
                .collect();
            let spread = reach(&s.harmonics);
            let (rmin, rmax) = (s.radius * (1.0 - spread), s.radius * (1.0 + spread));
            let rim = (0.012 * s.radius).max(2.0 * px);
            let x0 = (s.cx - rmax - 2.0).floor().max(0.0) as usize;
            let x1 = ((s.cx + rmax + 2.0).ceil().max(0.0) as usize).min(w);
            let y0 = (s.cy - rmax - 2.0).floor().max(0.0) as usize;
            let y1 = ((s.cy + rmax + 2.0).ceil().max(0.0) as usize).min(h);
            let salt = self.seed.wrapping_add(i as u64 * 0x1000_0001);
            for y in y0..y1 {
                let yc = y as f64 + 0.5;
                let dy = yc - s.cy;
                for x in x0..x1 {
                    let xc = x as f64 + 0.5;
                    let dx = xc - s.cx;
                    let d = dx.hypot(dy);
                    if d > rmax + 1.0 {
                        continue;
                    }
                    // The outline radius only where the outline or the rim can be.
                    let r = if d < rmin - rim - 1.0 {
                        None
                    } else {
                        Some(s.r(dy.atan2(dx)))
                    };
                    let c = r.map_or(1.0, |r| (r - d + 0.5).clamp(0.0, 1.0));
                    if c <= 0.0 {
                        continue;
                    }
                    let k = y * w + x;
                    let inside = r.is_none_or(|r| d < r);
                    let shade = || {
                        let n = 0.7 * value_noise(xc, yc, 5.0 * px, salt)
                            + 0.3 * value_noise(xc, yc, 0.3 * s.radius, salt ^ 0xFF);
                        let j = ((dy.atan2(dx) + PI) / (2.0 * PI) * STEPS as f64) as usize;
                        let q = (d / table[j.min(STEPS - 1)]).min(1.0);
                        let depth = (1.0 - q * q).sqrt();
                        let base = body.tone.powf(body.edge + (1.0 - body.edge) * depth);
                        let tilt = 1.0 + (body.tilt.0 * dx + body.tilt.1 * dy) / s.radius;
                        let rim_dark = if r.is_some_and(|r| r - d < rim) {
                            0.8
                        } else {
                            1.0
                        };
                        (base * tilt * (1.0 + body.texture * n) * rim_dark).clamp(0.0, 1.0) as f32
                    };
                    if inside {
                        let take = match labels[k] {
                            0 => true,
                            j => {
                                let o = &self.bodies[j as usize - 1].shape;
                                power(s, xc, yc) < power(o, xc, yc)
                            }
                        };
                        if take {
                            labels[k] = i as u32 + 1;
                            tone[k] = shade();
                        }
                        cover[k] = cover[k].max(c as f32);
                    } else if labels[k] == 0 && c as f32 > cover[k] {
                        cover[k] = c as f32;
                        tone[k] = shade();
                    }
                }
            }
        }
        (labels, cover, tone)
    }
}

/// d² − r(θ)²: negative inside; of two overlapping outlines, the lower one owns the point.
fn power(s: &Spheroid, x: f64, y: f64) -> f64 {
    let (dx, dy) = (x - s.cx, y - s.cy);
    let r = s.r(dy.atan2(dx));
    dx * dx + dy * dy - r * r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_plate() {
        for kind in PlateKind::ALL {
            let a = Plate::random(3, 256, 8, kind);
            assert_eq!(a, Plate::random(3, 256, 8, kind), "{kind:?}");
            assert_ne!(a, Plate::random(4, 256, 8, kind), "{kind:?}");
            let (img, labels, n) = a.render_with_labels();
            let (img2, labels2, _) = a.render_with_labels();
            assert_eq!((img.data, labels.clone()), (img2.data, labels2));
            assert_eq!(labels, a.labels());
            assert_eq!(n, a.bodies.len());
        }
    }

    #[test]
    fn every_spheroid_has_its_label_and_touching_ones_share_a_boundary() {
        for kind in PlateKind::ALL {
            for seed in 0..4 {
                let p = Plate::random(seed, 384, 16, kind);
                let (img, labels, n) = p.render_with_labels();
                assert!(img.data.iter().all(|&v| (0.0..=65535.0).contains(&v)));
                let mut area = vec![0u64; n + 1];
                for &l in &labels {
                    area[l as usize] += 1;
                }
                for (i, b) in p.bodies.iter().enumerate() {
                    let analytic = b.shape.area();
                    let share = area[i + 1] as f64 / analytic;
                    // Touching spheroids give up a sliver of their area to each other.
                    assert!(
                        (0.9..1.01).contains(&share),
                        "{kind:?} seed {seed} body {i}: {} px of {analytic:.0}",
                        area[i + 1]
                    );
                }
                let touching = matches!(
                    kind,
                    PlateKind::TwoTouching | PlateKind::ThreeTouching | PlateKind::TouchingInHalo
                );
                let w = p.width as usize;
                let adjacent = (1..labels.len()).any(|k| {
                    let (a, b) = (labels[k - 1], labels[k]);
                    let up = labels[k.saturating_sub(w)];
                    (a != 0 && b != 0 && a != b) || (b != 0 && up != 0 && b != up)
                });
                assert_eq!(adjacent, touching, "{kind:?} seed {seed}");
            }
        }
    }

    #[test]
    fn the_halo_is_darker_than_the_field_and_lighter_than_a_spheroid() {
        let p = Plate {
            gradient: (0.0, 0.0),
            vignette: 0.0,
            ..Plate::random(1, 512, 8, PlateKind::HaloFingers)
        };
        let (img, labels, _) = p.render_with_labels();
        let halo = &p.halos[0];
        let body = &p.bodies[0].shape;
        let (mut field, mut ring, mut inside) = (vec![], vec![], vec![]);
        for (k, &v) in img.data.iter().enumerate() {
            let (x, y) = ((k % 512) as f64 + 0.5, (k / 512) as f64 + 0.5);
            let dh = (x - halo.cx).hypot(y - halo.cy) / halo.radius;
            let db = (x - body.cx).hypot(y - body.cy) / body.radius;
            if labels[k] == 1 && db < 0.8 {
                inside.push(v);
            } else if labels[k] == 0 && (1.3..1.8).contains(&db) {
                ring.push(v);
            } else if dh > 1.3 {
                field.push(v);
            }
        }
        let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        let (f, r, b) = (mean(&field), mean(&ring), mean(&inside));
        assert!(
            r < 0.95 * f && r > b + 0.5 * (f - b),
            "field {f}, halo {r}, body {b}"
        );
    }

    #[test]
    fn defocus_blurs_the_image_and_not_the_truth() {
        let p = Plate {
            noise: 0.0,
            ..Plate::random(2, 256, 8, PlateKind::Defocus)
        };
        assert!((0.5..=1.5).contains(&p.blur));
        let sharp = Plate {
            blur: 0.0,
            ..p.clone()
        };
        let (a, la, _) = p.render_with_labels();
        let (b, lb, _) = sharp.render_with_labels();
        assert_eq!(la, lb);
        let step = |img: &Gray| {
            img.data
                .windows(2)
                .map(|w| f64::from(w[1] - w[0]).powi(2))
                .sum::<f64>()
        };
        assert!(step(&a) < 0.8 * step(&b));
    }
}
