//! spheroseg's files against readers and writers nobody here wrote (the Python venv of
//! `tests/util/python.rs`): tifffile's ImageJ and OME TIFFs give the pixel size they were saved
//! with; Python's csv and openpyxl read the objects and images tables with the same numbers.

use spheroseg::segment::DecodeLimits;
use spheroseg::segment::calibration::PixelSizeSource;
use spheroseg::segment::decode::decode;

use crate::util::python;

/// A fixture segmented with the defaults under `name`, with a job pixel size if given.
fn analyzed(
    fixture: &str,
    name: &str,
    pixel_size_um: Option<f32>,
) -> spheroseg::segment::SegmentResult {
    let bytes = std::fs::read(crate::util::fixture(fixture)).expect("fixture");
    let params = spheroseg::segment::SegmentParams {
        pixel_size_um,
        ..Default::default()
    };
    spheroseg::segment::analyze(
        &bytes,
        name,
        &params,
        &DecodeLimits::default(),
        &std::sync::atomic::AtomicBool::new(false),
        &mut |_| {},
    )
    .expect("analyses")
}

const WRITE_TIFFS: &str = r#"
import sys, numpy as np, tifffile
d = sys.argv[1]
img = np.zeros((48, 64), np.uint16)
tifffile.imwrite(f'{d}/imagej.tif', img, imagej=True, resolution=(1 / 0.65, 1 / 0.65),
                 metadata={'unit': '\\u00B5m'})
tifffile.imwrite(f'{d}/imagej-micron.tif', img, imagej=True, resolution=(1 / 1.3, 1 / 1.3),
                 metadata={'unit': 'micron'})
tifffile.imwrite(f'{d}/ome.tif', img, ome=True, metadata={
    'PhysicalSizeX': 0.325, 'PhysicalSizeXUnit': 'µm',
    'PhysicalSizeY': 0.325, 'PhysicalSizeYUnit': 'µm'})
tifffile.imwrite(f'{d}/ome-nm.tif', img, ome=True, metadata={
    'PhysicalSizeX': 650, 'PhysicalSizeXUnit': 'nm',
    'PhysicalSizeY': 650, 'PhysicalSizeYUnit': 'nm'})
tifffile.imwrite(f'{d}/cm.tif', img, resolution=(20000, 20000), resolutionunit='CENTIMETER')
tifffile.imwrite(f'{d}/inch.tif', img, resolution=(12700, 12700), resolutionunit='INCH')
tifffile.imwrite(f'{d}/plain.tif', img)
"#;

#[test]
fn tifffile_pixel_sizes_are_read_back() {
    let Some(py) = python::readers() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    python::run(&py, WRITE_TIFFS, &[dir.path().as_os_str()]);
    for (file, um, source) in [
        ("imagej.tif", Some(0.65), PixelSizeSource::Imagej),
        ("imagej-micron.tif", Some(1.3), PixelSizeSource::Imagej),
        ("ome.tif", Some(0.325), PixelSizeSource::Ome),
        ("ome-nm.tif", Some(0.65), PixelSizeSource::Ome),
        ("cm.tif", Some(0.5), PixelSizeSource::TiffResolution),
        ("inch.tif", Some(2.0), PixelSizeSource::TiffResolution),
        ("plain.tif", None, PixelSizeSource::Job),
    ] {
        let bytes = std::fs::read(dir.path().join(file)).expect("written");
        let d = decode(&bytes, &DecodeLimits::default()).expect("decodes");
        assert_eq!((d.gray.width, d.gray.height), (64, 48), "{file}");
        match (um, d.pixel_size) {
            (None, got) => assert_eq!(got, None, "{file}"),
            (Some(um), Some(p)) => {
                assert!(
                    (p.um - um).abs() < 1e-6,
                    "{file}: {} µm, expected {um}",
                    p.um
                );
                assert_eq!(p.source, source, "{file}");
            }
            (Some(_), None) => panic!("{file}: no pixel size read"),
        }
    }
}

const READ_TABLES: &str = r#"
import csv, json, sys, openpyxl
d = sys.argv[1]
out = {}
for table in ('objects', 'images'):
    with open(f'{d}/{table}.csv', newline='', encoding='utf-8') as f:
        out[f'csv_{table}'] = list(csv.reader(f))
wb = openpyxl.load_workbook(f'{d}/book.xlsx')
out['sheets'] = wb.sheetnames
for name in wb.sheetnames:
    ws = wb[name]
    out[f'freeze_{name}'] = ws.freeze_panes
    out[f'xlsx_{name}'] = [[c.value for c in row] for row in ws.iter_rows()]
    out[f'types_{name}'] = [[type(c.value).__name__ for c in row] for row in ws.iter_rows()]
