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
//! The group operations run the same way ([`Live::create_group`],
//! [`Live::add_member`], [`Live::remove_member`], [`Live::leave_group`]);
//! what they learn on the way comes out as events.
//! A text goes through the outbox ([`crate::outbox`]): while connected,
//! over the session itself, without a signature per message (the session
//! was opened by a signed request); otherwise over HTTP, as without the
//! session. With the server out of reach it waits in the outbox, and the
//! catch-up after the next (re)connection or poll sends it.
//! [`Live::stop`] gives the [`Client`] back.

use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use rand::Rng as _;
use rempart_proto::api::{Appended, PushEvent, SessionRequest};
use rempart_proto::{GroupId, MessageId, UserName};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::Client;
use crate::api::{AppendOutcome, WebSocket};
use crate::error::ClientError;
use crate::event::Event;
use crate::outbox::{Courier, DeliveryState, Http, Outgoing, Recipient};

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
    Send {
        to: Target,
        text: String,
        reply: oneshot::Sender<Result<Outgoing, ClientError>>,
    },
    /// A group operation, run on the client in turn; what it learnt on the
    /// way comes out as events.
    Group {
        change: GroupChange,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    /// A local read or write of the client, run in turn.
    Local(Box<dyn FnOnce(&Client) + Send>),
    /// An operation of the client that may call the server, run in turn.
    Operation(Operation),
    Stop {
        reply: oneshot::Sender<Client>,
    },
}

/// An operation asked of the live session: given the client, the future
/// that runs it (and sends its result back).
type Operation = Box<dyn for<'c> FnOnce(&'c Client) -> LocalBoxFuture<'c, ()> + Send>;

