//! Results where people look: for each finished file, in the results folder's mirror of the
//! file's sub-folder, `NAME.spheroseg.json`, `NAME_mask.png` and `NAME_overlay.png` (one set per
//! page with `pages = "all"`, named `NAME_p3…`), and its rows in that folder's `results.csv`; or
//! `NAME.spheroseg-error.txt` with the reason it failed or never decoded.
//!
//! Every file is written under a temp name and renamed into place, so nobody sees half of one.
//! `results.csv` is created the same way, with its header; rows are then appended a file's worth
//! at a time in one write, and synced, so a spreadsheet that has it open never sees half a row.
//! Where a file's rows may be there already (a changed file, a restart that finishes what a crash
//! interrupted, a failed job run again), the CSV is rewritten without them and renamed into
//! place instead: the CSV holds each file's current rows exactly once. A CSV whose header is not
//! this entry's (its settings changed) is set aside as `results-{seconds}.csv` first.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::export;
use crate::morphology::Gray;
use crate::queue::JobId;
use crate::segment::SegmentResult;

/// The CSV of every results folder.
pub const CSV_NAME: &str = "results.csv";

/// How an entry's results look.
pub struct Layout {
    /// Where the results of the watched folder's top level go.
    pub root: PathBuf,
    /// Micrometre columns (the entry has a pixel size).
    pub calibrated: bool,
    /// A `Page` column (1-based), for `pages = "all"` and `"best-focus"`.
    pub page_column: bool,
    /// One result set per page, named `NAME_pN`.
    pub per_page: bool,
    /// The metadata expression's group names: the last columns.
    pub metadata: Vec<String>,
}

/// One job of a finished file.
pub enum Part {
    Completed {
        job: JobId,
        page: Option<u32>,
        result: Box<SegmentResult>,
        /// The segmented page's pixels, for the overlay; `None` if they could not be read.
        image: Option<Gray>,
    },
    Failed {
        job: JobId,
        page: Option<u32>,
        reason: String,
    },
}

/// A finished file and what to write for it.
pub struct Finished<'a> {
    /// Below the watched folder.
    pub rel: &'a Path,
    pub parts: Vec<Part>,
    pub metadata: &'a [(String, String)],
    /// Its rows may be in the CSV already: rewrite it without them.
    pub replace: bool,
}

impl Layout {
    /// The folder the results of `rel` go to.
    pub fn folder(&self, rel: &Path) -> PathBuf {
        match rel.parent() {
            Some(p) => self.root.join(p),
            None => self.root.clone(),
        }
    }

    fn header(&self) -> Vec<String> {
        let mut h: Vec<String> = export::csv_header(self.calibrated)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if self.page_column {
            h.push("Page".into());
        }
        h.extend(self.metadata.iter().cloned());
        h
    }

