//! The project ZIP, written front to back into any `Write` (an HTTP body): `objects.csv`,
//! `images.csv`, `results.xlsx` (both tables as sheets), `coco.json`, and per job `results/ID/NAME.json`, `NAME_mask.png`,
//! `NAME_labels.png`, `NAME_overlay.png`, `NAME_rois.zip`, plus the original as
//! `originals/ID/NAME` when asked.
//!
//! Invariant: memory stays flat in the number of jobs. The archive is a stream (`zip`'s
//! `new_stream`: sizes in data descriptors, nothing seeks back), and the jobs are visited once per
//! part rather than held: `visit` is called for each of the seven passes and must hand over
//! every result in the same order each time. Only one result (and its files) is in memory at a
//! time; the workbook's rows wait in temp files until it is assembled, whole, into the archive.

use std::io::Write;

use zip::write::SimpleFileOptions;

use super::table::{Table, write_csv};
use super::{ExportError, coco, labels, mask_png, result_json, roi, xlsx};
use crate::segment::SegmentResult;

/// What [`Visit`] calls per job: its 1-based place in the fixed list, its id and its result.
pub type Each<'a> = dyn FnMut(u64, &str, &SegmentResult) -> Result<(), ExportError> + 'a;

/// Calls its argument for every job of a fixed list, in order (a job whose result has gone since
/// is skipped, and the others keep their places).
pub type Visit<'a> = dyn FnMut(&mut Each<'_>) -> Result<(), ExportError> + 'a;

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("plain structs serialise")
}

fn zip_error(e: zip::result::ZipError) -> ExportError {
    ExportError::Io(std::io::Error::other(e))
}

/// A name that is safe as one path component inside the archive.
fn component(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "_".into(),
        _ => s,
    }
}

fn stem(r: &SegmentResult) -> String {
    let name = component(&r.image.name);
    match name.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s.to_owned(),
        _ => name,
    }
}

/// What the archive needs of the image store: a job's submitted bytes and its overlay PNG
/// (`None` when the image is gone; the rest of the job's files are still written).
pub struct Images<'a> {
    pub original: &'a mut dyn FnMut(&str) -> Option<Vec<u8>>,
    pub overlay: &'a mut dyn FnMut(&str, &SegmentResult) -> Option<Vec<u8>>,
}

/// Writes the archive, with the originals when `originals` is set.
pub fn write_project<W: Write>(
    out: W,
    visit: &mut Visit<'_>,
    originals: bool,
    images: Images<'_>,
) -> Result<W, ExportError> {
    let mut zip = zip::ZipWriter::new_stream(out);
    let options = SimpleFileOptions::default();
    // Already-compressed files are stored as they are.
    let stored = options.compression_method(zip::CompressionMethod::Stored);
    for (table, name) in [
        (Table::Objects, "objects.csv"),
        (Table::Images, "images.csv"),
    ] {
        zip.start_file(name, options).map_err(zip_error)?;
        let mut first = true;
        visit(&mut |_, id, r| write_csv(&mut zip, table, [(id, r)], std::mem::take(&mut first)))?;
        if first {
            write_csv(&mut zip, table, [], true)?;
        }
    }

    // The same tables as a workbook, a sheet per visit.
    let mut book = xlsx::Book::new()?;
    visit(&mut |_, id, r| Ok(book.add_objects(id, r)?))?;
    visit(&mut |_, id, r| Ok(book.add_image(id, r)?))?;
    zip.start_file("results.xlsx", stored).map_err(zip_error)?;
    zip.write_all(&book.finish()?)?;

    zip.start_file("coco.json", options).map_err(zip_error)?;
    write!(zip, "{{\"info\":{},\"images\":[", json(&coco::info()))?;
    let mut sep = "";
    visit(&mut |n, id, r| {
        write!(zip, "{sep}{}", json(&coco::image_entry(n, id, r)))?;
        sep = ",";
        Ok(())
    })?;
    write!(zip, "],\"annotations\":[")?;
    let mut next = 1u64;
    visit(&mut |n, _, r| {
        for a in coco::annotations(n, next, r) {
            let sep = if next > 1 { "," } else { "" };
            write!(zip, "{sep}{}", json(&a))?;
            next += 1;
        }
        Ok(())
    })?;
    write!(zip, "],\"categories\":{}}}", json(&coco::categories()))?;

    visit(&mut |_, id, r| {
        let dir = format!("results/{}", component(id));
        let stem = stem(r);
        zip.start_file(format!("{dir}/{stem}.json"), options)
            .map_err(zip_error)?;
        zip.write_all(result_json(r).as_bytes())?;
        for (name, bytes) in [
            (format!("{stem}_mask.png"), mask_png(r)?),
            (format!("{stem}_labels.png"), labels::label_png(r)?),
            (
                format!("{stem}_rois.zip"),
                roi::write_roi_set(std::io::Cursor::new(Vec::new()), r)?.into_inner(),
            ),
        ] {
            zip.start_file(format!("{dir}/{name}"), stored)
                .map_err(zip_error)?;
            zip.write_all(&bytes)?;
        }
        if let Some(png) = (images.overlay)(id, r) {
            zip.start_file(format!("{dir}/{stem}_overlay.png"), stored)
                .map_err(zip_error)?;
            zip.write_all(&png)?;
        }
        if originals && let Some(bytes) = (images.original)(id) {
            let name = format!("originals/{}/{}", component(id), component(&r.image.name));
            zip.start_file(name, stored).map_err(zip_error)?;
            zip.write_all(&bytes)?;
        }
        Ok(())
    })?;
    Ok(zip.finish().map_err(zip_error)?.into_inner())
}
