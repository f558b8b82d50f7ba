//! The overlay PNG: the image, contrast-stretched to 8 bits as the page's preview is, with every
//! object's outline drawn over it (outer boundaries yellow, holes magenta), for a quick look at
//! a result without the status page. Lines are a little thicker on large images so they stay
//! visible when the picture is shown small.

use super::ExportError;
use crate::morphology::Gray;
use crate::outline::Point;
use crate::segment::SegmentResult;

const OUTER: [u8; 3] = [255, 215, 0];
const HOLE: [u8; 3] = [255, 0, 200];

/// `image` (the page that was segmented) with the outlines of `result` drawn on it, as PNG.
pub fn overlay_png(image: &Gray, result: &SegmentResult) -> Result<Vec<u8>, ExportError> {
    let (w, h) = (image.width, image.height);
    let gray = crate::segment::builtin::stretch(image);
    let mut rgb: Vec<u8> = gray
        .iter()
        .flat_map(|v| {
            let g = (v * 255.0).round().clamp(0.0, 255.0) as u8;
            [g, g, g]
        })
        .collect();
    let radius = i64::from((w.max(h) / 800).max(1));
    let mut canvas = Canvas {
        rgb: &mut rgb,
        width: i64::from(w),
        height: i64::from(h),
        radius,
    };
    for object in &result.objects {
        canvas.ring(&object.outer, OUTER);
        for hole in &object.holes {
            canvas.ring(hole, HOLE);
        }
    }
    let img = image::RgbImage::from_raw(w, h, rgb).expect("width × height RGB pixels");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

struct Canvas<'a> {
    rgb: &'a mut [u8],
    width: i64,
    height: i64,
    /// Half the line width, in pixels, beside the centre pixel (1: three pixels wide).
    radius: i64,
}

impl Canvas<'_> {
    /// A closed polygon.
    fn ring(&mut self, points: &[Point], colour: [u8; 3]) {
        for (i, a) in points.iter().enumerate() {
            let b = &points[(i + 1) % points.len()];
            self.line(a, b, colour);
        }
    }

    fn line(&mut self, a: &Point, b: &Point, colour: [u8; 3]) {
        let steps = (b.x - a.x).abs().max((b.y - a.y).abs()).ceil().max(1.0) as usize;
        for s in 0..=steps {
            let t = s as f64 / steps as f64;
            let x = (a.x + (b.x - a.x) * t).floor() as i64;
            let y = (a.y + (b.y - a.y) * t).floor() as i64;
            self.dot(x, y, colour);
        }
    }

    fn dot(&mut self, x: i64, y: i64, colour: [u8; 3]) {
        let r = self.radius;
        for yy in (y - r).max(0)..=(y + r).min(self.height - 1) {
            for xx in (x - r).max(0)..=(x + r).min(self.width - 1) {
                let at = ((yy * self.width + xx) * 3) as usize;
                self.rgb[at..at + 3].copy_from_slice(&colour);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outline::Object;
    use crate::segment::{ImageInfo, SegmentParams};

    #[test]
    fn outlines_are_drawn_over_the_stretched_image() {
        let (w, h) = (32u32, 24u32);
        let image = Gray::new(w, h, (0..w * h).map(|i| (i % 7) as f32 * 100.0).collect());
        let square = |x0: f64, y0: f64, s: f64| {
            vec![
                Point::new(x0, y0),
                Point::new(x0 + s, y0),
                Point::new(x0 + s, y0 + s),
                Point::new(x0, y0 + s),
            ]
        };
        let result = SegmentResult {
            image: ImageInfo {
                name: "a.png".into(),
                width: w,
                height: h,
                format: "PNG".into(),
                bit_depth: 16,
                channels: 1,
                pages: 1,
            },
            segmenter: "builtin".into(),
            params: SegmentParams::default(),
            decisions: None,
            objects: vec![Object {
                outer: square(4.0, 4.0, 14.0),
                holes: vec![square(8.0, 8.0, 4.0)],
            }],
            metrics: vec![],
            flags: vec![],
            timings_ms: vec![],
            created_at: String::new(),
        };
        let png = overlay_png(&image, &result).expect("png");
        let img = image::load_from_memory(&png).expect("decodes").to_rgb8();
        assert_eq!(img.dimensions(), (w, h));
        assert_eq!(img.get_pixel(10, 4).0, OUTER, "on the outer boundary");
        assert_eq!(img.get_pixel(10, 8).0, HOLE, "on the hole");
        let inside = img.get_pixel(14, 14).0;
        assert_eq!(inside[0], inside[1], "gray elsewhere");
        assert_eq!(inside[1], inside[2]);
    }
}
