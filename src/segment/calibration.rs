//! The pixel size of an image: read from the file (ImageJ and OME TIFF descriptions, the TIFF
//! resolution tags, PNG's pHYs), unless the job gives one, which wins. The result records the size
//! used and where it came from.
//!
//! Invariants: a size is positive, finite and within [`PLAUSIBLE_UM`]; pixels are square (X and
//! Y within 1 % of each other, else the file says nothing usable); the resolutions that image
//! programs write when nobody calibrated anything (72 and 96 dpi, and their pHYs equivalents) are
//! not a calibration. Tags and chunks are read by the `tiff` and `png` crates; only the text of
//! an ImageJ or OME description is parsed here.

use std::io::{Read, Seek};

use serde::{Deserialize, Serialize};

use super::params::PixelSizeGiven;

/// Pixel sizes outside this range (in µm) are taken as a mistake in the file, not a calibration.
pub const PLAUSIBLE_UM: std::ops::RangeInclusive<f64> = 1e-4..=1e4;

/// Where a pixel size came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PixelSizeSource {
    /// The job's own `pixel_size_um` (given with the upload, the API call or the CLI).
    Job,
    /// The `pixel_size_um` of the watch folder the image came from.
    Watch,
    /// The pixel size remembered for the job's project.
    Project,
    /// An ImageJ TIFF: `unit=` in the ImageDescription with XResolution.
    Imagej,
    /// An OME-TIFF: `PhysicalSizeX`/`PhysicalSizeY` in the OME-XML description.
    Ome,
    /// The TIFF `XResolution`/`YResolution` with `ResolutionUnit` inch or centimetre.
    TiffResolution,
    /// A PNG `pHYs` chunk in pixels per metre.
    PngPhys,
}

impl PixelSizeSource {
    /// The name the result JSON and the exports use.
    pub fn as_str(self) -> &'static str {
        match self {
            PixelSizeSource::Job => "job",
            PixelSizeSource::Watch => "watch",
            PixelSizeSource::Project => "project",
            PixelSizeSource::Imagej => "imagej",
            PixelSizeSource::Ome => "ome",
            PixelSizeSource::TiffResolution => "tiff-resolution",
            PixelSizeSource::PngPhys => "png-phys",
        }
    }
}

/// The size of one (square) pixel in micrometres, and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PixelSize {
    pub um: f64,
    pub source: PixelSizeSource,
}

impl PixelSize {
    fn checked(um: f64, source: PixelSizeSource) -> Option<Self> {
        (um.is_finite() && PLAUSIBLE_UM.contains(&um)).then_some(PixelSize { um, source })
    }
}

/// The pixel size to measure with: the job's when it gives one (from whoever gave it), else the
/// file's.
pub fn resolve(
    job_um: Option<f32>,
    given: PixelSizeGiven,
    file: Option<PixelSize>,
) -> Option<PixelSize> {
    let source = match given {
        PixelSizeGiven::Job => PixelSizeSource::Job,
        PixelSizeGiven::Watch => PixelSizeSource::Watch,
        PixelSizeGiven::Project => PixelSizeSource::Project,
    };
    match job_um {
        Some(um) => PixelSize::checked(decimal(um), source),
        None => file,
    }
}

/// The f64 of the decimal a person wrote for `v` (0.65, not 0.64999997615814): an f32 read
/// from JSON or TOML through its shortest text.
fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// Micrometres per `unit` (ImageJ and OME spellings); `None` for pixels or an unknown unit.
fn um_per(unit: &str) -> Option<f64> {
    let u = unit.trim();
    Some(match u {
        "micron" | "microns" | "um" | "µm" | "μm" | "\\u00B5m" | "\\u00b5m" | "micrometer"
        | "micrometre" => 1.0,
        "nm" | "nanometer" | "nanometre" => 1e-3,
        "mm" | "millimeter" | "millimetre" => 1e3,
        "cm" | "centimeter" | "centimetre" => 1e4,
        "m" | "meter" | "metre" => 1e6,
        "inch" | "in" => 25_400.0,
        "Å" | "angstrom" => 1e-4,
        _ => return None,
    })
}

