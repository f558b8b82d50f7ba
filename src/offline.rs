//! `spheroseg segment`: segment files offline, no server, on a pool of worker threads. Each file's
//! JSON, mask, label image, overlay and ROI set are written as it finishes; the batch's tables
//! (`objects.csv`, `images.csv`, the legacy `metrics.csv`, `results.xlsx`) and `coco.json` at the
//! end, in input order. A file that fails is reported with its reason and the others go on.
//!
//! Also `spheroseg demo-images`: writes synthetic spheroid images with their truth masks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;

use std::io::Write;

use crate::export::{self, table::Table};
use crate::segment::{DecodeLimits, SegmentParams, SegmentResult, analyze};
use crate::synth::{Kind, Scene};

/// What to write for each file and for the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Formats {
    pub json: bool,
    /// `objects.csv` and `images.csv`.
    pub csv: bool,
    /// `metrics.csv` in the replaced design's columns.
    pub legacy_csv: bool,
    pub mask: bool,
    /// `results.xlsx`, sheets `objects` and `images`.
    pub xlsx: bool,
    /// `coco.json` of the batch.
    pub coco: bool,
    /// `NAME_rois.zip`, an ImageJ ROI set.
    pub roi: bool,
    /// `NAME_labels.png`, the 16-bit label image.
    pub labels: bool,
    /// `NAME_overlay.png`, numbered outlines on the image.
    pub overlay: bool,
}

/// A batch to segment.
#[derive(Clone, Debug)]
pub struct Batch {
    pub files: Vec<PathBuf>,
    pub out: PathBuf,
    pub formats: Formats,
    pub params: SegmentParams,
    pub workers: usize,
    pub limits: DecodeLimits,
}

/// One file's outcome.
#[derive(Debug)]
pub struct Outcome {
    pub path: PathBuf,
    /// The output name stem (unique in the batch).
    pub stem: String,
    pub result: Result<SegmentResult, String>,
    pub millis: f64,
}

