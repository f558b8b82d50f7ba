//! The label image of a result: a 16-bit gray PNG the size of the image, 0 the background and
//! holes, object `i` (1-based, the order of the result and of every table) the value `i`.
//! Invariant: at most 65 535 objects (more cannot be told apart in 16 bits and are refused).

use image::{ImageBuffer, Luma};

use super::ExportError;
use crate::morphology::rasterize;
use crate::segment::SegmentResult;

/// The label image as PNG.
pub fn label_png(r: &SegmentResult) -> Result<Vec<u8>, ExportError> {
    let (w, h) = (r.image.width, r.image.height);
    if r.objects.len() > usize::from(u16::MAX) {
        return Err(ExportError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} objects do not fit a 16-bit label image",
                r.objects.len()
            ),
        )));
    }
    let mut labels = vec![0u16; w as usize * h as usize];
    for (i, o) in r.objects.iter().enumerate() {
        let mask = rasterize(std::slice::from_ref(o), w, h);
        for (l, m) in labels.iter_mut().zip(&mask) {
            if *m != 0 {
                *l = i as u16 + 1;
            }
        }
    }
    let img: ImageBuffer<Luma<u16>, Vec<u16>> =
        ImageBuffer::from_raw(w, h, labels).expect("labels have width × height pixels");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}
