//! The overlay PNG for figures: the image (contrast-stretched 8-bit gray) in colour, each object's
//! outline in yellow and its holes in cyan, one pixel wide, and its number (1..n, the order of the
//! tables) in a 3×5 pixel font scaled with the image, at its centroid on a dark box.
//!
//! Invariant: the overlay has the image's size; drawing clips at the border. A thumbnail
//! (`thumbnail_jpeg`) is the same drawing, without numbers, on a background scaled down from the
//! image, its outlines scaled with it.

use image::{GrayImage, Rgb, RgbImage};

use super::ExportError;
use crate::outline::Point;
use crate::segment::SegmentResult;

const OUTLINE: Rgb<u8> = Rgb([255, 220, 0]);
const HOLE: Rgb<u8> = Rgb([0, 220, 255]);
const LABEL: Rgb<u8> = Rgb([255, 255, 255]);
const LABEL_BOX: Rgb<u8> = Rgb([0, 0, 0]);

/// Digits 0-9, 3 wide and 5 high, a row per 3 bits (most significant bit on the left).
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0
        && y >= 0
        && (x as u64) < u64::from(img.width())
        && (y as u64) < u64::from(img.height())
    {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// A closed ring, each edge stepped at most one pixel at a time.
fn ring(img: &mut RgbImage, points: &[Point], c: Rgb<u8>) {
    for (i, a) in points.iter().enumerate() {
        let b = points[(i + 1) % points.len()];
        let steps = (b.x - a.x).abs().max((b.y - a.y).abs()).ceil().max(1.0) as i64;
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let (x, y) = (a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t);
            // Vertices are pixel corners: each point marks the pixel below and right of it.
            put(img, x.floor() as i64, y.floor() as i64, c);
        }
    }
}

/// `n` centred on (cx, cy), `scale` image pixels per font pixel.
fn number(img: &mut RgbImage, n: usize, cx: f64, cy: f64, scale: i64) {
    let digits: Vec<usize> = n
        .to_string()
        .bytes()
        .map(|b| usize::from(b - b'0'))
        .collect();
    let w = (digits.len() as i64 * 4 - 1) * scale;
    let h = 5 * scale;
    let (x0, y0) = (cx.round() as i64 - w / 2, cy.round() as i64 - h / 2);
    for y in y0 - scale..y0 + h + scale {
        for x in x0 - scale..x0 + w + scale {
            put(img, x, y, LABEL_BOX);
        }
    }
    for (k, d) in digits.iter().enumerate() {
        for (row, bits) in DIGITS[*d].iter().enumerate() {
            for col in 0..3 {
                if bits & (0b100 >> col) != 0 {
                    let (px, py) = (x0 + (k as i64 * 4 + col) * scale, y0 + row as i64 * scale);
                    for dy in 0..scale {
                        for dx in 0..scale {
                            put(img, px + dx, py + dy, LABEL);
                        }
                    }
                }
            }
        }
    }
}

/// The image as the overlay's background: contrast-stretched like the status page's previews.
fn background(gray: &crate::morphology::Gray) -> GrayImage {
    let pixels = crate::segment::builtin::stretch(gray)
        .iter()
        .map(|v| (v * 255.0).round() as u8)
        .collect();
    GrayImage::from_raw(gray.width, gray.height, pixels).expect("width × height pixels")
}

/// `image` (the page that was segmented) with the outlines and numbers of `r` drawn on it, as
/// PNG.
pub fn overlay_png(
    image: &crate::morphology::Gray,
    r: &SegmentResult,
) -> Result<Vec<u8>, ExportError> {
    let background = background(image);
    let mut img = RgbImage::from_fn(background.width(), background.height(), |x, y| {
        let v = background.get_pixel(x, y).0[0];
        Rgb([v, v, v])
    });
    for o in &r.objects {
        ring(&mut img, &o.outer, OUTLINE);
        for h in &o.holes {
            ring(&mut img, h, HOLE);
        }
    }
    let scale = i64::from((background.width().max(background.height()) / 128).max(1));
    for (i, m) in r.metrics.iter().enumerate() {
        number(&mut img, i + 1, m.centroid.x, m.centroid.y, scale);
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// The outlines of `r` on `background` (the image scaled to a thumbnail and contrast-stretched),
/// as JPEG. Outlines are scaled from the image's size to the background's; no numbers, which
/// would hide a small thumbnail.
pub fn thumbnail_jpeg(background: &GrayImage, r: &SegmentResult) -> Result<Vec<u8>, ExportError> {
    let mut img = RgbImage::from_fn(background.width(), background.height(), |x, y| {
        let v = background.get_pixel(x, y).0[0];
        Rgb([v, v, v])
    });
    let scale = f64::from(background.width()) / f64::from(r.image.width.max(1));
    let scaled = |ring: &[Point]| -> Vec<Point> {
        ring.iter()
            .map(|p| Point::new(p.x * scale, p.y * scale))
            .collect()
    };
    for o in &r.objects {
        ring(&mut img, &scaled(&o.outer), OUTLINE);
        for h in &o.holes {
            ring(&mut img, &scaled(h), HOLE);
        }
    }
    let mut out = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85).encode_image(&img)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outlines_and_numbers_are_drawn_in_the_image() {
        let mut img = RgbImage::new(20, 12);
        let square = [
            Point::new(2.0, 2.0),
            Point::new(10.0, 2.0),
            Point::new(10.0, 10.0),
            Point::new(2.0, 10.0),
        ];
        ring(&mut img, &square, OUTLINE);
        assert_eq!(*img.get_pixel(2, 2), OUTLINE);
        assert_eq!(*img.get_pixel(10, 10), OUTLINE, "the far corner");
        assert_eq!(*img.get_pixel(5, 5), Rgb([0, 0, 0]));
        number(&mut img, 17, 15.0, 6.0, 1);
        assert!(img.pixels().any(|p| *p == LABEL));
        // Clipped, not a panic, at the border.
        number(&mut img, 123, 0.0, 0.0, 3);
    }
}
