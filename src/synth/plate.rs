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

use std::f64::consts::PI;

use super::{Rng, Spheroid};
use crate::morphology::Gray;

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
    fn r(&self, theta: f64) -> f64 {
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

/// A spheroid's outline: a few gentle lobes and a rough surface (gentler than `Scene::random`'s,
/// so a planned neck stays where it was planned).
/// Its mean radius is drawn from `lo..hi`; it sits at the origin until placed.
fn outline(rng: &mut Rng, lo: f64, hi: f64) -> Spheroid {
    let radius = rng.range(lo, hi);
    let mut harmonics = vec![
        (2, rng.range(0.01, 0.04), rng.range(0.0, 2.0 * PI)),
        (3, rng.range(0.005, 0.025), rng.range(0.0, 2.0 * PI)),
        (5, rng.range(0.003, 0.01), rng.range(0.0, 2.0 * PI)),
    ];
    for k in 12..20 {
        harmonics.push((k, rng.range(0.0005, 0.0015), rng.range(0.0, 2.0 * PI)));
    }
    Spheroid {
        cx: 0.0,
        cy: 0.0,
        radius,
        harmonics,
        lumen: None,
        core: None,
    }
}

/// How a spheroid looks: a dark one is smooth and nearly as dark at its edge as at its centre; a
/// light one is textured, markedly lighter towards its edge and to one side.
fn look(rng: &mut Rng, shape: Spheroid, dark: bool) -> Body {
    let (tone, texture, edge, tilt) = if dark {
        (
            rng.range(0.04, 0.15),
            rng.range(0.05, 0.15),
            rng.range(0.75, 1.0),
            rng.range(0.0, 0.1),
        )
    } else {
        (
            rng.range(0.2, 0.42),
            rng.range(0.15, 0.3),
            rng.range(0.45, 0.75),
            rng.range(0.0, 0.3),
        )
    };
    let towards = rng.range(0.0, 2.0 * PI);
    Body {
        shape,
        tone,
        texture,
        edge,
        tilt: (tilt * towards.cos(), tilt * towards.sin()),
    }
}

/// The centre distance at which `a` and `b`, facing each other along `theta` (from `a` to `b`),
/// overlap so that their outlines cross at a chord of half-length `half_neck`; with `gap` > 0
/// instead, the distance that leaves that gap between them. Uses each outline's radius along the
/// line, so lobes do not undo the plan.
fn spacing(a: &Spheroid, b: &Spheroid, theta: f64, half_neck: f64, gap: f64) -> f64 {
    let (ra, rb) = (a.r(theta), b.r(theta + PI));
    if gap > 0.0 {
        ra + rb + gap
    } else {
        let h = half_neck.min(0.95 * ra.min(rb));
        (ra * ra - h * h).sqrt() + (rb * rb - h * h).sqrt()
    }
}

/// Moves `b` to distance `d` from `a` along `theta`.
fn place(a: &Spheroid, b: &mut Spheroid, theta: f64, d: f64) {
    b.cx = a.cx + d * theta.cos();
    b.cy = a.cy + d * theta.sin();
}

/// Loose cells along a strand from `(x0, y0)` to `(x1, y1)`, `rows` cells wide, bending sideways
/// by up to `bend` of its length.
#[allow(clippy::too_many_arguments)]
fn strand(
    rng: &mut Rng,
    cells: &mut Vec<Blob>,
    (x0, y0): (f64, f64),
    (x1, y1): (f64, f64),
    cell: f64,
    rows: u32,
    bend: f64,
    transmission: (f64, f64),
) {
    let (dx, dy) = (x1 - x0, y1 - y0);
    let len = dx.hypot(dy).max(1e-9);
    let (nx, ny) = (-dy / len, dx / len);
    let sway = rng.range(-bend, bend) * len;
    let steps = (len / (1.1 * cell)).ceil() as usize;
    for i in 0..=steps {
        let t = i as f64 / steps.max(1) as f64;
        let off = sway * (PI * t).sin();
        for row in 0..rows {
            let lane = (f64::from(row) - f64::from(rows - 1) / 2.0) * 1.5 * cell;
            let jitter = rng.range(-0.4, 0.4) * cell;
            let along = rng.range(-0.3, 0.3) * cell;
            cells.push(Blob {
                x: x0 + dx * t + dx / len * along + nx * (off + lane + jitter),
                y: y0 + dy * t + dy / len * along + ny * (off + lane + jitter),
                radius: cell * rng.range(0.8, 1.2),
                transmission: rng.range(transmission.0, transmission.1),
            });
        }
    }
}

/// How far `(x, y)` lies outside the outline of `s` (negative inside), along the radius.
fn outside(s: &Spheroid, x: f64, y: f64) -> f64 {
    let (dx, dy) = (x - s.cx, y - s.cy);
    dx.hypot(dy) - s.r(dy.atan2(dx))
}

impl Plate {
    /// A random plate of `kind`, `size` × `size`.
    pub fn random(seed: u64, size: u32, bit_depth: u8, kind: PlateKind) -> Plate {
        let mut rng = Rng::new(seed ^ 0x51A7_E000);
        let s = f64::from(size);
        let px = s / 1024.0;
        let mut bodies: Vec<Spheroid> = Vec::new();
        let theta = rng.range(0.0, 2.0 * PI);
        let touching = |rng: &mut Rng, a: &Spheroid, b: &Spheroid, theta: f64, lo: f64| {
            let neck = rng.range(lo, 0.5) * a.radius.min(b.radius);
            spacing(a, b, theta, neck, 0.0)
        };
        match kind {
            PlateKind::TwoTouching | PlateKind::TouchingInHalo => {
                let scale = if kind == PlateKind::TwoTouching {
                    rng.range(0.13, 0.18)
                } else {
                    rng.range(0.1, 0.12)
                };
                let r1 = s * scale;
                let a = outline(&mut rng, r1, r1);
                let mut b = outline(&mut rng, 0.75 * r1, r1);
                let d = touching(&mut rng, &a, &b, theta, 0.3);
                place(&a, &mut b, theta, d);
                bodies.extend([a, b]);
            }
            PlateKind::ThreeTouching | PlateKind::ThreeBridged => {
                let (lo, hi) = if kind == PlateKind::ThreeTouching {
                    (0.1, 0.13)
                } else {
                    (0.08, 0.11)
                };
                let a = outline(&mut rng, s * lo, s * hi);
                let mut b = outline(&mut rng, s * lo, s * hi);
                let mut c = outline(&mut rng, s * lo, s * hi);
                let gap = |rng: &mut Rng, x: &Spheroid| {
                    if kind == PlateKind::ThreeBridged {
                        rng.range(0.2, 0.5) * x.radius
                    } else {
                        0.0
                    }
                };
                let g = gap(&mut rng, &a);
                let d = if g > 0.0 {
                    spacing(&a, &b, theta, 0.0, g)
                } else {
                    touching(&mut rng, &a, &b, theta, 0.3)
                };
                place(&a, &mut b, theta, d);
                // C on the far side of B, bent so that it stays clear of A.
                let g = gap(&mut rng, &b);
                let neck = rng.range(0.3, 0.5) * b.radius.min(c.radius);
                loop {
                    let bend = rng.range(-0.6, 0.6) * PI;
                    let t2 = theta + bend;
                    let d = spacing(&b, &c, t2, neck, g);
                    place(&b, &mut c, t2, d);
                    let clear = (c.cx - a.cx).hypot(c.cy - a.cy) > 1.25 * (a.radius + c.radius);
                    if clear {
                        break;
                    }
                }
                bodies.extend([a, b, c]);
            }
            PlateKind::HaloFingers => {
                bodies.push(outline(&mut rng, 0.13 * s, 0.17 * s));
            }
            PlateKind::Debris | PlateKind::Defocus => {
                let a = outline(&mut rng, 0.1 * s, 0.14 * s);
                let mut b = outline(&mut rng, 0.75 * a.radius, a.radius);
                let g = if kind == PlateKind::Debris {
                    rng.range(0.3, 1.0)
                } else {
                    rng.range(0.15, 0.5)
                } * b.radius;
                let d = spacing(&a, &b, theta, 0.0, g);
                place(&a, &mut b, theta, d);
                bodies.extend([a, b]);
            }
        }

        // Centre the group, then shift it at random within what the margin leaves.
        let margin = 0.05 * s;
        let extent = |b: &Spheroid| b.radius * (1.0 + reach(&b.harmonics));
        let (x0, x1, y0, y1) = bodies.iter().fold(
            (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
            |(x0, x1, y0, y1), b| {
                let e = extent(b);
                (
                    x0.min(b.cx - e),
                    x1.max(b.cx + e),
                    y0.min(b.cy - e),
                    y1.max(b.cy + e),
                )
            },
        );
        let slack_x = ((s - 2.0 * margin - (x1 - x0)) / 2.0).max(0.0);
        let slack_y = ((s - 2.0 * margin - (y1 - y0)) / 2.0).max(0.0);
        let shift_x = s / 2.0 - (x0 + x1) / 2.0 + rng.range(-0.5, 0.5) * slack_x;
        let shift_y = s / 2.0 - (y0 + y1) / 2.0 + rng.range(-0.5, 0.5) * slack_y;
        for b in &mut bodies {
            b.cx += shift_x;
            b.cy += shift_y;
        }

        let mut cells = Vec::new();
        let mut halos = Vec::new();
        let cell = rng.range(2.5, 3.5) * px;
        if kind == PlateKind::ThreeBridged {
            for pair in bodies.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                let t = (b.cy - a.cy).atan2(b.cx - a.cx);
                let (ra, rb) = (0.95 * a.r(t), 0.95 * b.r(t + PI));
                strand(
                    &mut rng,
                    &mut cells,
                    (a.cx + ra * t.cos(), a.cy + ra * t.sin()),
                    (b.cx - rb * t.cos(), b.cy - rb * t.sin()),
                    cell,
                    2,
                    0.15,
                    (0.45, 0.65),
                );
            }
        }
        if matches!(kind, PlateKind::HaloFingers | PlateKind::TouchingInHalo) {
            // Around the group: the first and last spheroid's midpoint, well past both.
            let (a, b) = (&bodies[0], &bodies[bodies.len() - 1]);
            let (mx, my) = ((a.cx + b.cx) / 2.0, (a.cy + b.cy) / 2.0);
            let half = (b.cx - a.cx).hypot(b.cy - a.cy) / 2.0 + a.radius.max(b.radius);
            let rr = if bodies.len() == 1 {
                half * rng.range(2.0, 2.6)
            } else {
                half * rng.range(1.6, 2.0)
            };
            let halo = Halo {
                cx: mx + rng.range(-0.1, 0.1) * rr,
                cy: my + rng.range(-0.1, 0.1) * rr,
                radius: rr.min(0.47 * s),
                harmonics: (2..6)
                    .map(|k| (k, rng.range(0.02, 0.06), rng.range(0.0, 2.0 * PI)))
                    .collect(),
                haze: rng.range(0.06, 0.1),
            };
            halo_cells(&mut rng, &mut cells, &halo, &bodies, cell);
            halos.push(halo);
            for b in &bodies {
                for _ in 0..(4 + rng.next_u64() % 4) {
                    let t = rng.range(0.0, 2.0 * PI);
                    let r0 = 0.9 * b.r(t);
                    let len = r0 + rng.range(0.3, 0.7) * b.radius;
                    let (ux, uy) = (t.cos(), t.sin());
                    let rows = 2 + (rng.next_u64() % 2) as u32;
                    strand(
                        &mut rng,
                        &mut cells,
                        (b.cx + r0 * ux, b.cy + r0 * uy),
                        (b.cx + len * ux, b.cy + len * uy),
                        cell,
                        rows,
                        0.2,
                        (0.6, 0.8),
                    );
                }
            }
        }

        let mut debris = Vec::new();
        let (field, near) = match kind {
            PlateKind::Debris => (10, 6),
            PlateKind::TouchingInHalo => (6, 2),
            _ => (0, 0),
        };
        for i in 0..field + near {
            let radius = px * (1.5 + 8.5 * rng.unit().powi(2));
            loop {
                let (x, y) = if i < field {
                    (rng.range(0.03, 0.97) * s, rng.range(0.03, 0.97) * s)
                } else {
                    let b = &bodies[rng.next_u64() as usize % bodies.len()];
                    let t = rng.range(0.0, 2.0 * PI);
                    let d = b.r(t) + 2.0 * radius + 6.0 * px + rng.range(0.0, 0.4) * b.radius;
                    (b.cx + d * t.cos(), b.cy + d * t.sin())
                };
                let clear = bodies
                    .iter()
                    .all(|b| outside(b, x, y) > 2.0 * radius + 6.0 * px);
                let inside = (0.0..s).contains(&x) && (0.0..s).contains(&y);
                if clear && inside {
                    speck(&mut rng, &mut debris, x, y, radius);
                    break;
                }
            }
        }

        let blur = if matches!(kind, PlateKind::Defocus | PlateKind::TouchingInHalo) {
            rng.range(0.5, 1.5)
        } else {
            0.0
        };
        // The first spheroid is dark, the others light; a lone one in a halo is either.
        let lone_dark = rng.unit() < 0.5;
        let mut bodies: Vec<Body> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, shape)| {
                let dark = if kind == PlateKind::HaloFingers {
                    lone_dark
                } else {
                    i == 0
                };
                look(&mut rng, shape, dark)
            })
            .collect();
        if kind == PlateKind::TouchingInHalo {
            // As in the real image: one nearly black; the other lighter, and lightest on the side
            // towards the dark one, where its edge is hard to tell from the halo.
            bodies[0].tone = rng.range(0.03, 0.08);
            let (a, b) = (&bodies[0].shape, &bodies[1].shape);
            let towards = (a.cy - b.cy).atan2(a.cx - b.cx);
            let tilt = rng.range(0.2, 0.35);
            bodies[1].edge = rng.range(0.45, 0.6);
            bodies[1].tilt = (tilt * towards.cos(), tilt * towards.sin());
        }
        Plate {
            width: size,
            height: size,
            bit_depth,
            kind,
            bodies,
            halos,
            cells,
            debris,
            gradient: (rng.range(-0.15, 0.15), rng.range(-0.15, 0.15)),
            vignette: rng.range(0.05, 0.15),
            blur,
            noise: 0.015,
            seed,
        }
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

/// Scatters loose cells over the halo, densest inside, thinning to its ragged outline, in
/// patches; none under a spheroid (they would not show).
fn halo_cells(rng: &mut Rng, cells: &mut Vec<Blob>, halo: &Halo, bodies: &[Spheroid], cell: f64) {
    let rmax = halo.radius * (1.0 + reach(&halo.harmonics));
    // Cells cover the centre about once over (they overlap), thinning outwards.
    let tries = (2.0 * (2.0 * rmax).powi(2) / (PI * cell * cell)) as usize;
    let density = rng.range(0.5, 0.7);
    let salt = rng.next_u64();
    for _ in 0..tries {
        let x = halo.cx + rng.range(-rmax, rmax);
        let y = halo.cy + rng.range(-rmax, rmax);
        let (dx, dy) = (x - halo.cx, y - halo.cy);
        let rho = dx.hypot(dy) / halo.r(dy.atan2(dx));
        let patch = 0.6 + 0.4 * value_noise(x, y, 0.12 * halo.radius, salt);
        let p = density * (1.0 - rho.powi(4)).max(0.0) * patch;
        let draw = rng.unit();
        if draw < p && bodies.iter().all(|b| outside(b, x, y) > 0.0) {
            cells.push(Blob {
                x,
                y,
                radius: cell * rng.range(0.7, 1.3),
                transmission: rng.range(0.75, 0.9),
            });
        }
    }
}

/// A speck of debris: one to three dark blobs together, the first at `(x, y)`.
fn speck(rng: &mut Rng, debris: &mut Vec<Blob>, x: f64, y: f64, radius: f64) {
    let parts = 1 + rng.next_u64() % 3;
    let transmission = rng.range(0.15, 0.45);
    for p in 0..parts {
        let (ox, oy) = if p == 0 {
            (0.0, 0.0)
        } else {
            let t = rng.range(0.0, 2.0 * PI);
            (0.6 * radius * t.cos(), 0.6 * radius * t.sin())
        };
        debris.push(Blob {
            x: x + ox,
            y: y + oy,
            radius: radius * if p == 0 { 1.0 } else { rng.range(0.5, 0.8) },
            transmission,
        });
    }
}

/// Multiplies the blob's transmission into `t`: anti-aliased at its edge, lighter towards it.
fn paint_blob(t: &mut [f32], w: usize, h: usize, b: &Blob) {
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
fn paint_haze(t: &mut [f32], w: usize, h: usize, halo: &Halo, seed: u64) {
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
fn value_noise(x: f64, y: f64, cell: f64, seed: u64) -> f64 {
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
fn gaussian(img: &mut [f32], w: usize, h: usize, sigma: f64) {
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
