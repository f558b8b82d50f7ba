//! Where a plate's spheroids, halo, loose cells and debris go, and how each spheroid looks: the
//! random draw behind `Plate::random`. Everything is placed from one `Rng`, so a seed is a plate.

use std::f64::consts::PI;

use super::paint::value_noise;
use super::{Blob, Body, Halo, Plate, PlateKind, reach};
use crate::synth::{Rng, Spheroid};

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
/// light one is textured, markedly lighter towards its edge and to one side, yet nowhere lighter
/// than about 0.6 of the field before texture (tone^edge · (1 + tilt) ≤ 0.32^0.6 · 1.2): a compact
/// body stays clearly darker than the halo's loose cells.
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
            rng.range(0.18, 0.32),
            rng.range(0.15, 0.3),
            rng.range(0.6, 0.8),
            rng.range(0.0, 0.2),
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

/// The plate of `kind` drawn from `seed`.
pub(super) fn random(seed: u64, size: u32, bit_depth: u8, kind: PlateKind) -> Plate {
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
        // As in the real image: one nearly black; the other lighter, a quarter of the field at
        // its centre and half of it at its edge on the side towards the dark one.
        bodies[0].tone = rng.range(0.03, 0.08);
        let (a, b) = (&bodies[0].shape, &bodies[1].shape);
        let towards = (a.cy - b.cy).atan2(a.cx - b.cx);
        let tilt = rng.range(0.15, 0.25);
        bodies[1].tone = rng.range(0.18, 0.26);
        bodies[1].edge = rng.range(0.5, 0.6);
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
