//! Splitting touching objects by shape, as CellProfiler's IdentifyPrimaryObjects declumps and
//! scikit-image's watershed example does: markers at the peaks of the distance transform of the
//! object, a watershed of the distance restricted to the object, and a split kept
//! only where the two parts meet in a neck narrow compared with the smaller part.
//!
//! - The distance is of the object with its holes (see `declump`).
//! - Peaks are local maxima of the distance at least 30 % of the deepest, each at least 0.7 of the
//!   larger radius from a stronger one, and not joined to a stronger one by a ridge that stays
//!   within `h` (10 % of the peak, at least one cell) of it: a lobe is not a spheroid.
//! - The watershed floods from the peaks in order of decreasing distance.
//! - Two parts whose shared boundary (the neck) is at least `neck_ratio` of the smaller part's
//!   diameter are one object after all (one lobed spheroid), unless they clearly differ in
//!   darkness (two spheroids pressed together, one dark and one light, meet in a wide neck; the
//!   lobes of one spheroid look alike); the widest such neck merges first. A neck almost as wide
//!   as the parts always merges.
//!
//! It works on a copy of the object scaled down to at most [`GRID`] cells on its long side, which
//! is enough to find the parts; every other boundary of the object stays at full resolution, and
//! the split itself is drawn at full resolution (`cut`): along the radical axis of the parts'
//! peaks, or where two parts differ in tone, along the edge between them that the image shows.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::distance::edt_squared;
use cut::{Centre, Clump};

mod cut;

/// The long side, in cells, of the grid the split is found on.
const GRID: usize = 160;
/// Parts whose mean feature differs by this fraction of the feature's range are two objects even
/// across a wide neck...
const CONTRAST: f32 = 0.15;
/// ...narrower than this fraction of the smaller part's diameter.
const WIDEST_CONTRASTED_NECK: f32 = 0.95;

/// One split considered between two parts, in the crop's pixels.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Split {
    /// The middle of the neck.
    pub(crate) at: (f64, f64),
    /// The neck's length and the two parts' diameters (twice their deepest distance).
    pub(crate) neck: f64,
    pub(crate) diameters: (f64, f64),
    /// Kept (two objects), or refused (merged back: one lobed object).
    pub(crate) kept: bool,
}

/// The parts of one object.
pub(crate) struct Parts {
    /// Per pixel of the crop: 0 outside the object, else the part (1-based).
    pub(crate) labels: Vec<u32>,
    pub(crate) count: u32,
    pub(crate) splits: Vec<Split>,
}

/// What the merge decision may look at besides the shape: the feature of the crop's pixels and
/// its range.
pub(crate) struct Tone<'a> {
    pub(crate) feature: &'a [f32],
    pub(crate) range: f32,
}

