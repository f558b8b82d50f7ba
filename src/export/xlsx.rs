//! The objects and images tables as an XLSX workbook (`rust_xlsxwriter`): two sheets, numbers
//! as numbers, booleans as booleans, the header row frozen and bold. Text cells pass through
//! [`super::text_cell`] like the CSV's, so a name never runs as a formula.
//!
//! The workbook is built in memory before it is written (the writer's model); a project export
//! of many thousands of images belongs in the streamed CSV.

use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::table::{Cell, IMAGE_COLUMNS, OBJECT_COLUMNS, image_row, object_rows};
use super::text_cell;
use crate::segment::SegmentResult;

fn sheet(
    ws: &mut Worksheet,
    name: &str,
    columns: &[&str],
    rows: impl Iterator<Item = Vec<Cell>>,
) -> Result<(), XlsxError> {
    ws.set_name(name)?;
    let bold = Format::new().set_bold();
    for (c, h) in columns.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, &bold)?;
    }
    ws.set_freeze_panes(1, 0)?;
    for (r, row) in rows.enumerate() {
        let r = r as u32 + 1;
        for (c, cell) in row.iter().enumerate() {
            let c = c as u16;
            match cell {
                Cell::Text(s) => ws.write_string(r, c, text_cell(s)).map(|_| ())?,
                Cell::Number(v) => ws.write_number(r, c, *v).map(|_| ())?,
                Cell::Bool(b) => ws.write_boolean(r, c, *b).map(|_| ())?,
                Cell::Empty => {}
            }
        }
    }
    Ok(())
}

/// The workbook of `results`: sheets `objects` and `images`.
pub fn workbook<'a>(
    results: impl IntoIterator<Item = (&'a str, &'a SegmentResult)> + Clone,
) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    sheet(
        wb.add_worksheet(),
        "objects",
        &OBJECT_COLUMNS,
        results
            .clone()
            .into_iter()
            .flat_map(|(id, r)| object_rows(id, r)),
    )?;
    sheet(
        wb.add_worksheet(),
        "images",
        &IMAGE_COLUMNS,
        results.into_iter().map(|(id, r)| image_row(id, r)),
    )?;
    wb.save_to_buffer()
}
