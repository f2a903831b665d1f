//! Push notifications over WebSocket.
//!
//! A device opens `GET /v1/ws` with a signed upgrade request; the session is
//! then that device's. The server sends [`PushEvent`] JSON text frames: the
//! log of a group the device belongs to grew, or its inbox received an item.
//! Pushes are hints: the client reads the log or inbox by cursor, so a missed
//! push costs latency, never data, and polling works without them.
//!
//! The [`Hub`] fans events out to this node's sessions. It never waits for a
//! session: one that is closed or whose queue is full is dropped, and its
//! client reconnects and catches up by reading.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use rempart_proto::DeviceId;
use rempart_proto::api::{ErrorBody, PushEvent};
use tokio::sync::mpsc;

use crate::AppState;
use crate::auth::SignedRequest;
use crate::error::ApiError;

/// Events queued for one session before it counts as too slow.
const SESSION_QUEUE: usize = 64;
/// Largest frame a client may send (it has nothing to say yet but pings).
const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

/// The push sessions connected to this node, by device.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hub {
    sessions: Arc<Mutex<Sessions>>,
}

#[derive(Debug, Default)]
struct Sessions {
    by_device: HashMap<DeviceId, Vec<mpsc::Sender<PushEvent>>>,
    closed: bool,
}

impl Hub {
    /// Opens a session for `device`; its events arrive on the receiver, which
    /// ends when the session is dropped or the hub closes.
    pub(crate) fn subscribe(&self, device: DeviceId) -> mpsc::Receiver<PushEvent> {
        let (sender, events) = mpsc::channel(SESSION_QUEUE);
        let mut sessions = self.lock();
        if !sessions.closed {
            let senders = sessions.by_device.entry(device).or_default();
            senders.retain(|s| !s.is_closed());
            senders.push(sender);
        }
        events
    }

    /// Queues `event` for every session of `device`, dropping sessions that
    /// are closed or too slow.
    pub(crate) fn notify(&self, device: DeviceId, event: &PushEvent) {
        let mut sessions = self.lock();
        let Some(senders) = sessions.by_device.get_mut(&device) else {
            return;
        };
        senders.retain(|s| s.try_send(event.clone()).is_ok());
        if senders.is_empty() {
            sessions.by_device.remove(&device);
        }
    }

    /// Ends every session of `device` (e.g. it was removed from its account).
    pub(crate) fn disconnect(&self, device: DeviceId) {
        self.lock().by_device.remove(&device);
    }

    /// Ends every session; new ones are still accepted (this node may have
    /// missed events, and its clients catch up when they reconnect).
    pub(crate) fn disconnect_all(&self) {
        self.lock().by_device.clear();
    }

    /// Ends every session and refuses new ones (server shutdown).
    pub(crate) fn close(&self) {
        let mut sessions = self.lock();
        sessions.closed = true;
        sessions.by_device.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        // The map stays consistent even if a holder panicked mid-update:
        // every update is a single insert, retain or remove.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens the signing device's push session.
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "push",
    responses(
        (status = 101, description = "A WebSocket of `PushEvent` JSON text frames", body = PushEvent),
        (status = 400, description = "Not a WebSocket upgrade request", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn subscribe(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    request: SignedRequest,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    // Subscribe before answering, so that nothing appended after the client
    // sees the upgrade response can be missed.
    let events = state.pushes.hub().subscribe(request.device);
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(socket, events)))
}

async fn serve(mut socket: WebSocket, mut events: mpsc::Receiver<PushEvent>) {
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else {
                    // Shutdown, device removed, or too slow: say so and end.
                    let close = CloseFrame {
                        code: close_code::AWAY,
                        reason: Utf8Bytes::from_static("push session ended"),
                    };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                };
                match serde_json::to_string(&event) {
                    Ok(text) => {
                        if socket.send(Message::text(text)).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => tracing::error!(%error, "could not encode a push event"),
                }
            }
            message = socket.recv() => match message {
                // The WebSocket layer answers pings, and a Close on the next read.
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return,
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_session_is_dropped_without_blocking() {
        let hub = Hub::default();
        let device = DeviceId::random();
        let mut events = hub.subscribe(device);
        for _ in 0..=SESSION_QUEUE {
            hub.notify(device, &PushEvent::Inbox);
        }
        for _ in 0..SESSION_QUEUE {
            assert_eq!(events.try_recv().unwrap(), PushEvent::Inbox);
        }
        // The event that did not fit ended the session.
        assert!(matches!(
            events.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn close_ends_sessions_and_refuses_new_ones() {
        let hub = Hub::default();
        let device = DeviceId::random();
        let mut before = hub.subscribe(device);
        hub.close();
        let mut after = hub.subscribe(device);
        hub.notify(device, &PushEvent::Inbox);
        assert!(matches!(
            before.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
        assert!(matches!(
            after.try_recv(),
            Err(mpsc::error::TryRecvError::Disconnected)
        ));
    }
}
