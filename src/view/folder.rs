//! What a watched folder reports: its counts, how it learns of new files, and its last scan,
//! for `GET /api/watch`, the status page (which also hears them as `watch_folder` events) and
//! the log.

use serde::Serialize;

use crate::clock::Millis;

/// How a folder learns of new files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The operating system's change notifications, and a full scan every hour.
    #[default]
    Notifications,
    /// A full scan every `poll_interval_ms`.
    Polling,
}

/// One watched folder as the API and the page show it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FolderStatus {
    /// The folder as configured.
    pub path: String,
    pub project: String,
    /// Where its results go.
    pub results: String,
    pub mode: Mode,
    /// Why it polls: `poll = true`, the network file system it is on, or notifications that
    /// failed.
    pub mode_reason: Option<String>,
    /// Files found that the entry takes: taken ones and those still being written.
    pub seen: u64,
    /// Found, not yet complete (size or modification time still changing, or not readable).
    pub waiting: u64,
    /// Taken; their jobs have not finished.
    pub queued: u64,
    /// Their results are written.
    pub done: u64,
    /// A job failed, or the file never decoded: its `.spheroseg-error.txt` says why.
    pub failed: u64,
    /// When the last full scan ended (ms since 1970), how long it took and what it found.
    pub last_scan_at: Option<Millis>,
    pub last_scan_ms: Option<u64>,
    pub last_scan_files: u64,
    /// Why the folder cannot be read or written, while it cannot (a share gone, a full disk).
    pub error: Option<String>,
}
