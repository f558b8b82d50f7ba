//! A client of `/ws` that records each job's events in the order they arrive and, for each one,
//! what `GET /api/jobs/{id}` said at that moment; and the checks made on that record: the API
//! never showed a state older than the event, and progress falls inside an attempt.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use futures_util::StreamExt;
use serde_json::Value;
use spheroseg::http::AppState;

use super::api::get_json;

/// One event of one job as a client saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The type; a requeue with its reason (`job_requeued:orphan`), a retry by a person
    /// (`job_queued:retried`), a hold (`job_retrying:held`).
    pub label: String,
    /// The job's state and `updated_at` as the event carries them (`None` for `jobs_deleted`).
    pub state: Option<String>,
    pub updated_at: Option<u64>,
    /// The error code a `job_retrying` or `job_failed` carries.
    pub code: Option<String>,
    /// What the API said when the event arrived: status, state, `updated_at`. `None` for progress
    /// and while reading is off.
    pub api: Option<(StatusCode, Option<String>, Option<u64>)>,
}

#[derive(Default)]
struct Log {
    jobs: HashMap<String, Vec<Seen>>,
    /// Each `jobs_deleted` event: its ids and its count.
    deleted: Vec<(Vec<String>, u64)>,
}

/// The recording client; its reader task ends with [`Recorder::close`].
pub struct Recorder {
    log: Arc<Mutex<Log>>,
    reading: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

/// The label of a job event (see [`Seen::label`]).
fn label(e: &Value) -> String {
    let kind = e["type"].as_str().unwrap_or_default();
    match e["reason"].as_str() {
        Some(reason) => format!("{kind}:{reason}"),
        None if e["retried"] == true => format!("{kind}:retried"),
        None if e["held"] == true => format!("{kind}:held"),
        None => kind.to_owned(),
    }
}

async fn observe(state: &AppState, id: &str) -> (StatusCode, Option<String>, Option<u64>) {
    let (s, now) = get_json(state, &format!("/api/jobs/{id}")).await;
    (
        s,
        now["state"].as_str().map(str::to_owned),
        now["updated_at"].as_u64(),
    )
}

impl Recorder {
    /// Connects to `ws://{addr}/ws` (with `?since=` when given) and records until closed; reads
    /// the API through `state`.
    pub async fn connect(state: AppState, addr: SocketAddr, since: Option<u64>) -> Recorder {
        let since = since.map(|s| format!("?since={s}")).unwrap_or_default();
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws{since}"))
            .await
            .expect("connect");
        let (log, reading) = (
            Arc::<Mutex<Log>>::default(),
            Arc::new(AtomicBool::new(true)),
        );
        let task = {
            let (log, reading) = (Arc::clone(&log), Arc::clone(&reading));
            tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    let Ok(text) = m.to_text() else { continue };
                    let Ok(e) = serde_json::from_str::<Value>(text) else {
                        continue;
                    };
                    let read = reading.load(Ordering::SeqCst);
                    if e["type"] == "jobs_deleted" {
                        let ids: Vec<String> = e["job_ids"]
                            .as_array()
                            .expect("ids")
                            .iter()
                            .map(|id| id.as_str().expect("id").to_owned())
                            .collect();
                        for id in &ids {
                            let api = if read {
                                Some(observe(&state, id).await)
                            } else {
                                None
                            };
                            let seen = Seen {
                                label: "jobs_deleted".into(),
                                state: None,
                                updated_at: None,
                                code: None,
                                api,
                            };
                            let mut log = log.lock().expect("log");
                            log.jobs.entry(id.clone()).or_default().push(seen);
                        }
                        let count = e["count"].as_u64().expect("count");
                        log.lock().expect("log").deleted.push((ids, count));
                        continue;
                    }
                    let Some(id) = e["job_id"].as_str() else {
                        continue;
                    };
                    let api = if read && e["type"] != "job_progress" {
                        Some(observe(&state, id).await)
                    } else {
                        None
                    };
                    let seen = Seen {
                        label: label(&e),
                        state: e["job"]["state"].as_str().map(str::to_owned),
                        updated_at: e["job"]["updated_at"].as_u64(),
                        code: e["code"].as_str().map(str::to_owned),
                        api,
                    };
                    let mut log = log.lock().expect("log");
                    log.jobs.entry(id.to_owned()).or_default().push(seen);
                }
            })
        };
        Recorder { log, reading, task }
    }

    /// Stops asking the API at each event (before the app closes its queue); events are still
    /// recorded.
    pub fn stop_reading(&self) {
        self.reading.store(false, Ordering::SeqCst);
    }

    /// Every event of `id` so far, progress included.
    pub fn seen(&self, id: &str) -> Vec<Seen> {
        let log = self.log.lock().expect("log");
        log.jobs.get(id).cloned().unwrap_or_default()
    }

    /// The labels of `id`'s events so far, without progress.
    pub fn labels(&self, id: &str) -> Vec<String> {
        self.seen(id)
            .into_iter()
            .map(|s| s.label)
            .filter(|l| l != "job_progress")
            .collect()
    }

    /// How many progress events of `id` came.
    pub fn progress(&self, id: &str) -> usize {
        let seen = self.seen(id);
        seen.iter().filter(|s| s.label == "job_progress").count()
    }

    /// Each `jobs_deleted` event so far: its ids and count.
    pub fn deleted(&self) -> Vec<(Vec<String>, u64)> {
        self.log.lock().expect("log").deleted.clone()
    }

    /// Waits until `id` has had `n` events labelled `label`.
    pub async fn until(&self, id: &str, label: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let seen = self.labels(id);
            if seen.iter().filter(|l| *l == label).count() >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never had {n}× {label}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What went wrong for any job: an API that showed an older state than an event (the state
    /// it showed must be the event's or that of a later event of the job, and no older), and
    /// progress outside an attempt.
    pub fn problems(&self) -> Vec<String> {
        let log = self.log.lock().expect("log");
        let mut out = Vec::new();
        for (id, seen) in &log.jobs {
            let labels: Vec<&str> = seen.iter().map(|s| s.label.as_str()).collect();
            if let Some(i) = progress_outside_attempts(&labels) {
                out.push(format!(
                    "{id}: progress outside an attempt at {i}: {labels:?}"
                ));
            }
            for (i, s) in seen.iter().enumerate() {
                let Some((status, state, updated_at)) = &s.api else {
                    continue;
                };
                let later = &seen[i..];
                let ok = match *status {
                    StatusCode::NOT_FOUND => later.iter().any(|l| l.label == "jobs_deleted"),
                    StatusCode::OK => {
                        later.iter().any(|l| l.state.is_some() && l.state == *state)
                            && updated_at >= &s.updated_at
                    }
                    _ => false,
                };
                if !ok {
                    out.push(format!(
                        "{id}: at {} (state {:?}, updated {:?}) the API said {status} {state:?} \
                         updated {updated_at:?}; the events: {labels:?}",
                        s.label, s.state, s.updated_at
                    ));
                }
            }
        }
        out
    }

    pub async fn close(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The index of the first progress event that does not follow a `job_started` directly (other
/// progress aside), in one job's event types.
pub fn progress_outside_attempts(kinds: &[&str]) -> Option<usize> {
    let mut running = false;
    for (i, k) in kinds.iter().enumerate() {
        match *k {
            "job_progress" if !running => return Some(i),
            "job_progress" => {}
            "job_started" => running = true,
            _ => running = false,
        }
    }
    None
}
