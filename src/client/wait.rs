//! `submit --wait`: following jobs to their end. The event id is taken before the first upload,
//! so the long-poll from it (`GET /api/events?since=`) sees every event of every job; a `resync`
//! (the gap outgrew the server's buffer) asks each unfinished job's state instead. Each file has
//! a progress bar (one bar for all of them past [`BARS`] files), drawn only on a terminal. Once
//! all are done each job is read once more, with its result when it completed.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{ClientError, JobRow, ResultSummary, Server};
use crate::client::EventBatch;

/// The most files that get a bar each.
const BARS: usize = 20;
/// Seconds one long-poll waits for an event.
const POLL_SECS: u64 = 10;
/// Failed polls in a row before the server counts as gone.
const GIVE_UP: u32 = 10;

/// A job followed to its end.
#[derive(Clone, Debug)]
pub struct Finished {
    /// What the command line called it (the file).
    pub label: String,
    pub id: String,
    /// The job as the server shows it at the end; `None` once it was deleted.
    pub job: Option<JobRow>,
    /// The same, as the server sent it.
    pub raw: Option<String>,
    /// The result's objects and area, for a completed job.
    pub result: Option<ResultSummary>,
}

impl Finished {
    pub fn completed(&self) -> bool {
        self.job.as_ref().is_some_and(|j| j.state == "completed")
    }
}

/// The newest event id, to follow jobs submitted after it.
pub async fn last_event(server: &Server) -> Result<u64, ClientError> {
    let (b, _) = server.get::<EventBatch>("/api/events?timeout=0").await?;
    Ok(b.last_event_id)
}

struct Bars {
    each: Vec<ProgressBar>,
    all: Option<ProgressBar>,
    _multi: MultiProgress,
}

impl Bars {
    fn new(labels: &[String], draw: bool) -> Bars {
        let multi = MultiProgress::with_draw_target(if draw {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        if labels.len() > BARS {
            let bar = multi.add(ProgressBar::new(labels.len() as u64));
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} finished {elapsed} {msg}")
                    .expect("valid progress template"),
            );
            return Bars {
                each: Vec::new(),
                all: Some(bar),
                _multi: multi,
            };
        }
        let style = ProgressStyle::with_template("{prefix:30!} {bar:30} {pos:>3}% {msg}")
            .expect("valid progress template");
        let each = labels
            .iter()
            .map(|l| {
                let bar = multi.add(ProgressBar::new(100));
                bar.set_style(style.clone());
                bar.set_prefix(l.clone());
                bar.set_message("queued");
                bar
            })
            .collect();
        Bars {
            each,
            all: None,
            _multi: multi,
        }
    }

    fn progress(&self, i: usize, pos: u8, msg: Option<String>) {
        if let Some(bar) = self.each.get(i) {
            bar.set_position(u64::from(pos.min(100)));
            if let Some(m) = msg {
                bar.set_message(m);
            }
        }
    }

    fn done(&self, i: usize, state: &str) {
        if let Some(bar) = self.each.get(i) {
            if state == "completed" {
                bar.set_position(100);
            }
            bar.finish_with_message(state.to_owned());
        }
        if let Some(all) = &self.all {
            all.inc(1);
        }
    }
}

/// Follows `jobs` (label, id) from event `since` until every one has finished, then reads each.
pub async fn follow(
    server: &Server,
    jobs: Vec<(String, String)>,
    since: u64,
    draw: bool,
) -> Result<Vec<Finished>, ClientError> {
    let labels: Vec<String> = jobs.iter().map(|(l, _)| l.clone()).collect();
    let bars = Bars::new(&labels, draw);
    let mut open: HashMap<String, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, (_, id))| (id.clone(), i))
        .collect();
    let mut since = since;
    let mut failed_polls = 0;
    while !open.is_empty() {
        let path = format!("/api/events?since={since}&timeout={POLL_SECS}");
        let batch = match server.get::<EventBatch>(&path).await {
            Ok((b, _)) => b,
            Err(e) => {
                failed_polls += 1;
                if failed_polls >= GIVE_UP {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        failed_polls = 0;
        since = batch
            .events
            .iter()
            .map(|e| e.id)
            .max()
            .unwrap_or(batch.last_event_id);
        for e in &batch.events {
            if e.kind == "jobs_deleted" {
                for id in &e.job_ids {
                    if let Some(i) = open.remove(id) {
                        bars.done(i, "deleted");
                    }
                }
                continue;
            }
            let Some(&i) = e.job_id.as_ref().and_then(|id| open.get(id)) else {
                continue;
            };
            match e.kind.as_str() {
                "job_progress" => bars.progress(i, e.progress.unwrap_or(0), None),
                "job_started" => bars.progress(i, 0, Some("running".into())),
                "job_retrying" => bars.progress(
                    i,
                    0,
                    Some(format!(
                        "retrying: {}",
                        e.message.clone().unwrap_or_default()
                    )),
                ),
                _ => {}
            }
            if let Some(job) = e.job.as_ref().filter(|j| j.finished()) {
                open.remove(&job.id);
                bars.done(i, &job.state);
            }
        }
        if batch.resync {
            let ids: Vec<String> = open.keys().cloned().collect();
            for id in ids {
                let job = server.get::<JobRow>(&format!("/api/jobs/{id}")).await;
                match job {
                    Ok((j, _)) if j.finished() => {
                        if let Some(i) = open.remove(&id) {
                            bars.done(i, &j.state);
                        }
                    }
                    Err(ClientError::Refused { status: 404, .. }) => {
                        if let Some(i) = open.remove(&id) {
                            bars.done(i, "deleted");
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let mut out = Vec::with_capacity(jobs.len());
    for (label, id) in jobs {
        let (job, raw) = match server.get::<JobRow>(&format!("/api/jobs/{id}")).await {
            Ok((j, raw)) => (Some(j), Some(raw)),
            Err(ClientError::Refused { status: 404, .. }) => (None, None),
            Err(e) => return Err(e),
        };
        let result = match &job {
            Some(j) if j.state == "completed" => Some(
                server
                    .get::<ResultSummary>(&format!("/api/jobs/{id}/result"))
                    .await?
                    .0,
            ),
            _ => None,
        };
        out.push(Finished {
            label,
            id,
            job,
            raw,
            result,
        });
    }
    Ok(out)
}