/// Splits the object `mask` (`w` × `h`, non-zero inside) where it is clumped.
pub(crate) fn declump(mask: &[u8], w: usize, h: usize, neck_ratio: f32, tone: &Tone<'_>) -> Parts {
    let whole = || Parts {
        labels: mask.iter().map(|&m| u32::from(m != 0)).collect(),
        count: 1,
        splits: Vec::new(),
    };
    let s = w.max(h).div_ceil(GRID).max(1);
    let (gw, gh) = (w.div_ceil(s), h.div_ceil(s));
    // Holes stay open: filling them would also fill the pocket enclosed between three touching
    // spheroids and fatten their necks; the sectors of a ring that the watershed may make meet
    // across its whole width and merge again.
    let grid = shrink(mask, w, h, s);
    let dist: Vec<f32> = edt_squared(&grid, gw, gh)
        .into_iter()
        .map(f32::sqrt)
        .collect();
    let peaks = peaks(&dist, gw, gh);
    if peaks.len() < 2 {
        return whole();
    }
    let mut cell = flood(&dist, gw, gh, &peaks);
    // Each cell's mean feature over its object pixels.
    let mut shade = vec![0f32; gw * gh];
    let mut count = vec![0u32; gw * gh];
    for y in 0..h {
        for x in 0..w {
            if mask[y * w + x] != 0 {
                let c = (y / s) * gw + x / s;
                shade[c] += tone.feature[y * w + x];
                count[c] += 1;
            }
        }
    }
    for (v, &n) in shade.iter_mut().zip(&count) {
        *v /= n.max(1) as f32;
    }
    let grid = Grid {
        dist: &dist,
        shade: &shade,
        w: gw,
        h: gh,
        scale: s,
    };
    let (merged, splits) = merge(&mut cell, &grid, peaks.len(), neck_ratio, tone.range);
    if merged == 1 {
        return Parts { splits, ..whole() };
    }
    let centres: Vec<Centre> = peaks
        .iter()
        .map(|&p| Centre {
            x: ((p % gw) as f64 + 0.5) * s as f64,
            y: ((p / gw) as f64 + 0.5) * s as f64,
            r: f64::from(dist[p]) * s as f64,
            part: cell[p],
        })
        .collect();
    let mut labels = cut::assign(&Clump {
        mask,
        w,
        h,
        cell: &cell,
        grid: &grid,
        centres: &centres,
        tone,
    });
    // Renumber the parts that got pixels 1..n.
    let mut renumber = vec![0u32; peaks.len() + 1];
    let mut next = 0;
    for &l in &labels {
        if l != 0 && renumber[l as usize] == 0 {
            next += 1;
            renumber[l as usize] = next;
        }
    }
    for l in &mut labels {
        *l = renumber[*l as usize];
    }
    Parts {
        labels,
        count: next,
        splits,
    }
}

/// `mask` scaled down by `s`: a cell is inside when at least half its pixels are.
fn shrink(mask: &[u8], w: usize, h: usize, s: usize) -> Vec<u8> {
    let (gw, gh) = (w.div_ceil(s), h.div_ceil(s));
    let mut grid = vec![0u8; gw * gh];
    for gy in 0..gh {
        for gx in 0..gw {
            let (mut inside, mut total) = (0usize, 0usize);
            for y in gy * s..((gy + 1) * s).min(h) {
                let row = &mask[y * w..(y + 1) * w];
                for &v in &row[gx * s..((gx + 1) * s).min(w)] {
                    inside += usize::from(v != 0);
                    total += 1;
                }
            }
            grid[gy * gw + gx] = u8::from(2 * inside >= total.max(1));
        }
    }
    grid
}

fn neighbours8(x: usize, y: usize, w: usize, h: usize) -> impl Iterator<Item = (usize, usize)> {
    (-1i64..=1)
        .flat_map(|dy| (-1i64..=1).map(move |dx| (dx, dy)))
        .filter(|&d| d != (0, 0))
        .filter_map(move |(dx, dy)| {
            let (nx, ny) = (x as i64 + dx, y as i64 + dy);
            (nx >= 0 && ny >= 0 && (nx as usize) < w && (ny as usize) < h)
                .then_some((nx as usize, ny as usize))
        })
}

/// The peaks of the distance (see the module doc), strongest first, as cell indices.
fn peaks(dist: &[f32], w: usize, h: usize) -> Vec<usize> {
    let deepest = dist.iter().copied().fold(0.0f32, f32::max);
    if deepest < 2.0 {
        return Vec::new();
    }
    let mut candidates: Vec<usize> = (0..w * h)
        .filter(|&i| {
            let d = dist[i];
            d >= 0.3 * deepest && neighbours8(i % w, i / w, w, h).all(|(x, y)| dist[y * w + x] <= d)
        })
        .collect();
    candidates.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
    let mut accepted: Vec<usize> = Vec::new();
    'next: for &p in &candidates {
        let (px, py, dp) = ((p % w) as f32, (p / w) as f32, dist[p]);
        for &q in &accepted {
            let (qx, qy, dq) = ((q % w) as f32, (q / w) as f32, dist[q]);
            let apart = (px - qx).hypot(py - qy);
            if apart < 0.7 * dp.max(dq) {
                continue 'next;
            }
            // The ridge between them, along the straight line: a shallow dip is one object.
            let h_depth = (0.1 * dp).max(1.0);
            let steps = apart.ceil() as usize;
            let valley = (0..=steps)
                .map(|k| {
                    let t = k as f32 / steps.max(1) as f32;
                    let (x, y) = (px + t * (qx - px), py + t * (qy - py));
                    dist[y.round() as usize * w + x.round() as usize]
                })
                .fold(f32::INFINITY, f32::min);
            if valley >= dp - h_depth {
                continue 'next;
            }
        }
        accepted.push(p);
    }
    accepted
}

