//! Bit-packed binary images: 64 pixels to a word, so a dilation by a disc is a few word shifts
//! and ORs per word instead of work per pixel. Rows are padded to whole words; padding bits are
//! always 0.

/// A binary image, row-major, bit `x % 64` of word `x / 64` of its row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Bits {
    w: usize,
    h: usize,
    /// Words per row.
    stride: usize,
    data: Vec<u64>,
}

/// Bit `i` of the result: whether byte `i` of the eight is non-zero.
fn pack8(eight: &[u8]) -> u64 {
    let x = u64::from_le_bytes(eight.try_into().expect("eight bytes"));
    // The high bit of each byte, set when the byte is non-zero.
    let nonzero =
        (((x & 0x7f7f_7f7f_7f7f_7f7f) + 0x7f7f_7f7f_7f7f_7f7f) | x) & 0x8080_8080_8080_8080;
    // Byte i's bit moves to bit 56 + i; no two products meet and nothing carries.
    ((nonzero >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// Byte `i` of `SPREAD[b]` is bit `i` of `b`.
const SPREAD: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut i = 0;
        while i < 8 {
            if (b >> i) & 1 == 1 {
                table[b] |= 1 << (8 * i);
            }
            i += 1;
        }
        b += 1;
    }
    table
};

/// `next` is `prev` widened by one pixel each side (`tail`: the valid bits of the last word).
/// Written without branches in the loop, which the compiler vectorises.
fn widen(prev: &[u64], next: &mut [u64], tail: u64) {
    let n = prev.len();
    let own = |v: u64| v | (v << 1) | (v >> 1);
    if n == 1 {
        next[0] = own(prev[0]) & tail;
        return;
    }
    next[0] = own(prev[0]) | (prev[1] << 63);
    for (o, w3) in next[1..n - 1].iter_mut().zip(prev.windows(3)) {
        *o = own(w3[1]) | (w3[0] >> 63) | (w3[2] << 63);
    }
    next[n - 1] = (own(prev[n - 1]) | (prev[n - 2] >> 63)) & tail;
}

impl Bits {
    pub(crate) fn from_mask(mask: &[u8], w: usize, h: usize) -> Bits {
        let stride = w.div_ceil(64);
        let mut data = vec![0u64; stride * h];
        for (row, out) in mask.chunks_exact(w).zip(data.chunks_exact_mut(stride)) {
            for (chunk, word) in row.chunks(64).zip(out.iter_mut()) {
                let mut eights = chunk.chunks_exact(8);
                let mut bits = 0u64;
                for (j, e) in (&mut eights).enumerate() {
                    bits |= pack8(e) << (8 * j);
                }
                let done = chunk.len() - eights.remainder().len();
                for (i, &v) in eights.remainder().iter().enumerate() {
                    bits |= u64::from(v != 0) << (done + i);
                }
                *word = bits;
            }
        }
        Bits { w, h, stride, data }
    }

    pub(crate) fn to_mask(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.w * self.h];
        for (row, words) in out
            .chunks_exact_mut(self.w)
            .zip(self.data.chunks_exact(self.stride))
        {
            for (chunk, &word) in row.chunks_mut(64).zip(words) {
                let n = chunk.len();
                let mut eights = chunk.chunks_exact_mut(8);
                for (j, e) in (&mut eights).enumerate() {
                    e.copy_from_slice(&SPREAD[((word >> (8 * j)) & 0xff) as usize].to_le_bytes());
                }
                let rest = eights.into_remainder();
                let done = n - rest.len();
                for (i, v) in rest.iter_mut().enumerate() {
                    *v = ((word >> (done + i)) & 1) as u8;
                }
            }
        }
        out
    }

    /// The mask of valid bits in the last word of a row.
    fn tail(&self) -> u64 {
        match self.w % 64 {
            0 => u64::MAX,
            n => (1u64 << n) - 1,
        }
    }

    fn row(&self, y: usize) -> &[u64] {
        &self.data[y * self.stride..(y + 1) * self.stride]
    }

    /// The complement (padding stays 0).
    pub(crate) fn not(&self) -> Bits {
        let tail = self.tail();
        let mut data: Vec<u64> = self.data.iter().map(|&v| !v).collect();
        for row in data.chunks_exact_mut(self.stride) {
            if let Some(last) = row.last_mut() {
                *last &= tail;
            }
        }
        Bits { data, ..*self }
    }

    /// Dilation by a disc of radius `r` (the same digital disc as `binary::dilate`: row offset
    /// `dy` reaches `⌊√(r² − dy²)⌋` pixels sideways). Pixels outside the image count as 0.
    pub(crate) fn dilate(&self, r: usize) -> Bits {
        if r == 0 {
            return self.clone();
        }
        let (h, stride) = (self.h, self.stride);
        let tail = self.tail();
        let halves: Vec<usize> = (0..=r)
            .map(|dy| ((r * r - dy * dy) as f64).sqrt().floor() as usize)
            .collect();
        let widest = halves[0];
        let mut out = vec![0u64; stride * h];
        // The row widened by 0, 1, …, `widest` pixels each side.
        let mut wide = vec![0u64; stride * (widest + 1)];
        for y in 0..h {
            let row = self.row(y);
            if row.iter().all(|&v| v == 0) {
                // Nothing to spread.
                continue;
            }
            let full = row[..stride - 1].iter().all(|&v| v == u64::MAX) && row[stride - 1] == tail;
            // A full row stays itself however far it is widened.
            let widened = if full { 0 } else { widest };
            wide[..stride].copy_from_slice(row);
            for k in 1..=widened {
                let (done, next) = wide.split_at_mut(k * stride);
                widen(&done[(k - 1) * stride..], &mut next[..stride], tail);
            }
            for (dy, &half) in halves.iter().enumerate() {
                let k = half.min(widened);
                let src = &wide[k * stride..(k + 1) * stride];
                for ty in [y.checked_sub(dy), (dy > 0).then_some(y + dy)]
                    .into_iter()
                    .flatten()
                {
                    if ty < h {
                        let dst = &mut out[ty * stride..(ty + 1) * stride];
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d |= s;
                        }
                    }
                }
            }
        }
        Bits { data: out, ..*self }
    }

    /// Erosion by the same disc: the complement of the dilated complement, so pixels outside
    /// the image count as 1 (an object touching the border is not eaten from it).
    pub(crate) fn erode(&self, r: usize) -> Bits {
        if r == 0 {
            return self.clone();
        }
        self.not().dilate(r).not()
    }
}

