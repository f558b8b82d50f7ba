//! Live updates: `GET /ws?since=ID` (WebSocket) and `GET /api/events?since=ID&timeout=S`
//! (long-poll, for clients without WebSocket).
//!
//! A WebSocket first gets a snapshot (queue stats, breakers, the latest event id), then what it
//! missed since `since` (or a `resync`), then live events. A client that falls behind the broadcast
//! buffer is sent a `resync` and disconnected: nothing is buffered for it without bound, and no
//! worker ever waits for it. The guard (`http/guard.rs`) refuses an upgrade from a foreign `Origin`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Authorized;
use super::error::{Body as ErrorBody, Query};
use super::queue::breakers;
use crate::events::{Event, Missed};
use crate::queue::QueueStats;
use crate::segment::breaker::Snapshot;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ws))
        .routes(routes!(poll))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Since {
    /// The last event id the client has; absent: from now on.
    since: Option<u64>,
    /// Seconds the long-poll waits for an event when there is none yet (default 25, at most 60);
    /// the WebSocket ignores it.
    timeout: Option<u64>,
}

/// A long-poll answer: the events after `since` (or `resync` when that is older than the
/// buffer), and the id to ask from next.
#[derive(Serialize, ToSchema)]
struct Batch {
    /// The events asked for are gone from the buffer: refetch the state, then poll from
    /// `last_event_id`.
    resync: bool,
    last_event_id: u64,
    /// Each with `id`, `at` and a `type` (`job_queued`, `job_started`, `job_progress`,
    /// `job_completed`, `job_retrying`, `job_failed`, ...) and that type's fields, most with the
    /// `job` as `GET /api/jobs/{id}` shows it.
    #[schema(value_type = Vec<Object>)]
    events: Vec<Arc<Event>>,
}

/// What the WebSocket sends besides events: first a snapshot, and `resync` when the client must
/// refetch the state. Both say the id to resume from, as `last_event_id`, like the long-poll.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control {
    Snapshot {
        last_event_id: u64,
        queue: Option<Box<QueueStats>>,
        breakers: BTreeMap<String, Snapshot>,
    },
    Resync {
        last_event_id: u64,
    },
}

#[utoipa::path(
    get,
    path = "/api/events",
    summary = "Long-poll for events after since=ID",
    params(Since),
    responses(
        (status = 200, description = "the events after `since`, or none when `timeout` ran out", body = Batch),
        (status = 400, description = "a query parameter of the wrong type", body = ErrorBody),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
    )
)]
async fn poll(_: Authorized, State(state): State<AppState>, Query(q): Query<Since>) -> Json<Batch> {
    let events = &state.service.events;
    let since = q.since.unwrap_or_else(|| events.last_id());
    let mut sub = events.subscribe(Some(since));
    let batch = |resync, events: Vec<Arc<Event>>, bus: &crate::events::EventBus| Batch {
        resync,
        last_event_id: bus.last_id(),
        events,
    };
    Json(match sub.missed {
        Missed::Resync => batch(true, Vec::new(), events),
        Missed::Events(missed) if !missed.is_empty() => batch(false, missed, events),
        Missed::Events(_) => {
            let wait = Duration::from_secs(q.timeout.unwrap_or(25).min(60));
            match tokio::time::timeout(wait, sub.live.recv()).await {
                Ok(Ok(e)) => batch(false, vec![e], events),
                Ok(Err(RecvError::Lagged(_))) => batch(true, Vec::new(), events),
                _ => batch(false, Vec::new(), events),
            }
        }
    })
}

#[utoipa::path(
    get,
    path = "/ws",
    summary = "WebSocket of live events; since=ID resumes",
    params(
        Since,
        ("access_token" = Option<String>, Query, description = "The API token, for browsers, which cannot set headers on a WebSocket"),
    ),
    responses(
        (status = 101, description = "switched to the WebSocket protocol: JSON text messages follow, a `snapshot` first"),
        (status = 400, description = "a query parameter of the wrong type, or not a WebSocket upgrade request (plain text)", content(
            (ErrorBody = "application/json"),
            ("text/plain"),
        )),
        (status = 401, description = "a token is configured and the request lacks it", body = ErrorBody),
        (status = 426, description = "the connection cannot be upgraded", content(("text/plain"))),
    )
)]
async fn ws(
    _: Authorized,

    State(state): State<AppState>,
    Query(q): Query<Since>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // The Origin was checked by the guard (`http/guard.rs`) before this runs.
    match upgrade {
        Ok(upgrade) => upgrade.on_upgrade(move |socket| session(socket, state, q.since)),
        Err(rejection) => rejection.into_response(),
    }
}

/// Sends one message; false when the client is gone or has not taken it within `timeout` (a client
/// that stopped reading is dropped, not buffered for).
async fn send_message(socket: &mut WebSocket, message: Message, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, socket.send(message)).await,
        Ok(Ok(()))
    )
}

async fn send(socket: &mut WebSocket, v: &impl serde::Serialize, timeout: Duration) -> bool {
    match serde_json::to_string(v) {
        Ok(text) => send_message(socket, Message::Text(text.into()), timeout).await,
        Err(_) => false,
    }
}

async fn session(mut socket: WebSocket, state: AppState, since: Option<u64>) {
    let timeout = state.ws_send_timeout;
    let events = &state.service.events;
    let mut sub = events.subscribe(since);
    let snapshot = Control::Snapshot {
        last_event_id: events.last_id(),
        queue: state.service.queue.stats().ok().map(Box::new),
        breakers: breakers(&state).into_iter().collect(),
    };
    if !send(&mut socket, &snapshot, timeout).await {
        return;
    }
    match sub.missed {
        Missed::Resync => {
            if !send(
                &mut socket,
                &Control::Resync {
                    last_event_id: events.last_id(),
                },
                timeout,
            )
            .await
            {
                return;
            }
        }
        Missed::Events(missed) => {
            for e in missed {
                if !send(&mut socket, &*e, timeout).await {
                    return;
                }
            }
        }
    }
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    loop {
        tokio::select! {
            e = sub.live.recv() => match e {
                Ok(e) => if !send(&mut socket, &*e, timeout).await { return },
                Err(RecvError::Lagged(_)) => {
                    // Too slow: tell it to refetch and let it reconnect with `since`.
                    let resync = Control::Resync { last_event_id: events.last_id() };
                    let _ = send(&mut socket, &resync, timeout).await;
                    let _ = send_message(&mut socket, Message::Close(None), timeout).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            _ = ping.tick() => if !send_message(&mut socket, Message::Ping(Vec::new().into()), timeout).await { return },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}