/// Both sizes, when the pixel is square.
fn square(x: f64, y: Option<f64>) -> Option<f64> {
    match y {
        Some(y) if (x - y).abs() > 0.01 * x.abs().max(y.abs()) => None,
        _ => Some(x),
    }
}

/// The value of `key=` on its own line of an ImageJ description.
fn imagej_field<'a>(description: &'a str, key: &str) -> Option<&'a str> {
    description
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// The value of attribute `name` in the first `<Pixels` (any namespace prefix) element.
fn ome_attribute<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml
        .match_indices("Pixels")
        .map(|(i, _)| i)
        .find(|&i| xml[..i].ends_with('<') || xml[..i].ends_with(':'))?;
    let element = &xml[start..start + xml[start..].find('>')?];
    let mut rest = element;
    while let Some(i) = rest.find(name) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + name.len()..].trim_start();
        if before.is_some_and(char::is_whitespace)
            && let Some(value) = after.strip_prefix('=')
        {
            let value = value.trim_start();
            let quote = value.chars().next()?;
            if quote == '"' || quote == '\'' {
                let value = &value[1..];
                return Some(&value[..value.find(quote)?]);
            }
        }
        rest = &rest[i + name.len()..];
    }
    None
}

/// The pixel size an OME-XML description gives (units default to µm, as the schema says).
fn from_ome(xml: &str) -> Option<PixelSize> {
    let size = |axis: &str| -> Option<f64> {
        let v: f64 = ome_attribute(xml, &format!("PhysicalSize{axis}"))?
            .parse()
            .ok()?;
        let unit = ome_attribute(xml, &format!("PhysicalSize{axis}Unit")).unwrap_or("µm");
        Some(v * um_per(unit)?)
    };
    PixelSize::checked(square(size("X")?, size("Y"))?, PixelSizeSource::Ome)
}

/// A TIFF rational (or float) tag as a number.
fn rational(d: &mut tiff::decoder::Decoder<impl Read + Seek>, tag: tiff::tags::Tag) -> Option<f64> {
    use tiff::decoder::ifd::Value;
    match d.find_tag(tag).ok()?? {
        Value::Rational(n, den) if den != 0 => Some(f64::from(n) / f64::from(den)),
        Value::Float(v) => Some(f64::from(v)),
        Value::Double(v) => Some(v),
        _ => None,
    }
}

/// The pixel size of the first page of a TIFF: OME-XML, then ImageJ, then the resolution tags.
pub fn from_tiff(r: impl Read + Seek) -> Option<PixelSize> {
    use tiff::tags::Tag;
    let mut d = tiff::decoder::Decoder::new(r).ok()?;
    let description = d
        .find_tag(Tag::ImageDescription)
        .ok()
        .flatten()
        .and_then(|v| v.into_string().ok());
    if let Some(xml) = description.as_deref().filter(|t| t.contains("<OME"))
        && let Some(p) = from_ome(xml)
    {
        return Some(p);
    }
    let x = rational(&mut d, Tag::XResolution).filter(|v| *v > 0.0)?;
    let y = rational(&mut d, Tag::YResolution).filter(|v| *v > 0.0);
    let px_per_unit = square(x, y)?;
    if let Some(ij) = description.as_deref().filter(|t| t.starts_with("ImageJ="))
        && let Some(unit) = imagej_field(ij, "unit")
    {
        // ImageJ writes its own unit in the description and 1/pixel width as XResolution,
        // whatever ResolutionUnit says.
        return PixelSize::checked(um_per(unit)? / px_per_unit, PixelSizeSource::Imagej);
    }
    let unit_um = match d
        .find_tag_unsigned::<u16>(Tag::ResolutionUnit)
        .ok()
        .flatten()
    {
        // Absent means inch (TIFF 6.0); 1 is "no absolute unit".
        None | Some(2) => 25_400.0,
        Some(3) => 10_000.0,
        _ => return None,
    };
    if unit_um == 25_400.0 && [72.0, 96.0].contains(&px_per_unit) {
        return None;
    }
    PixelSize::checked(unit_um / px_per_unit, PixelSizeSource::TiffResolution)
}