    /// Writes everything for a finished file; `Ok(true)` if a job of it failed. An error (a
    /// full disk, a CSV a spreadsheet holds locked) leaves it to be written again later.
    pub fn write(&self, f: &Finished<'_>) -> std::io::Result<bool> {
        let dir = self.folder(f.rel);
        std::fs::create_dir_all(&dir)?;
        let stem = stem(f.rel);
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        for part in &f.parts {
            match part {
                Part::Completed {
                    job,
                    page,
                    result,
                    image,
                } => {
                    let name = self.name(&stem, *page);
                    write_atomic(
                        &dir.join(format!("{name}.spheroseg.json")),
                        export::result_json(result).as_bytes(),
                    )?;
                    let mask = export::mask_png(result).map_err(std::io::Error::other)?;
                    write_atomic(&dir.join(format!("{name}_mask.png")), &mask)?;
                    if let Some(img) = image {
                        let overlay =
                            export::overlay_png(img, result).map_err(std::io::Error::other)?;
                        write_atomic(&dir.join(format!("{name}_overlay.png")), &overlay)?;
                    }
                    for mut row in export::csv_rows(&job.to_string(), result, self.calibrated) {
                        if self.page_column {
                            row.push(page.map_or(1, |p| p + 1).to_string());
                        }
                        for n in &self.metadata {
                            let v = f.metadata.iter().find(|(k, _)| k == n);
                            row.push(export::text_cell(v.map_or("", |(_, v)| v.as_str())));
                        }
                        rows.push(row);
                    }
                }
                Part::Failed { job, page, reason } => {
                    let which = match page {
                        Some(p) if self.per_page => format!("page {}: ", p + 1),
                        _ => String::new(),
                    };
                    failures.push(format!("{which}job {job} failed: {reason}"));
                }
            }
        }
        let error = dir.join(format!("{stem}.spheroseg-error.txt"));
        if failures.is_empty() {
            remove_if_there(&error)?;
        } else {
            let mut text = failures.join("\n");
            text.push_str(
                "\nRun the job again from the status page, or change the file to have it taken again.\n",
            );
            write_atomic(&error, text.as_bytes())?;
        }
        let name = f.rel.file_name().map(|n| n.to_string_lossy().into_owned());
        let csv = dir.join(CSV_NAME);
        let header = self.header();
        if f.replace {
            rewrite_csv(&csv, &header, name.as_deref().unwrap_or_default(), rows)?;
        } else if !rows.is_empty() {
            append_csv(&csv, &header, rows)?;
        }
        sync_dir(&dir);
        Ok(!failures.is_empty())
    }

    /// Writes the error file of a file that never decoded, and takes away results of an
    /// earlier version of it (`written`).
    pub fn refused(&self, rel: &Path, reason: &str, written: bool) -> std::io::Result<()> {
        let dir = self.folder(rel);
        std::fs::create_dir_all(&dir)?;
        let stem = stem(rel);
        let text = format!(
            "{reason}\nspheroseg takes the file again when it changes (a new copy, or the end of a slow copy).\n"
        );
        write_atomic(
            &dir.join(format!("{stem}.spheroseg-error.txt")),
            text.as_bytes(),
        )?;
        if written {
            let name = rel.file_name().map(|n| n.to_string_lossy().into_owned());
            rewrite_csv(
                &dir.join(CSV_NAME),
                &self.header(),
                name.as_deref().unwrap_or_default(),
                Vec::new(),
            )?;
        }
        sync_dir(&dir);
        Ok(())
    }

    fn name(&self, stem: &str, page: Option<u32>) -> String {
        match page {
            Some(p) if self.per_page => format!("{stem}_p{}", p + 1),
            _ => stem.to_owned(),
        }
    }
}

/// The file's name without its extension: `plate07_B03_day3` for `plate07_B03_day3.tif`.
pub fn stem(rel: &Path) -> String {
    rel.file_stem()
        .map_or_else(|| "image".to_owned(), |s| s.to_string_lossy().into_owned())
}

/// Moves a finished source file to the same place below `done`; an existing file there is
/// replaced.
pub fn move_done(root: &Path, done: &Path, rel: &Path) -> std::io::Result<()> {
    let to = done.join(rel);
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(root.join(rel), &to)
}

/// Writes `bytes` under a unique temp name beside `path`, syncs it and renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.unwrap_or_default(),
        uuid::Uuid::now_v7().simple()
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Syncs a folder so the names renamed into it survive a power cut (not possible, nor needed,
/// on Windows).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

fn encode_rows(header: Option<&[String]>, rows: &[Vec<String>]) -> std::io::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if let Some(h) = header {
        w.write_record(h).map_err(std::io::Error::other)?;
    }
    for r in rows {
        w.write_record(r).map_err(std::io::Error::other)?;
    }
    w.into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// The CSV's header line as written, or `None` if there is no CSV.
fn existing_header(csv: &Path) -> std::io::Result<Option<Vec<String>>> {
    let file = match std::fs::File::open(csv) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(file);
    let first = r
        .records()
        .next()
        .transpose()
        .map_err(std::io::Error::other)?;
    Ok(Some(first.map_or_else(Vec::new, |rec| {
        rec.iter().map(str::to_owned).collect()
    })))
}

/// Sets aside a CSV whose header differs from `header`; whether one is (still) there.
fn current(csv: &Path, header: &[String]) -> std::io::Result<bool> {
    match existing_header(csv)? {
        None => Ok(false),
        Some(h) if h == header => Ok(true),
        Some(_) => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = csv.with_file_name(format!("results-{secs}.csv"));
            tracing::info!(csv = %csv.display(), aside = %aside.display(), "results.csv has other columns than this watch entry writes; set aside");
            std::fs::rename(csv, aside)?;
            Ok(false)
        }
    }
}

