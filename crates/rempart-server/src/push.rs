//! Device sessions over WebSocket: push notifications, and sends without a
//! signature per message.
//!
//! A device opens `GET /v1/ws` with a signed upgrade request; the session is
//! then that device's, as long as the device stays in its account (removing
//! it ends its sessions). The server sends [`PushEvent`] JSON text frames:
//! the log of a group the device belongs to grew (with the entry itself when
//! it is a small application message), its inbox received an item, or the
//! answer to one of its requests. The device may send [`SessionRequest`]s:
//! an application message sent this way is stored exactly as the signed
//! HTTP upload stores it, and answered only once it is durable, without the
//! cost of a signature check and a nonce write per message.
//!
//! Pushes are hints: the client reads the log or inbox by cursor, so a
//! missed push costs latency, never data, and polling works without them.
//!
//! The [`Hub`] knows, for each group, which of its members are connected to
//! this node, so that announcing an application message costs work for the
//! connected members only, whatever the group's size, and no database read.
//! It never waits for a session: one that is closed or whose queue is full
//! is dropped, and its client reconnects and catches up by reading.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use rempart_proto::api::{ErrorBody, PushEvent, SessionRequest};
use rempart_proto::limits::{MAX_SESSION_FRAME_BYTES, MAX_SESSION_IN_FLIGHT};
use rempart_proto::{DeviceId, GroupId, UserName};
use tokio::sync::mpsc;

use crate::AppState;
use crate::auth::SignedRequest;
use crate::delivery;
use crate::error::ApiError;

/// Most push sessions one device holds on a node, unless configured: a
/// phone, a listener and a chat at once, with room to spare.
pub const DEFAULT_MAX_SESSIONS_PER_DEVICE: usize = 4;
/// Events queued for one session before it counts as too slow.
const SESSION_QUEUE: usize = 256;
/// Most frames written to a session before they are flushed together.
const FRAMES_PER_FLUSH: usize = 64;
/// How much a session reads from its socket at a time. tungstenite's
/// default, 128 KiB, is allocated and zero-filled by the first read, so
/// every idle session held 128 KiB of resident memory (`rempart-bench
/// connections`: 132 KiB per session at 10,000). A larger frame, up to
/// [`MAX_SESSION_FRAME_BYTES`], still arrives whole: the buffer grows to a
/// frame's length once its header is read.
const SESSION_READ_BUFFER_BYTES: usize = 4 * 1024;

/// The push sessions connected to this node, by device and by group.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hub {
    sessions: Arc<Mutex<Sessions>>,
}

#[derive(Debug, Default)]
struct Sessions {
    by_device: HashMap<DeviceId, Connected>,
    /// For each group, its members that have a session on this node.
    by_group: HashMap<GroupId, HashSet<DeviceId>>,
    closed: bool,
    /// Most sessions one device may hold on this node; the oldest ends when
    /// a newer one would go over (0: the default).
    per_device: usize,
}

/// The sessions of one device, and the groups it is a member of.
#[derive(Debug, Default)]
struct Connected {
    senders: Vec<mpsc::Sender<PushEvent>>,
    groups: HashSet<GroupId>,
}

impl Hub {
    /// Opens a session for `device`; its events arrive on the receiver, which
    /// ends when the session is dropped or the hub closes. Group events reach
    /// it once its groups are known ([`Hub::joined`]).
    pub(crate) fn subscribe(&self, device: DeviceId) -> mpsc::Receiver<PushEvent> {
        let (sender, events) = mpsc::channel(SESSION_QUEUE);
        let mut sessions = self.lock();
        if !sessions.closed {
            let most = match sessions.per_device {
                0 => DEFAULT_MAX_SESSIONS_PER_DEVICE,
                most => most,
            };
            let connected = sessions.by_device.entry(device).or_default();
            connected.senders.retain(|s| !s.is_closed());
            // The oldest session makes room: a client whose connection
            // died unseen must be able to come back at once.
            let over = (connected.senders.len() + 1).saturating_sub(most);
            connected.senders.drain(..over.min(connected.senders.len()));
            connected.senders.push(sender);
        }
        events
    }

