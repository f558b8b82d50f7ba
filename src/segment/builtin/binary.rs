//! Binary image operations: morphology with a disc, and connected components by runs.
//!
//! Masks are `u8`, 1 inside and 0 outside, row-major. Foreground is 8-connected and background
//! 4-connected, the pairing under which every hole has a well-defined enclosing object.

/// Dilation by a disc of radius `r` (chord half-widths per row offset). Pixels outside the image
/// count as 0. O(pixels × (2r + 1)), byte operations only: the reference for `bits.rs`.
#[cfg(test)]
pub(crate) fn dilate(mask: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
    if r == 0 {
        return mask.to_vec();
    }
    let cap = (r + 1).min(255) as u8;
    // Horizontal distance to the nearest 1 in the same row, capped.
    let mut hd = vec![cap; mask.len()];
    for (row, d) in mask.chunks_exact(w).zip(hd.chunks_exact_mut(w)) {
        let mut run = cap;
        for x in 0..w {
            run = if row[x] != 0 {
                0
            } else {
                run.saturating_add(1).min(cap)
            };
            d[x] = run;
        }
        let mut run = cap;
        for x in (0..w).rev() {
            run = if row[x] != 0 {
                0
            } else {
                run.saturating_add(1).min(cap)
            };
            d[x] = d[x].min(run);
        }
    }
    let mut out = vec![0u8; mask.len()];
    for dy in -(r as isize)..=r as isize {
        let half = ((r * r) as f64 - (dy * dy) as f64).sqrt().floor() as u8;
        for y in 0..h {
            let src = y as isize + dy;
            if src < 0 || src >= h as isize {
                continue;
            }
            let s = &hd[src as usize * w..(src as usize + 1) * w];
            let o = &mut out[y * w..(y + 1) * w];
            for (o, &d) in o.iter_mut().zip(s) {
                *o |= u8::from(d <= half);
            }
        }
    }
    out
}

#[cfg(test)]
fn invert(mask: &[u8]) -> Vec<u8> {
    mask.iter().map(|&v| u8::from(v == 0)).collect()
}

/// Erosion by a disc: the complement of the dilated complement.
#[cfg(test)]
pub(crate) fn erode(mask: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
    invert(&dilate(&invert(mask), w, h, r))
}

/// Opening then closing: removes specks and notches smaller than the disc. Bit-packed.
pub(crate) fn open_close(mask: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
    if r == 0 {
        return mask.to_vec();
    }
    let b = super::bits::Bits::from_mask(mask, w, h);
    b.erode(r).dilate(r).dilate(r).erode(r).to_mask()
}

/// Opening alone, bit-packed.
pub(crate) fn open(mask: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
    let b = super::bits::Bits::from_mask(mask, w, h);
    b.erode(r).dilate(r).to_mask()
}

/// Closing alone, bit-packed.
pub(crate) fn close(mask: &[u8], w: usize, h: usize, r: usize) -> Vec<u8> {
    let b = super::bits::Bits::from_mask(mask, w, h);
    b.dilate(r).erode(r).to_mask()
}

/// A horizontal run of pixels `[x0, x1)` in row `y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) y: u32,
    pub(crate) x0: u32,
    pub(crate) x1: u32,
}

/// One connected component.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Component {
    pub(crate) area: u64,
    /// The first pixel in scan order (topmost, then leftmost).
    pub(crate) first: (u32, u32),
    pub(crate) touches_border: bool,
}

/// Connected components of the pixels equal to `value`.
pub(crate) struct Components {
    pub(crate) runs: Vec<Run>,
    /// Index of each row's first run; one more entry at the end.
    pub(crate) row_start: Vec<usize>,
    /// Component index (0-based) of each run.
    pub(crate) run_label: Vec<u32>,
    pub(crate) components: Vec<Component>,
}

fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        parent[i as usize] = parent[parent[i as usize] as usize];
        i = parent[i as usize];
    }
    i
}

