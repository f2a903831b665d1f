//! The live session: this device connected to its server, as a messenger
//! is.
//!
//! [`Live::start`] takes the [`Client`] and runs it in a task of its own,
//! which keeps one authenticated WebSocket session with the server (the
//! signed upgrade of `GET /v1/ws`, failing over between server nodes as
//! requests do). Every push (a conversation's log grew, the inbox has a
//! Welcome) makes it catch up by cursor, and so does every (re)connection,
//! so nothing pushed while it was away is missed; what it learns comes out
//! of [`Live::next_event`] as the same [`Event`]s `sync` returns. When the
//! session drops it reconnects after a pause that doubles from
//! [`MIN_BACKOFF`] up to [`MAX_BACKOFF`], with jitter; while the server
//! refuses the upgrade (or a proxy on the way cannot carry it), it polls
//! instead, every pause, at most [`MAX_POLL`] apart, and tries the upgrade
//! again each time.
//!
//! A UI or a script sends while the stream runs ([`Live::send_text`],
//! [`Live::send_to_group`]): the session's task runs each request between
//! two catch-ups, on the same store, so nothing runs concurrently on it.
//! [`Live::stop`] gives the [`Client`] back.

use std::time::Duration;

use futures_util::{FutureExt as _, StreamExt as _};
use rand::Rng as _;
use rempart_proto::api::PushEvent;
use rempart_proto::{MessageId, UserName};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::Client;
use crate::api::WebSocket;
use crate::error::ClientError;
use crate::event::Event;

/// The first pause before reconnecting (and between polls).
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause before reconnecting.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest pause between two polls while the server refuses the
/// session.
pub const MAX_POLL: Duration = Duration::from_secs(5);

/// How the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Connecting for the first time.
    Connecting,
    /// Connected: pushes arrive as they happen.
    Live,
    /// The server refused the session or is out of reach: catching up by
    /// polling, and trying again after a pause.
    Polling,
}

/// Why a request to the live session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session's task is gone (it was stopped, or its client failed
    /// beyond repair).
    #[error("the live session has stopped")]
    Stopped,
    /// The session's thread could not be started.
    #[error("the live session could not start: {0}")]
    Start(String),
    /// The operation itself failed, as it would have without the session.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// A request to the session's task.
enum Request {
    SendText {
        to: UserName,
        text: String,
        reply: oneshot::Sender<Result<MessageId, ClientError>>,
    },
    SendToGroup {
        group: String,
        text: String,
        reply: oneshot::Sender<Result<MessageId, ClientError>>,
    },
    Stop {
        reply: oneshot::Sender<Client>,
    },
}

/// A [`Client`] running live (see the module documentation).
#[derive(Debug)]
pub struct Live {
    events: mpsc::UnboundedReceiver<Event>,
    requests: mpsc::Sender<Request>,
    state: watch::Receiver<SessionState>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SendText { .. } => "SendText",
            Self::SendToGroup { .. } => "SendToGroup",
            Self::Stop { .. } => "Stop",
        })
    }
}

impl Live {
    /// Starts running `client` live, on a thread of its own (the store is
    /// used by one thread at a time); the handle works from any runtime.
    pub fn start(client: Client) -> Result<Self, SessionError> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (requests, requests_rx) = mpsc::channel(16);
        let (state_tx, state) = watch::channel(SessionState::Connecting);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SessionError::Start(e.to_string()))?;
        std::thread::Builder::new()
            .name("rempart-live".into())
            .spawn(move || runtime.block_on(run(client, events_tx, requests_rx, state_tx)))
            .map_err(|e| SessionError::Start(e.to_string()))?;
        Ok(Self {
            events,
            requests,
            state,
        })
    }

    /// The next event, as it is learnt; `None` once the session stopped.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// How the session stands now.
    pub fn state(&self) -> SessionState {
        *self.state.borrow()
    }

    /// Sends `text` to `to` ([`Client::send_text`]).
    pub async fn send_text(&self, to: &UserName, text: &str) -> Result<MessageId, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Request::SendText {
            to: to.clone(),
            text: text.to_owned(),
            reply,
        })
        .await?;
        Ok(answer.await.map_err(|_| SessionError::Stopped)??)
    }

    /// Sends `text` to the group `group` ([`Client::send_to_group`]).
    pub async fn send_to_group(&self, group: &str, text: &str) -> Result<MessageId, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Request::SendToGroup {
            group: group.to_owned(),
            text: text.to_owned(),
            reply,
        })
        .await?;
        Ok(answer.await.map_err(|_| SessionError::Stopped)??)
    }

    /// Closes the session and gives the client back.
    pub async fn stop(self) -> Result<Client, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Request::Stop { reply }).await?;
        answer.await.map_err(|_| SessionError::Stopped)
    }

    async fn ask(&self, request: Request) -> Result<(), SessionError> {
        self.requests
            .send(request)
            .await
            .map_err(|_| SessionError::Stopped)
    }
}

