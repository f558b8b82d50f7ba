//! Exports of results: the objects and images tables as CSV and XLSX (`table`, `xlsx`), COCO
//! JSON (`coco`), ImageJ ROI sets (`roi`), the 16-bit label image (`labels`), the overlay PNG
//! with numbered outlines (`overlay`), the project ZIP (`archive`), the metrics CSV in
//! the replaced design's column order (the `legacy` table, here), the result JSON, and the binary
//! mask PNG.
//!
//! CSV numbers: 2 decimals for lengths and areas, 4 for ratios; quoting per RFC 4180 (the `csv`
//! crate). An image with no objects contributes no rows: nothing is invented for missing data.
//! When any row has a pixel size, calibrated columns follow the standard ones.

use std::io::Write;

pub mod archive;
pub mod coco;
pub mod labels;
mod overlay;
pub mod roi;
pub mod table;
pub mod xlsx;

pub use overlay::{overlay_png, thumbnail_jpeg};

use crate::morphology::rasterize;
use crate::segment::SegmentResult;

/// The replaced design's columns, in its order.
pub const CSV_COLUMNS: [&str; 16] = [
    "Image Name",
    "Image ID",
    "Image Resolution",
    "Object ID",
    "Area",
    "Perimeter",
    "Circularity",
    "Equivalent Diameter",
    "Aspect Ratio",
    "Compactness",
    "Convexity",
    "Solidity",
    "Sphericity",
    "Feret Diameter Max",
    "Feret Diameter Min",
    "Created At",
];

/// Calibrated columns, written after the standard ones when a pixel size is known.
pub const CSV_CALIBRATED: [&str; 6] = [
    "Pixel Size (um)",
    "Area (um2)",
    "Perimeter (um)",
    "Equivalent Diameter (um)",
    "Feret Diameter Max (um)",
    "Feret Diameter Min (um)",
];

/// An export that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing the CSV failed.
    #[error("cannot write CSV: {0}")]
    Csv(#[from] csv::Error),
    /// Writing the output failed.
    #[error("cannot write export: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding a PNG or JPEG failed.
    #[error("cannot encode the image: {0}")]
    Png(#[from] image::ImageError),
    /// Building the XLSX workbook failed.
    #[error("cannot write the XLSX workbook: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
}

/// A text cell a spreadsheet will not run as a formula (OWASP's CSV injection advice): text that
/// starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`. File names and
/// projects come from users; numbers are written by us and never pass through here.
pub fn text_cell(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}"),
        _ => s.to_owned(),
    }
}

fn len(v: f64) -> String {
    format!("{v:.2}")
}

fn ratio(v: f64) -> String {
    format!("{v:.4}")
}

/// The CSV header: the standard columns, then the calibrated ones when `calibrated`.
pub fn csv_header(calibrated: bool) -> Vec<&'static str> {
    let mut names: Vec<&str> = CSV_COLUMNS.to_vec();
    if calibrated {
        names.extend(CSV_CALIBRATED);
    }
    names
}

/// One CSV row per object of `r`, in the columns of [`csv_header`]; `id` is its Image ID.
pub fn csv_rows(id: &str, r: &SegmentResult, calibrated: bool) -> Vec<Vec<String>> {
    let resolution = format!("{}x{}", r.image.width, r.image.height);
    r.metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut row = vec![
                text_cell(&r.image.name),
                text_cell(id),
                resolution.clone(),
                format!("polygon-{}", i + 1),
                len(m.area),
                len(m.perimeter),
                ratio(m.circularity),
                len(m.equivalent_diameter),
                ratio(m.aspect_ratio),
                ratio(m.compactness),
                ratio(m.convexity),
                ratio(m.solidity),
                ratio(m.sphericity),
                len(m.feret_max),
                len(m.feret_min),
                text_cell(&r.created_at),
            ];
            if calibrated {
                match &m.calibrated {
                    Some(c) => row.extend([
                        format!("{:.4}", c.pixel_size_um),
                        len(c.area_um2),
                        len(c.perimeter_um),
                        len(c.equivalent_diameter_um),
                        len(c.feret_max_um),
                        len(c.feret_min_um),
                    ]),
                    None => row.extend(std::iter::repeat_n(String::new(), CSV_CALIBRATED.len())),
                }
            }
            row
        })
        .collect()
}

