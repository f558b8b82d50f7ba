//! The HTTP API, one file per resource as in `src/http/`.

/// The API token.
mod auth;
/// `serve` over TCP with the WebSocket.
mod events;
/// Thumbnails with outlines and the gallery listing.
mod gallery;
/// Host and cross-site checks; bulk actions name what they act on.
mod guard;
/// The health endpoints.
mod health;
/// A repeated Idempotency-Key (or dedupe_key) returns the job it made first.
mod idempotency;
/// Jobs, uploads, results and exports.
mod jobs;
/// spheroseg as an ML service.
mod ml;
/// Projects remember a pixel size, which their jobs take.
mod projects;
/// The queue's routes: breakers on the pool's clock.
mod queue;
/// What uploads and malformed requests refuse; a refused upload stores nothing.
mod refusals;
/// Running a job again with other parameters.
mod rerun;
/// The builtin segmenter's parameters, for the page's form.
mod segmenters;
/// Every transition's event over the WebSocket: once, in order, after it is readable.
mod transitions;
/// The status page and the OpenAPI document.
mod ui;
/// Uploads under pressure: concurrency, memory, disk, the collector.
mod uploads;
/// Outlines corrected by hand: result versions, their checks, events and exports.
mod versions;
