//! The builtin segmenter on synthetic spheroids with known truth: `cargo bench --bench segment`.
//!
//! Per image kind: median time from decoded image to polygons + metrics on one thread, IoU against
//! the generator's truth mask (mean and worst), area error against the analytic area, and perimeter
//! error of the simplified outline against the analytic outline. Prints a table; asserts nothing.
//!
//! Then per kind of plate (touching, bridged, halo with fingers, debris, defocus; `synth::Plate`),
//! scored against the truth labels (`synth::Score`): IoU of each truth spheroid with its best
//! object (mean and worst), found objects over truth spheroids (split accuracy), spheroids
//! matched by exactly one object, extra objects (belonging to no spheroid), and the worst area
//! error of a matched spheroid.
//!
//! `SPHEROSEG_BENCH_SEEDS` sets how many images per row (default 5).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use spheroseg::morphology::{measure, rasterize};
use spheroseg::segment::SegmentParams;
use spheroseg::segment::builtin::segment;
use spheroseg::synth::{Kind, Plate, PlateKind, Scene, Score, iou};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let seeds: u64 = std::env::var("SPHEROSEG_BENCH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    println!(
        "{:<28} {:>5} {:>10} {:>9} {:>9} {:>10} {:>10}",
        "image", "n", "median ms", "IoU mean", "IoU min", "area err", "perim err"
    );
    for (size, depth) in [(1024u32, 8u8), (2048, 16)] {
        for kind in [Kind::Plain, Kind::Lumen, Kind::NecroticCore] {
            let (mut times, mut ious, mut area_err, mut perim_err) =
                (vec![], vec![], vec![], vec![]);
            for seed in 0..seeds {
                let scene = Scene::random(1000 + seed, size, depth, kind);
                let (img, truth) = scene.render();
                let params = SegmentParams::default();
                let start = Instant::now();
                let s =
                    segment(&img, &params, &AtomicBool::new(false), &mut |_| {}).expect("segments");
                let metrics: Vec<_> = s
                    .objects
                    .iter()
                    .map(|o| measure(o, Some(&img), None))
                    .collect();
                times.push(start.elapsed().as_secs_f64() * 1e3);
                let mask = rasterize(&s.objects, img.width, img.height);
                ious.push(iou(&mask, &truth));
                let truth_area = scene.spheroids[0].area();
                let truth_perim = scene.spheroids[0].perimeter();
                let (area, perim) = metrics
                    .iter()
                    .max_by(|a, b| a.area.total_cmp(&b.area))
                    .map_or((0.0, 0.0), |m| (m.area, m.perimeter));
                area_err.push((area - truth_area).abs() / truth_area);
                perim_err.push((perim - truth_perim).abs() / truth_perim);
            }
            let n = ious.len() as f64;
            println!(
                "{:<28} {:>5} {:>10.1} {:>9.4} {:>9.4} {:>9.2}% {:>9.2}%",
                format!("{size}² {depth}-bit {kind:?}"),
                seeds,
                median(&mut times),
                ious.iter().sum::<f64>() / n,
                ious.iter().copied().fold(f64::MAX, f64::min),
                100.0 * area_err.iter().copied().fold(0.0, f64::max),
                100.0 * perim_err.iter().copied().fold(0.0, f64::max),
            );
        }
    }
    println!("\n(area and perimeter errors are the worst of the row)\n");
    plates(seeds);
}

/// The table of plates: one row per kind and size.
fn plates(seeds: u64) {
    println!(
        "{:<30} {:>3} {:>9} {:>8} {:>8} {:>11} {:>9} {:>5} {:>9}",
        "plate",
        "n",
        "median ms",
        "IoU mean",
        "IoU min",
        "found/truth",
        "matched",
        "extra",
        "area err"
    );
    for (size, depth) in [(1024u32, 8u8), (2048, 16)] {
        for kind in PlateKind::ALL {
            let mut times = vec![];
            let (mut ious, mut found, mut truth, mut matched, mut extra) = (vec![], 0, 0, 0, 0);
            let mut area_err: f64 = 0.0;
            for seed in 0..seeds {
                let plate = Plate::random(2000 + seed, size, depth, kind);
                let (img, labels, n) = plate.render_with_labels();
                let start = Instant::now();
                let s = segment(
                    &img,
                    &SegmentParams::default(),
                    &AtomicBool::new(false),
                    &mut |_| {},
                )
                .expect("segments");
                times.push(start.elapsed().as_secs_f64() * 1e3);
                let score = Score::new(&labels, n, &s.objects, img.width, img.height);
                ious.extend(score.truth.iter().map(|t| t.iou));
                found += score.found;
                truth += n;
                extra += score.extra.len();
                for t in &score.truth {
                    if let Some(e) = t.area_error {
                        matched += 1;
                        area_err = area_err.max(e);
                    }
                }
            }
            let area_err = if matched == 0 {
                "-".to_owned()
            } else {
                format!("{:.2}%", 100.0 * area_err)
            };
            println!(
                "{:<30} {:>3} {:>9.1} {:>8.4} {:>8.4} {:>11} {:>9} {:>5} {:>9}",
                format!("{size}² {depth}-bit {}", kind.name()),
                seeds,
                median(&mut times),
                ious.iter().sum::<f64>() / ious.len() as f64,
                ious.iter().copied().fold(f64::MAX, f64::min),
                format!("{found}/{truth}"),
                format!("{matched}/{truth}"),
                extra,
                area_err,
            );
        }
    }
    println!(
        "\n(IoU of each truth spheroid with its best object; matched: spheroids with exactly one \
         object; extra: objects of no spheroid; area err: the worst of the matched spheroids)"
    );
}