/// Writes the header and one row per object of every result; `id` gives each result's Image ID
/// (the job id on a server, the file name offline).
pub fn write_csv<'a, W: Write>(
    out: W,
    results: impl IntoIterator<Item = (&'a str, &'a SegmentResult)>,
    calibrated: bool,
) -> Result<(), ExportError> {
    write_csv_part(out, results, calibrated, true)
}

/// Like [`write_csv`], with the header only when `header` is set: a streamed export writes its
/// rows in parts.
pub fn write_csv_part<'a, W: Write>(
    out: W,
    results: impl IntoIterator<Item = (&'a str, &'a SegmentResult)>,
    calibrated: bool,
    header: bool,
) -> Result<(), ExportError> {
    let mut w = csv::Writer::from_writer(out);
    if header {
        w.write_record(csv_header(calibrated))?;
    }
    for (id, r) in results {
        for row in csv_rows(id, r, calibrated) {
            w.write_record(&row)?;
        }
    }
    w.flush()?;
    Ok(())
}

/// The result as pretty JSON.
pub fn result_json(result: &SegmentResult) -> String {
    serde_json::to_string_pretty(&result.to_json()).expect("result serialises to JSON")
}

/// The objects' mask (255 inside, 0 outside, holes cut out) as a PNG.
pub fn mask_png(result: &SegmentResult) -> Result<Vec<u8>, ExportError> {
    let (w, h) = (result.image.width, result.image.height);
    let mask = rasterize(&result.objects, w, h);
    let img = image::GrayImage::from_raw(w, h, mask).expect("mask has width × height pixels");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::morphology::measure;
    use crate::outline::{Object, Point};
    use crate::segment::calibration::{PixelSize, PixelSizeSource};
    use crate::segment::{ImageInfo, SegmentParams};

    fn result(name: &str, objects: Vec<Object>, pixel: Option<f64>) -> SegmentResult {
        SegmentResult {
            image: ImageInfo {
                name: name.into(),
                width: 20,
                height: 10,
                format: "PNG".into(),
                bit_depth: 8,
                channels: 1,
                pages: 1,
            },
            segmenter: "builtin".into(),
            params: SegmentParams::default(),
            pixel_size: pixel.map(|um| PixelSize {
                um,
                source: PixelSizeSource::Job,
            }),
            decisions: None,
            metrics: objects.iter().map(|o| measure(o, None, pixel)).collect(),
            objects,
            flags: vec![],
            timings_ms: vec![],
            created_at: "2026-11-29T05:00:00Z".into(),
            metadata: Vec::new(),
            ml: None,
            corrected: false,
        }
    }

    fn square(x: f64, s: f64) -> Object {
        Object {
            outer: vec![
                Point::new(x, 1.0),
                Point::new(x + s, 1.0),
                Point::new(x + s, 1.0 + s),
                Point::new(x, 1.0 + s),
            ],
            holes: vec![],
        }
    }

    #[test]
    fn a_thumbnail_draws_the_outlines_scaled_to_its_size() {
        // A 20 × 10 image whose object spans x 10..18, y 1..9, on a background of half the size.
        let r = result("a.png", vec![square(10.0, 8.0)], None);
        let background = image::GrayImage::new(10, 5);
        let jpeg = thumbnail_jpeg(&background, &r).expect("encodes");
        let img = image::load_from_memory(&jpeg).expect("decodes").to_rgb8();
        assert_eq!(img.dimensions(), (10, 5));
        let yellow = |x, y| {
            let p: &image::Rgb<u8> = img.get_pixel(x, y);
            p.0[0] > 120 && p.0[1] > 100 && p.0[2] < 120
        };
        assert!(yellow(5, 2), "the left edge, at x 10 / 2");
        assert!(!yellow(1, 2), "nothing left of it");
    }

    #[test]
    fn csv_has_the_replaced_columns_rounding_and_quoting() {
        let a = result(
            "plate 1, well \"B2\".tif",
            vec![square(1.0, 4.0), square(10.0, 3.0)],
            None,
        );
        let empty = result("blank.png", vec![], None);
        let mut out = Vec::new();
        write_csv(&mut out, [("job-1", &a), ("job-2", &empty)], false).expect("csv");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert_eq!(
            lines.len(),
            3,
            "two objects, and no invented row for the blank image"
        );
        assert_eq!(
            lines[1],
            "\"plate 1, well \"\"B2\"\".tif\",job-1,20x10,polygon-1,16.00,16.00,0.7854,4.51,1.4142,0.7979,1.0000,1.0000,0.8862,5.66,4.00,2026-11-29T05:00:00Z"
        );
        assert!(lines[2].contains(",polygon-2,9.00,12.00,"));
    }

    #[test]
    fn calibrated_columns_follow_when_a_pixel_size_is_known() {
        let a = result("a.png", vec![square(1.0, 4.0)], Some(0.5));
        let b = result("b.png", vec![square(1.0, 2.0)], None);
        let mut out = Vec::new();
        write_csv(&mut out, [("1", &a), ("2", &b)], true).expect("csv");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("Created At,Pixel Size (um),Area (um2),Perimeter (um),Equivalent Diameter (um),Feret Diameter Max (um),Feret Diameter Min (um)"));
        assert!(
            lines[1].ends_with(",0.5000,4.00,8.00,2.26,2.83,2.00"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with("Z,,,,,,"),
            "uncalibrated rows leave them empty: {}",
            lines[2]
        );
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_neutralised() {
        for (raw, cell) in [
            (
                "=HYPERLINK(\"http://evil\")",
                "'=HYPERLINK(\"http://evil\")",
            ),
            ("+1+1", "'+1+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "'\tcmd"),
            ("\rcmd", "'\rcmd"),
            ("plate1_A01.tif", "plate1_A01.tif"),
            ("", ""),
        ] {
            assert_eq!(text_cell(raw), cell, "{raw:?}");
        }
        let r = result("=cmd|' /C calc'!A0.png", vec![square(10.0, 20.0)], None);
        let mut out = Vec::new();
        write_csv(&mut out, [("-id", &r)], false).expect("csv");
        let text = String::from_utf8(out).expect("utf-8");
        let row = text.lines().nth(1).expect("row");
        assert!(row.starts_with("'=cmd|' /C calc'!A0.png,'-id,"), "{row}");
    }

    #[test]
    fn mask_png_decodes_to_the_object() {
        let r = result("a.png", vec![square(1.0, 4.0)], None);
        let png = mask_png(&r).expect("png");
        let img = image::load_from_memory(&png).expect("decodes").to_luma8();
        assert_eq!(img.dimensions(), (20, 10));
        assert_eq!(img.pixels().filter(|p| p.0[0] == 255).count(), 16);
        assert_eq!(img.get_pixel(2, 2).0[0], 255);
        assert_eq!(img.get_pixel(0, 0).0[0], 0);
    }

    #[test]
    fn result_json_uses_the_polygon_format() {
        let r = result("a.png", vec![square(1.0, 4.0)], None);
        let v: serde_json::Value = serde_json::from_str(&result_json(&r)).expect("json");
        assert_eq!(v["polygons"][0]["type"], "external");
        assert_eq!(v["metrics"][0]["object_id"], "polygon-1");
        assert_eq!(v["metrics"][0]["area"], 16.0);
        assert_eq!(v["image"]["width"], 20);
    }
}