#[cfg(test)]
mod tests {
    use super::super::binary;
    use super::*;

    fn pseudo_random(w: usize, h: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..w * h)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                u8::from((s >> 33).is_multiple_of(7))
            })
            .collect()
    }

    /// The same pixels as the byte implementation, for widths around word boundaries.
    #[test]
    fn matches_the_byte_morphology() {
        for (w, h) in [(1, 1), (63, 9), (64, 7), (65, 12), (130, 40), (200, 3)] {
            let mut m = pseudo_random(w, h, (w * 31 + h) as u64);
            // Full and empty rows take shortcuts.
            m[..w].fill(1);
            if h > 4 {
                m[2 * w..3 * w].fill(0);
                m[3 * w..4 * w].fill(1);
            }
            let b = Bits::from_mask(&m, w, h);
            assert_eq!(b.to_mask(), m);
            // Any non-zero byte is set.
            let loud: Vec<u8> = m.iter().map(|&v| v * 200).collect();
            assert_eq!(Bits::from_mask(&loud, w, h), b);
            let c = binary::components(&loud, w, h, 1, true);
            assert_eq!(
                c.paint(w, h),
                binary::components(&m, w, h, 1, true).paint(w, h)
            );
            for r in [1, 2, 3, 5] {
                assert_eq!(
                    b.dilate(r).to_mask(),
                    binary::dilate(&m, w, h, r),
                    "dilate {w}×{h} r{r}"
                );
                assert_eq!(
                    b.erode(r).to_mask(),
                    binary::erode(&m, w, h, r),
                    "erode {w}×{h} r{r}"
                );
            }
        }
    }
}
