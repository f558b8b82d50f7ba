//! The builtin segmenter from the outside: accuracy on synthetic spheroids with known truth, and
//! `spheroseg segment` on the committed fixtures, broken ones included.

/// Touching, bridged, haloed, debris-strewn and defocused plates, and the real image, against
/// the quality targets.
mod quality;
/// Large images binned to the working scale, against the full-resolution run.
mod resolution;

use std::process::Command;
use std::sync::atomic::AtomicBool;

use spheroseg::morphology::rasterize;
use spheroseg::segment::builtin::segment;
use spheroseg::segment::{DecodeLimits, SegmentParams, analyze};
use spheroseg::synth::{Kind, Scene, iou};

use crate::util::fixture;

/// IoU against the generator's truth on every kind and both bit depths. (The benchmark measures
/// larger images and more seeds; this keeps CI honest at a size a debug build runs quickly.)
#[test]
fn synthetic_spheroids_are_found_with_their_truth() {
    for kind in [Kind::Plain, Kind::Lumen, Kind::NecroticCore] {
        for (seed, depth) in [(11u64, 8u8), (12, 16)] {
            let scene = Scene::random(seed, 384, depth, kind);
            let (img, truth) = scene.render();
            let s = segment(
                &img,
                &SegmentParams::default(),
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .expect("segments");
            assert_eq!(
                s.objects.len(),
                1,
                "{kind:?} {depth}-bit: one spheroid, debris dropped"
            );
            assert_eq!(
                s.objects[0].holes.len(),
                usize::from(kind == Kind::Lumen),
                "{kind:?}: a lumen is a hole, a necrotic core is not"
            );
            let score = iou(&rasterize(&s.objects, img.width, img.height), &truth);
            assert!(score >= 0.98, "{kind:?} {depth}-bit: IoU {score}");
        }
    }
}

#[test]
fn the_16_bit_fixture_is_analysed_in_its_own_units() {
    let bytes = std::fs::read(fixture("spheroid_plain_16bit.tif")).expect("fixture");
    let params = SegmentParams {
        pixel_size_um: Some(0.65),
        ..SegmentParams::default()
    };
    let r = analyze(
        &bytes,
        "plain.tif",
        &params,
        &DecodeLimits::default(),
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .expect("analyses");
    assert_eq!((r.image.bit_depth, r.image.format.as_str()), (16, "TIFF"));
    assert_eq!(r.objects.len(), 1);
    let m = &r.metrics[0];
    assert!(
        m.mean_intensity.expect("intensity") > 255.0,
        "16-bit units, not 0-255"
    );
    let c = m.calibrated.expect("calibrated");
    let px = 0.65;
    assert!((c.area_um2 - m.area * px * px).abs() < 1e-6);
}

/// The core fixture re-encoded as an ImageJ TIFF at 0.65 µm/px and as a PNG with pHYs at
/// 2 µm/px: the result measures with the file's size and names its source, and a job's own size
/// wins over it.
#[test]
fn the_pixel_size_is_read_from_the_file_unless_the_job_gives_one() {
    use spheroseg::segment::calibration::PixelSizeSource;
    use tiff::encoder::{Rational, TiffEncoder, colortype::Gray8};
    use tiff::tags::{ResolutionUnit, Tag};

    let gray = image::open(fixture("spheroid_core_8bit.png"))
        .expect("fixture")
        .to_luma8();
    let (w, h) = gray.dimensions();
    let mut imagej = std::io::Cursor::new(Vec::new());
    {
        let mut enc = TiffEncoder::new(&mut imagej).expect("encoder");
        let mut img = enc.new_image::<Gray8>(w, h).expect("image");
        img.encoder()
            .write_tag(
                Tag::ImageDescription,
                "ImageJ=1.54f\nunit=micron\nspacing=1.0\n",
            )
            .expect("description");
        img.resolution(ResolutionUnit::None, Rational { n: 100, d: 65 });
        img.write_data(gray.as_raw()).expect("pixels");
    }
    let mut phys = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut phys, w, h);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_pixel_dims(Some(png::PixelDimensions {
            xppu: 500_000,
            yppu: 500_000,
            unit: png::Unit::Meter,
        }));
        let mut wr = enc.write_header().expect("header");
        wr.write_image_data(gray.as_raw()).expect("pixels");
    }
    let run = |bytes: &[u8], params: &SegmentParams| {
        analyze(
            bytes,
            "core",
            params,
            &DecodeLimits::default(),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .expect("analyses")
    };
    let defaults = SegmentParams::default();
    for (bytes, um, source) in [
        (imagej.get_ref().as_slice(), 0.65, PixelSizeSource::Imagej),
        (phys.as_slice(), 2.0, PixelSizeSource::PngPhys),
    ] {
        let r = run(bytes, &defaults);
        let p = r.pixel_size.expect("the file's pixel size");
        assert!((p.um - um).abs() < 1e-9, "{source:?}: {} µm", p.um);
        assert_eq!(p.source, source);
        assert!(!r.objects.is_empty(), "{source:?}");
        let m = &r.metrics[0];
        let c = m.calibrated.expect("µm metrics");
        assert!((c.area_um2 - m.area * um * um).abs() < 1e-6 * c.area_um2);
        let json = serde_json::to_value(r.to_json()).expect("json");
        assert_eq!(json["pixel_size"]["source"], source.as_str());
        assert_eq!(json["pixel_size"]["um"], p.um);

        let job = SegmentParams {
            pixel_size_um: Some(1.25),
            ..SegmentParams::default()
        };
        let r = run(bytes, &job);
        let p = r.pixel_size.expect("the job's pixel size");
        assert_eq!((p.um, p.source), (1.25, PixelSizeSource::Job));
    }
    let plain = std::fs::read(fixture("spheroid_core_8bit.png")).expect("fixture");
    assert_eq!(run(&plain, &defaults).pixel_size, None);
}

fn spheroseg() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spheroseg"));
    c.env_remove("SPHEROSEG_WORKERS")
        .env_remove("QUEUE_CONCURRENCY");
    c
}