    /// Caps the sessions of one device on this node at `most` (at least one).
    pub(crate) fn limit_sessions_per_device(&self, most: usize) {
        self.lock().per_device = most.max(1);
    }

    /// Records that `device`, if connected, is a member of `groups`.
    pub(crate) fn joined(&self, device: DeviceId, groups: impl IntoIterator<Item = GroupId>) {
        let mut sessions = self.lock();
        let Sessions {
            by_device,
            by_group,
            ..
        } = &mut *sessions;
        let Some(connected) = by_device.get_mut(&device) else {
            return;
        };
        for group in groups {
            if connected.groups.insert(group) {
                by_group.entry(group).or_default().insert(device);
            }
        }
    }

    /// Sets the members of `group` that are connected here from its whole
    /// member list (after a commit changed it).
    pub(crate) fn set_members(&self, group: GroupId, members: &[DeviceId]) {
        let mut sessions = self.lock();
        let Sessions {
            by_device,
            by_group,
            ..
        } = &mut *sessions;
        let connected: HashSet<DeviceId> = members
            .iter()
            .filter(|device| by_device.contains_key(device))
            .copied()
            .collect();
        let before = match by_group.entry(group) {
            Entry::Occupied(entry) if connected.is_empty() => entry.remove(),
            Entry::Occupied(mut entry) => std::mem::replace(entry.get_mut(), connected.clone()),
            Entry::Vacant(_) if connected.is_empty() => HashSet::new(),
            Entry::Vacant(entry) => {
                entry.insert(connected.clone());
                HashSet::new()
            }
        };
        for device in before.difference(&connected) {
            if let Some(session) = by_device.get_mut(device) {
                session.groups.remove(&group);
            }
        }
        for device in connected.difference(&before) {
            if let Some(session) = by_device.get_mut(device) {
                session.groups.insert(group);
            }
        }
    }

    /// Queues `event` for every session of `device`, dropping sessions that
    /// are closed or too slow.
    pub(crate) fn notify(&self, device: DeviceId, event: &PushEvent) {
        let mut sessions = self.lock();
        sessions.send(device, event);
    }

    /// Queues `event` for the sessions of every member of `group` connected
    /// here, except `skip` (the device that caused it).
    pub(crate) fn notify_group(&self, group: GroupId, event: &PushEvent, skip: Option<DeviceId>) {
        let mut sessions = self.lock();
        let Sessions {
            by_device,
            by_group,
            ..
        } = &mut *sessions;
        let Some(members) = by_group.get(&group) else {
            return;
        };
        // Sessions that are gone are forgotten after the loop (rarely any).
        let mut gone = Vec::new();
        for device in members.iter().filter(|device| Some(**device) != skip) {
            if let Some(connected) = by_device.get_mut(device)
                && !connected.queue(event)
            {
                gone.push(*device);
            }
        }
        for device in gone {
            sessions.remove(device);
        }
    }

    /// Ends every session of `device` (e.g. it was removed from its account).
    pub(crate) fn disconnect(&self, device: DeviceId) {
        self.lock().remove(device);
    }

    /// Ends every session; new ones are still accepted (this node may have
    /// missed events, and its clients catch up when they reconnect).
    pub(crate) fn disconnect_all(&self) {
        let mut sessions = self.lock();
        sessions.by_device.clear();
        sessions.by_group.clear();
    }

    /// Ends every session and refuses new ones (server shutdown).
    pub(crate) fn close(&self) {
        let mut sessions = self.lock();
        sessions.closed = true;
        sessions.by_device.clear();
        sessions.by_group.clear();
    }

    fn lock(&self) -> MutexGuard<'_, Sessions> {
        // The maps stay consistent even if a holder panicked mid-update:
        // no update can panic between its first and last write.
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Connected {
    /// Queues `event` on every session, dropping those closed or too slow;
    /// returns whether any session is left.
    fn queue(&mut self, event: &PushEvent) -> bool {
        self.senders.retain(|s| s.try_send(event.clone()).is_ok());
        !self.senders.is_empty()
    }
}

impl Sessions {
    fn send(&mut self, device: DeviceId, event: &PushEvent) {
        let Some(connected) = self.by_device.get_mut(&device) else {
            return;
        };
        if !connected.queue(event) {
            self.remove(device);
        }
    }