/// A group operation asked of the live session.
#[derive(Debug)]
enum GroupChange {
    Create {
        name: String,
        members: Vec<UserName>,
    },
    Add {
        name: String,
        user: UserName,
    },
    Remove {
        name: String,
        user: UserName,
    },
    Leave {
        name: String,
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
            Self::Send { .. } => "Send",
            Self::Group { .. } => "Group",
            Self::Local(_) => "Local",
            Self::Operation(_) => "Operation",
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

    /// Sends `text` to `to` through the outbox ([`Client::send_text`]):
    /// queued if the server cannot be reached, which the event stream also
    /// reports ([`Event::MessageQueued`]).
    pub async fn send_text(&self, to: &UserName, text: &str) -> Result<Outgoing, SessionError> {
        self.send(Target::Peer(to.clone()), text).await
    }

    /// Sends `text` to the group `group` ([`Client::send_to_group`]), as
    /// [`Live::send_text`] does.
    pub async fn send_to_group(&self, group: &str, text: &str) -> Result<Outgoing, SessionError> {
        self.send(Target::Group(group.to_owned()), text).await
    }

    async fn send(&self, to: Target, text: &str) -> Result<Outgoing, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Request::Send {
            to,
            text: text.to_owned(),
            reply,
        })
        .await?;
        Ok(answer.await.map_err(|_| SessionError::Stopped)??)
    }

    /// Creates the group `name` with `members` ([`Client::create_group`]).
    pub async fn create_group(&self, name: &str, members: &[UserName]) -> Result<(), SessionError> {
        self.change(GroupChange::Create {
            name: name.to_owned(),
            members: members.to_vec(),
        })
        .await
    }

    /// Adds `user` to the group `name` ([`Client::add_member`]).
    pub async fn add_member(&self, name: &str, user: &UserName) -> Result<(), SessionError> {
        self.change(GroupChange::Add {
            name: name.to_owned(),
            user: user.clone(),
        })
        .await
    }

    /// Removes `user` from the group `name` ([`Client::remove_member`]).
    pub async fn remove_member(&self, name: &str, user: &UserName) -> Result<(), SessionError> {
        self.change(GroupChange::Remove {
            name: name.to_owned(),
            user: user.clone(),
        })
        .await
    }

    /// Leaves the group `name` ([`Client::leave_group`]).
    pub async fn leave_group(&self, name: &str) -> Result<(), SessionError> {
        self.change(GroupChange::Leave {
            name: name.to_owned(),
        })
        .await
    }

    async fn change(&self, change: GroupChange) -> Result<(), SessionError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Request::Group { change, reply }).await?;
        Ok(answer.await.map_err(|_| SessionError::Stopped)??)
    }

    /// Runs `read` on the client, between two of the session's own steps
    /// (the store is used by one thread at a time), and returns what it
    /// gives: the conversation list, a page of history, a roster.
    pub async fn local<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Client) -> T + Send + 'static,
    ) -> Result<T, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Request::Local(Box::new(move |client: &Client| {
            let _ = reply.send(read(client));
        })))
        .await?;
        answer.await.map_err(|_| SessionError::Stopped)
    }

    /// Runs `operation` on the client in turn, as [`Live::local`] does,
    /// for an operation that calls the server: a safety number, the
    /// account's devices. The session waits for it.
    pub async fn operation<T: Send + 'static>(
        &self,
        operation: impl for<'c> FnOnce(&'c Client) -> LocalBoxFuture<'c, T> + Send + 'static,
    ) -> Result<T, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.ask(Request::Operation(Box::new(move |client: &Client| {
            let running = operation(client);
            Box::pin(async move {
                let _ = reply.send(running.await);
            })
        })))
        .await?;
        answer.await.map_err(|_| SessionError::Stopped)
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
                        if let Ended::Stopped(reply) = handle(&mut client, request, &events).await {
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
    // Ids of this session's requests.
    let mut outbound = 0;
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
            request = requests.recv() => {
                let outcome = match request {
                    Some(Request::Send { to, text, reply }) => {
                        let mut courier = OverSession {
                            socket: &mut socket,
                            outbound: &mut outbound,
                            after: After::Nothing,
                        };
                        let result = client.send_through(&mut courier, to.recipient(), &text).await;
                        let after = courier.after;
                        report_queued(&result, &to, client, events);
                        let _ = reply.send(result);
                        after
                    }
                    Some(Request::Group { change, reply }) => {
                        let (result, learnt) = run_change(client, change).await;
                        let _ = reply.send(result);
                        keep_learnt(client, &learnt);
                        After::CatchUp
                    }
                    Some(Request::Local(read)) => {
                        read(client);
                        After::Nothing
                    }
                    Some(Request::Operation(operation)) => {
                        operation(client).await;
                        After::Nothing
                    }
                    Some(Request::Stop { reply }) => return Ended::Stopped(Some(reply)),
                    None => return Ended::Stopped(None),
                };
                match outcome {
                    After::Nothing => {}
                    After::CatchUp => catch_up(client, events).await,
                    After::Reconnect => return Ended::Disconnected,
                }
            }
        }
        if events.is_closed() {
            return Ended::Stopped(None);
        }
    }
}

/// Where a text goes.
enum Target {
    Peer(UserName),
    Group(String),
}

impl Target {
    fn recipient(&self) -> Recipient<'_> {
        match self {
            Self::Peer(peer) => Recipient::Peer(peer),
            Self::Group(name) => Recipient::Group(name),
        }
    }
}

/// What the session does after a send over it.
enum After {
    Nothing,
    /// Pushes came while waiting for the answer.
    CatchUp,
    /// The connection dropped.
    Reconnect,
}

/// The answer to a send over the session.
enum Answer {
    /// Durably in the log.
    Sent(Appended),
    /// Refused, nothing stored.
    Refused,
    /// The connection dropped before the answer.
    Cut,
}

/// Carries the outbox's messages over the session: without a signature of
/// their own (the session was opened by a signed request). A message the
/// session refused goes again over HTTP, whose answer says why (another
/// commit won the epoch, or the error); one cut off goes again over HTTP
/// with the same id and bytes, which the server answers as the first time
/// if it had it. Once cut off, the rest goes over HTTP.
struct OverSession<'s> {
    socket: &'s mut WebSocket,
    /// The last request id of this session.
    outbound: &'s mut u64,
    after: After,
}

