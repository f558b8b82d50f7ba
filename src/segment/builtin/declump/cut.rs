//! Where the parts of a clump meet, at full resolution. The grid says which part each cell
//! belongs to; a pixel near a split (within a band of cells around it) takes the part of the
//! nearest peak in the power distance |p − c|² − r², c the peak and r its depth: for two
//! overlapping discs that boundary is their radical axis, the straight chord through the points
//! where their outlines cross, the line a person draws across the neck.
//!
//! A peak's depth is the radius of the largest disc inside its part; a lobed spheroid reaches
//! further than that towards its neighbour, so the chord can sit several pixels off. Where the
//! two parts clearly differ in tone (a dark spheroid pressed against a lighter one), the image
//! shows where they meet: the chord moves, parallel to itself, to the step of the feature across
//! the middle of the neck (one step fitted by least squares). Parts of one tone keep the chord.

use std::collections::BTreeMap;

use super::{CONTRAST, Grid, Tone};

/// How far the chord may move towards either part, as a fraction of the smaller part's depth.
const BAND: f64 = 0.2;
/// The share of the neck, about its middle, whose pixels place the step: its ends are where
/// fingers and loose cells in the crevice beside the neck are.
const NECK_MIDDLE: f64 = 0.6;
/// The width of the bins, in pixels, across the neck that the step is fitted to.
const BIN: f64 = 0.5;

/// A peak at full resolution: centre, depth (both in pixels) and the part it belongs to.
pub(super) struct Centre {
    pub(super) x: f64,
    pub(super) y: f64,
    pub(super) r: f64,
    pub(super) part: u32,
}

/// An object and its parts as the grid found them.
pub(super) struct Clump<'a> {
    /// The object, `w` × `h`, non-zero inside.
    pub(super) mask: &'a [u8],
    pub(super) w: usize,
    pub(super) h: usize,
    /// The part of every cell of the grid `grid` (0 outside).
    pub(super) cell: &'a [u32],
    pub(super) grid: &'a Grid<'a>,
    pub(super) centres: &'a [Centre],
    pub(super) tone: &'a Tone<'a>,
}

/// Each pixel of the object labelled with its part (0 outside).
pub(super) fn assign(clump: &Clump<'_>) -> Vec<u32> {
    let Clump {
        mask,
        w,
        h,
        cell,
        grid: g,
        centres,
        ..
    } = *clump;
    let (gw, s) = (g.w, g.scale);
    let near = near_parts(cell, gw, g.h);
    let mut labels = vec![0u32; w * h];
    for y in 0..h {
        let row = (y / s) * gw;
        for x in 0..w {
            if mask[y * w + x] == 0 {
                continue;
            }
            labels[y * w + x] = match &near[row + x / s] {
                Near::One(part) => *part,
                Near::Several(parts) => {
                    let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                    centres
                        .iter()
                        .filter(|c| parts.contains(&c.part))
                        .map(|c| ((px - c.x).powi(2) + (py - c.y).powi(2) - c.r * c.r, c.part))
                        .min_by(|a, b| a.0.total_cmp(&b.0))
                        .map_or(parts[0], |(_, part)| part)
                }
            };
        }
    }
    for line in edges(clump, &labels) {
        let (x0, y0, x1, y1) = line.bounds(w, h);
        for y in y0..y1 {
            for x in x0..x1 {
                let l = &mut labels[y * w + x];
                if (*l == line.a || *l == line.b) && line.covers(x as f64 + 0.5, y as f64 + 0.5) {
                    *l = line.side(x as f64 + 0.5, y as f64 + 0.5);
                }
            }
        }
    }
    labels
}

/// The boundary between parts `a` and `b` moved to the image's edge between them: the line
/// `p · u = at` (a's side below), in force over the pixels `p` of either part within `band` of
/// the chord `p · u = chord` and along the neck, `p · u⊥` in `along`.
struct Line {
    a: u32,
    b: u32,
    u: (f64, f64),
    chord: f64,
    at: f64,
    band: f64,
    along: (f64, f64),
}

impl Line {
    fn across(&self, x: f64, y: f64) -> f64 {
        x * self.u.0 + y * self.u.1
    }

    fn lengthwise(&self, x: f64, y: f64) -> f64 {
        -x * self.u.1 + y * self.u.0
    }

    fn covers(&self, x: f64, y: f64) -> bool {
        let v = self.lengthwise(x, y);
        (self.across(x, y) - self.chord).abs() < self.band && v >= self.along.0 && v <= self.along.1
    }

    fn side(&self, x: f64, y: f64) -> u32 {
        if self.across(x, y) < self.at {
            self.a
        } else {
            self.b
        }
    }

