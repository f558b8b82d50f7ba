//! The two tables every spreadsheet export holds, as typed cells: **objects** (one row per object,
//! every metric the result JSON has, units in the headers) and **images** (one row per image);
//! both say whether the outlines were corrected by hand (`Corrected`).
//! CSV and XLSX write the same cells, so their numbers agree.
//!
//! Invariants: the columns do not depend on the data (an uncalibrated image leaves its µm cells
//! empty, it does not drop the columns), a row has exactly as many cells as the header, numbers
//! stay numbers (never formatted text), and an image without objects has no object rows.

use std::io::Write;

use super::{ExportError, text_cell};
use crate::segment::SegmentResult;

/// One cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Text(String),
    Number(f64),
    Bool(bool),
    Empty,
}

impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::Number(v)
    }
}

impl From<Option<f64>> for Cell {
    fn from(v: Option<f64>) -> Self {
        v.map_or(Cell::Empty, Cell::Number)
    }
}

/// The objects table's header.
pub const OBJECT_COLUMNS: [&str; 47] = [
    "Image Name",
    "Job ID",
    "Plate",
    "Well",
    "Metadata",
    "Object",
    "Area (px²)",
    "Area (µm²)",
    "Perimeter (px)",
    "Perimeter (µm)",
    "Circularity",
    "Equivalent Diameter (px)",
    "Equivalent Diameter (µm)",
    "Convex Area (px²)",
    "Convex Area (µm²)",
    "Convex Perimeter (px)",
    "Convex Perimeter (µm)",
    "Solidity",
    "Convexity",
    "Sphericity",
    "Compactness",
    "Feret Max (px)",
    "Feret Max (µm)",
    "Feret Min (px)",
    "Feret Min (µm)",
    "Aspect Ratio",
    "Centroid X (px)",
    "Centroid Y (px)",
    "BBox X (px)",
    "BBox Y (px)",
    "BBox Width (px)",
    "BBox Height (px)",
    "Ellipse Major (px)",
    "Ellipse Major (µm)",
    "Ellipse Minor (px)",
    "Ellipse Minor (µm)",
    "Ellipse Angle (°)",
    "Holes",
    "Mean Intensity",
    "Std Intensity",
    "Touches Border",
    "Split",
    "Low Contrast",
    "Pixel Size (µm)",
    "Pixel Size Source",
    "Corrected",
    "Created At",
];

/// The images table's header.
pub const IMAGE_COLUMNS: [&str; 22] = [
    "Image Name",
    "Job ID",
    "Plate",
    "Well",
    "Metadata",
    "Width (px)",
    "Height (px)",
    "Format",
    "Bit Depth",
    "Pages",
    "Pixel Size (µm)",
    "Pixel Size Source",
    "Objects",
    "Mean Area (px²)",
    "Median Area (px²)",
    "Mean Area (µm²)",
    "Median Area (µm²)",
    "Segmenter",
    "Parameters",
    "Segmenter Decisions",
    "Corrected",
    "Created At",
];

/// One row per object of `r`; `id` is the job id (the file name offline).
pub fn object_rows(id: &str, r: &SegmentResult) -> Vec<Vec<Cell>> {
    let text = |s: &str| Cell::Text(s.to_owned());
    let (pixel, source) = pixel_cells(r);
    let [plate, well, metadata] = metadata_cells(&r.metadata);
    r.metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let c = m.calibrated;
            let um = |f: fn(&crate::morphology::Calibrated) -> f64| Cell::from(c.as_ref().map(f));
            let flags = r.flags_of(i);
            vec![
                text(&r.image.name),
                text(id),
                plate.clone(),
                well.clone(),
                metadata.clone(),
                Cell::Number((i + 1) as f64),
                m.area.into(),
                um(|c| c.area_um2),
                m.perimeter.into(),
                um(|c| c.perimeter_um),
                m.circularity.into(),
                m.equivalent_diameter.into(),
                um(|c| c.equivalent_diameter_um),
                m.convex_area.into(),
                um(|c| c.convex_area_um2),
                m.convex_perimeter.into(),
                um(|c| c.convex_perimeter_um),
                m.solidity.into(),
                m.convexity.into(),
                m.sphericity.into(),
                m.compactness.into(),
                m.feret_max.into(),
                um(|c| c.feret_max_um),
                m.feret_min.into(),
                um(|c| c.feret_min_um),
                m.aspect_ratio.into(),
                m.centroid.x.into(),
                m.centroid.y.into(),
                m.bounding_box.x.into(),
                m.bounding_box.y.into(),
                m.bounding_box.width.into(),
                m.bounding_box.height.into(),
                m.ellipse.major.into(),
                um(|c| c.ellipse_major_um),
                m.ellipse.minor.into(),
                um(|c| c.ellipse_minor_um),
                m.ellipse.angle_deg.into(),
                Cell::Number(m.holes as f64),
                m.mean_intensity.into(),
                m.std_intensity.into(),
                Cell::Bool(flags.touches_border),
                Cell::Bool(flags.split),
                Cell::Bool(flags.low_contrast),
                pixel.clone(),
                source.clone(),
                Cell::Bool(r.corrected),
                text(&r.created_at),
            ]
        })
        .collect()
}

