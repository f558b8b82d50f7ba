//! Decoding PNG, JPEG, TIFF and BMP into a gray image in the file's own intensity units, under
//! limits checked before any pixel buffer is allocated (a decompression bomb is refused from its
//! header). Every failure is permanent and says what is wrong with the file. The later pages of
//! a multi-page TIFF are read by `decode/pages.rs`.

use std::io::Cursor;

use image::{DynamicImage, ImageError, ImageFormat, ImageReader, Limits, error::LimitErrorKind};

use super::calibration::{self, PixelSize};
use crate::error_code::ErrorCode;
use crate::morphology::Gray;

mod pages;

use pages::tiff_pages;
pub use pages::{decode_page, page_count};

/// The largest image spheroseg accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Width × height, in millions of pixels.
    pub max_megapixels: u32,
    /// What the decoder itself may allocate, in MiB.
    pub max_alloc_mb: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_width: 16_384,
            max_height: 16_384,
            max_megapixels: 64,
            max_alloc_mb: 1024,
        }
    }
}

/// Why an image cannot be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// The bytes are not an image format spheroseg reads.
    #[error("not an image: expected PNG, JPEG, TIFF or BMP")]
    NotAnImage,
    /// A format spheroseg reads, in a variant it does not.
    #[error("unsupported {format} image: {detail}")]
    Unsupported {
        format: &'static str,
        detail: String,
    },
    /// The file is cut short or its data is inconsistent.
    #[error("damaged or truncated {format} file: {detail}")]
    Damaged {
        format: &'static str,
        detail: String,
    },
    /// Larger than the configured limits.
    #[error(
        "image is {width}×{height}, the limit is {max_width}×{max_height} and {max_megapixels} megapixels"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
        max_megapixels: u32,
    },
    /// Decoding would allocate more than allowed.
    #[error("decoding this image needs more memory than the limit of {limit_mb} MiB")]
    TooMuchMemory { limit_mb: u64 },
}

impl DecodeError {
    /// A stable kebab-case code for the API and the job's error.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::NotAnImage => ErrorCode::NOT_AN_IMAGE,
            DecodeError::Unsupported { .. } => ErrorCode::UNSUPPORTED_IMAGE,
            DecodeError::Damaged { .. } => ErrorCode::DAMAGED_IMAGE,
            DecodeError::TooLarge { .. } | DecodeError::TooMuchMemory { .. } => {
                ErrorCode::IMAGE_TOO_LARGE
            }
        }
    }
}

/// A decoded image and what was learnt about the file.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub gray: Gray,
    pub format: &'static str,
    /// Bits per sample of the file: 8, 16 or 32 (float).
    pub bit_depth: u8,
    /// Colour channels of the file (1 gray, 3 RGB, 4 RGBA, 2 gray + alpha).
    pub channels: u8,
    /// Pages in a TIFF; only the first is segmented.
    pub pages: u32,
    /// The pixel size the file states (ImageJ, OME, TIFF resolution, PNG pHYs), if any.
    pub pixel_size: Option<PixelSize>,
}

/// What the header says, read without decoding pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    /// What the decoder will allocate for the pixels.
    pub decoded_bytes: u64,
}

impl Header {
    /// What decoding it holds, for the decode budget.
    pub fn footprint(&self) -> super::budget::Footprint {
        super::budget::Footprint {
            width: self.width,
            height: self.height,
            decoded_bytes: self.decoded_bytes,
        }
    }
}

fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Png => "PNG",
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Tiff => "TIFF",
        ImageFormat::Bmp => "BMP",
        _ => "image",
    }
}

/// Where encoded image data comes from: bytes in memory or a file (an upload streamed to disk).
/// Each `open` gives a fresh reader from the start.
pub trait Encoded {
    type Reader: std::io::BufRead + std::io::Seek;
    fn open(&self) -> std::io::Result<Self::Reader>;
}

impl<'a> Encoded for &'a [u8] {
    type Reader = Cursor<&'a [u8]>;

    fn open(&self) -> std::io::Result<Self::Reader> {
        Ok(Cursor::new(self))
    }
}

impl Encoded for &std::path::Path {
    type Reader = std::io::BufReader<std::fs::File>;

    fn open(&self) -> std::io::Result<Self::Reader> {
        Ok(std::io::BufReader::new(std::fs::File::open(self)?))
    }
}

fn reader<E: Encoded>(
    input: &E,
    limits: &DecodeLimits,
) -> Result<(ImageReader<E::Reader>, &'static str), DecodeError> {
    let source = input.open().map_err(|e| DecodeError::Damaged {
        format: "image",
        detail: format!("cannot read it: {e}"),
    })?;
    let reader = ImageReader::new(source)
        .with_guessed_format()
        .map_err(|_| DecodeError::NotAnImage)?;
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff | ImageFormat::Bmp)) => {
            format_name(f)
        }
        _ => return Err(DecodeError::NotAnImage),
    };
    let mut reader = reader;
    let mut l = Limits::default();
    l.max_image_width = Some(limits.max_width);
    l.max_image_height = Some(limits.max_height);
    l.max_alloc = Some(limits.max_alloc_mb << 20);
    reader.limits(l);
    Ok((reader, format))
}