    fn remove(&mut self, device: DeviceId) {
        let Some(connected) = self.by_device.remove(&device) else {
            return;
        };
        for group in connected.groups {
            if let Entry::Occupied(mut members) = self.by_group.entry(group) {
                members.get_mut().remove(&device);
                if members.get().is_empty() {
                    members.remove();
                }
            }
        }
    }
}

/// Opens the signing device's session.
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "push",
    responses(
        (status = 101, description = "A WebSocket session: `SessionRequest` JSON text frames in, `PushEvent` JSON text frames out", body = PushEvent),
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
    let (device, user) = (request.device, request.user);
    // Subscribe and learn the device's groups before answering, so that
    // nothing appended after the client sees the upgrade response can be
    // missed.
    let hub = state.pushes.hub();
    let events = hub.subscribe(device);
    match state.store.device_groups(device).await {
        Ok(groups) => hub.joined(device, groups),
        Err(error) => {
            hub.disconnect(device);
            return Err(error.into());
        }
    }
    Ok(upgrade
        .max_message_size(MAX_SESSION_FRAME_BYTES)
        .max_frame_size(MAX_SESSION_FRAME_BYTES)
        .read_buffer_size(SESSION_READ_BUFFER_BYTES)
        .on_upgrade(move |socket| serve(socket, events, state, device, user)))
}

/// A request being stored; resolves to its answer.
type Pending = Pin<Box<dyn Future<Output = PushEvent> + Send>>;

async fn serve(
    mut socket: WebSocket,
    mut events: mpsc::Receiver<PushEvent>,
    state: AppState,
    device: DeviceId,
    user: UserName,
) {
    let mut pending: FuturesUnordered<Pending> = FuturesUnordered::new();
    // A session that says nothing for an interval is pinged; if it still
    // says nothing (no pong, no request) by the next tick, it is closed: a
    // dead peer holds nothing for ever.
    let interval = state.session_ping;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // After a stall, one tick late rather than several at once: a peer
    // gets a whole interval to answer each ping.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = tokio::time::Instant::now();
    let mut awaiting = false;
    loop {
        let reading = pending.len() < MAX_SESSION_IN_FLIGHT;
        let first = tokio::select! {
            _ = ping.tick() => {
                if awaiting {
                    let close = CloseFrame {
                        code: close_code::AWAY,
                        reason: Utf8Bytes::from_static("no answer to pings"),
                    };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                }
                if heard.elapsed() >= interval {
                    if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                        return;
                    }
                    awaiting = true;
                }
                continue;
            }
            event = events.recv() => match event {
                Some(event) => event,
                None => {
                    // Shutdown, device removed, or too slow: say so and end.
                    // Requests in flight still complete; their answers are lost
                    // with the session, and the client retries by message id.
                    let close = CloseFrame {
                        code: close_code::AWAY,
                        reason: Utf8Bytes::from_static("push session ended"),
                    };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                }
            },
            Some(answer) = pending.next(), if !pending.is_empty() => answer,
            message = socket.recv(), if reading => match message {
                Some(Ok(Message::Text(text))) => {
                    (heard, awaiting) = (tokio::time::Instant::now(), false);
                    match request(&state, device, &user, &text) {
                        Ok(work) => {
                            pending.push(work);
                            continue;
                        }
                        Err(refused) => refused,
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let close = CloseFrame {
                        code: close_code::UNSUPPORTED,
                        reason: Utf8Bytes::from_static("requests are JSON text frames"),
                    };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    return;
                }
                // The WebSocket layer answers pings, and a Close on the next read.
                Some(Ok(_)) => {
                    (heard, awaiting) = (tokio::time::Instant::now(), false);
                    continue;
                }
                None | Some(Err(_)) => return,
            },
        };
        // Write what is ready now and flush once.
        if feed(&mut socket, &first).await.is_err() {
            return;
        }
        for _ in 1..FRAMES_PER_FLUSH {
            let next = match events.try_recv() {
                Ok(event) => event,
                Err(_) => match pending.next().now_or_never() {
                    Some(Some(answer)) => answer,
                    _ => break,
                },
            };
            if feed(&mut socket, &next).await.is_err() {
                return;
            }
        }
        if socket.flush().await.is_err() {
            return;
        }
    }
}

/// Queues one event on the socket without flushing.
async fn feed(socket: &mut WebSocket, event: &PushEvent) -> Result<(), axum::Error> {
    match serde_json::to_string(event) {
        Ok(text) => socket.feed(Message::text(text)).await,
        Err(error) => {
            tracing::error!(%error, "could not encode a session event");
            Ok(())
        }
    }
}

/// Parses a request frame and starts its work, or answers it at once.
fn request(
    state: &AppState,
    device: DeviceId,
    user: &UserName,
    text: &str,
) -> Result<Pending, PushEvent> {
    let request: SessionRequest = serde_json::from_str(text).map_err(|error| {
        // Without a readable id the answer carries id 0.
        let id = serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|value| value.get("id")?.as_u64())
            .unwrap_or(0);
        refused(
            id,
            ApiError::BadRequest(format!("invalid request: {error}")),
        )
    })?;
    match request {
        SessionRequest::Send {
            id,
            group,
            message_id,
            epoch,
            data,
        } => {
            state
                .limits
                .send(&device, user, data.len())
                .map_err(|error| refused(id, error))?;
            let (store, pushes) = (state.store.clone(), state.pushes.clone());
            Ok(Box::pin(async move {
                match delivery::store_message(
                    &*store, &pushes, group, device, message_id, epoch, data,
                )
                .await
                {
                    Ok(appended) => PushEvent::Sent { id, appended },
                    Err(error) => refused(id, error),
                }
            }))
        }
    }
}

