//! The objects and images tables as an XLSX workbook (`rust_xlsxwriter`): two sheets, numbers
//! as numbers, booleans as booleans, the header row frozen and bold. Text cells pass through
//! [`super::text_cell`] like the CSV's, so a name never runs as a formula.
//!
//! The workbook is filled one result at a time ([`Book`]), its rows written to temp files as
//! they come (constant-memory mode), and assembled when it is finished.

use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::table::{Cell, IMAGE_COLUMNS, OBJECT_COLUMNS, image_row, object_rows};
use super::text_cell;
use crate::segment::SegmentResult;

/// Names the sheet, writes its bold header and freezes it.
fn header(ws: &mut Worksheet, name: &str, columns: &[&str]) -> Result<(), XlsxError> {
    ws.set_name(name)?;
    let bold = Format::new().set_bold();
    for (c, h) in columns.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, &bold)?;
    }
    ws.set_freeze_panes(1, 0)?;
    Ok(())
}

fn write_row(ws: &mut Worksheet, r: u32, row: &[Cell]) -> Result<(), XlsxError> {
    for (c, cell) in row.iter().enumerate() {
        let c = c as u16;
        match cell {
            Cell::Text(s) => ws.write_string(r, c, text_cell(s)).map(|_| ())?,
            Cell::Number(v) => ws.write_number(r, c, *v).map(|_| ())?,
            Cell::Bool(b) => ws.write_boolean(r, c, *b).map(|_| ())?,
            Cell::Empty => {}
        }
    }
    Ok(())
}

/// The workbook, filled a result at a time: the project ZIP visits its results once per sheet
/// and holds one in memory at a time (the workbook's cells are the writer's own model).
pub struct Book {
    wb: Workbook,
    /// The next row of the objects and of the images sheet.
    next: [u32; 2],
}

impl Book {
    pub fn new() -> Result<Book, XlsxError> {
        let mut wb = Workbook::new();
        // Rows go to a temp file as they are written (they come in order), so a workbook of
        // many thousands of images does not grow the server's memory.
        header(
            wb.add_worksheet_with_constant_memory()?,
            "objects",
            &OBJECT_COLUMNS,
        )?;
        header(
            wb.add_worksheet_with_constant_memory()?,
            "images",
            &IMAGE_COLUMNS,
        )?;
        Ok(Book { wb, next: [1, 1] })
    }

    /// Adds the result's objects to the objects sheet.
    pub fn add_objects(&mut self, id: &str, r: &SegmentResult) -> Result<(), XlsxError> {
        let ws = self.wb.worksheet_from_index(0)?;
        for row in object_rows(id, r) {
            write_row(ws, self.next[0], &row)?;
            self.next[0] += 1;
        }
        Ok(())
    }

    /// Adds the result's row to the images sheet.
    pub fn add_image(&mut self, id: &str, r: &SegmentResult) -> Result<(), XlsxError> {
        let ws = self.wb.worksheet_from_index(1)?;
        write_row(ws, self.next[1], &image_row(id, r))?;
        self.next[1] += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<Vec<u8>, XlsxError> {
        self.wb.save_to_buffer()
    }
}

/// The workbook of `results`: sheets `objects` and `images`.
pub fn workbook<'a>(
    results: impl IntoIterator<Item = (&'a str, &'a SegmentResult)> + Clone,
) -> Result<Vec<u8>, XlsxError> {
    let mut book = Book::new()?;
    for (id, r) in results.clone() {
        book.add_objects(id, r)?;
    }
    for (id, r) in results {
        book.add_image(id, r)?;
    }
    book.finish()
}
