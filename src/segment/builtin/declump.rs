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
//!   diameter are one object after all (one lobed spheroid); the widest such neck merges first.
//!
//! It works on a copy of the object scaled down to at most [`GRID`] cells on its long side: the
//! split follows the distance transform's ridges, which need no more, and every other boundary of
//! the object stays at full resolution. Each full-resolution pixel takes its cell's part.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::distance::edt_squared;

/// The long side, in cells, of the grid the split is found on.
const GRID: usize = 160;

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

/// Splits the object `mask` (`w` × `h`, non-zero inside) where it is clumped.
pub(crate) fn declump(mask: &[u8], w: usize, h: usize, neck_ratio: f32) -> Parts {
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
    let (mut merged, splits) = merge(&mut cell, &dist, gw, gh, peaks.len(), neck_ratio, s);
    if merged == 1 {
        return Parts { splits, ..whole() };
    }
    // Each pixel takes its cell's part, or a neighbouring cell's where the cell fell outside.
    let mut labels = vec![0u32; w * h];
    for y in 0..h {
        for x in 0..w {
            if mask[y * w + x] == 0 {
                continue;
            }
            let (gx, gy) = (x / s, y / s);
            let mut l = cell[gy * gw + gx];
            if l == 0 {
                l = neighbours8(gx, gy, gw, gh)
                    .map(|(nx, ny)| cell[ny * gw + nx])
                    .find(|&l| l != 0)
                    .unwrap_or(1);
            }
            labels[y * w + x] = l;
        }
    }
    // Renumber the parts that got pixels 1..n.
    let mut renumber = vec![0u32; merged as usize + 1];
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
    merged = next;
    Parts {
        labels,
        count: merged,
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
fn merge(
    cell: &mut [u32],
    dist: &[f32],
    w: usize,
    h: usize,
    parts: usize,
    neck_ratio: f32,
    s: usize,
) -> (u32, Vec<Split>) {
    let n = parts + 1;
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
            .max_by(|x, y| x.0.total_cmp(&y.0));
        let Some((ratio, a, b)) = widest.filter(|&(r, ..)| r >= neck_ratio) else {
            break;
        };
        let _ = ratio;
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
        let p = declump(&m, w, h, 0.7);
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
        let p = declump(&m, w, h, 0.7);
        assert_eq!(p.count, 3, "{:?}", p.splits);
    }

    #[test]
    fn one_lobed_blob_and_one_disc_stay_whole() {
        let (w, h) = (200, 160);
        // Two heavily overlapping discs: a peanut with a wide waist.
        let m = discs(w, h, &[(80.0, 80.0, 50.0), (120.0, 80.0, 50.0)]);
        let p = declump(&m, w, h, 0.7);
        assert_eq!(p.count, 1, "{:?}", p.splits);
        let m = discs(w, h, &[(100.0, 80.0, 60.0)]);
        assert_eq!(declump(&m, w, h, 0.7).count, 1);
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
        let p = declump(&m, w, h, 0.7);
        assert_eq!(p.count, 1);
        assert!(p.labels.iter().zip(&m).all(|(&l, &v)| (l != 0) == (v != 0)));
    }
}
