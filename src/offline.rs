//! `spheroseg segment`: segment files offline, no server, on a pool of worker threads. Each file's
//! JSON and mask are written as it finishes; one `metrics.csv` for the batch at the end, in input
//! order. A file that fails is reported with its reason and the others go on.
//!
//! Also `spheroseg demo-images`: writes synthetic spheroid images with their truth masks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::Context;

use crate::export;
use crate::segment::{DecodeLimits, SegmentParams, SegmentResult, analyze};
use crate::synth::{Kind, Scene};

/// What to write for each file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Formats {
    pub json: bool,
    pub csv: bool,
    pub mask: bool,
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
    if batch.formats.mask {
        let p = batch.out.join(format!("{stem}_mask.png"));
        let png = export::mask_png(&result).map_err(|e| e.to_string())?;
        std::fs::write(&p, png).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    }
    Ok(result)
}

/// Segments every file on `batch.workers` threads; `report` sees each outcome as it arrives (on
/// the calling thread). Returns the outcomes in input order after writing `metrics.csv`.
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
    if batch.formats.csv {
        let path = batch.out.join("metrics.csv");
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let ok: Vec<(&str, &SegmentResult)> = outcomes
            .iter()
            .filter_map(|o| o.result.as_ref().ok().map(|r| (o.stem.as_str(), r)))
            .collect();
        let calibrated = ok.iter().any(|(_, r)| r.pixel_size.is_some());
        export::write_csv(std::io::BufWriter::new(file), ok, calibrated)
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