fn classify(
    e: ImageError,
    format: &'static str,
    limits: &DecodeLimits,
    dims: Option<(u32, u32)>,
) -> DecodeError {
    match e {
        ImageError::Limits(l) => match (l.kind(), dims) {
            (LimitErrorKind::DimensionError, Some((width, height))) => {
                too_large(width, height, limits)
            }
            _ => DecodeError::TooMuchMemory {
                limit_mb: limits.max_alloc_mb,
            },
        },
        ImageError::Unsupported(u) => DecodeError::Unsupported {
            format,
            detail: u.to_string(),
        },
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Damaged {
                format,
                detail: "the file ends before the image data does".into(),
            }
        }
        other => DecodeError::Damaged {
            format,
            detail: other.to_string(),
        },
    }
}

fn too_large(width: u32, height: u32, l: &DecodeLimits) -> DecodeError {
    DecodeError::TooLarge {
        width,
        height,
        max_width: l.max_width,
        max_height: l.max_height,
        max_megapixels: l.max_megapixels,
    }
}

/// Reads format and dimensions from the header and checks them against the limits.
pub fn probe(bytes: &[u8], limits: &DecodeLimits) -> Result<Header, DecodeError> {
    probe_from(&bytes, limits)
}

/// [`probe`] from any encoded source.
pub fn probe_from<E: Encoded>(input: &E, limits: &DecodeLimits) -> Result<Header, DecodeError> {
    let (mut r, format) = reader(input, limits)?;
    // The dimension limits would turn an oversized header into an error without its size.
    r.no_limits();
    let decoder = r
        .into_decoder()
        .map_err(|e| classify(e, format, limits, None))?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    let decoded_bytes = image::ImageDecoder::total_bytes(&decoder);
    if width == 0 || height == 0 {
        return Err(DecodeError::Damaged {
            format,
            detail: "the image has no pixels".into(),
        });
    }
    if width > limits.max_width
        || height > limits.max_height
        || u64::from(width) * u64::from(height) > u64::from(limits.max_megapixels) * 1_000_000
    {
        return Err(too_large(width, height, limits));
    }
    Ok(Header {
        format,
        width,
        height,
        decoded_bytes,
    })
}

/// Decodes the first image of the file into gray, in the file's intensity units. RGB becomes
/// luminance with Rec. 709 weights; alpha is ignored.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, DecodeError> {
    decode_from(&bytes, limits)
}

/// [`decode`] from any encoded source.
pub fn decode_from<E: Encoded>(input: &E, limits: &DecodeLimits) -> Result<Decoded, DecodeError> {
    let header = probe_from(input, limits)?;
    let (r, format) = reader(input, limits)?;
    // A decoder may panic on inconsistent data (zune-jpeg 0.5.15 does, in its AVX2 IDCT, on a
    // JPEG the fuzz target made): that is a damaged file, not a crash.
    let img = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.decode()))
        .map_err(|_| DecodeError::Damaged {
            format,
            detail: "the decoder stopped on inconsistent data".into(),
        })?
        .map_err(|e| classify(e, format, limits, Some((header.width, header.height))))?;
    let pages = match (format, input.open()) {
        ("TIFF", Ok(r)) => tiff_pages(r),
        _ => 1,
    };
    let pixel_size = match (format, input.open()) {
        ("TIFF", Ok(r)) => calibration::from_tiff(r),
        ("PNG", Ok(r)) => calibration::from_png(r),
        _ => None,
    };
    let (bit_depth, channels) = depth_and_channels(&img);
    Ok(Decoded {
        gray: to_gray(&img),
        format,
        bit_depth,
        channels,
        pages,
        pixel_size,
    })
}

fn depth_and_channels(img: &DynamicImage) -> (u8, u8) {
    use DynamicImage::*;
    match img {
        ImageLuma8(_) => (8, 1),
        ImageLumaA8(_) => (8, 2),
        ImageRgb8(_) => (8, 3),
        ImageRgba8(_) => (8, 4),
        ImageLuma16(_) => (16, 1),
        ImageLumaA16(_) => (16, 2),
        ImageRgb16(_) => (16, 3),
        ImageRgba16(_) => (16, 4),
        ImageRgb32F(_) => (32, 3),
        ImageRgba32F(_) => (32, 4),
        _ => (8, 3),
    }
}

fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.2126 * r + 0.7152 * g + 0.0722 * b
}

