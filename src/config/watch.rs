//! `[[watch]]` entries: folders whose images spheroseg takes by itself (see `watch.rs`), from
//! `spheroseg.toml` and from `serve --watch DIR` (an entry with the defaults). The entries of
//! every layer add up instead of replacing each other. Validation checks each entry on its own
//! (the folder exists, patterns and the metadata expression compile, the segmenter can run it)
//! and the entries against each other: no folder watched twice or inside another recursive one,
//! and no results or `done` folder where an entry would take its files as new images.
//!
//! The compiled forms of an entry's patterns live here too (`filter`, `metadata`): validation
//! compiles them, and the folder's task (`watch/`) matches with them.

pub mod filter;
pub mod metadata;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::queue::Priority;
use crate::segment::{SegmentParams, SegmenterId};
use filter::{DEFAULT_EXCLUDE, DEFAULT_INCLUDE, Filter};
use metadata::Metadata;

/// The folder a `beside` entry writes its results to, inside the watched folder.
pub const RESULTS_DIR: &str = "spheroseg-results";
/// The folder `after = "move"` moves finished source files to, inside the watched folder.
pub const DONE_DIR: &str = "done";

/// One `[[watch]]` entry as written; only `path` is required.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchLayer {
    pub path: Option<PathBuf>,
    pub recursive: Option<bool>,
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    pub project: Option<String>,
    pub priority: Option<i64>,
    pub segmenter: Option<SegmenterId>,
    pub params: Option<SegmentParams>,
    pub pixel_size_um: Option<f32>,
    pub results: Option<String>,
    pub after: Option<After>,
    pub poll: Option<bool>,
    pub poll_interval_ms: Option<u64>,
    pub settle_ms: Option<u64>,
    pub metadata: Option<String>,
    pub pages: Option<Pages>,
    /// Where the entry came from (the file, or `--watch`); set by the layering.
    #[serde(skip)]
    pub origin: String,
}

impl WatchLayer {
    /// The entry `serve --watch DIR` adds: `dir` with every default.
    pub fn folder(dir: PathBuf) -> Self {
        WatchLayer {
            path: Some(dir),
            origin: "command-line flag --watch".into(),
            ..WatchLayer::default()
        }
    }
}

/// What happens to a source file once its job is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum After {
    /// It stays where it is.
    #[default]
    Keep,
    /// It moves to `done/` inside the watched folder (its sub-folders mirrored), once its
    /// results are written.
    Move,
}

/// Which pages of a multi-page TIFF (a z-stack, a time-lapse) are segmented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pages {
    #[default]
    First,
    /// One job and one result per page.
    All,
    /// The page with the highest variance of the Laplacian (the sharpest).
    BestFocus,
}

/// Where an entry's results go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Results {
    /// `spheroseg-results/` inside the watched folder, mirroring its sub-folders.
    Beside,
    /// This folder (absolute, or relative to the watched folder), mirroring the sub-folders.
    Dir(PathBuf),
}

impl Serialize for Results {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Results::Beside => s.serialize_str("beside"),
            Results::Dir(p) => s.serialize_str(&p.to_string_lossy()),
        }
    }
}

/// A validated `[[watch]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WatchConfig {
    /// The folder as configured (shown to people, and in `config show`).
    pub path: PathBuf,
    /// Sub-folders too.
    pub recursive: bool,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// The project of its jobs; the folder's name by default.
    pub project: String,
    pub priority: u8,
    pub segmenter: SegmenterId,
    pub params: SegmentParams,
    pub results: Results,
    pub after: After,
    /// Poll instead of asking the operating system for notifications (network shares are
    /// detected and polled without it where the system says what they are).
    pub poll: bool,
    #[serde(rename = "poll_interval_ms", serialize_with = "super::unit::ms")]
    pub poll_interval: Duration,
    /// How long a file's size and modification time must stay the same before it is taken.
    #[serde(rename = "settle_ms", serialize_with = "super::unit::ms")]
    pub settle: Duration,
    /// A regular expression with named groups, searched in the path below the folder; each
    /// group becomes a CSV column and a value of the job's metadata.
    pub metadata: Option<String>,
    pub pages: Pages,
}

