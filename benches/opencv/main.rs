//! spheroseg's side of the OpenCV comparison (`benches/opencv/run.sh`; not part of CI).
//!
//! - `cargo bench --bench opencv -- --write DIR`: writes the synthetic plates (every kind) at
//!   1024² 8-bit PNG and 2048² 16-bit TIFF, each with its truth labels as a 16-bit PNG, and
//!   `DIR/images.csv` listing them (`file,labels,kind,size,depth,truth`).
//! - `cargo bench --bench opencv -- --time DIR`: for every image listed, reads the file and runs
//!   `spheroseg::segment::analyze` (decode included) on this one thread, `SPHEROSEG_BENCH_REPEATS`
//!   times (default 5), and prints CSV on stdout: the median milliseconds and the quality against
//!   the truth (`file,median_ms,found,truth,matched,extra,min_iou,max_area_err,stages`; matched: truth
//!   spheroids with exactly one object; stages: the last run's milliseconds per stage).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, bail};
use spheroseg::segment::{DecodeLimits, SegmentParams, analyze};
use spheroseg::synth::{Plate, PlateKind, Score};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; what matters is the mode and its directory.
    let mode = args.iter().position(|a| a == "--write" || a == "--time");
    let Some(i) = mode else {
        bail!("usage: cargo bench --bench opencv -- --write DIR | --time DIR");
    };
    let dir = PathBuf::from(args.get(i + 1).context("a directory after the mode")?);
    match args[i].as_str() {
        "--write" => write(&dir),
        _ => time(&dir),
    }
}

/// The images of the comparison: every kind at both sizes.
fn write(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut manifest = String::from("file,labels,kind,size,depth,truth\n");
    for (size, depth) in [(1024u32, 8u8), (2048, 16)] {
        for (k, kind) in PlateKind::ALL.into_iter().enumerate() {
            let plate = Plate::random(700 + k as u64, size, depth, kind);
            let (img, labels, n) = plate.render_with_labels();
            let stem = format!("{}_{size}_{depth}bit", kind.name());
            let file = if depth == 8 {
                let buf = image::GrayImage::from_raw(
                    size,
                    size,
                    img.data.iter().map(|&v| v as u8).collect(),
                )
                .context("size × size pixels")?;
                let name = format!("{stem}.png");
                buf.save(dir.join(&name))?;
                name
            } else {
                let buf = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(
                    size,
                    size,
                    img.data.iter().map(|&v| v as u16).collect(),
                )
                .context("size × size pixels")?;
                let name = format!("{stem}.tif");
                buf.save(dir.join(&name))?;
                name
            };
            let truth = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(
                size,
                size,
                labels.iter().map(|&l| l as u16).collect(),
            )
            .context("size × size labels")?;
            let labels_name = format!("{stem}_labels.png");
            truth.save(dir.join(&labels_name))?;
            manifest.push_str(&format!(
                "{file},{labels_name},{},{size},{depth},{n}\n",
                kind.name()
            ));
        }
    }
    std::fs::write(dir.join("images.csv"), manifest)?;
    eprintln!(
        "wrote {} images to {}",
        2 * PlateKind::ALL.len(),
        dir.display()
    );
    Ok(())
}

fn time(dir: &Path) -> anyhow::Result<()> {
    let repeats: usize = std::env::var("SPHEROSEG_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let manifest = std::fs::read_to_string(dir.join("images.csv"))
        .with_context(|| format!("no images.csv in {}: run --write first", dir.display()))?;
    let params = SegmentParams::default();
    let limits = DecodeLimits::default();
    println!("file,median_ms,found,truth,matched,extra,min_iou,max_area_err,stages");
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let [file, labels_file, _, _, _, truth] = cols[..] else {
            bail!("bad manifest line {line:?}");
        };
        let path = dir.join(file);
        let mut times = Vec::with_capacity(repeats);
        let mut last = None;
        for _ in 0..repeats.max(1) {
            let start = Instant::now();
            let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            let r = analyze(
                &bytes,
                file,
                &params,
                &limits,
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .with_context(|| format!("cannot analyse {file}"))?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            last = Some(r);
        }
        times.sort_by(f64::total_cmp);
        let r = last.context("at least one run")?;
        let truth_img = image::open(dir.join(labels_file))?.into_luma16();
        let labels: Vec<u32> = truth_img.as_raw().iter().map(|&l| u32::from(l)).collect();
        let n: usize = truth.parse()?;
        let s = Score::new(&labels, n, &r.objects, r.image.width, r.image.height);
        let stages: Vec<String> = r
            .timings_ms
            .iter()
            .map(|(stage, ms)| format!("{stage}={ms:.1}"))
            .collect();
        println!(
            "{file},{:.2},{},{n},{},{},{:.4},{},{}",
            times[times.len() / 2],
            s.found,
            s.truth.iter().filter(|t| t.objects.len() == 1).count(),
            s.extra.len(),
            s.min_iou(),
            s.max_area_error()
                .map_or("-".to_owned(), |e| format!("{:.4}", e)),
            stages.join(" "),
        );
    }
    Ok(())
}