/// A watershed of the distance from `peaks`: cells flood in order of decreasing distance, each
/// taking the part of the cell it was reached from. Returns the part (1-based) of every cell.
fn flood(dist: &[f32], w: usize, h: usize, peaks: &[usize]) -> Vec<u32> {
    let mut label = vec![0u32; w * h];
    let mut heap = BinaryHeap::new();
    let key = |d: f32| (d * 64.0) as u32;
    for (k, &p) in peaks.iter().enumerate() {
        label[p] = k as u32 + 1;
        heap.push((key(dist[p]), Reverse(p)));
    }
    while let Some((_, Reverse(i))) = heap.pop() {
        let (x, y) = (i % w, i / w);
        let l = label[i];
        for (nx, ny) in [
            (x.wrapping_sub(1), y),
            (x + 1, y),
            (x, y.wrapping_sub(1)),
            (x, y + 1),
        ] {
            if nx >= w || ny >= h {
                continue;
            }
            let j = ny * w + nx;
            if dist[j] > 0.0 && label[j] == 0 {
                label[j] = l;
                heap.push((key(dist[j]), Reverse(j)));
            }
        }
    }
    label
}

/// Merges parts whose neck is wide (see the module doc); returns how many are left and every
/// split considered, in pixels of scale `s`.
/// The grid the split is found on.
struct Grid<'a> {
    dist: &'a [f32],
    /// Mean feature per cell.
    shade: &'a [f32],
    w: usize,
    h: usize,
    /// Pixels per cell side.
    scale: usize,
}