impl WatchConfig {
    /// The folder the results of the file at `rel` (below the watched folder) go to.
    pub fn results_root(&self) -> PathBuf {
        match &self.results {
            Results::Beside => self.path.join(RESULTS_DIR),
            Results::Dir(d) => self.path.join(d),
        }
    }

    /// Where `after = "move"` puts finished files.
    pub fn done_root(&self) -> PathBuf {
        self.path.join(DONE_DIR)
    }
}

/// What the entries are checked against: the segmenters this configuration can run.
pub(super) struct Context<'a> {
    pub data_dir: &'a Path,
    pub default_segmenter: &'a SegmenterId,
    /// Checks a segmenter name as the top-level `segmenter` is checked.
    pub check_segmenter: &'a dyn Fn(&SegmenterId) -> Result<(), String>,
}

/// Validates every entry, then the entries against each other.
pub(super) fn validate(
    layers: Vec<WatchLayer>,
    cx: &Context<'_>,
) -> Result<Vec<WatchConfig>, ConfigError> {
    let mut out: Vec<(WatchConfig, PathBuf, String)> = Vec::new();
    for (i, l) in layers.into_iter().enumerate() {
        let origin = l.origin.clone();
        let err = |field: &str, message: String| ConfigError {
            key: format!("watch[{i}].{field}"),
            origin: origin.clone(),
            message,
        };
        let (w, canonical) = entry(l, cx).map_err(|(f, m)| err(f, m))?;
        for (j, (other, other_canonical, _)) in out.iter().enumerate() {
            if let Some(m) = clash(&w, &canonical, j, other, other_canonical) {
                return Err(err(m.0, m.1));
            }
        }
        out.push((w, canonical, origin));
    }
    Ok(out.into_iter().map(|(w, _, _)| w).collect())
}

type FieldError = (&'static str, String);

fn entry(l: WatchLayer, cx: &Context<'_>) -> Result<(WatchConfig, PathBuf), FieldError> {
    let path = l.path.ok_or((
        "path",
        "every [[watch]] entry needs the folder to watch".into(),
    ))?;
    let canonical = match path.canonicalize() {
        Ok(c) if c.is_dir() => c,
        Ok(_) => return Err(("path", format!("{} is not a folder", path.display()))),
        Err(e) => {
            return Err((
                "path",
                format!(
                    "{} cannot be watched: {e}; create it, or mount the share first",
                    path.display()
                ),
            ));
        }
    };
    let recursive = l.recursive.unwrap_or(true);
    let data_dir = absolute(cx.data_dir);
    if would_take(&canonical, recursive, &data_dir) {
        return Err((
            "path",
            format!(
                "{} holds the data directory {}, whose previews would be taken as new images; move one of them",
                path.display(),
                cx.data_dir.display()
            ),
        ));
    }
    let include = l
        .include
        .unwrap_or_else(|| DEFAULT_INCLUDE.map(String::from).to_vec());
    let exclude = l
        .exclude
        .unwrap_or_else(|| DEFAULT_EXCLUDE.map(String::from).to_vec());
    if include.is_empty() {
        return Err(("include", "an empty list takes no file at all".into()));
    }
    Filter::new(&include, &exclude).map_err(|e| {
        let field = if e.starts_with("include") {
            "include"
        } else {
            "exclude"
        };
        (
            field,
            e.split_once(": ").map_or(e.clone(), |(_, m)| m.into()),
        )
    })?;
    if let Some(m) = &l.metadata {
        Metadata::new(m).map_err(|e| ("metadata", e))?;
    }
    let raw_priority = l.priority.unwrap_or(5);
    let priority = Priority::new(raw_priority)
        .ok_or((
            "priority",
            format!("{raw_priority} is out of range: use 1 (lowest) to 10 (highest)"),
        ))?
        .get();
    let segmenter = l.segmenter.unwrap_or_else(|| cx.default_segmenter.clone());
    (cx.check_segmenter)(&segmenter).map_err(|e| ("segmenter", e))?;
    let pages = l.pages.unwrap_or_default();
    if pages != Pages::First && !segmenter.is_builtin() {
        return Err((
            "pages",
            format!("{pages:?} pages need the builtin segmenter; {segmenter} gets the whole file")
                .to_lowercase(),
        ));
    }
    let mut params = l.params.unwrap_or_default();
    if let Some(px) = l.pixel_size_um {
        params.pixel_size_um = Some(px);
    }
    params.validate().map_err(|e| {
        let field = if e.field == "pixel_size_um" {
            "pixel_size_um"
        } else {
            "params"
        };
        (field, format!("{}: {}", e.field, e.reason))
    })?;
    let results = match l.results.as_deref().map(str::trim) {
        None | Some("beside") => Results::Beside,
        Some("") => return Err(("results", "use \"beside\" or a folder".into())),
        Some(p) => Results::Dir(PathBuf::from(p)),
    };
    let project = match l.project {
        Some(p) if p.trim().is_empty() => {
            return Err(("project", "a project needs a name".into()));
        }
        Some(p) => p,
        None => canonical
            .file_name()
            .map_or_else(|| "watch".to_owned(), |n| n.to_string_lossy().into_owned()),
    };
    let ms = |field: &'static str, v: Option<u64>, default: u64, lo: u64, hi: u64| {
        let v = v.unwrap_or(default);
        if (lo..=hi).contains(&v) {
            Ok(Duration::from_millis(v))
        } else {
            Err((field, format!("{v} is out of range: use {lo} to {hi} ms")))
        }
    };
    let w = WatchConfig {
        recursive,
        include,
        exclude,
        project,
        priority,
        segmenter,
        params,
        results,
        after: l.after.unwrap_or_default(),
        poll: l.poll.unwrap_or(false),
        poll_interval: ms(
            "poll_interval_ms",
            l.poll_interval_ms,
            5_000,
            100,
            3_600_000,
        )?,
        settle: ms("settle_ms", l.settle_ms, 2_000, 100, 600_000)?,
        metadata: l.metadata,
        pages,
        path,
    };
    if let Results::Dir(_) = &w.results {
        let root = absolute(&w.results_root());
        if root == canonical || canonical.starts_with(&root) {
            return Err((
                "results",
                format!(
                    "{} holds the watched folder; put the results elsewhere",
                    w.results_root().display()
                ),
            ));
        }
    }
    Ok((w, canonical))
}

