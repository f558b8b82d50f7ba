//! The pages of a multi-page TIFF (a z-stack, a time-lapse): how many there are, from the
//! directory chain without reading pixels, and any page decoded on its own into gray in the
//! file's intensity units, under the same limits as the first page.

use std::io::Cursor;

use super::{DecodeError, DecodeLimits, Decoded, calibration, decode, luma, too_large};
use crate::morphology::Gray;

/// How many pages the image has: a TIFF's count from its directory chain, 1 for any other.
pub fn page_count(bytes: &[u8]) -> u32 {
    if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        tiff_pages(Cursor::new(bytes))
    } else {
        1
    }
}

/// Decodes page `page` (0-based) of a multi-page TIFF into gray, in the file's intensity units,
/// as [`decode`] does the first page (which this is for `page` 0, of any format). Gray, gray +
/// alpha, RGB and RGBA pages of 8, 16 or 32 bits (integer or float) are read.
pub fn decode_page(bytes: &[u8], page: u32, limits: &DecodeLimits) -> Result<Decoded, DecodeError> {
    use tiff::ColorType;
    use tiff::decoder::DecodingResult as R;
    if page == 0 {
        return decode(bytes, limits);
    }
    let damaged = |e: tiff::TiffError| DecodeError::Damaged {
        format: "TIFF",
        detail: format!("page {}: {e}", page + 1),
    };
    let mut tl = tiff::decoder::Limits::default();
    tl.decoding_buffer_size = usize::try_from(limits.max_alloc_mb << 20).unwrap_or(usize::MAX);
    let mut d = tiff::decoder::Decoder::new(Cursor::new(bytes))
        .map_err(|_| DecodeError::NotAnImage)?
        .with_limits(tl);
    d.seek_to_image(page as usize).map_err(damaged)?;
    let (width, height) = d.dimensions().map_err(damaged)?;
    if width > limits.max_width
        || height > limits.max_height
        || u64::from(width) * u64::from(height) > u64::from(limits.max_megapixels) * 1_000_000
    {
        return Err(too_large(width, height, limits));
    }
    let unsupported = |detail: String| DecodeError::Unsupported {
        format: "TIFF",
        detail,
    };
    let (channels, bits) = match d.colortype().map_err(damaged)? {
        ColorType::Gray(b) => (1, b),
        ColorType::GrayA(b) => (2, b),
        ColorType::RGB(b) => (3, b),
        ColorType::RGBA(b) => (4, b),
        other => return Err(unsupported(format!("page {} is {other:?}", page + 1))),
    };
    let values: Vec<f32> = match d.read_image().map_err(damaged)? {
        R::U8(v) => v.into_iter().map(f32::from).collect(),
        R::U16(v) => v.into_iter().map(f32::from).collect(),
        R::U32(v) => v.into_iter().map(|x| x as f32).collect(),
        R::F32(v) => v,
        R::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        _ => {
            return Err(unsupported(format!(
                "page {} has signed or 16-bit float samples",
                page + 1
            )));
        }
    };
    let n = width as usize * height as usize;
    if values.len() != n * channels {
        return Err(DecodeError::Damaged {
            format: "TIFF",
            detail: format!("page {} holds fewer samples than its size says", page + 1),
        });
    }
    let data = match channels {
        1 => values,
        2 => values.chunks_exact(2).map(|p| p[0]).collect(),
        c => values
            .chunks_exact(c)
            .map(|p| luma(p[0], p[1], p[2]))
            .collect(),
    };
    Ok(Decoded {
        gray: Gray::new(width, height, data),
        format: "TIFF",
        bit_depth: bits,
        channels: channels as u8,
        pages: tiff_pages(Cursor::new(bytes)),
        // The pages of one acquisition share the first page's calibration.
        pixel_size: calibration::from_tiff(Cursor::new(bytes)),
    })
}

/// Counts the pages of a TIFF from its directory chain (no pixel data is read).
pub(super) fn tiff_pages(r: impl std::io::Read + std::io::Seek) -> u32 {
    let Ok(mut d) = tiff::decoder::Decoder::new(r) else {
        return 1;
    };
    let mut pages = 1;
    while d.more_images() && pages < 100_000 {
        if d.next_image().is_err() {
            break;
        }
        pages += 1;
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_page_tiff_counts_its_pages() {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut enc = tiff::encoder::TiffEncoder::new(&mut buf).expect("encoder");
            for page in 0..3u16 {
                let data: Vec<u16> = (0..16 * 16).map(|i| i as u16 + page).collect();
                enc.write_image::<tiff::encoder::colortype::Gray16>(16, 16, &data)
                    .expect("page");
            }
        }
        let d = decode(buf.get_ref(), &DecodeLimits::default()).expect("decodes");
        assert_eq!(d.pages, 3);
        assert_eq!(d.gray.data[5], 5.0, "the first page");
    }

    #[test]
    fn later_pages_of_a_tiff_decode_on_their_own() {
        let mut bytes = Vec::new();
        {
            let mut enc = tiff::encoder::TiffEncoder::new(Cursor::new(&mut bytes)).expect("enc");
            for page in 0..3u16 {
                let data: Vec<u16> = (0..16 * 16).map(|i| i as u16 + 100 * page).collect();
                enc.write_image::<tiff::encoder::colortype::Gray16>(16, 16, &data)
                    .expect("page");
            }
        }
        assert_eq!(page_count(&bytes), 3);
        let limits = DecodeLimits::default();
        let d = decode_page(&bytes, 2, &limits).expect("page 3");
        assert_eq!((d.gray.width, d.pages, d.bit_depth), (16, 3, 16));
        assert_eq!(d.gray.data[5], 205.0);
        assert_eq!(
            decode_page(&bytes, 0, &limits).expect("first").gray.data[5],
            5.0
        );
        assert!(matches!(
            decode_page(&bytes, 3, &limits),
            Err(DecodeError::Damaged { .. })
        ));
        assert_eq!(page_count(b"\x89PNG"), 1);
    }
}