fn to_gray(img: &DynamicImage) -> Gray {
    use DynamicImage::*;
    let (w, h) = (img.width(), img.height());
    let data: Vec<f32> = match img {
        ImageLuma8(b) => b.as_raw().iter().map(|&v| f32::from(v)).collect(),
        ImageLumaA8(b) => b
            .as_raw()
            .chunks_exact(2)
            .map(|p| f32::from(p[0]))
            .collect(),
        ImageRgb8(b) => rgb(b.as_raw(), 3),
        ImageRgba8(b) => rgb(b.as_raw(), 4),
        ImageLuma16(b) => b.as_raw().iter().map(|&v| f32::from(v)).collect(),
        ImageLumaA16(b) => b
            .as_raw()
            .chunks_exact(2)
            .map(|p| f32::from(p[0]))
            .collect(),
        ImageRgb16(b) => rgb(b.as_raw(), 3),
        ImageRgba16(b) => rgb(b.as_raw(), 4),
        ImageRgb32F(b) => b
            .as_raw()
            .chunks_exact(3)
            .map(|p| luma(p[0], p[1], p[2]))
            .collect(),
        ImageRgba32F(b) => b
            .as_raw()
            .chunks_exact(4)
            .map(|p| luma(p[0], p[1], p[2]))
            .collect(),
        other => other.to_luma32f().into_raw(),
    };
    Gray::new(w, h, data)
}

fn rgb<T: Copy + Into<f32>>(raw: &[T], stride: usize) -> Vec<f32> {
    raw.chunks_exact(stride)
        .map(|p| luma(p[0].into(), p[1].into(), p[2].into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use image::{ImageBuffer, Luma, Rgb};

    use super::*;

    fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    fn gradient16(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageLuma16(ImageBuffer::from_fn(w, h, |x, y| {
            Luma([(x * 1000 + y) as u16])
        }))
    }

    #[test]
    fn reads_16_bit_tiff_in_its_own_units() {
        let bytes = encode(gradient16(40, 30), ImageFormat::Tiff);
        let d = decode(&bytes, &DecodeLimits::default()).expect("decodes");
        assert_eq!(
            (d.format, d.bit_depth, d.channels, d.pages),
            ("TIFF", 16, 1, 1)
        );
        assert_eq!((d.gray.width, d.gray.height), (40, 30));
        assert_eq!(d.gray.data[3 * 40 + 39], 39_003.0);
    }

    #[test]
    fn reads_png_jpeg_bmp_and_rgb_as_luminance() {
        let rgb = DynamicImage::ImageRgb8(ImageBuffer::from_fn(16, 8, |x, _| {
            Rgb([200, 100, (x * 10) as u8])
        }));
        for f in [ImageFormat::Png, ImageFormat::Bmp, ImageFormat::Tiff] {
            let d = decode(&encode(rgb.clone(), f), &DecodeLimits::default()).expect("decodes");
            assert_eq!((d.bit_depth, d.channels), (8, 3), "{f:?}");
            let expect = luma(200.0, 100.0, 30.0);
            assert!((d.gray.data[3] - expect).abs() < 1e-3, "{f:?}");
        }
        let jpeg = encode(rgb, ImageFormat::Jpeg);
        let d = decode(&jpeg, &DecodeLimits::default()).expect("decodes");
        assert_eq!(d.format, "JPEG");
        assert_eq!(d.gray.data.len(), 16 * 8);
    }

    #[test]
    fn text_is_not_an_image() {
        let e = decode(
            b"Image Name,Area\nspheroid.tif,123\n",
            &DecodeLimits::default(),
        )
        .unwrap_err();
        assert_eq!(e, DecodeError::NotAnImage);
        assert_eq!(
            e.to_string(),
            "not an image: expected PNG, JPEG, TIFF or BMP"
        );
        assert_eq!(
            decode(&[], &DecodeLimits::default()).unwrap_err(),
            DecodeError::NotAnImage
        );
    }

    #[test]
    fn truncated_files_are_damaged() {
        for f in [ImageFormat::Png, ImageFormat::Tiff] {
            let bytes = encode(gradient16(64, 64), f);
            let cut = &bytes[..bytes.len() / 2];
            let e = decode(cut, &DecodeLimits::default()).unwrap_err();
            assert!(matches!(e, DecodeError::Damaged { .. }), "{f:?}: {e}");
            assert_eq!(e.code(), "damaged-image");
        }
    }

    #[test]
    fn oversized_images_are_refused_from_the_header() {
        let bytes = encode(gradient16(300, 200), ImageFormat::Png);
        let small = DecodeLimits {
            max_width: 256,
            max_height: 256,
            ..DecodeLimits::default()
        };
        let e = decode(&bytes, &small).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("image is 300×200, the limit is 256×256"),
            "{e}"
        );
        let few = DecodeLimits {
            max_megapixels: 0,
            ..DecodeLimits::default()
        };
        assert!(matches!(
            probe(&bytes, &few),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    /// A PNG header that claims 60000 × 60000 pixels over a few bytes of data: refused before any
    /// pixel buffer exists.
    #[test]
    fn a_decompression_bomb_header_is_refused() {
        let mut bytes = encode(gradient16(8, 8), ImageFormat::Png);
        // IHDR width and height live at bytes 16..24; the CRC no longer matches, which is fine:
        // the header is refused for its size first.
        bytes[16..20].copy_from_slice(&60_000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&60_000u32.to_be_bytes());
        let e = decode(&bytes, &DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::TooLarge { .. } | DecodeError::Damaged { .. }
            ),
            "{e}"
        );
    }
}
