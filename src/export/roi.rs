//! ImageJ ROI sets: a ZIP of `.roi` files that Fiji's ROI Manager opens over the original image,
//! one polygon ROI per object outline and one per hole (`object-0001.roi`,
//! `object-0001-hole-1.roi`), in the binary format of ImageJ's `RoiEncoder` (version 228).
//!
//! Layout written (big-endian): a 64-byte header (`Iout`, version, type 0 = polygon, the bounding
//! box as top/left/bottom/right, the vertex count, options with `SUB_PIXEL_RESOLUTION`), then the
//! vertices as 16-bit integers relative to the box, then as 32-bit floats in image coordinates,
//! so fractional vertices survive, then a 64-byte second header and the name in UTF-16. Invariant: every ring has at least 3 and at most 65 535
//! vertices and lies within ±32 767 pixels (what the format can hold; larger rings are refused).

use std::io::{Seek, Write};

use zip::write::SimpleFileOptions;

use super::ExportError;
use crate::outline::Point;
use crate::segment::SegmentResult;

const VERSION: u16 = 228;
const POLYGON: u8 = 0;
const SUB_PIXEL_RESOLUTION: u16 = 128;
const HEADER: usize = 64;
const HEADER2: usize = 64;

/// One ring as a `.roi` file named `name` (in its second header, as ImageJ writes names).
pub fn roi_bytes(ring: &[Point], name: &str) -> Result<Vec<u8>, ExportError> {
    let n = ring.len();
    let too_big = |what: &str| {
        ExportError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a ring {what} does not fit an ImageJ ROI"),
        ))
    };
    if !(3..=usize::from(u16::MAX)).contains(&n) {
        return Err(too_big("with this many vertices"));
    }
    let fold = |f: fn(f64, f64) -> f64, init: f64, get: fn(&Point) -> f64| {
        ring.iter().map(get).fold(init, f)
    };
    let left = fold(f64::min, f64::INFINITY, |p| p.x).floor();
    let top = fold(f64::min, f64::INFINITY, |p| p.y).floor();
    let right = fold(f64::max, f64::NEG_INFINITY, |p| p.x).ceil();
    let bottom = fold(f64::max, f64::NEG_INFINITY, |p| p.y).ceil();
    let fits = |v: f64| (-32_767.0..=32_767.0).contains(&v);
    if ![left, top, right, bottom].into_iter().all(fits) {
        return Err(too_big("this far out"));
    }
    let mut out = Vec::with_capacity(HEADER + n * 12);
    out.extend(b"Iout");
    out.extend(VERSION.to_be_bytes());
    out.extend([POLYGON, 0]);
    for v in [top, left, bottom, right] {
        out.extend((v as i16).to_be_bytes());
    }
    out.extend((n as u16).to_be_bytes());
    out.resize(50, 0); // line coordinates, stroke width, shape size, colours, subtype
    out.extend(SUB_PIXEL_RESOLUTION.to_be_bytes());
    out.resize(HEADER, 0); // arrow and point styles, position, no second header
    for p in ring {
        out.extend(((p.x - left).round() as i16).to_be_bytes());
    }
    for p in ring {
        out.extend(((p.y - top).round() as i16).to_be_bytes());
    }
    for p in ring {
        out.extend((p.x as f32).to_be_bytes());
    }
    for p in ring {
        out.extend((p.y as f32).to_be_bytes());
    }
    // The second header: 64 bytes, the name's offset at 16 and its length in UTF-16 units at 20.
    let header2 = out.len();
    out[60..64].copy_from_slice(&(header2 as u32).to_be_bytes());
    let name: Vec<u16> = name.encode_utf16().collect();
    out.resize(header2 + HEADER2, 0);
    out[header2 + 16..header2 + 20].copy_from_slice(&((header2 + HEADER2) as u32).to_be_bytes());
    out[header2 + 20..header2 + 24].copy_from_slice(&(name.len() as u32).to_be_bytes());
    out.extend(name.iter().flat_map(|c| c.to_be_bytes()));
    Ok(out)
}

/// The ROI set of one result as a ZIP written to `out`; its comment says when the outlines were
/// corrected by hand.
pub fn write_roi_set<W: Write + Seek>(out: W, r: &SegmentResult) -> Result<W, ExportError> {
    let mut zip = zip::ZipWriter::new(out);
    let options = SimpleFileOptions::default();
    let zip_err = |e: zip::result::ZipError| ExportError::Io(std::io::Error::other(e));
    if r.corrected {
        // ImageJ's ROI Manager reads the entries only; the archive's comment tells a person.
        zip.set_comment("outlines corrected by hand in spheroseg")
            .map_err(zip_err)?;
    }
    for (i, o) in r.objects.iter().enumerate() {
        let name = format!("object-{:04}", i + 1);
        zip.start_file(format!("{name}.roi"), options)
            .map_err(zip_err)?;
        zip.write_all(&roi_bytes(&o.outer, &name)?)?;
        for (h, hole) in o.holes.iter().enumerate() {
            let hole_name = format!("{name}-hole-{}", h + 1);
            zip.start_file(format!("{hole_name}.roi"), options)
                .map_err(zip_err)?;
            zip.write_all(&roi_bytes(hole, &hole_name)?)?;
        }
    }
    zip.finish().map_err(zip_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_coordinates_follow_roi_encoder() {
        let ring = [
            Point::new(10.0, 20.0),
            Point::new(14.5, 20.0),
            Point::new(14.5, 23.0),
        ];
        let b = roi_bytes(&ring, "a").expect("roi");
        assert_eq!(&b[..4], b"Iout");
        assert_eq!(u16::from_be_bytes([b[4], b[5]]), 228);
        assert_eq!(b[6], POLYGON);
        // top, left, bottom, right, n
        let short = |at: usize| i16::from_be_bytes([b[at], b[at + 1]]);
        assert_eq!(
            [short(8), short(10), short(12), short(14)],
            [20, 10, 23, 15]
        );
        assert_eq!(short(16), 3);
        assert_eq!(short(50), SUB_PIXEL_RESOLUTION as i16);
        assert_eq!(
            b.len(),
            HEADER + 3 * 12 + HEADER2 + 2,
            "one UTF-16 unit of name"
        );
        let float = |at: usize| f32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        assert_eq!(float(HEADER + 12 + 4), 14.5, "second x as a float");
        assert!(roi_bytes(&ring[..2], "a").is_err());
    }
}
