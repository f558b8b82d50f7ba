//! The builtin segmenter on synthetic spheroids with known truth: `cargo bench --bench segment`.
//!
//! Per image kind: median time from decoded image to polygons + metrics on one thread, IoU against
//! the generator's truth mask (mean and worst), area error against the analytic area, and perimeter
//! error of the simplified outline against the analytic outline. Prints a table; asserts nothing.
//! `SPHEROSEG_BENCH_SEEDS` sets how many images per row (default 5).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use spheroseg::morphology::{measure, rasterize};
use spheroseg::segment::SegmentParams;
use spheroseg::segment::builtin::segment;
use spheroseg::synth::{Kind, Scene, iou};

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
    println!("\n(area and perimeter errors are the worst of the row)");
}
