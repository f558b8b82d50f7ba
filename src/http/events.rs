//! Live updates: `GET /ws?since=ID` (WebSocket) and `GET /api/events?since=ID&timeout=S`
//! (long-poll, for clients without WebSocket).
//!
//! A WebSocket first gets a snapshot (queue stats, breakers, the latest event id), then what it
//! missed since `since` (or a `resync`), then live events. A client that falls behind the broadcast
//! buffer is sent a `resync` and disconnected: nothing is buffered for it without bound, and no
//! worker ever waits for it. The `Origin` header must be this server's own address.

use std::time::Duration;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::queue::breakers;
use super::{ApiError, AppState};
use crate::events::{Event, Missed};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ws))
        .routes(routes!(poll))
}

#[derive(Deserialize)]
struct Since {
    since: Option<u64>,
    timeout: Option<u64>,
}

#[utoipa::path(get, path = "/api/events", summary = "Long-poll for events after since=ID", responses((status = 200, description = "success")))]
async fn poll(State(state): State<AppState>, Query(q): Query<Since>) -> Result<Response, ApiError> {
    let events = &state.service.events;
    let since = q.since.unwrap_or_else(|| events.last_id());
    let mut sub = events.subscribe(Some(since));
    match sub.missed {
        Missed::Resync => Ok(Json(
            json!({"resync": true, "last_id": events.last_id(), "events": []}),
        )
        .into_response()),
        Missed::Events(missed) if !missed.is_empty() => {
            let missed: Vec<&Event> = missed.iter().map(|e| &**e).collect();
            Ok(
                Json(json!({"resync": false, "last_id": events.last_id(), "events": missed}))
                    .into_response(),
            )
        }
        Missed::Events(_) => {
            let wait = Duration::from_secs(q.timeout.unwrap_or(25).min(60));
            let got = match tokio::time::timeout(wait, sub.live.recv()).await {
                Ok(Ok(e)) => vec![e],
                Ok(Err(RecvError::Lagged(_))) => {
                    return Ok(Json(
                        json!({"resync": true, "last_id": events.last_id(), "events": []}),
                    )
                    .into_response());
                }
                _ => vec![],
            };
            let got: Vec<&Event> = got.iter().map(|e| &**e).collect();
            Ok(
                Json(json!({"resync": false, "last_id": events.last_id(), "events": got}))
                    .into_response(),
            )
        }
    }
}

/// Whether the `Origin` (when a browser sends one) is this server.
fn origin_ok(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser
    };
    let port = state.bind.port();
    let allowed = [
        format!("http://{}", state.bind),
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}"),
        format!("http://[::1]:{port}"),
    ];
    allowed.iter().any(|a| a == origin) || state.allowed_origins.iter().any(|a| a == origin)
}

#[utoipa::path(get, path = "/ws", summary = "WebSocket of live events; since=ID resumes", responses((status = 200, description = "success")))]
async fn ws(
    State(state): State<AppState>,
    Query(q): Query<Since>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // The origin first: a foreign page learns nothing, not even whether the upgrade was valid.
    if !origin_ok(&state, &headers) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "bad-origin",
            "WebSocket from another origin refused",
        )
        .into_response();
    }
    match upgrade {
        Ok(upgrade) => upgrade.on_upgrade(move |socket| session(socket, state, q.since)),
        Err(rejection) => rejection.into_response(),
    }
}

async fn send(socket: &mut WebSocket, v: &impl serde::Serialize) -> bool {
    match serde_json::to_string(v) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn session(mut socket: WebSocket, state: AppState, since: Option<u64>) {
    let events = &state.service.events;
    let mut sub = events.subscribe(since);
    let snapshot = json!({
        "type": "snapshot",
        "last_event_id": events.last_id(),
        "queue": state.service.queue.stats().ok(),
        "breakers": breakers(&state).into_iter().map(|(n, b)| (n, json!(b))).collect::<serde_json::Map<_, _>>(),
    });
    if !send(&mut socket, &snapshot).await {
        return;
    }
    match sub.missed {
        Missed::Resync => {
            if !send(
                &mut socket,
                &json!({"type": "resync", "last_event_id": events.last_id()}),
            )
            .await
            {
                return;
            }
        }
        Missed::Events(missed) => {
            for e in missed {
                if !send(&mut socket, &*e).await {
                    return;
                }
            }
        }
    }
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    loop {
        tokio::select! {
            e = sub.live.recv() => match e {
                Ok(e) => if !send(&mut socket, &*e).await { return },
                Err(RecvError::Lagged(_)) => {
                    // Too slow: tell it to refetch and let it reconnect with `since`.
                    let _ = send(&mut socket, &json!({"type": "resync", "last_event_id": events.last_id()})).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            _ = ping.tick() => if socket.send(Message::Ping(Vec::new().into())).await.is_err() { return },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}
