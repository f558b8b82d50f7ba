//! spheroseg's files against readers and writers nobody here wrote (the Python venv of
//! `tests/util/python.rs`): tifffile's ImageJ and OME TIFFs give the pixel size they were saved
//! with.

use spheroseg::segment::DecodeLimits;
use spheroseg::segment::calibration::PixelSizeSource;
use spheroseg::segment::decode::decode;

use crate::util::python;

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
