//! The CLI's client of a running spheroseg: [`Server`] for the JSON routes and downloads, and
//! `spheroseg submit`, where each file is sent as its own upload with an `Idempotency-Key` of its
//! own, made once per file, so that a retry after a network error (no answer, a connection cut
//! before the answer, a timeout) or a busy server (`503`, `502`, `504`, `429`) returns the job the
//! first try made instead of a second one. Retries wait 0.5 s, 1 s, 2 s, … (at most 30 s).
//!
//! - `client/views`: the parts of the server's answers the CLI reads
//! - `client/wait`: following submitted jobs to their end through the event long-poll

mod views;
mod wait;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

pub use views::{
    Disk, EventBatch, EventRow, JobPage, JobRow, MlRow, QueueOverview, ResultSummary, Throughput,
};
pub use wait::{Finished, follow, last_event};

/// How long one JSON request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a download (an export, a backup) may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// Why a request to the server did not give what the command needs.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered: the server is down, or the address is wrong.
    #[error("{0}; is spheroseg running there? (--server URL)")]
    Unreachable(String),
    /// The server refused the request: its status and message.
    #[error("{status}: {message}")]
    Refused { status: u16, message: String },
    /// The answer is not what the command expects (another program on that port?).
    #[error("unexpected answer from {url}: {detail}")]
    Unexpected { url: String, detail: String },
}

/// A running spheroseg.
#[derive(Clone, Debug)]
pub struct Server {
    /// The base URL, e.g. `http://127.0.0.1:5001`.
    pub base: String,
    pub token: Option<String>,
}

/// The message of an error body (`{"code", "message"}`), or the body itself.
fn message_of(body: String) -> String {
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(body)
}

impl Server {
    pub fn new(base: &str, token: Option<String>) -> Server {
        Server {
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request (with a JSON body, if any): the body of a 2xx answer, as text.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        json: Option<String>,
    ) -> Result<String, ClientError> {
        let url = self.url(path);
        let (status, body) =
            crate::segment::http::call(method, &url, self.token.as_deref(), json, CALL_TIMEOUT)
                .await
                .map_err(ClientError::Unreachable)?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(ClientError::Refused {
                status,
                message: message_of(body),
            })
        }
    }

    /// GETs `path`: the answer parsed, and as the server sent it (for `--json`).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<(T, String), ClientError> {
        let body = self.send("GET", path, None).await?;
        let parsed = serde_json::from_str(&body).map_err(|e| ClientError::Unexpected {
            url: self.url(path),
            detail: e.to_string(),
        })?;
        Ok((parsed, body))
    }

    /// Sends a request and writes a 200 answer's body to `file` as it arrives.
    pub async fn download(
        &self,
        method: &str,
        path: &str,
        json: Option<String>,
        file: &Path,
    ) -> Result<(), ClientError> {
        let url = self.url(path);
        let (status, body) = crate::segment::http::download(
            method,
            &url,
            self.token.as_deref(),
            json,
            file,
            DOWNLOAD_TIMEOUT,
        )
        .await
        .map_err(ClientError::Unreachable)?;
        if status == 200 {
            Ok(())
        } else {
            Err(ClientError::Refused {
                status,
                message: message_of(body),
            })
        }
    }
}

/// How to submit.
#[derive(Clone, Debug)]
pub struct Submit {
    /// The server, e.g. `http://127.0.0.1:5001`.
    pub base: String,
    pub token: Option<String>,
    /// Form fields sent with every file: `priority`, `project`, `segmenter`, `params`.
    pub fields: Vec<(&'static str, String)>,
    /// Tries per file before it is given up.
    pub tries: u32,
    /// Per request.
    pub timeout: Duration,
}

/// What became of one file.
#[derive(Debug)]
pub struct Submitted {
    pub path: PathBuf,
    /// The job (`id`, `state`, `deduplicated`, …) as the server answered, or why not.
    pub outcome: Result<serde_json::Value, String>,
    /// Requests it took.
    pub tries: u32,
}

/// Whether an answer is worth another try with the same key.
fn retry_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// Submits `path`, retrying with the same key.
pub async fn submit_one(s: &Submit, path: &Path) -> Submitted {
    let name = path
        .file_name()
        .map_or_else(|| "image".to_owned(), |n| n.to_string_lossy().into_owned());
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return Submitted {
                path: path.to_owned(),
                outcome: Err(format!("cannot read it: {e}")),
                tries: 0,
            };
        }
    };
    let key = uuid::Uuid::now_v7().to_string();
    let url = format!("{}/api/jobs", s.base.trim_end_matches('/'));
    let mut wait = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 1..=s.tries.max(1) {
        let answer = crate::segment::http::post_image(
            &url,
            s.token.as_deref(),
            (&name, bytes.clone()),
            &s.fields,
            &[("Idempotency-Key", key.clone())],
            s.timeout,
        )
        .await;
        match answer {
            Ok((202, body)) => {
                let job = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["jobs"].get(0).cloned())
                    .ok_or_else(|| format!("the answer is not a job: {body}"));
                return Submitted {
                    path: path.to_owned(),
                    outcome: job,
                    tries: attempt,
                };
            }
            Ok((status, body)) if !retry_status(status) => {
                let message = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or(body);
                return Submitted {
                    path: path.to_owned(),
                    outcome: Err(format!("{status}: {message}")),
                    tries: attempt,
                };
            }
            Ok((status, _)) => last = format!("the server answered {status}"),
            Err(e) => last = e,
        }
        if attempt < s.tries {
            tracing::info!(file = %path.display(), attempt, error = %last, "trying again with the same key");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }
    Submitted {
        path: path.to_owned(),
        outcome: Err(last),
        tries: s.tries,
    }
}