    /// The pixels `[x0, x1) × [y0, y1)` that hold every pixel it covers.
    fn bounds(&self, w: usize, h: usize) -> (usize, usize, usize, usize) {
        let (ux, uy) = self.u;
        let corners = [
            (self.chord - self.band, self.along.0),
            (self.chord - self.band, self.along.1),
            (self.chord + self.band, self.along.0),
            (self.chord + self.band, self.along.1),
        ]
        .map(|(e, v)| (e * ux - v * uy, e * uy + v * ux));
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for (x, y) in corners {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
        let clamp = |v: f64, n: usize| v.clamp(0.0, n as f64) as usize;
        (
            clamp(x0.floor(), w),
            clamp(y0.floor(), h),
            clamp(x1.ceil() + 1.0, w),
            clamp(y1.ceil() + 1.0, h),
        )
    }
}

/// For each two parts of clearly different tone that meet, the line their boundary moves to:
/// the step of the feature across the middle of their neck (see the module doc), given each
/// pixel's part by the chord (`labels`).
fn edges(clump: &Clump<'_>, labels: &[u32]) -> Vec<Line> {
    let Clump {
        w,
        h,
        cell,
        grid: g,
        centres,
        tone,
        ..
    } = *clump;
    let s = g.scale;
    let shade = |p: u32| part_tone(cell, g.shade, p);
    let mut lines = Vec::new();
    for ((a, b), neck) in necks(cell, g.w, g.h, s) {
        let (Some(ta), Some(tb)) = (shade(a), shade(b)) else {
            continue;
        };
        if (ta - tb).abs() < CONTRAST * tone.range {
            continue;
        }
        let Some((ca, cb)) = nearest_pair(centres, a, b, neck.mid) else {
            continue;
        };
        let apart = (cb.x - ca.x).hypot(cb.y - ca.y);
        if apart < 1.0 {
            continue;
        }
        let u = ((cb.x - ca.x) / apart, (cb.y - ca.y) / apart);
        // The radical axis of the two peaks, at this distance from a's along u.
        let from_a = (apart * apart + ca.r * ca.r - cb.r * cb.r) / (2.0 * apart);
        let mut line = Line {
            a,
            b,
            u,
            chord: ca.x * u.0 + ca.y * u.1 + from_a,
            at: 0.0,
            band: BAND * ca.r.min(cb.r),
            along: (0.0, 0.0),
        };
        let (lo, hi) = neck
            .points
            .iter()
            .map(|&(x, y)| line.lengthwise(x, y))
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
        let (mid, half) = ((lo + hi) / 2.0, NECK_MIDDLE * (hi - lo + s as f64) / 2.0);
        // The fit over the middle of the neck; the line in force over all of it.
        line.along = (mid - half, mid + half);
        let bins = ((2.0 * line.band / BIN).ceil() as usize).max(2);
        let mut acc = vec![(0u64, 0f64, 0f64); bins];
        let (x0, y0, x1, y1) = line.bounds(w, h);
        for y in y0..y1 {
            for x in x0..x1 {
                let l = labels[y * w + x];
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                if (l != a && l != b) || !line.covers(px, py) {
                    continue;
                }
                let e = line.across(px, py) - line.chord + line.band;
                let f = f64::from(tone.feature[y * w + x]);
                let bin = &mut acc[((e / BIN) as usize).min(bins - 1)];
                *bin = (bin.0 + 1, bin.1 + f, bin.2 + f * f);
            }
        }
        let Some((at, left, right)) = step(&acc) else {
            continue;
        };
        // The step must be the one between the two parts: as large, and the same way round.
        if (right - left) * f64::from(tb - ta) > 0.0
            && (right - left).abs() >= f64::from(CONTRAST * tone.range)
        {
            line.at = line.chord - line.band + at as f64 * BIN;
            line.along = (lo - line.band, hi + line.band + s as f64);
            lines.push(line);
        }
    }
    lines
}

/// Where two parts meet on the grid: the midpoints of the cell edges between them, in pixels.
struct Neck {
    points: Vec<(f64, f64)>,
    mid: (f64, f64),
}

/// Every pair of parts that meet on the grid `cell` (`gw` × `gh`, cells of `s` pixels), smaller
/// part number first.
fn necks(cell: &[u32], gw: usize, gh: usize, s: usize) -> BTreeMap<(u32, u32), Neck> {
    let mut necks: BTreeMap<(u32, u32), Neck> = BTreeMap::new();
    let s = s as f64;
    for y in 0..gh {
        for x in 0..gw {
            let a = cell[y * gw + x];
            if a == 0 {
                continue;
            }
            for (nx, ny) in [(x + 1, y), (x, y + 1)] {
                if nx >= gw || ny >= gh {
                    continue;
                }
                let b = cell[ny * gw + nx];
                if b != 0 && b != a {
                    let point = (
                        ((x + nx) as f64 / 2.0 + 0.5) * s,
                        ((y + ny) as f64 / 2.0 + 0.5) * s,
                    );
                    necks
                        .entry((a.min(b), a.max(b)))
                        .or_insert_with(|| Neck {
                            points: Vec::new(),
                            mid: (0.0, 0.0),
                        })
                        .points
                        .push(point);
                }
            }
        }
    }
    for neck in necks.values_mut() {
        let n = neck.points.len() as f64;
        let (sx, sy) = neck
            .points
            .iter()
            .fold((0.0, 0.0), |(sx, sy), &(x, y)| (sx + x, sy + y));
        neck.mid = (sx / n, sy / n);
    }
    necks
}

/// The parts of the object cells among a cell and its 8 neighbours.
enum Near {
    /// One part (part 1 when there is none).
    One(u32),
    Several(Vec<u32>),
}

/// Per cell of the grid `cell` (`gw` × `gh`): the parts among it and its neighbours.
fn near_parts(cell: &[u32], gw: usize, gh: usize) -> Vec<Near> {
    let mut out = Vec::with_capacity(gw * gh);
    for y in 0..gh {
        for x in 0..gw {
            let mut first = 0;
            let mut several = false;
            for yy in y.saturating_sub(1)..(y + 2).min(gh) {
                for &l in &cell[yy * gw + x.saturating_sub(1)..yy * gw + (x + 2).min(gw)] {
                    if l != 0 {
                        several |= first != 0 && l != first;
                        first = if first == 0 { l } else { first };
                    }
                }
            }
            out.push(if several {
                let mut v: Vec<u32> = (y.saturating_sub(1)..(y + 2).min(gh))
                    .flat_map(|yy| &cell[yy * gw + x.saturating_sub(1)..yy * gw + (x + 2).min(gw)])
                    .copied()
                    .filter(|&l| l != 0)
                    .collect();
                v.sort_unstable();
                v.dedup();
                Near::Several(v)
            } else {
                Near::One(first.max(1))
            });
        }
    }
    out
}

/// The mean feature of a part's cells.
fn part_tone(cell: &[u32], shade: &[f32], part: u32) -> Option<f32> {
    let (sum, n) = cell
        .iter()
        .zip(shade)
        .filter(|(c, _)| **c == part)
        .fold((0f64, 0u64), |(s, n), (_, &v)| (s + f64::from(v), n + 1));
    (n > 0).then(|| (sum / n as f64) as f32)
}

/// Of the peaks of parts `a` and `b`, the one of each nearest `at`.
fn nearest_pair(centres: &[Centre], a: u32, b: u32, at: (f64, f64)) -> Option<(&Centre, &Centre)> {
    let nearest = |p: u32| {
        centres.iter().filter(|c| c.part == p).min_by(|c, d| {
            let dc = (c.x - at.0).hypot(c.y - at.1);
            let dd = (d.x - at.0).hypot(d.y - at.1);
            dc.total_cmp(&dd)
        })
    };
    Some((nearest(a)?, nearest(b)?))
}

/// The least-squares fit of one step to binned values (`(count, sum, sum of squares)` per bin):
/// the first bin of the right side and the means left and right of it, when each side holds at
/// least a tenth of the values.
fn step(bins: &[(u64, f64, f64)]) -> Option<(usize, f64, f64)> {
    let total = bins
        .iter()
        .fold((0u64, 0f64, 0f64), |t, b| (t.0 + b.0, t.1 + b.1, t.2 + b.2));
    let least = (total.0 / 10).max(1);
    let mut left = (0u64, 0f64, 0f64);
    let mut best: Option<(f64, usize, f64, f64)> = None;
    for (j, b) in bins.iter().enumerate().take(bins.len().saturating_sub(1)) {
        left = (left.0 + b.0, left.1 + b.1, left.2 + b.2);
        let right = (total.0 - left.0, total.1 - left.1, total.2 - left.2);
        if left.0 < least || right.0 < least {
            continue;
        }
        let sse = |t: (u64, f64, f64)| t.2 - t.1 * t.1 / t.0 as f64;
        let e = sse(left) + sse(right);
        if best.is_none_or(|b| e < b.0) {
            best = Some((e, j + 1, left.1 / left.0 as f64, right.1 / right.0 as f64));
        }
    }
    best.map(|(_, j, l, r)| (j, l, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_found_where_the_values_jump() {
        let bins: Vec<(u64, f64, f64)> = (0..20)
            .map(|i| {
                let v = if i < 13 { 0.1 } else { 0.6 };
                (4, 4.0 * v, 4.0 * v * v)
            })
            .collect();
        let (at, l, r) = step(&bins).expect("a step");
        assert_eq!(at, 13);
        assert!((l - 0.1).abs() < 1e-9 && (r - 0.6).abs() < 1e-9);
    }
}
