//! `GET /api/export?format=zip`: the project ZIP streamed into the response body. A blocking task
//! writes the archive (`export::archive`) into a bounded channel that the body drains, so a slow
//! client slows the writer instead of filling memory, and a client that goes away stops it.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::super::job_exports::overlay_of;
use super::{AppState, attachment};
use crate::export::ExportError;
use crate::export::archive::{Each, Images, write_project};
use crate::queue::JobId;
use crate::segment::SegmentResult;

/// Bytes gathered before a chunk is sent.
const CHUNK: usize = 64 << 10;
/// Chunks in flight between the writer and the body.
const IN_FLIGHT: usize = 8;

/// A `Write` that sends what it is given to the body, `CHUNK` bytes at a time.
pub(in crate::http) struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn io(e: impl std::fmt::Display) -> ExportError {
    ExportError::Io(std::io::Error::other(e.to_string()))
}

fn write(
    state: &AppState,
    ids: &[JobId],
    originals: bool,
    out: ChannelWriter,
) -> Result<(), ExportError> {
    let mut visit = |each: &mut Each<'_>| -> Result<(), ExportError> {
        for (n, id) in ids.iter().enumerate() {
            let Some(bytes) = state.service.queue.result(*id).map_err(io)? else {
                continue;
            };
            if let Some(r) = SegmentResult::from_bytes(&bytes) {
                each(n as u64 + 1, &id.to_string(), &r)?;
            }
        }
        Ok(())
    };
    let hash = |id: &str| Some(state.service.queue.get(id.parse().ok()?).ok()??.image.hash);
    let mut original = |id: &str| state.service.images.read(&hash(id)?).ok();
    let mut overlay =
        |id: &str, r: &SegmentResult| overlay_of(&state.service.images, &hash(id)?, r).ok();
    let images = Images {
        original: &mut original,
        overlay: &mut overlay,
    };
    let mut out = write_project(out, &mut visit, originals, images)?;
    out.flush()?;
    Ok(())
}

/// The streamed response of the jobs `ids` (fixed before the archive is written, so every part
/// lists the same jobs).
pub(super) fn response(state: AppState, ids: Vec<JobId>, stem: &str, originals: bool) -> Response {
    let body = streamed(move |out| {
        write(&state, &ids, originals, out).map_err(|e| {
            tracing::warn!(error = %e, "project archive stopped");
            e.to_string()
        })
    });
    (
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, attachment(stem, "zip")),
        ],
        body,
    )
        .into_response()
}

/// A body that `write` fills on a blocking thread, through a bounded channel (see the module
/// doc). An error ends the body with it, so the client sees a broken download, not a short one.
pub(in crate::http) fn streamed(
    write: impl FnOnce(ChannelWriter) -> Result<(), String> + Send + 'static,
) -> Body {
    let (tx, mut rx) = mpsc::channel(IN_FLIGHT);
    let failed = tx.clone();
    tokio::task::spawn_blocking(move || {
        let out = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        if let Err(e) = write(out) {
            let _ = failed.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Body::from_stream(stream)
}