print(json.dumps(out))
"#;

/// Python's csv and openpyxl read the two CSVs and the workbook: the same headers, every number
/// in the workbook a number equal to the CSV's, empty where the CSV is, the header row frozen,
/// and the objects' areas equal to the result's.
#[test]
fn csv_and_xlsx_read_back_with_the_same_numbers() {
    use spheroseg::export::table::{IMAGE_COLUMNS, OBJECT_COLUMNS, Table, write_csv};
    use spheroseg::export::xlsx::workbook;

    let Some(py) = python::readers() else { return };
    let lumen = analyzed("spheroid_lumen_8bit.png", "=plate07_lumen.png", Some(0.65));
    let core = analyzed("spheroid_core_8bit.png", "=plate07_core.png", None);
    let results = [("job-1", &lumen), ("job-2", &core)];
    let dir = tempfile::tempdir().expect("tempdir");
    for (table, name) in [(Table::Objects, "objects"), (Table::Images, "images")] {
        let mut out = Vec::new();
        write_csv(&mut out, table, results, true).expect("csv");
        std::fs::write(dir.path().join(format!("{name}.csv")), out).expect("write");
    }
    std::fs::write(
        dir.path().join("book.xlsx"),
        workbook(results).expect("xlsx"),
    )
    .expect("write");
    let v: serde_json::Value =
        serde_json::from_str(&python::run(&py, READ_TABLES, &[dir.path().as_os_str()]))
            .expect("json");
    assert_eq!(v["sheets"], serde_json::json!(["objects", "images"]));
    for (name, columns, rows) in [
        (
            "objects",
            &OBJECT_COLUMNS[..],
            lumen.objects.len() + core.objects.len(),
        ),
        ("images", &IMAGE_COLUMNS[..], 2),
    ] {
        assert_eq!(v[format!("freeze_{name}")], "A2", "{name}: header frozen");
        let csv = v[format!("csv_{name}")].as_array().expect("rows");
        let xlsx = v[format!("xlsx_{name}")].as_array().expect("rows");
        let types = v[format!("types_{name}")].as_array().expect("rows");
        assert_eq!(csv.len(), rows + 1, "{name}");
        assert_eq!(xlsx.len(), rows + 1, "{name}");
        assert_eq!(csv[0], serde_json::json!(columns));
        assert_eq!(xlsx[0], serde_json::json!(columns));
        for (r, (c_row, x_row)) in csv.iter().zip(xlsx).enumerate().skip(1) {
            for (c, (cell, x)) in c_row
                .as_array()
                .expect("cells")
                .iter()
                .zip(x_row.as_array().expect("cells"))
                .enumerate()
            {
                let cell = cell.as_str().expect("csv text");
                let ty = types[r][c].as_str().expect("type");
                let what = format!("{name} row {r} {:?}", columns[c]);
                match cell.parse::<f64>() {
                    Ok(n) if !cell.is_empty() => {
                        assert!(ty == "float" || ty == "int", "{what}: {ty}, not a number");
                        assert_eq!(x.as_f64(), Some(n), "{what}");
                    }
                    _ if cell.is_empty() => assert!(x.is_null(), "{what}: {x}"),
                    _ if cell == "TRUE" || cell == "FALSE" => {
                        assert_eq!(x.as_bool(), Some(cell == "TRUE"), "{what}")
                    }
                    _ => assert_eq!(x.as_str(), Some(cell), "{what}"),
                }
            }
        }
    }
    let objects = v["csv_objects"].as_array().expect("rows");
    let col = |name: &str| {
        OBJECT_COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("column")
    };
    let first = objects[1].as_array().expect("cells");
    assert_eq!(first[col("Image Name")], "'=plate07_lumen.png");
    assert_eq!(first[col("Object")], "1");
    let area: f64 = first[col("Area (px²)")]
        .as_str()
        .expect("text")
        .parse()
        .expect("number");
    assert_eq!(area, lumen.metrics[0].area);
    let um2: f64 = first[col("Area (µm²)")]
        .as_str()
        .expect("text")
        .parse()
        .expect("number");
    assert_eq!(um2, lumen.metrics[0].calibrated.expect("µm").area_um2);
    assert_eq!(first[col("Pixel Size Source")], "job");
    let last = objects.last().expect("row").as_array().expect("cells");
    assert_eq!(
        last[col("Area (µm²)")],
        "",
        "uncalibrated: empty, not invented"
    );
    assert_eq!(last[col("Pixel Size (µm)")], "");
}

