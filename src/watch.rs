//! Watched folders (`[[watch]]`, `serve --watch DIR`): on a microscope PC the acquisition
//! software writes images into a folder, often on a network share, for hours; spheroseg takes
//! each one by itself once it is complete, exactly once, and writes the results where the person
//! at the microscope looks. Each folder is one task (`watch/folder.rs`) that talks to the queue
//! through [`Service`], as the HTTP handlers do.
//!
//! - learning of files: a scan at every start (files written while spheroseg was down), then
//!   the operating system's notifications (`notify`) with a full scan every hour, or polling
//!   every `poll_interval_ms` on network shares (detected, `watch/share.rs`) or with `poll`;
//! - complete: size and modification time unchanged for `settle_ms`, readable, decodable
//!   (`watch/take.rs`); one that never decodes makes no job but an error file, and is not tried
//!   again until it changes;
//! - exactly once: a ledger record per file, committed with its jobs (`watch/ledger.rs`), and the
//!   queue's dedupe key (content hash, segmenter, parameters, page) on every job;
//! - results beside: `spheroseg-results/` (or `results`), mirroring sub-folders, never watched,
//!   every file written under a temp name and renamed (`watch/results.rs`, `watch/finish.rs`);
//! - what a person sees: per folder counts and the last scan (`view/folder.rs`), on
//!   `GET /api/watch`, the status page and as `watch_folder` events; `spheroseg_watch_*` metrics.
//!
//! Paths are `std::path` throughout; ledger keys and patterns use `/` between the parts of a
//! path below the folder on every system, so a Windows folder (`D:\export`) reads the same.

mod finish;
mod folder;
mod ledger;
pub mod pages;
mod results;
mod scan;
pub mod share;
mod take;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

pub use crate::config::watch::{filter, metadata};
pub use crate::view::folder::{FolderStatus, Mode};
pub use results::CSV_NAME;

use crate::config::{Pages, Results, WatchConfig};
use crate::service::Service;
use folder::{Folder, Shape};

/// The watched folders' status, for the API and the page; cheap to clone.
#[derive(Clone, Default)]
pub struct Watching {
    folders: Arc<[Arc<Mutex<FolderStatus>>]>,
}

impl Watching {
    /// Every folder's status, in the configuration's order.
    pub fn folders(&self) -> Vec<FolderStatus> {
        self.folders
            .iter()
            .map(|s| s.lock().expect("status lock").clone())
            .collect()
    }
}

/// Starts one task per entry of `configs`; each ends when `stop` turns true. An entry whose
/// folder cannot be resolved any more (it went away since the configuration was checked) is
/// logged and left out.
pub fn start(
    service: &Service,
    configs: &[WatchConfig],
    stop: &signal::Receiver<bool>,
) -> (Watching, Vec<JoinHandle<()>>) {
    let mut statuses = Vec::new();
    let mut tasks = Vec::new();
    for cfg in configs {
        let shape = match shape(cfg) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(folder = %cfg.path.display(), error = %e, "cannot watch the folder");
                continue;
            }
        };
        let status = Arc::new(Mutex::new(FolderStatus {
            path: cfg.path.display().to_string(),
            project: cfg.project.clone(),
            results: shape.layout.root.display().to_string(),
            ..FolderStatus::default()
        }));
        statuses.push(Arc::clone(&status));
        let folder = Folder::new(shape, service.clone(), status);
        tasks.push(tokio::spawn(folder.run(stop.clone())));
    }
    (
        Watching {
            folders: statuses.into(),
        },
        tasks,
    )
}

/// The compiled entry: canonical folder, patterns, where its results go.
fn shape(cfg: &WatchConfig) -> Result<Shape, String> {
    let root = cfg.path.canonicalize().map_err(|e| e.to_string())?;
    let filter = filter::Filter::new(&cfg.include, &cfg.exclude)?;
    let metadata = cfg
        .metadata
        .as_deref()
        .map(metadata::Metadata::new)
        .transpose()?;
    let results_root = match &cfg.results {
        Results::Beside => root.join(crate::config::RESULTS_DIR),
        Results::Dir(d) => root.join(d),
    };
    let skip: Vec<PathBuf> = vec![results_root.clone(), root.join(crate::config::DONE_DIR)];
    let layout = results::Layout {
        root: results_root,
        calibrated: cfg.params.pixel_size_um.is_some(),
        page_column: cfg.pages != Pages::First,
        per_page: cfg.pages == Pages::All,
        metadata: metadata
            .as_ref()
            .map(|m| m.names().to_vec())
            .unwrap_or_default(),
    };
    Ok(Shape {
        cfg: cfg.clone(),
        root,
        filter,
        metadata,
        skip,
        layout,
    })
}