/// Fills every hole smaller than `fraction` of the object around it; returns how many.
pub(crate) fn fill_small_holes(mask: &mut [u8], w: usize, h: usize, fraction: f32) -> u32 {
    let objects = components(mask, w, h, 1, true);
    let background = components(mask, w, h, 0, false);
    let mut fill = vec![false; background.components.len()];
    let mut filled = 0;
    for (i, hole) in background.components.iter().enumerate() {
        let Some(obj) = objects.enclosing(hole).map(|i| &objects.components[i]) else {
            continue;
        };
        if (hole.area as f64) < f64::from(fraction) * obj.area as f64 {
            fill[i] = true;
            filled += 1;
        }
    }
    for (run, &l) in background.runs.iter().zip(&background.run_label) {
        if fill[l as usize] {
            let row = run.y as usize * w;
            mask[row + run.x0 as usize..row + run.x1 as usize].fill(1);
        }
    }
    filled
}

/// The first index from `x` on where `row` stops being set (`set`) or unset, or its length.
fn run_end(row: &[u8], mut x: usize, set: bool) -> usize {
    // Eight pixels at a time through a long run of 0s or of 1s (other non-zero values take the
    // byte loop, with the same answer).
    let eight = if set { 0x0101_0101_0101_0101u64 } else { 0 };
    while let Some(chunk) = row.get(x..x + 8) {
        if u64::from_le_bytes(chunk.try_into().expect("eight bytes")) != eight {
            break;
        }
        x += 8;
    }
    while x < row.len() && (row[x] != 0) == set {
        x += 1;
    }
    x
}