fn refused(id: u64, error: ApiError) -> PushEvent {
    let (status, error) = error.into_parts();
    PushEvent::Refused {
        id,
        status: status.as_u16(),
        error,
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
    fn a_device_holds_at_most_its_sessions_and_the_oldest_makes_room() {
        use mpsc::error::TryRecvError;

        let hub = Hub::default();
        hub.limit_sessions_per_device(2);
        let (device, other) = (DeviceId::random(), DeviceId::random());
        let mut sessions: Vec<_> = (0..4).map(|_| hub.subscribe(device)).collect();
        let mut others = hub.subscribe(other);
        hub.notify(device, &PushEvent::Inbox);
        // The two oldest ended; the two newest hear the device's events.
        for ended in &mut sessions[..2] {
            assert!(matches!(ended.try_recv(), Err(TryRecvError::Disconnected)));
        }
        for open in &mut sessions[2..] {
            assert_eq!(open.try_recv().unwrap(), PushEvent::Inbox);
        }
        // Another device's session is its own.
        assert!(matches!(others.try_recv(), Err(TryRecvError::Empty)));
    }

    fn group_event(group: GroupId) -> PushEvent {
        PushEvent::Group {
            group,
            seq: 1,
            entry: None,
        }
    }

    #[test]
    fn group_events_reach_the_connected_members_but_the_sender() {
        let hub = Hub::default();
        let (group, other) = (GroupId::random(), GroupId::random());
        let (alice, bob, carol) = (DeviceId::random(), DeviceId::random(), DeviceId::random());
        let mut alice_events = hub.subscribe(alice);
        let mut bob_events = hub.subscribe(bob);
        hub.joined(alice, [group]);
        hub.joined(bob, [group, other]);
        // Carol is not connected: joining records nothing.
        hub.joined(carol, [group]);
        hub.notify_group(group, &group_event(group), Some(alice));
        assert_eq!(bob_events.try_recv().unwrap(), group_event(group));
        assert!(alice_events.try_recv().is_err());

        // A commit removed Bob and added Carol, who is still not connected.
        hub.set_members(group, &[alice, carol]);
        hub.notify_group(group, &group_event(group), None);
        assert_eq!(alice_events.try_recv().unwrap(), group_event(group));
        assert!(bob_events.try_recv().is_err());
        hub.notify_group(other, &group_event(other), None);
        assert_eq!(bob_events.try_recv().unwrap(), group_event(other));

        // Disconnecting forgets the device everywhere.
        hub.disconnect(bob);
        assert!(!hub.lock().by_group.contains_key(&other));
        hub.disconnect(alice);
        assert!(hub.lock().by_group.is_empty());
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
