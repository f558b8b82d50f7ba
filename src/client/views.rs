//! The parts of the server's answers that the CLI prints or acts on, as typed structs. Fields the
//! CLI does not read are ignored, so a newer server's additions do not break an older client;
//! `--json` prints the answer as the server sent it instead.

use serde::Deserialize;

use crate::queue::StateCounts;

/// A job, as `GET /api/jobs/{id}`, the listing and the job events show it.
#[derive(Clone, Debug, Deserialize)]
pub struct JobRow {
    pub id: String,
    pub state: String,
    pub priority: u8,
    #[serde(default)]
    pub progress: u8,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub max_attempts: u32,
    pub project: Option<String>,
    pub image: ImageRow,
    #[serde(default)]
    pub segmenter: String,
    pub error: Option<ErrorRow>,
    pub objects: Option<u32>,
    #[serde(default)]
    pub created_at: u64,
    pub finished_at: Option<u64>,
}

impl JobRow {
    /// Whether the job has reached an end: completed, failed or cancelled.
    pub fn finished(&self) -> bool {
        matches!(self.state.as_str(), "completed" | "failed" | "cancelled")
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct ImageRow {
    pub name: String,
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ErrorRow {
    pub code: String,
    pub message: String,
}

/// One page of `GET /api/jobs`.
#[derive(Clone, Debug, Deserialize)]
pub struct JobPage {
    pub jobs: Vec<JobRow>,
    pub next: Option<String>,
}

/// `GET /api/queue`.
#[derive(Clone, Debug, Deserialize)]
pub struct QueueOverview {
    pub counts: StateCounts,
    pub oldest_queued_ms: Option<u64>,
    pub paused: bool,
    pub completed: Throughput,
    pub failed: Throughput,
    #[serde(default)]
    pub workers_busy: usize,
    #[serde(default)]
    pub workers_total: usize,
    #[serde(default)]
    pub database_bytes: u64,
}

/// Jobs finished over the last 1, 5 and 15 minutes.
#[derive(Clone, Copy, Debug, Deserialize)]
pub struct Throughput {
    pub last_1m: u64,
    pub last_5m: u64,
    pub last_15m: u64,
}

/// One entry of `GET /api/ml`.
#[derive(Clone, Debug, Deserialize)]
pub struct MlRow {
    pub name: String,
    #[serde(default)]
    pub target: String,
    pub breaker: BreakerRow,
}

#[derive(Clone, Debug, Deserialize)]
pub struct BreakerRow {
    pub state: String,
}

/// The disk part of `GET /api/system`.
#[derive(Clone, Debug, Deserialize)]
pub struct Disk {
    pub disk_total_bytes: u64,
    pub disk_available_bytes: u64,
    pub disk_mount: Option<String>,
    pub disk_fs_type: Option<String>,
    #[serde(default)]
    pub disk_low: bool,
}

/// A long-poll answer of `GET /api/events`.
#[derive(Clone, Debug, Deserialize)]
pub struct EventBatch {
    pub resync: bool,
    pub last_event_id: u64,
    pub events: Vec<EventRow>,
}

/// One event: its type and the fields the CLI follows jobs by.
#[derive(Clone, Debug, Deserialize)]
pub struct EventRow {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub job_id: Option<String>,
    pub progress: Option<u8>,
    pub job: Option<JobRow>,
    pub message: Option<String>,
    #[serde(default)]
    pub job_ids: Vec<String>,
}

/// What `GET /api/jobs/{id}/result` says, summed over its objects.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ResultSummary {
    #[serde(default)]
    pub metrics: Vec<ObjectArea>,
}

/// One object's area, in pixels and, where the pixel size is known, in µm².
#[derive(Clone, Debug, Deserialize)]
pub struct ObjectArea {
    pub area: f64,
    pub calibrated: Option<CalibratedArea>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CalibratedArea {
    pub area_um2: f64,
}

impl ResultSummary {
    /// The total area in px², and in µm² when every object has it.
    pub fn area(&self) -> (f64, Option<f64>) {
        let px = self.metrics.iter().map(|m| m.area).sum();
        let um: Option<f64> = self
            .metrics
            .iter()
            .map(|m| m.calibrated.as_ref().map(|c| c.area_um2))
            .sum();
        (px, um.filter(|_| !self.metrics.is_empty()))
    }
}