#[test]
fn segment_writes_outputs_and_reports_each_bad_file() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = spheroseg()
        .arg("segment")
        .args([
            fixture("spheroid_lumen_8bit.png"),
            fixture("broken_truncated.tif"),
            fixture("spheroid_plain_16bit.tif"),
            fixture("not_an_image.txt"),
            fixture("missing.png"),
        ])
        .arg("--out")
        .arg(out.path())
        .args(["--pixel-size-um", "0.65", "--workers", "2"])
        .args([
            "--format",
            "json,csv,legacy-csv,mask,xlsx,coco,roi,labels,overlay",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(1),
        "some inputs failed: {stdout}{stderr}"
    );
    assert!(
        stderr.contains("broken_truncated.tif: damaged or truncated TIFF file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not_an_image.txt: not an image"),
        "{stderr}"
    );
    assert!(
        stderr.contains("missing.png: cannot read the file"),
        "{stderr}"
    );
    assert!(stderr.contains("3 of 5 files failed"), "{stderr}");
    assert!(
        stdout.contains("ok     ") && stdout.contains("spheroid_lumen_8bit.png: 1 object(s)"),
        "{stdout}"
    );

    for name in ["spheroid_lumen_8bit", "spheroid_plain_16bit"] {
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.path().join(format!("{name}.spheroseg.json")))
                .expect("json written"),
        )
        .expect("valid json");
        assert_eq!(json["polygons"][0]["type"], "external");
        assert_eq!(json["polygons"][0]["class"], "spheroid");
        assert!(json["metrics"][0]["area"].as_f64().expect("area") > 1000.0);
        let mask = image::open(out.path().join(format!("{name}_mask.png"))).expect("mask written");
        assert_eq!(
            mask.width(),
            json["image"]["width"].as_u64().expect("width") as u32
        );
    }
    let lumen: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("spheroid_lumen_8bit.spheroseg.json"))
            .expect("json"),
    )
    .expect("valid json");
    assert_eq!(lumen["polygons"][1]["type"], "internal");
    assert_eq!(lumen["polygons"][1]["parentId"], "polygon-1");
    assert!(
        !out.path().join("broken_truncated.spheroseg.json").exists(),
        "nothing for a failed file"
    );

    for name in [
        "objects.csv",
        "images.csv",
        "results.xlsx",
        "coco.json",
        "spheroid_lumen_8bit_rois.zip",
        "spheroid_lumen_8bit_labels.png",
        "spheroid_lumen_8bit_overlay.png",
    ] {
        assert!(out.path().join(name).exists(), "{name} written");
    }
    let objects = std::fs::read_to_string(out.path().join("objects.csv")).expect("objects");
    assert_eq!(objects.lines().count(), 3, "{objects}");
    assert!(
        objects
            .lines()
            .nth(1)
            .expect("row")
            .starts_with("spheroid_lumen_8bit.png,spheroid_lumen_8bit,,,,1,"),
        "image, job, no plate, well or metadata, then object 1: {objects}"
    );
    let coco: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("coco.json")).expect("coco"))
            .expect("json");
    assert_eq!(
        coco["images"].as_array().map(Vec::len),
        Some(2),
        "the two good images"
    );

    let csv = std::fs::read_to_string(out.path().join("metrics.csv")).expect("csv written");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("Image Name,Image ID,Image Resolution,Object ID,Area,"));
    assert!(lines[0].ends_with("Feret Diameter Min (um)"));
    assert_eq!(
        lines.len(),
        3,
        "one row per object of the two good images, in input order: {csv}"
    );
    assert!(lines[1].starts_with("spheroid_lumen_8bit.png,spheroid_lumen_8bit,384x384,polygon-1,"));
    assert!(
        lines[2].starts_with("spheroid_plain_16bit.tif,spheroid_plain_16bit,256x256,polygon-1,")
    );
}

#[test]
fn segment_writes_only_the_formats_asked_and_exits_0_when_all_succeed() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = spheroseg()
        .arg("segment")
        .arg(fixture("spheroid_core_8bit.png"))
        .arg("--out")
        .arg(out.path())
        .args([
            "--format",
            "csv",
            "--params",
            r#"{"simplify_epsilon": 0.5}"#,
        ])
        .output()
        .expect("runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let names: Vec<String> = std::fs::read_dir(out.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, vec!["images.csv", "objects.csv"]);

    let bad = spheroseg()
        .arg("segment")
        .arg(fixture("spheroid_core_8bit.png"))
        .args(["--params", r#"{"min_area_fraction": 7}"#])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("min_area_fraction"));
}

#[test]
fn demo_images_writes_images_and_truth() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = spheroseg()
        .args(["demo-images", "--size", "64"])
        .arg(out.path())
        .output()
        .expect("runs");
    assert!(run.status.success());
    let listed = String::from_utf8_lossy(&run.stdout);
    assert_eq!(listed.lines().count(), 6, "3 kinds × 2 depths: {listed}");
    assert!(out.path().join("spheroid_lumen_0_16bit.tif").exists());
    assert!(out.path().join("spheroid_lumen_0_16bit_truth.png").exists());
}