const READ_COCO_AND_ROIS: &str = r#"
import contextlib, io, json, sys, numpy as np, roifile
from pycocotools.coco import COCO
d = sys.argv[1]
with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints its progress
    coco = COCO(f'{d}/coco.json')
out = {'annotations': [], 'rois': []}
for aid in sorted(coco.getAnnIds()):
    a = coco.loadAnns(aid)[0]
    img = coco.loadImgs(a['image_id'])[0]
    m = coco.annToMask(a)
    ours = np.fromfile(f'{d}/mask-{aid}.bin', np.uint8).reshape(img['height'], img['width']) != 0
    out['annotations'].append({
        'id': aid, 'image_id': a['image_id'], 'rle': isinstance(a['segmentation'], dict),
        'differ': int((m.astype(bool) != ours).sum()), 'pixels': int(ours.sum()),
        'area': float(a['area']), 'category': coco.loadCats(a['category_id'])[0]['name']})
for roi in roifile.roiread(f'{d}/rois.zip'):
    out['rois'].append({'name': roi.name, 'type': int(roi.roitype),
                        'coordinates': roi.coordinates().tolist()})
print(json.dumps(out))
"#;

/// pycocotools loads the COCO file; its masks of holed objects (RLE) equal ours pixel for pixel
/// and of the others (polygons) differ only on the boundary;
/// roifile reads every ROI of the set back with our coordinates; the label image has one label
/// per object, on exactly that object's pixels.
#[test]
fn coco_rois_and_labels_read_back_as_our_objects() {
    use spheroseg::export::coco::coco_json;
    use spheroseg::export::labels::label_png;
    use spheroseg::export::roi::write_roi_set;
    use spheroseg::morphology::rasterize;

    let Some(py) = python::readers() else { return };
    let lumen = analyzed("spheroid_lumen_8bit.png", "spheroid_lumen_8bit.png", None);
    let core = analyzed("spheroid_core_8bit.png", "spheroid_core_8bit.png", None);
    assert!(
        lumen.objects.iter().any(|o| !o.holes.is_empty()),
        "a hole to check"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let results = [("job-1", &lumen), ("job-2", &core)];
    std::fs::write(dir.path().join("coco.json"), coco_json(results)).expect("write");
    let mut aid = 0;
    for (_, r) in results {
        for o in &r.objects {
            aid += 1;
            let mask = rasterize(std::slice::from_ref(o), r.image.width, r.image.height);
            std::fs::write(dir.path().join(format!("mask-{aid}.bin")), mask).expect("write");
        }
    }
    let zip = write_roi_set(std::io::Cursor::new(Vec::new()), &lumen).expect("rois");
    std::fs::write(dir.path().join("rois.zip"), zip.into_inner()).expect("write");
    let v: serde_json::Value = serde_json::from_str(&python::run(
        &py,
        READ_COCO_AND_ROIS,
        &[dir.path().as_os_str()],
    ))
    .expect("json");

    let anns = v["annotations"].as_array().expect("annotations");
    assert_eq!(anns.len(), aid);
    for a in anns {
        assert_eq!(a["category"], "spheroid");
        assert_eq!(a["area"].as_f64(), a["pixels"].as_f64(), "{a}");
        let (differ, pixels) = (
            a["differ"].as_f64().expect("n"),
            a["pixels"].as_f64().expect("n"),
        );
        if a["rle"] == true {
            assert_eq!(differ, 0.0, "an RLE is our mask pixel for pixel: {a}");
        } else {
            // pycocotools rasterises polygons its own way (5x upsampled edges): a few boundary
            // pixels differ from ours (15 of 10 082 on the core fixture).
            assert!(
                differ <= 0.005 * pixels,
                "polygon mask within 0.5 % of ours: {a}"
            );
        }
    }
    assert!(
        anns.iter().any(|a| a["rle"] == true),
        "the holed object as RLE"
    );
    assert!(
        anns.iter().any(|a| a["rle"] == false),
        "the others as polygons"
    );

    let rois = v["rois"].as_array().expect("rois");
    let rings: Vec<(String, &Vec<spheroseg::outline::Point>)> = lumen
        .objects
        .iter()
        .enumerate()
        .flat_map(|(i, o)| {
            let name = format!("object-{:04}", i + 1);
            std::iter::once((name.clone(), &o.outer)).chain(
                o.holes
                    .iter()
                    .enumerate()
                    .map(move |(h, ring)| (format!("{name}-hole-{}", h + 1), ring)),
            )
        })
        .collect();
    assert_eq!(rois.len(), rings.len());
    for (roi, (name, ring)) in rois.iter().zip(&rings) {
        assert_eq!(roi["name"], name.as_str());
        assert_eq!(roi["type"], 0, "polygon");
        let coords = roi["coordinates"].as_array().expect("coordinates");
        assert_eq!(coords.len(), ring.len(), "{name}");
        for (c, p) in coords.iter().zip(ring.iter()) {
            let (x, y) = (c[0].as_f64().expect("x"), c[1].as_f64().expect("y"));
            assert!(
                (x - p.x).abs() < 1e-3 && (y - p.y).abs() < 1e-3,
                "{name}: {c} vs {p:?}"
            );
        }
    }

    let labels = image::load_from_memory(&label_png(&lumen).expect("labels"))
        .expect("a PNG")
        .to_luma16();
    assert_eq!(labels.dimensions(), (lumen.image.width, lumen.image.height));
    let mut seen = std::collections::BTreeSet::new();
    for (i, o) in lumen.objects.iter().enumerate() {
        let mask = rasterize(
            std::slice::from_ref(o),
            lumen.image.width,
            lumen.image.height,
        );
        for (l, m) in labels.as_raw().iter().zip(&mask) {
            assert_eq!(
                *l == i as u16 + 1,
                *m != 0,
                "label {} is object {}",
                i + 1,
                i + 1
            );
        }
        seen.insert(i + 1);
    }
    let values: std::collections::BTreeSet<usize> = labels
        .as_raw()
        .iter()
        .filter(|&&l| l != 0)
        .map(|&l| usize::from(l))
        .collect();
    assert_eq!(values, seen, "one label per object, nothing else");
}

const READ_ARCHIVE: &str = r#"
import contextlib, io, json, sys, zipfile
import openpyxl
from pycocotools.coco import COCO
with zipfile.ZipFile(sys.argv[1]) as z:
    bad = z.testzip()
    names = z.namelist()
    z.extract('coco.json', sys.argv[2])
    with z.open('objects.csv') as f:
        rows = len(f.read().decode('utf-8').splitlines())
    book = openpyxl.load_workbook(io.BytesIO(z.read('results.xlsx')), read_only=True)
    sheets = {ws.title: sum(1 for _ in ws.iter_rows()) for ws in book.worksheets}
with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO(f'{sys.argv[2]}/coco.json')
print(json.dumps({'bad': bad, 'names': names, 'rows': rows, 'sheets': sheets,
                  'images': len(coco.getImgIds()), 'annotations': len(coco.getAnnIds())}))
"#;

/// Python's zipfile reads the streamed project archive (CRCs checked), openpyxl its workbook and
/// pycocotools its COCO file, each assembled a job at a time.
#[test]
fn the_streamed_archive_reads_back() {
    use spheroseg::export::ExportError;
    use spheroseg::export::archive::{Each, Images, write_project};

    let Some(py) = python::readers() else { return };
    let results: Vec<_> = ["spheroid_lumen_8bit.png", "spheroid_core_8bit.png"]
        .iter()
        .map(|file| analyzed(file, file, None))
        .collect();
    let mut visit = |each: &mut Each<'_>| -> Result<(), ExportError> {
        for (n, r) in results.iter().enumerate() {
            each(n as u64 + 1, &format!("job-{}", n + 1), r)?;
        }
        Ok(())
    };
    let images = Images {
        original: &mut |_| Some(b"original".to_vec()),
        overlay: &mut |_, _| Some(b"overlay".to_vec()),
    };
    let zip = write_project(Vec::new(), &mut visit, true, images).expect("archive");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("screen-1.zip");
    std::fs::write(&path, zip).expect("write");
    let v: serde_json::Value = serde_json::from_str(&python::run(
        &py,
        READ_ARCHIVE,
        &[path.as_os_str(), dir.path().as_os_str()],
    ))
    .expect("json");
    assert_eq!(v["bad"], serde_json::Value::Null, "every CRC matches");
    let objects: usize = results.iter().map(|r| r.objects.len()).sum();
    assert_eq!(v["rows"], objects + 1);
    // The workbook's sheets hold the same rows as the CSVs, each under its header.
    assert_eq!(v["sheets"]["objects"], objects + 1, "{v}");
    assert_eq!(v["sheets"]["images"], 3, "{v}");
    assert_eq!(v["images"], 2);
    assert_eq!(v["annotations"], objects);
    let names = v["names"].as_array().expect("names");
    assert!(names.contains(&serde_json::json!(
        "originals/job-1/spheroid_lumen_8bit.png"
    )));
    for name in [
        "results/job-2/spheroid_core_8bit_rois.zip",
        "results/job-2/spheroid_core_8bit_overlay.png",
    ] {
        assert!(names.contains(&serde_json::json!(name)), "{name}");
    }
}