fn merge(
    cell: &mut [u32],
    g: &Grid<'_>,
    parts: usize,
    neck_ratio: f32,
    range: f32,
) -> (u32, Vec<Split>) {
    let (dist, w, h, s) = (g.dist, g.w, g.h, g.scale);
    let n = parts + 1;
    // Each part's mean feature (over its cells) and how many cells it has.
    let mut tone = vec![(0f64, 0u64); n];
    for (c, &l) in cell.iter().enumerate() {
        if l != 0 {
            tone[l as usize].0 += f64::from(g.shade[c]);
            tone[l as usize].1 += 1;
        }
    }
    // Neck lengths (in cells) and where they lie, between each pair of parts.
    let mut neck = vec![0u32; n * n];
    let mut where_ = vec![(0f64, 0f64); n * n];
    let mut deepest = vec![0f32; n];
    for y in 0..h {
        for x in 0..w {
            let a = cell[y * w + x] as usize;
            if a == 0 {
                continue;
            }
            deepest[a] = deepest[a].max(dist[y * w + x]);
            for (nx, ny) in [(x + 1, y), (x, y + 1)] {
                if nx >= w || ny >= h {
                    continue;
                }
                let b = cell[ny * w + nx] as usize;
                if b != 0 && b != a {
                    for (i, j) in [(a, b), (b, a)] {
                        neck[i * n + j] += 1;
                        let p = &mut where_[i * n + j];
                        p.0 += (x + nx) as f64 / 2.0;
                        p.1 += (y + ny) as f64 / 2.0;
                    }
                }
            }
        }
    }
    let mut alive = vec![true; n];
    alive[0] = false;
    let mut splits = Vec::new();
    let scale = s as f64;
    let describe = |neck: &[u32], where_: &[(f64, f64)], deepest: &[f32], a: usize, b: usize| {
        let k = neck[a * n + b] as f64;
        Split {
            at: (
                (where_[a * n + b].0 / k + 0.5) * scale,
                (where_[a * n + b].1 / k + 0.5) * scale,
            ),
            neck: k * scale,
            diameters: (
                2.0 * f64::from(deepest[a]) * scale,
                2.0 * f64::from(deepest[b]) * scale,
            ),
            kept: true,
        }
    };
    loop {
        let widest = (1..n)
            .filter(|&a| alive[a])
            .flat_map(|a| ((a + 1)..n).filter(|&b| alive[b]).map(move |b| (a, b)))
            .filter(|&(a, b)| neck[a * n + b] > 0)
            .map(|(a, b)| {
                let ratio = neck[a * n + b] as f32 / (2.0 * deepest[a].min(deepest[b])).max(1.0);
                (ratio, a, b)
            })
            .filter(|&(ratio, a, b)| {
                let mean = |p: usize| (tone[p].0 / tone[p].1.max(1) as f64) as f32;
                let contrasted = (mean(a) - mean(b)).abs() >= CONTRAST * range;
                ratio >= neck_ratio && !(contrasted && ratio < WIDEST_CONTRASTED_NECK)
            })
            .max_by(|x, y| x.0.total_cmp(&y.0));
        let Some((_, a, b)) = widest else {
            break;
        };
        splits.push(Split {
            kept: false,
            ..describe(&neck, &where_, &deepest, a, b)
        });
        // b joins a.
        for c in cell.iter_mut() {
            if *c as usize == b {
                *c = a as u32;
            }
        }
        alive[b] = false;
        deepest[a] = deepest[a].max(deepest[b]);
        tone[a].0 += tone[b].0;
        tone[a].1 += tone[b].1;
        for c in 1..n {
            if c != a && c != b {
                neck[a * n + c] += neck[b * n + c];
                neck[c * n + a] += neck[c * n + b];
                let (bx, by) = where_[b * n + c];
                where_[a * n + c].0 += bx;
                where_[a * n + c].1 += by;
                let (cx, cy) = where_[c * n + b];
                where_[c * n + a].0 += cx;
                where_[c * n + a].1 += cy;
            }
        }
    }
    for a in (1..n).filter(|&a| alive[a]) {
        for b in ((a + 1)..n).filter(|&b| alive[b]) {
            if neck[a * n + b] > 0 {
                splits.push(describe(&neck, &where_, &deepest, a, b));
            }
        }
    }
    ((1..n).filter(|&a| alive[a]).count() as u32, splits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discs(w: usize, h: usize, discs: &[(f64, f64, f64)]) -> Vec<u8> {
        (0..w * h)
            .map(|i| {
                let (x, y) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
                u8::from(discs.iter().any(|&(cx, cy, r)| (x - cx).hypot(y - cy) < r))
            })
            .collect()
    }

    fn flat(w: usize, h: usize) -> Vec<f32> {
        vec![0.2; w * h]
    }

    fn run(m: &[u8], w: usize, h: usize) -> Parts {
        let f = flat(w, h);
        declump(
            m,
            w,
            h,
            0.7,
            &Tone {
                feature: &f,
                range: 1.0,
            },
        )
    }

    fn sizes(p: &Parts) -> Vec<usize> {
        let mut v: Vec<usize> = (1..=p.count)
            .map(|l| p.labels.iter().filter(|&&x| x == l).count())
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn two_touching_discs_are_two_parts_split_at_their_neck() {
        let (w, h) = (220, 120);
        let m = discs(w, h, &[(60.0, 60.0, 50.0), (152.0, 60.0, 45.0)]);
        let p = run(&m, w, h);
        assert_eq!(p.count, 2, "{:?}", p.splits);
        let s = sizes(&p);
        let expect = [
            std::f64::consts::PI * 45.0 * 45.0,
            std::f64::consts::PI * 50.0 * 50.0,
        ];
        for (got, want) in s.iter().zip(expect) {
            assert!((*got as f64 - want).abs() / want < 0.08, "{s:?}");
        }
        let kept: Vec<_> = p.splits.iter().filter(|s| s.kept).collect();
        assert_eq!(kept.len(), 1);
        assert!((kept[0].at.0 - 108.0).abs() < 8.0, "{:?}", kept[0]);
    }

    #[test]
    fn three_touching_discs_are_three_parts() {
        let (w, h) = (300, 280);
        let m = discs(
            w,
            h,
            &[
                (80.0, 80.0, 55.0),
                (185.0, 85.0, 52.0),
                (135.0, 180.0, 58.0),
            ],
        );
        let p = run(&m, w, h);
        assert_eq!(p.count, 3, "{:?}", p.splits);
    }

    #[test]
    fn one_lobed_blob_and_one_disc_stay_whole() {
        let (w, h) = (200, 160);
        // Two heavily overlapping discs: a peanut with a wide waist.
        let m = discs(w, h, &[(80.0, 80.0, 50.0), (120.0, 80.0, 50.0)]);
        let p = run(&m, w, h);
        assert_eq!(p.count, 1, "{:?}", p.splits);
        let m = discs(w, h, &[(100.0, 80.0, 60.0)]);
        assert_eq!(run(&m, w, h).count, 1);
    }

    #[test]
    fn a_dark_and_a_light_disc_pressed_together_are_two_despite_a_wide_neck() {
        let (w, h) = (200, 160);
        let m = discs(w, h, &[(66.0, 80.0, 48.0), (134.0, 80.0, 45.0)]);
        let f: Vec<f32> = (0..w * h)
            .map(|i| if (i % w) < 100 { 0.05 } else { 0.45 })
            .collect();
        let p = declump(
            &m,
            w,
            h,
            0.7,
            &Tone {
                feature: &f,
                range: 1.0,
            },
        );
        assert_eq!(p.count, 2, "{:?}", p.splits);
        // The same shape in one tone is one lobed object.
        assert_eq!(run(&m, w, h).count, 1);
    }

    /// The image's edge between a dark and a light disc lies 6 px off the radical axis of their
    /// depths (x ≈ 102): the split follows the edge.
    #[test]
    fn a_dark_and_a_light_part_meet_where_their_tones_do() {
        let (w, h) = (200, 160);
        let m = discs(w, h, &[(66.0, 80.0, 48.0), (134.0, 80.0, 45.0)]);
        let edge = 96;
        let f: Vec<f32> = (0..w * h)
            .map(|i| if (i % w) < edge { 0.05 } else { 0.45 })
            .collect();
        let tone = Tone {
            feature: &f,
            range: 1.0,
        };
        let p = declump(&m, w, h, 0.7, &tone);
        assert_eq!(p.count, 2, "{:?}", p.splits);
        let dark = p.labels[80 * w + 40];
        for y in 60..100 {
            for x in 80..115 {
                let l = p.labels[y * w + x];
                if l != 0 {
                    assert_eq!(l == dark, x < edge, "pixel ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn a_ring_is_not_split_by_its_hole() {
        let (w, h) = (160, 160);
        let outer = discs(w, h, &[(80.0, 80.0, 70.0)]);
        let inner = discs(w, h, &[(80.0, 80.0, 30.0)]);
        let m: Vec<u8> = outer
            .iter()
            .zip(&inner)
            .map(|(&o, &i)| o & (1 - i))
            .collect();
        let p = run(&m, w, h);
        assert_eq!(p.count, 1);
        assert!(p.labels.iter().zip(&m).all(|(&l, &v)| (l != 0) == (v != 0)));
    }
}