/// The plate, the well and every metadata pair (`key=value; ...`) of a result, empty when its
/// job had none. The well is the `well` value, else `row` and `column` (or `col`) joined the way
/// plate readers name wells (`B` and `3` are `B03`).
pub fn metadata_cells(metadata: &[(String, String)]) -> [Cell; 3] {
    let get = |names: &[&str]| {
        metadata
            .iter()
            .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let cell = |v: Option<String>| v.map_or(Cell::Empty, Cell::Text);
    let well = get(&["well"]).map(str::to_owned).or_else(|| {
        let (row, col) = (get(&["row"])?, get(&["column", "col"])?);
        Some(match col.parse::<u32>() {
            Ok(n) => format!("{}{n:02}", row.to_ascii_uppercase()),
            Err(_) => format!("{row}{col}"),
        })
    });
    let all = metadata
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    [
        cell(get(&["plate"]).map(str::to_owned)),
        cell(well),
        cell((!all.is_empty()).then_some(all)),
    ]
}

fn pixel_cells(r: &SegmentResult) -> (Cell, Cell) {
    match r.pixel_size {
        Some(p) => (Cell::Number(p.um), Cell::Text(p.source.as_str().to_owned())),
        None => (Cell::Empty, Cell::Empty),
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(s[n / 2]),
        _ => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

/// The row of `r` in the images table.
pub fn image_row(id: &str, r: &SegmentResult) -> Vec<Cell> {
    let text = |s: &str| Cell::Text(s.to_owned());
    let (pixel, source) = pixel_cells(r);
    let px: Vec<f64> = r.metrics.iter().map(|m| m.area).collect();
    let um: Vec<f64> = r
        .metrics
        .iter()
        .filter_map(|m| m.calibrated.map(|c| c.area_um2))
        .collect();
    let json = |v: String| Cell::Text(v);
    let [plate, well, metadata] = metadata_cells(&r.metadata);
    vec![
        text(&r.image.name),
        text(id),
        plate,
        well,
        metadata,
        Cell::Number(f64::from(r.image.width)),
        Cell::Number(f64::from(r.image.height)),
        text(&r.image.format),
        Cell::Number(f64::from(r.image.bit_depth)),
        Cell::Number(f64::from(r.image.pages)),
        pixel,
        source,
        Cell::Number(r.metrics.len() as f64),
        mean(&px).into(),
        median(&px).into(),
        mean(&um).into(),
        median(&um).into(),
        text(&r.segmenter),
        json(serde_json::to_string(&r.params).expect("parameters serialise")),
        match &r.decisions {
            Some(d) => json(serde_json::to_string(d).expect("decisions serialise")),
            None => Cell::Empty,
        },
        Cell::Bool(r.corrected),
        text(&r.created_at),
    ]
}

/// Which table, and for CSV which column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// One row per object, every metric, units in the headers.
    Objects,
    /// One row per image.
    Images,
    /// The replaced design's 16 columns, for its users' scripts ([`super::write_csv`]).
    Legacy,
}

impl std::str::FromStr for Table {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "objects" => Ok(Table::Objects),
            "images" => Ok(Table::Images),
            "legacy" => Ok(Table::Legacy),
            other => Err(format!("{other:?}: expected objects, images or legacy")),
        }
    }
}

impl Table {
    pub const NAMES: [&str; 3] = ["objects", "images", "legacy"];
}

fn csv_field(c: &Cell) -> String {
    match c {
        Cell::Text(s) => text_cell(s),
        // Shortest text that reads back as the same f64: the XLSX holds the same number.
        Cell::Number(v) => format!("{v}"),
        Cell::Bool(true) => "TRUE".into(),
        Cell::Bool(false) => "FALSE".into(),
        Cell::Empty => String::new(),
    }
}

/// Writes `table` of `results` as CSV, with the header when `header` is set (a streamed export
/// writes its rows in parts).
pub fn write_csv<'a, W: Write>(
    out: W,
    table: Table,
    results: impl IntoIterator<Item = (&'a str, &'a SegmentResult)>,
    header: bool,
) -> Result<(), ExportError> {
    let columns: &[&str] = match table {
        Table::Objects => &OBJECT_COLUMNS,
        Table::Images => &IMAGE_COLUMNS,
        // Every row with the calibrated columns: a streamed export cannot know ahead whether a
        // later page is calibrated.
        Table::Legacy => return super::write_csv_part(out, results, true, header),
    };
    let mut w = csv::Writer::from_writer(out);
    if header {
        w.write_record(columns)?;
    }
    for (id, r) in results {
        let rows = match table {
            Table::Images => vec![image_row(id, r)],
            _ => object_rows(id, r),
        };
        for row in rows {
            debug_assert_eq!(row.len(), columns.len());
            w.write_record(row.iter().map(csv_field))?;
        }
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plate_and_well_from_metadata() {
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
        };
        let text = |s: &str| Cell::Text(s.into());
        assert_eq!(
            metadata_cells(&pairs(&[("Plate", "P07"), ("well", "B03")])),
            [text("P07"), text("B03"), text("Plate=P07; well=B03")]
        );
        assert_eq!(
            metadata_cells(&pairs(&[("plate", "7"), ("row", "b"), ("col", "3")]))[1],
            text("B03")
        );
        assert_eq!(
            metadata_cells(&pairs(&[("row", "B"), ("column", "x")]))[1],
            text("Bx")
        );
        assert_eq!(metadata_cells(&[]), [Cell::Empty, Cell::Empty, Cell::Empty]);
    }

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(mean(&[1.0, 2.0]), Some(1.5));
    }
}
