//! The sharpest page of a z-stack: the variance of the Laplacian (the 4-neighbour kernel), the
//! focus measure of Pech-Pacheco et al. (2000), computed on each page in its own units. Pages are
//! decoded one at a time, each within the process's decode budget.

use crate::morphology::Gray;
use crate::segment::DecodeBudget;
use crate::segment::decode::{DecodeError, DecodeLimits, decode_page};

/// The variance of the 4-neighbour Laplacian over the interior pixels.
pub fn focus(g: &Gray) -> f64 {
    let (w, h) = (g.width as usize, g.height as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let (mut sum, mut sq, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for y in 1..h - 1 {
        let row = y * w;
        for x in 1..w - 1 {
            let i = row + x;
            let d = &g.data;
            let l = f64::from(d[i - 1] + d[i + 1] + d[i - w] + d[i + w] - 4.0 * d[i]);
            sum += l;
            sq += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    sq / n - mean * mean
}

/// The 0-based index of the sharpest of `pages` pages; pages that do not decode are passed
/// over, and if none decodes, the first page's error is returned.
pub fn best_focus(
    bytes: &[u8],
    pages: u32,
    limits: &DecodeLimits,
    budget: &DecodeBudget,
) -> Result<u32, DecodeError> {
    let mut best: Option<(u32, f64)> = None;
    let mut first_error = None;
    for p in 0..pages {
        let header = crate::segment::decode::probe(bytes, limits)?;
        // Waits for room as a worker would: this runs on a blocking thread.
        let _reserved = budget.reserve_unless(header.footprint().decode_bytes(), || false);
        match decode_page(bytes, p, limits) {
            Ok(d) => {
                let f = focus(&d.gray);
                if best.is_none_or(|(_, b)| f > b) {
                    best = Some((p, f));
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (best, first_error) {
        (Some((p, _)), _) => Ok(p),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page of stripes, blurred `blur` times with a 3-tap box filter.
    fn stripes(blur: usize) -> Vec<u16> {
        let mut v: Vec<f32> = (0..32 * 32)
            .map(|i| if (i % 32) / 4 % 2 == 0 { 1000.0 } else { 100.0 })
            .collect();
        for _ in 0..blur {
            let prev = v.clone();
            for i in 1..v.len() - 1 {
                v[i] = (prev[i - 1] + prev[i] + prev[i + 1]) / 3.0;
            }
        }
        v.into_iter().map(|x| x as u16).collect()
    }

    #[test]
    fn the_sharpest_page_wins() {
        let mut bytes = Vec::new();
        {
            let mut enc =
                tiff::encoder::TiffEncoder::new(std::io::Cursor::new(&mut bytes)).expect("encoder");
            for blur in [6, 3, 0, 4] {
                enc.write_image::<tiff::encoder::colortype::Gray16>(32, 32, &stripes(blur))
                    .expect("page");
            }
        }
        let best = best_focus(
            &bytes,
            4,
            &DecodeLimits::default(),
            &DecodeBudget::default(),
        );
        assert_eq!(best, Ok(2));
        let flat = Gray::new(8, 8, vec![5.0; 64]);
        assert_eq!(focus(&flat), 0.0);
    }
}