/// Output stems: the file stem, with `-2`, `-3`… for repeats in the batch.
fn stems(files: &[PathBuf]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    files
        .iter()
        .map(|f| {
            let base = f
                .file_stem()
                .map_or_else(|| "image".to_owned(), |s| s.to_string_lossy().into_owned());
            let n = seen.entry(base.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { base } else { format!("{base}-{n}") }
        })
        .collect()
}

fn process(path: &Path, stem: &str, batch: &Batch) -> Result<SegmentResult, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let result = analyze(
        &bytes,
        &name,
        &batch.params,
        &batch.limits,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .map_err(|e| e.to_string())?;
    if batch.formats.json {
        let p = batch.out.join(format!("{stem}.spheroseg.json"));
        std::fs::write(&p, export::result_json(&result))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    let write = |name: String, bytes: Result<Vec<u8>, export::ExportError>| {
        let p = batch.out.join(name);
        let bytes = bytes.map_err(|e| e.to_string())?;
        std::fs::write(&p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    if batch.formats.mask {
        write(format!("{stem}_mask.png"), export::mask_png(&result))?;
    }
    if batch.formats.labels {
        write(
            format!("{stem}_labels.png"),
            export::labels::label_png(&result),
        )?;
    }
    if batch.formats.overlay {
        let decoded =
            crate::segment::decode::decode(&bytes, &batch.limits).map_err(|e| e.to_string())?;
        write(
            format!("{stem}_overlay.png"),
            export::overlay_png(&decoded.gray, &result),
        )?;
    }
    if batch.formats.roi {
        let zip = export::roi::write_roi_set(std::io::Cursor::new(Vec::new()), &result);
        write(format!("{stem}_rois.zip"), zip.map(|c| c.into_inner()))?;
    }
    Ok(result)
}

/// Segments every file on `batch.workers` threads; `report` sees each outcome as it arrives (on
/// the calling thread). Returns the outcomes in input order after writing the batch files.
pub fn run(batch: &Batch, report: &mut dyn FnMut(&Outcome)) -> anyhow::Result<Vec<Outcome>> {
    std::fs::create_dir_all(&batch.out)
        .with_context(|| format!("cannot create the output directory {}", batch.out.display()))?;
    let names = stems(&batch.files);
    let (job_tx, job_rx) = crossbeam_channel::bounded::<usize>(batch.workers * 2);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<(usize, Outcome)>();
    let mut outcomes: Vec<Option<Outcome>> = (0..batch.files.len()).map(|_| None).collect();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for i in 0..batch.workers.max(1) {
            let (job_rx, done_tx, names) = (job_rx.clone(), done_tx.clone(), &names);
            std::thread::Builder::new()
                .name(format!("segment-{i}"))
                .spawn_scoped(scope, move || {
                    for k in job_rx {
                        let path = batch.files[k].clone();
                        let start = Instant::now();
                        // A panic in one image fails that image, not the batch.
                        let result = std::panic::catch_unwind(|| process(&path, &names[k], batch))
                            .unwrap_or_else(|_| Err("internal error while segmenting".into()));
                        let outcome = Outcome {
                            path,
                            stem: names[k].clone(),
                            result,
                            millis: start.elapsed().as_secs_f64() * 1e3,
                        };
                        if done_tx.send((k, outcome)).is_err() {
                            return;
                        }
                    }
                })
                .context("cannot start a worker thread")?;
        }
        drop(done_tx);
        drop(job_rx);
        let feeder = scope.spawn(move || {
            for k in 0..batch.files.len() {
                if job_tx.send(k).is_err() {
                    return;
                }
            }
        });
        for (k, outcome) in done_rx {
            report(&outcome);
            outcomes[k] = Some(outcome);
        }
        let _ = feeder.join();
        Ok(())
    })?;
    let outcomes: Vec<Outcome> = outcomes.into_iter().flatten().collect();
    let ok: Vec<(&str, &SegmentResult)> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().map(|r| (o.stem.as_str(), r)))
        .collect();
    let create = |name: &str| -> anyhow::Result<(PathBuf, std::io::BufWriter<std::fs::File>)> {
        let path = batch.out.join(name);
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok((path, std::io::BufWriter::new(file)))
    };
    if batch.formats.csv {
        for (table, name) in [
            (Table::Objects, "objects.csv"),
            (Table::Images, "images.csv"),
        ] {
            let (path, out) = create(name)?;
            export::table::write_csv(out, table, ok.iter().copied(), true)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    if batch.formats.legacy_csv {
        let (path, out) = create("metrics.csv")?;
        let calibrated = ok.iter().any(|(_, r)| r.pixel_size.is_some());
        export::write_csv(out, ok.iter().copied(), calibrated)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if batch.formats.xlsx {
        let (path, mut out) = create("results.xlsx")?;
        let book = export::xlsx::workbook(ok.iter().copied())
            .with_context(|| format!("cannot write {}", path.display()))?;
        out.write_all(&book)
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if batch.formats.coco {
        let (path, mut out) = create("coco.json")?;
        out.write_all(export::coco::coco_json(ok.iter().copied()).as_bytes())
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(outcomes)
}

/// Writes `count` synthetic images of each kind into `dir`: 8-bit PNG and 16-bit TIFF, each with a
/// `_truth.png` mask. Returns the paths of the images.
pub fn demo_images(dir: &Path, size: u32, count: u64) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (kind, name) in [
        (Kind::Plain, "plain"),
        (Kind::Lumen, "lumen"),
        (Kind::NecroticCore, "core"),
    ] {
        for seed in 0..count {
            for depth in [8u8, 16] {
                let scene = Scene::random(seed * 31 + u64::from(depth), size, depth, kind);
                let (img, truth) = scene.render();
                let stem = format!("spheroid_{name}_{seed}_{depth}bit");
                let (path, encoded) = if depth == 8 {
                    let buf = image::GrayImage::from_raw(
                        size,
                        size,
                        img.data.iter().map(|&v| v as u8).collect(),
                    )
                    .expect("size × size pixels");
                    (
                        dir.join(format!("{stem}.png")),
                        image::DynamicImage::ImageLuma8(buf),
                    )
                } else {
                    let buf = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(
                        size,
                        size,
                        img.data.iter().map(|&v| v as u16).collect(),
                    )
                    .expect("size × size pixels");
                    (
                        dir.join(format!("{stem}.tif")),
                        image::DynamicImage::ImageLuma16(buf),
                    )
                };
                encoded
                    .save(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                let mask = image::GrayImage::from_raw(
                    size,
                    size,
                    truth.iter().map(|&t| t * 255).collect(),
                )
                .expect("size × size pixels");
                let truth_path = dir.join(format!("{stem}_truth.png"));
                mask.save(&truth_path)
                    .with_context(|| format!("cannot write {}", truth_path.display()))?;
                written.push(path);
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_stems_get_a_suffix() {
        let files: Vec<PathBuf> = ["a/x.png", "b/x.tif", "y.png", "c/x.png"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(stems(&files), vec!["x", "x-2", "y", "x-3"]);
    }
}