/// Labels runs of `value` with union-find over overlapping runs of consecutive rows; `eight`
/// makes diagonal neighbours connected.
pub(crate) fn components(mask: &[u8], w: usize, h: usize, value: u8, eight: bool) -> Components {
    let mut runs: Vec<Run> = Vec::new();
    let mut row_start: Vec<usize> = Vec::with_capacity(h + 1);
    for y in 0..h {
        row_start.push(runs.len());
        let row = &mask[y * w..(y + 1) * w];
        let want = value != 0;
        let mut x = 0;
        loop {
            let x0 = run_end(row, x, !want);
            if x0 == w {
                break;
            }
            x = run_end(row, x0, want);
            runs.push(Run {
                y: y as u32,
                x0: x0 as u32,
                x1: x as u32,
            });
        }
    }
    row_start.push(runs.len());
    let mut parent: Vec<u32> = (0..runs.len() as u32).collect();
    let reach = u32::from(eight);
    for y in 1..h {
        let (mut i, i_end) = (row_start[y - 1], row_start[y]);
        let (mut j, j_end) = (row_start[y], row_start[y + 1]);
        while i < i_end && j < j_end {
            let (a, b) = (runs[i], runs[j]);
            // Overlap, widened by one pixel each side for 8-connectivity.
            if a.x0 < b.x1 + reach && b.x0 < a.x1 + reach {
                let (ra, rb) = (find(&mut parent, i as u32), find(&mut parent, j as u32));
                if ra != rb {
                    let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
                    parent[hi as usize] = lo;
                }
            }
            if a.x1 < b.x1 {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    let mut index = vec![u32::MAX; runs.len()];
    let mut run_label = vec![0u32; runs.len()];
    let mut comps: Vec<Component> = Vec::new();
    for (k, run) in runs.iter().enumerate() {
        let root = find(&mut parent, k as u32) as usize;
        if index[root] == u32::MAX {
            index[root] = comps.len() as u32;
            comps.push(Component {
                first: (run.x0, run.y),
                ..Component::default()
            });
        }
        let c = &mut comps[index[root] as usize];
        c.area += u64::from(run.x1 - run.x0);
        c.touches_border |=
            run.y == 0 || run.y as usize == h - 1 || run.x0 == 0 || run.x1 as usize == w;
        run_label[k] = index[root];
    }
    Components {
        runs,
        row_start,
        run_label,
        components: comps,
    }
}

impl Components {
    /// The component (0-based) that holds pixel `(x, y)`, found among the row's runs.
    pub(crate) fn label_at(&self, x: u32, y: u32) -> Option<usize> {
        let row = &self.runs[self.row_start[y as usize]..self.row_start[y as usize + 1]];
        let i = row.partition_point(|r| r.x1 <= x);
        row.get(i)
            .filter(|r| r.x0 <= x)
            .map(|_| self.run_label[self.row_start[y as usize] + i] as usize)
    }

    /// For a hole of `self`'s complement, the object of `self` that encloses it: the one holding
    /// the pixel above the hole's first pixel; `None` for background that reaches the border.
    pub(crate) fn enclosing(&self, hole: &Component) -> Option<usize> {
        if hole.touches_border {
            return None;
        }
        let (x, y) = hole.first;
        self.label_at(x, y - 1)
    }

    /// A label image: component index + 1, 0 elsewhere.
    #[cfg(test)]
    pub(crate) fn paint(&self, w: usize, h: usize) -> Vec<u32> {
        let mut img = vec![0u32; w * h];
        for (run, &l) in self.runs.iter().zip(&self.run_label) {
            let row = run.y as usize * w;
            img[row + run.x0 as usize..row + run.x1 as usize].fill(l + 1);
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(rows: &[&str]) -> (Vec<u8>, usize, usize) {
        let w = rows[0].len();
        let data = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
            .collect();
        (data, w, rows.len())
    }

    #[test]
    fn diagonal_pixels_join_in_eight_but_not_four_connectivity() {
        let (m, w, h) = grid(&["#...", ".#..", "...#", "...#"]);
        assert_eq!(components(&m, w, h, 1, true).components.len(), 2);
        assert_eq!(components(&m, w, h, 1, false).components.len(), 3);
    }

    #[test]
    fn ring_has_one_object_and_one_enclosed_background() {
        let (m, w, h) = grid(&[".....", ".###.", ".#.#.", ".###.", "....."]);
        let fg = components(&m, w, h, 1, true);
        assert_eq!(fg.components.len(), 1);
        assert_eq!(fg.components[0].area, 8);
        assert_eq!(fg.components[0].first, (1, 1));
        let bg = components(&m, w, h, 0, false);
        assert_eq!(bg.components.len(), 2);
        let hole = bg
            .components
            .iter()
            .find(|c| !c.touches_border)
            .expect("hole");
        assert_eq!((hole.area, hole.first), (1, (2, 2)));
        let img = fg.paint(w, h);
        assert_eq!(img[w + 1], 1);
        assert_eq!(img[2 * w + 2], 0);
        assert_eq!(fg.enclosing(hole), Some(0));
        assert_eq!(
            (fg.label_at(1, 1), fg.label_at(2, 2), fg.label_at(3, 3)),
            (Some(0), None, Some(0))
        );
    }

    #[test]
    fn u_shapes_merge_from_below() {
        let (m, w, h) = grid(&["#.#.#", "#.#.#", "#####"]);
        let c = components(&m, w, h, 1, false);
        assert_eq!(c.components.len(), 1);
        assert_eq!(c.components[0].area, 11);
    }

    #[test]
    fn disc_dilation_and_erosion() {
        let (w, h) = (21, 21);
        let mut m = vec![0u8; w * h];
        m[10 * w + 10] = 1;
        let d = dilate(&m, w, h, 3);
        // A digital disc of radius 3: 29 pixels within distance 3 (inclusive).
        let expect = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| ((x as f64 - 10.0).powi(2) + (y as f64 - 10.0).powi(2)) <= 9.0)
            .count();
        assert_eq!(d.iter().filter(|&&v| v == 1).count(), expect);
        let e = erode(&d, w, h, 3);
        assert_eq!(e.iter().filter(|&&v| v == 1).count(), 1);
        // Opening removes a speck smaller than the disc but keeps a large square.
        let mut m = vec![0u8; w * h];
        m[2 * w + 2] = 1;
        for y in 8..18 {
            for x in 8..18 {
                m[y * w + x] = 1;
            }
        }
        let oc = open_close(&m, w, h, 1);
        assert_eq!(oc[2 * w + 2], 0);
        assert_eq!(oc[12 * w + 12], 1);
    }
}
