//! The almost-Gaussian blur of the pipeline: three box means (Kovesi, "Fast almost-Gaussian
//! filtering"), each horizontal then vertical with edges replicated, streamed a row at a time.
//!
//! Rows (four at a time) go through the first horizontal box mean, into the first vertical one, which keeps
//! only the `2r + 2` rows its window needs and hands on each row as soon as its window is
//! complete; that row goes through the second pair the same way, then the third. The plane is
//! read once and written once (in place: a row is written only after every row up to it has been
//! read), and every intermediate stays in cache. Each pixel sees the same operations in the same
//! order as three separate box means over the whole plane, so the result is the same to the bit.

use super::filter::{Plane, box_h, min_max};

/// Box radii of three passes whose combination approximates a Gaussian of `sigma`.
fn box_radii(sigma: f32) -> [usize; 3] {
    let n = 3.0f32;
    let w_ideal = (12.0 * sigma * sigma / n + 1.0).sqrt();
    let mut wl = w_ideal.floor() as i32;
    if wl % 2 == 0 {
        wl -= 1;
    }
    let wu = wl + 2;
    let m_ideal = (12.0 * sigma * sigma - n * (wl * wl) as f32 - 4.0 * n * wl as f32 - 3.0 * n)
        / (-4.0 * wl as f32 - 4.0);
    let m = m_ideal.round() as i32;
    let mut r = [0usize; 3];
    for (i, r) in r.iter_mut().enumerate() {
        let w = if (i as i32) < m { wl } else { wu };
        *r = ((w.max(1) - 1) / 2) as usize;
    }
    r
}

/// A vertical box mean of radius `r` over rows pushed in order `0..h`.
struct Column {
    r: usize,
    w: usize,
    h: usize,
    /// The last `2r + 2` rows pushed, row `i` in slot `i % (2r + 2)`.
    ring: Vec<f32>,
    /// The sum over the window of the next row out (before it is moved on to that row).
    acc: Vec<f32>,
    pushed: usize,
    /// The next row to hand on.
    next: usize,
}

impl Column {
    fn new(r: usize, w: usize, h: usize) -> Column {
        Column {
            r,
            w,
            h,
            ring: vec![0.0; (2 * r + 2) * w],
            acc: vec![0.0; w],
            pushed: 0,
            next: 0,
        }
    }

    /// Row `y` (clamped to the plane) of what was pushed; it must still be in the ring.
    fn row(&self, y: isize) -> &[f32] {
        let y = y.clamp(0, self.h as isize - 1) as usize;
        let slot = y % (2 * self.r + 2);
        &self.ring[slot * self.w..(slot + 1) * self.w]
    }

    /// Takes the next row and appends to `out` every output row whose window is now complete.
    fn push(&mut self, row: &[f32], out: &mut Vec<f32>) {
        let (r, w) = (self.r, self.w);
        let slot = self.pushed % (2 * r + 2);
        self.ring[slot * w..(slot + 1) * w].copy_from_slice(row);
        let last = self.pushed + 1 == self.h;
        let norm = 1.0 / (2 * r + 1) as f32;
        while self.next < self.h && (self.next + r <= self.pushed || last) {
            let y = self.next as isize;
            let mut acc = std::mem::take(&mut self.acc);
            if y == 0 {
                acc.fill(0.0);
                for dy in -(r as isize)..=r as isize {
                    for (a, &v) in acc.iter_mut().zip(self.row(dy)) {
                        *a += v;
                    }
                }
            } else {
                // Moved on from the row before: the row entering the window in, the one
                // leaving it out.
                let (add, sub) = (self.row(y + r as isize), self.row(y - 1 - r as isize));
                for ((a, &p), &m) in acc.iter_mut().zip(add).zip(sub) {
                    *a += p - m;
                }
            }
            out.extend(acc.iter().map(|&a| a * norm));
            self.acc = acc;
            self.next += 1;
        }
        self.pushed += 1;
    }
}

/// An almost-Gaussian blur of `sigma` pixels, in place. Returns the smallest and largest value
/// of the result (as `filter::min_max`), found while each row is still in cache.
pub(crate) fn gaussian(p: &mut Plane, sigma: f32) -> (f32, f32) {
    if sigma < 0.3 || p.w == 0 || p.h == 0 {
        return min_max(&p.data);
    }
    let (w, h) = (p.w, p.h);
    let mut stages: Vec<Column> = box_radii(sigma)
        .into_iter()
        .filter(|&r| r > 0)
        .map(|r| Column::new(r, w, h))
        .collect();
    let (mut rows, mut next) = (Vec::with_capacity(8 * w), Vec::with_capacity(8 * w));
    let mut wide = Vec::with_capacity(8 * w);
    let mut written = 0;
    let (mut lo, mut hi) = (f32::MAX, f32::MIN);
    // Four rows at a time, so that the horizontal means can interleave them.
    for y in (0..h).step_by(4) {
        rows.clear();
        rows.extend_from_slice(&p.data[y * w..(y + 4).min(h) * w]);
        for stage in &mut stages {
            next.clear();
            wide.resize(rows.len(), 0.0);
            box_h(&rows, &mut wide, w, stage.r);
            for row in wide.chunks_exact(w) {
                stage.push(row, &mut next);
            }
            std::mem::swap(&mut rows, &mut next);
        }
        // Rows come out no earlier than they went in: every row up to `written` has been read.
        for row in rows.chunks_exact(w) {
            p.data[written * w..(written + 1) * w].copy_from_slice(row);
            written += 1;
            let (l, h) = min_max(row);
            (lo, hi) = (lo.min(l), hi.max(h));
        }
    }
    debug_assert_eq!(written, h);
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::super::filter::box_mean;
    use super::*;

    /// Bit for bit what three whole-plane box means give, for planes shorter and taller than
    /// the windows.
    #[test]
    fn matches_three_box_means() {
        for (w, h, sigma) in [
            (1, 1, 2.0),
            (7, 2, 3.0),
            (13, 5, 2.0),
            (64, 47, 2.0),
            (30, 90, 6.5),
        ] {
            let data: Vec<f32> = (0..w * h)
                .map(|i| ((i * 7919) % 251) as f32 / 251.0)
                .collect();
            let mut expect = Plane::new(w, h, data.clone());
            for r in box_radii(sigma) {
                box_mean(&mut expect, r);
            }
            let mut got = Plane::new(w, h, data);
            let ends = gaussian(&mut got, sigma);
            assert_eq!(got.data, expect.data, "{w}×{h} sigma {sigma}");
            assert_eq!(ends, min_max(&expect.data));
        }
    }

    #[test]
    fn box_blur_keeps_the_mean_and_gaussian_has_the_right_spread() {
        let (w, h) = (101, 101);
        let mut data = vec![0f32; w * h];
        data[50 * w + 50] = 1.0;
        let mut p = Plane::new(w, h, data);
        gaussian(&mut p, 3.0);
        let total: f32 = p.data.iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        let var: f32 = (0..w)
            .map(|x| {
                let col: f32 = (0..h).map(|y| p.data[y * w + x]).sum();
                col * (x as f32 - 50.0).powi(2)
            })
            .sum();
        assert!((var.sqrt() - 3.0).abs() < 0.2, "sigma {}", var.sqrt());
    }
}