/// Whether an entry watching `root` (recursively or not) would take the files of `folder`.
fn would_take(root: &Path, recursive: bool, folder: &Path) -> bool {
    folder == root || (recursive && folder.starts_with(root))
}

/// Why entry `w` (at `canonical`) cannot sit beside entry `j`, if it cannot: the same folder
/// twice, one inside the other's recursive watch, or one's results or `done` folder where the
/// other would take its files as new images.
fn clash(
    w: &WatchConfig,
    canonical: &Path,
    j: usize,
    other: &WatchConfig,
    other_canonical: &Path,
) -> Option<FieldError> {
    if canonical == other_canonical {
        return Some((
            "path",
            format!("{} is watched twice (also by watch[{j}])", w.path.display()),
        ));
    }
    if would_take(other_canonical, other.recursive, canonical)
        || would_take(canonical, w.recursive, other_canonical)
    {
        return Some((
            "path",
            format!(
                "{} and watch[{j}] ({}) lie inside each other, so their files would be taken twice; watch one of them",
                w.path.display(),
                other.path.display()
            ),
        ));
    }
    if let Some(out) = outputs(w)
        .into_iter()
        .find(|o| would_take(other_canonical, other.recursive, o))
    {
        return Some((
            "results",
            format!(
                "{} lies inside the folder watch[{j}] watches ({}), which would take the results as new images; put them elsewhere",
                out.display(),
                other.path.display()
            ),
        ));
    }
    if let Some(out) = outputs(other)
        .into_iter()
        .find(|o| would_take(canonical, w.recursive, o))
    {
        return Some((
            "path",
            format!(
                "{} holds {}, where watch[{j}] writes its results, and would take them as new images",
                w.path.display(),
                out.display()
            ),
        ));
    }
    None
}

/// The folders an entry writes to, made absolute.
fn outputs(w: &WatchConfig) -> Vec<PathBuf> {
    vec![absolute(&w.results_root()), absolute(&w.done_root())]
}

/// `p` made absolute and canonical as far as it exists (results folders may not exist yet).
fn absolute(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => absolute(parent).join(name),
        _ => std::env::current_dir().map_or_else(|_| p.to_owned(), |d| d.join(p)),
    }
}