impl OverSession<'_> {
    /// Sends session request `id` (`frame`) and waits for its answer.
    async fn send(&mut self, id: u64, frame: String) -> Answer {
        if self.socket.send(Message::text(frame)).await.is_err() {
            return Answer::Cut;
        }
        while let Some(Ok(message)) = self.socket.next().await {
            let Message::Text(text) = &message else {
                continue;
            };
            match serde_json::from_str::<PushEvent>(text.as_str()) {
                Ok(PushEvent::Sent {
                    id: answer,
                    appended,
                }) if answer == id => {
                    return Answer::Sent(appended);
                }
                Ok(PushEvent::Refused { id: answer, .. }) if answer == id => {
                    return Answer::Refused;
                }
                Ok(PushEvent::Group { .. } | PushEvent::Inbox) => self.after = After::CatchUp,
                _ => {}
            }
        }
        Answer::Cut
    }
}

impl Courier for OverSession<'_> {
    async fn put(
        &mut self,
        client: &Client,
        group: &GroupId,
        id: &MessageId,
        epoch: u64,
        data: Vec<u8>,
    ) -> Result<AppendOutcome, ClientError> {
        if !matches!(self.after, After::Reconnect) {
            *self.outbound += 1;
            let request = *self.outbound;
            let frame = serde_json::to_string(&SessionRequest::Send {
                id: request,
                group: *group,
                message_id: *id,
                epoch,
                data: data.clone(),
            })
            .map_err(|e| ClientError::Corrupt(e.to_string()))?;
            match self.send(request, frame).await {
                Answer::Sent(appended) => return Ok(AppendOutcome::Accepted(appended)),
                Answer::Refused => {}
                Answer::Cut => self.after = After::Reconnect,
            }
        }
        Http.put(client, group, id, epoch, data).await
    }
}

/// Tells the event stream that a send was queued: the server could not be
/// reached.
fn report_queued(
    result: &Result<Outgoing, ClientError>,
    to: &Target,
    client: &Client,
    events: &mpsc::UnboundedSender<Event>,
) {
    if let Ok(Outgoing {
        id,
        state: DeliveryState::Queued,
    }) = result
    {
        let conversation = match to {
            Target::Peer(peer) => peer.to_string(),
            Target::Group(name) => name.clone(),
        };
        let _ = events.send(Event::MessageQueued {
            conversation,
            sender: client.id.user.clone(),
            message_id: *id,
        });
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
async fn handle(
    client: &mut Client,
    request: Request,
    events: &mpsc::UnboundedSender<Event>,
) -> Ended {
    match request {
        Request::Send { to, text, reply } => {
            let result = client.send_through(&mut Http, to.recipient(), &text).await;
            report_queued(&result, &to, client, events);
            let _ = reply.send(result);
        }
        Request::Group { change, reply } => {
            let (result, learnt) = run_change(client, change).await;
            let _ = reply.send(result);
            keep_learnt(client, &learnt);
        }
        Request::Local(read) => read(client),
        Request::Operation(operation) => operation(client).await,
        Request::Stop { reply } => return Ended::Stopped(Some(reply)),
    }
    Ended::Disconnected
}

/// Runs a group operation: its result, and the events it learnt on the
/// way (other members' changes it caught up with).
async fn run_change(
    client: &mut Client,
    change: GroupChange,
) -> (Result<(), ClientError>, Vec<Event>) {
    let result = match change {
        GroupChange::Create { name, members } => client
            .create_group(&name, &members)
            .await
            .map(|()| Vec::new()),
        GroupChange::Add { name, user } => client.add_member(&name, &user).await,
        GroupChange::Remove { name, user } => client.remove_member(&name, &user).await,
        GroupChange::Leave { name } => client.leave_group(&name).await.map(|()| Vec::new()),
    };
    match result {
        Ok(learnt) => (Ok(()), learnt),
        Err(e) => (Err(e), Vec::new()),
    }
}

/// Queues what an operation learnt on the way, for the next catch-up to
/// report with everything else.
fn keep_learnt(client: &Client, learnt: &[Event]) {
    if let Err(e) = client.store.queue_events(learnt) {
        tracing::warn!(error = %e, "could not keep what a group operation learnt");
    }
}