/// The pixel size a PNG's `pHYs` chunk gives (only in metres: the unit-less kind is an aspect
/// ratio). 2835 and 3780 pixels per metre are 72 and 96 dpi, what programs write by default.
pub fn from_png(r: impl std::io::BufRead + Seek) -> Option<PixelSize> {
    let reader = png::Decoder::new(r).read_info().ok()?;
    let dims = reader.info().pixel_dims?;
    if dims.unit != png::Unit::Meter || dims.xppu == 0 {
        return None;
    }
    if [2834, 2835, 3779, 3780].contains(&dims.xppu) {
        return None;
    }
    let x = 1e6 / f64::from(dims.xppu);
    let y = (dims.yppu != 0).then(|| 1e6 / f64::from(dims.yppu));
    PixelSize::checked(square(x, y)?, PixelSizeSource::PngPhys)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tiff::encoder::{Rational, TiffEncoder, colortype::Gray8};
    use tiff::tags::{ResolutionUnit, Tag};

    use super::*;

    /// A 4×3 gray TIFF with the given description and resolution.
    fn tiff_file(
        description: Option<&str>,
        resolution: Option<(ResolutionUnit, u32, u32)>,
    ) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let mut enc = TiffEncoder::new(&mut out).expect("encoder");
        let mut img = enc.new_image::<Gray8>(4, 3).expect("image");
        if let Some(d) = description {
            img.encoder()
                .write_tag(Tag::ImageDescription, d)
                .expect("description");
        }
        if let Some((unit, n, d)) = resolution {
            img.resolution(unit, Rational { n, d });
        }
        img.write_data(&[0u8; 12]).expect("pixels");
        out.into_inner()
    }

    fn approx(p: Option<PixelSize>, um: f64, source: PixelSizeSource) {
        let p = p.unwrap_or_else(|| panic!("expected {um} µm from {source:?}"));
        assert!((p.um - um).abs() < 1e-9 * um, "{} µm, expected {um}", p.um);
        assert_eq!(p.source, source);
    }

    #[test]
    fn imagej_tiff_gives_its_unit_over_xresolution() {
        // What ImageJ 1.54 writes for 0.65 µm/px: XResolution 1/0.65 px per unit, no unit tag
        // it means.
        let desc = "ImageJ=1.54f\nunit=micron\nspacing=2.0\nloop=false\n";
        let f = tiff_file(Some(desc), Some((ResolutionUnit::None, 100_000, 65_000)));
        approx(from_tiff(Cursor::new(f)), 0.65, PixelSizeSource::Imagej);
        let esc = "ImageJ=1.54f\nunit=\\u00B5m\n";
        let f = tiff_file(Some(esc), Some((ResolutionUnit::Centimeter, 2, 1)));
        approx(from_tiff(Cursor::new(f)), 0.5, PixelSizeSource::Imagej);
        let mm = "ImageJ=1.54f\nunit=mm\n";
        let f = tiff_file(Some(mm), Some((ResolutionUnit::None, 1000, 1)));
        approx(from_tiff(Cursor::new(f)), 1.0, PixelSizeSource::Imagej);
        // Uncalibrated in ImageJ: unit=pixel, or no unit line and no absolute resolution.
        let px = "ImageJ=1.54f\nunit=pixel\n";
        let f = tiff_file(Some(px), Some((ResolutionUnit::None, 1, 1)));
        assert_eq!(from_tiff(Cursor::new(f)), None);
        let none = "ImageJ=1.54f\nimages=1\n";
        let f = tiff_file(Some(none), Some((ResolutionUnit::None, 1, 1)));
        assert_eq!(from_tiff(Cursor::new(f)), None);
    }

    #[test]
    fn ome_tiff_gives_physical_size_in_its_unit() {
        // The tiff crate writes ASCII only; the UTF-8 "µm" of real OME files is checked with
        // files tifffile wrote (tests/readers).
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="4" SizeY="3" SizeC="1" SizeZ="1" SizeT="1" PhysicalSizeX="325" PhysicalSizeXUnit="nm" PhysicalSizeY="0.325" PhysicalSizeYUnit="um"><Channel ID="Channel:0:0"/></Pixels></Image></OME>"#;
        approx(
            from_tiff(Cursor::new(tiff_file(Some(xml), None))),
            0.325,
            PixelSizeSource::Ome,
        );
        let default_unit =
            r#"<OME><Image><ome:Pixels PhysicalSizeX='1.5' PhysicalSizeY='1.5'/></Image></OME>"#;
        approx(
            from_tiff(Cursor::new(tiff_file(Some(default_unit), None))),
            1.5,
            PixelSizeSource::Ome,
        );
        let anisotropic = r#"<OME><Pixels PhysicalSizeX="1" PhysicalSizeY="2"/></OME>"#;
        assert_eq!(
            from_tiff(Cursor::new(tiff_file(Some(anisotropic), None))),
            None
        );
    }

    #[test]
    fn tiff_resolution_in_inch_and_centimetre() {
        // 10 000 px/cm is 1 µm; 25 400 px/inch is 1 µm.
        let f = tiff_file(None, Some((ResolutionUnit::Centimeter, 20_000, 1)));
        approx(
            from_tiff(Cursor::new(f)),
            0.5,
            PixelSizeSource::TiffResolution,
        );
        let f = tiff_file(None, Some((ResolutionUnit::Inch, 25_400, 1)));
        approx(
            from_tiff(Cursor::new(f)),
            1.0,
            PixelSizeSource::TiffResolution,
        );
        // Screen defaults and "no absolute unit" say nothing about the sample.
        for (unit, n) in [
            (ResolutionUnit::Inch, 72),
            (ResolutionUnit::Inch, 96),
            (ResolutionUnit::None, 5000),
        ] {
            let f = tiff_file(None, Some((unit, n, 1)));
            assert_eq!(from_tiff(Cursor::new(f)), None, "{n}");
        }
        assert_eq!(from_tiff(Cursor::new(tiff_file(None, None))), None);
    }

    fn png_file(dims: Option<png::PixelDimensions>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 4, 3);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_pixel_dims(dims);
        let mut w = enc.write_header().expect("header");
        w.write_image_data(&[0u8; 12]).expect("pixels");
        w.finish().expect("finish");
        out
    }

    #[test]
    fn png_phys_in_metres() {
        let dims = |xppu, yppu, unit| Some(png::PixelDimensions { xppu, yppu, unit });
        // 1 538 462 px/m is 0.65 µm.
        let p = from_png(Cursor::new(png_file(dims(
            1_538_462,
            1_538_462,
            png::Unit::Meter,
        ))));
        let p = p.expect("calibrated");
        assert!((p.um - 0.65).abs() < 1e-6, "{}", p.um);
        assert_eq!(p.source, PixelSizeSource::PngPhys);
        for d in [
            dims(2835, 2835, png::Unit::Meter),
            dims(3780, 3780, png::Unit::Meter),
            dims(1_000_000, 1_000_000, png::Unit::Unspecified),
            dims(1_000_000, 500_000, png::Unit::Meter),
            None,
        ] {
            assert_eq!(from_png(Cursor::new(png_file(d))), None, "{d:?}");
        }
    }

    #[test]
    fn the_job_wins_over_the_file() {
        let file = Some(PixelSize {
            um: 0.65,
            source: PixelSizeSource::Imagej,
        });
        assert_eq!(
            resolve(Some(1.3), PixelSizeGiven::Job, file),
            Some(PixelSize {
                um: 1.3,
                source: PixelSizeSource::Job
            })
        );
        assert_eq!(resolve(None, PixelSizeGiven::Job, file), file);
        assert_eq!(resolve(None, PixelSizeGiven::Project, None), None);
        let p = resolve(Some(0.65), PixelSizeGiven::Project, file).expect("given");
        assert_eq!(p.source, PixelSizeSource::Project);
        let w = resolve(Some(0.65), PixelSizeGiven::Watch, None).expect("given");
        assert_eq!(w.source.as_str(), "watch");
    }
}