fn append_csv(csv: &Path, header: &[String], rows: Vec<Vec<String>>) -> std::io::Result<()> {
    if !current(csv, header)? {
        return write_atomic(csv, &encode_rows(Some(header), &rows)?);
    }
    let bytes = encode_rows(None, &rows)?;
    let mut f = std::fs::OpenOptions::new().append(true).open(csv)?;
    // One write of whole rows, then synced: a reader sees all of them or none.
    f.write_all(&bytes)?;
    f.sync_data()
}

/// Rewrites the CSV without the rows whose Image Name is `name`, with `rows` at the end.
fn rewrite_csv(
    csv: &Path,
    header: &[String],
    name: &str,
    rows: Vec<Vec<String>>,
) -> std::io::Result<()> {
    let mut kept: Vec<Vec<String>> = Vec::new();
    if current(csv, header)? {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_path(csv)
            .map_err(std::io::Error::other)?;
        let cell = export::text_cell(name);
        for rec in r.records() {
            let rec = rec.map_err(std::io::Error::other)?;
            if rec.get(0) != Some(cell.as_str()) {
                kept.push(rec.iter().map(str::to_owned).collect());
            }
        }
    } else if rows.is_empty() {
        return Ok(());
    }
    kept.extend(rows);
    write_atomic(csv, &encode_rows(Some(header), &kept)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(root: &Path) -> Layout {
        Layout {
            root: root.to_owned(),
            calibrated: false,
            page_column: false,
            per_page: false,
            metadata: vec!["well".into()],
        }
    }

    fn row(name: &str, well: &str) -> Vec<String> {
        let mut r: Vec<String> = export::csv_header(false)
            .iter()
            .map(|_| "1".to_owned())
            .collect();
        r[0] = name.into();
        r.push(well.into());
        r
    }

    fn lines(csv: &Path) -> Vec<String> {
        std::fs::read_to_string(csv)
            .expect("csv")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_csv_is_created_with_its_header_appended_and_rewritten_without_old_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = layout(dir.path());
        let csv = dir.path().join(CSV_NAME);
        let header = l.header();
        append_csv(&csv, &header, vec![row("a.tif", "A01")]).expect("create");
        append_csv(
            &csv,
            &header,
            vec![row("b.tif", "B01"), row("b.tif", "B01")],
        )
        .expect("append");
        assert_eq!(lines(&csv).len(), 4);
        assert!(lines(&csv)[0].starts_with("Image Name,"));
        assert!(lines(&csv)[0].ends_with(",well"));
        rewrite_csv(&csv, &header, "b.tif", vec![row("b.tif", "B02")]).expect("rewrite");
        let now = lines(&csv);
        assert_eq!(now.len(), 3, "{now:?}");
        assert!(now[2].ends_with("B02"));
        // Another entry's columns: the old file is set aside, not mixed.
        let other = Layout {
            metadata: vec![],
            ..layout(dir.path())
        };
        append_csv(&csv, &other.header(), vec![]).expect("aside");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("results-")), "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn a_refused_file_gets_its_error_file_in_the_mirrored_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = layout(dir.path());
        l.refused(Path::new("plate1/A01.tif"), "not an image", false)
            .expect("written");
        let text = std::fs::read_to_string(dir.path().join("plate1/A01.spheroseg-error.txt"))
            .expect("error file");
        assert!(text.starts_with("not an image\n"), "{text}");
    }
}