/// How serving a connected session (or a pause) ended.
enum Ended {
    /// The connection dropped (or the pause is over): connect again.
    Disconnected,
    /// Asked to stop (with where to give the client back), or nobody
    /// listens any more.
    Stopped(Option<oneshot::Sender<Client>>),
}

/// The session's task.
async fn run(
    mut client: Client,
    events: mpsc::UnboundedSender<Event>,
    mut requests: mpsc::Receiver<Request>,
    state: watch::Sender<SessionState>,
) {
    let mut pause = MIN_BACKOFF;
    loop {
        let mut longest = MAX_BACKOFF;
        match client.api.connect_session(client.signer()).await {
            Ok(socket) => {
                let _ = state.send(SessionState::Live);
                pause = MIN_BACKOFF;
                // Catch up by cursor: what was pushed while away.
                catch_up(&mut client, &events).await;
                match serve(&mut client, socket, &events, &mut requests).await {
                    Ended::Disconnected => {}
                    Ended::Stopped(reply) => return give_back(client, reply),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no live session; polling");
                let _ = state.send(SessionState::Polling);
                catch_up(&mut client, &events).await;
                longest = MAX_POLL;
            }
        }
        // A pause of `pause` with jitter, serving requests meanwhile.
        let jittered = pause.mul_f64(rand::thread_rng().gen_range(0.5..1.5));
        pause = (pause * 2).min(longest);
        let deadline = tokio::time::Instant::now() + jittered;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                request = requests.recv() => match request {
                    Some(request) => {
                        if let Ended::Stopped(reply) = handle(&mut client, request).await {
                            return give_back(client, reply);
                        }
                    }
                    None => return,
                },
            }
        }
        if events.is_closed() {
            return;
        }
    }
}

/// Hands the client back to whoever stopped the session.
fn give_back(client: Client, reply: Option<oneshot::Sender<Client>>) {
    if let Some(reply) = reply {
        let _ = reply.send(client);
    }
}

/// Serves a connected session: pushes make it catch up, requests run in
/// turn.
async fn serve(
    client: &mut Client,
    mut socket: WebSocket,
    events: &mpsc::UnboundedSender<Event>,
    requests: &mut mpsc::Receiver<Request>,
) -> Ended {
    loop {
        tokio::select! {
            message = socket.next() => {
                let Some(Ok(message)) = message else {
                    return Ended::Disconnected;
                };
                if !is_push(&message) {
                    continue;
                }
                // Pushes that arrived meanwhile are covered by one catch-up.
                while let Some(Some(Ok(_))) = socket.next().now_or_never() {}
                catch_up(client, events).await;
            }
            request = requests.recv() => match request {
                Some(request) => {
                    if let Ended::Stopped(reply) = handle(client, request).await {
                        return Ended::Stopped(reply);
                    }
                }
                None => return Ended::Stopped(None),
            },
        }
        if events.is_closed() {
            return Ended::Stopped(None);
        }
    }
}

/// Whether `message` is a push that calls for a catch-up.
fn is_push(message: &Message) -> bool {
    let Message::Text(text) = message else {
        return false;
    };
    matches!(
        serde_json::from_str::<PushEvent>(text.as_str()),
        Ok(PushEvent::Group { .. } | PushEvent::Inbox)
    )
}

/// Syncs and passes on what it learnt. A failure is logged and left for
/// the next catch-up: the events stay queued in the store until reported.
async fn catch_up(client: &mut Client, events: &mpsc::UnboundedSender<Event>) {
    match client.sync().await {
        Ok(learnt) => {
            for event in learnt {
                let _ = events.send(event);
            }
        }
        Err(ClientError::Alert(alert)) => {
            let _ = events.send(alert.into());
        }
        Err(e) => tracing::warn!(error = %e, "catching up failed; trying again later"),
    }
}

/// Runs one request; [`Ended::Stopped`] once asked to stop.
async fn handle(client: &mut Client, request: Request) -> Ended {
    match request {
        Request::SendText { to, text, reply } => {
            let _ = reply.send(client.send_text(&to, &text).await);
        }
        Request::SendToGroup { group, text, reply } => {
            let _ = reply.send(client.send_to_group(&group, &text).await);
        }
        Request::Stop { reply } => return Ended::Stopped(Some(reply)),
    }
    Ended::Disconnected
}
