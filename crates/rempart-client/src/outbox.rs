//! The outbox: what this device wrote and the server has not taken yet.
//!
//! A text enters the outbox and the history together, in one local
//! transaction, before anything goes on the network: once it is queued it
//! is kept, whatever happens to the process or the connection. The outbox
//! is then delivered in the order it was written, by the send itself or by
//! the next operation that reaches the server (`sync`, another send, a
//! live session's catch-up). Each message goes in three steps:
//!
//! 1. it is encrypted in its conversation's current epoch, and the MLS
//!    message is kept in its row, in the same local transaction;
//! 2. that MLS message is uploaded under the message's client-chosen id;
//! 3. once the server says it is in the log, its row goes (the history
//!    shows it sent).
//!
//! An upload cut off sends the same bytes again later, which the server
//! answers as the first time if it had them: a message is delivered exactly
//! once even if the process dies between two steps. If a commit won the
//! epoch first, the server stored nothing, and the message is encrypted
//! again in the new epoch.
//!
//! A server out of reach, overloaded, or a conversation that keeps changing
//! leaves the message queued. Any other refusal marks it failed, with the
//! reason, and it waits there until the user retries it
//! ([`Client::retry_message`]).

use rempart_proto::{GroupId, MessageId, UserName};
use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use crate::Client;
use crate::api::{AppendOutcome, unix_now};
use crate::conversation::{self, MAX_COMMIT_ATTEMPTS};
use crate::error::ClientError;
use crate::event::Event;
use crate::history::StoredMessage;
use crate::store::Conversation;

/// The outbox's table.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    -- The conversation; for a 1:1 conversation not opened yet, the peer.
    group_id TEXT,
    peer TEXT,
    text TEXT NOT NULL,
    queued_at INTEGER NOT NULL,
    -- 'queued', or 'failed' with its reason.
    state TEXT NOT NULL,
    reason TEXT,
    -- Once encrypted: the MLS message, sent again as it is after a cut,
    -- with its epoch and this device's message counter inside it.
    epoch INTEGER,
    counter INTEGER,
    ciphertext BLOB
);
";

/// Where a message this device wrote stands, as a send reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Kept in the outbox: the server could not be reached. It is sent by
    /// the next operation that reaches it.
    Queued,
    /// The server took it: it is in the conversation's log.
    Sent,
}

/// A message this device wrote: its id and where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Outgoing {
    /// The message's id (also inside the encryption).
    pub id: MessageId,
    /// Where it stands.
    pub state: DeliveryState,
}

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// No message of that id waits in the outbox.
    #[error("no message {0} waits in the outbox: see `rempart history`")]
    UnknownMessage(MessageId),
    /// The message has not failed: it is queued, and goes by itself.
    #[error("message {0} has not failed: it is queued and will be sent by itself")]
    NotFailed(MessageId),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] ClientError),
}

impl From<rusqlite::Error> for OutboxError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Store(error.into())
    }
}

/// Whom a text is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Recipient<'a> {
    /// The 1:1 conversation with this user (opened if needed).
    Peer(&'a UserName),
    /// The group of this name.
    Group(&'a str),
}

/// What carries an encrypted message to the server.
pub(crate) trait Courier {
    /// Uploads `data`, encrypted in server epoch `epoch`, under `id`.
    async fn put(
        &mut self,
        client: &Client,
        group: &GroupId,
        id: &MessageId,
        epoch: u64,
        data: Vec<u8>,
    ) -> Result<AppendOutcome, ClientError>;
}

/// Signed HTTP requests, one per message.
#[derive(Debug)]
pub(crate) struct Http;

impl Courier for Http {
    async fn put(
        &mut self,
        client: &Client,
        group: &GroupId,
        id: &MessageId,
        epoch: u64,
        data: Vec<u8>,
    ) -> Result<AppendOutcome, ClientError> {
        client
            .api
            .put_message(client.signer(), group, id, epoch, data)
            .await
    }
}

/// What one delivery attempt of the outbox did with one message.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub id: MessageId,
    /// The conversation's name.
    pub conversation: String,
    /// Sent, or why it failed (it is then marked failed).
    pub result: Result<(), ClientError>,
}

impl Attempt {
    /// The event that reports it.
    pub(crate) fn event(&self, sender: &UserName) -> Event {
        match &self.result {
            Ok(()) => Event::MessageSent {
                conversation: self.conversation.clone(),
                sender: sender.clone(),
                message_id: self.id,
            },
            Err(e) => Event::MessageFailed {
                conversation: self.conversation.clone(),
                sender: sender.clone(),
                message_id: self.id,
                reason: e.to_string(),
            },
        }
    }
}

/// A queued message, as its row holds it.
struct Queued {
    seq: i64,
    id: MessageId,
    group: Option<GroupId>,
    peer: Option<UserName>,
    text: String,
    queued_at: i64,
    sealed: Option<Sealed>,
}

/// A queued message once encrypted.
#[derive(Clone)]
struct Sealed {
    epoch: u64,
    counter: u64,
    data: Vec<u8>,
}

/// Whether `error` leaves a message queued: the server is out of reach or
/// overloaded, or the conversation kept changing. Anything else fails it.
fn is_transient(error: &ClientError) -> bool {
    match error {
        ClientError::Network { .. } | ClientError::CommitConflict => true,
        ClientError::Server { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

impl Client {
    /// Sends `text` to `to` through the outbox: queued durably, then the
    /// outbox is delivered in order, this message included. Returns it
    /// [`DeliveryState::Sent`], or [`DeliveryState::Queued`] if the server
    /// could not be reached; if the server refused it, it is kept as
    /// failed and its error returned. What became of earlier queued
    /// messages is reported by the next sync.
    pub(crate) async fn send_through(
        &mut self,
        courier: &mut impl Courier,
        to: Recipient<'_>,
        text: &str,
    ) -> Result<Outgoing, ClientError> {
        let id = self.queue_text(to, text)?;
        let mut own = None;
        let mut others = Vec::new();
        for attempt in self.deliver_outbox(courier).await? {
            if attempt.id == id {
                own = Some(attempt.result);
            } else {
                others.push(attempt.event(&self.id.user));
            }
        }
        self.store.queue_events(&others)?;
        match own {
            Some(Ok(())) => Ok(Outgoing {
                id,
                state: DeliveryState::Sent,
            }),
            Some(Err(e)) => Err(e),
            None => Ok(Outgoing {
                id,
                state: DeliveryState::Queued,
            }),
        }
    }

    /// Puts `text` for `to` in the outbox and the history, in one local
    /// transaction. Refused at once (nothing queued): a text over the
    /// limit, an unknown group, an ended conversation.
    pub(crate) fn queue_text(
        &self,
        to: Recipient<'_>,
        text: &str,
    ) -> Result<MessageId, ClientError> {
        conversation::check_text(text)?;
        let (group, peer) = match to {
            Recipient::Group(name) => (Some(self.active_group(name)?.group), None),
            Recipient::Peer(peer) if peer == &self.id.user => {
                return Err(ClientError::SelfConversation);
            }
            Recipient::Peer(peer) => match self.store.conversation_with(peer)? {
                Some(c) if !c.active => return Err(self.ended(&c)),
                Some(c) => (Some(c.group), None),
                None => (None, Some(peer)),
            },
        };
        let id = MessageId::random();
        let queued_at = unix_now();
        self.store.atomic(|| {
            self.store.conn().execute(
                "INSERT INTO outbox (message_id, group_id, peer, text, queued_at, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'queued')",
                params![
                    id.to_string(),
                    group.map(|g| g.to_string()),
                    peer.map(UserName::as_str),
                    text,
                    queued_at
                ],
            )?;
            match group {
                Some(group) => self.keep_in_history(&group, &id, text, queued_at),
                None => Ok(()),
            }
        })?;
        Ok(id)
    }

    /// Delivers every queued message, oldest first, until the server is
    /// out of reach. Returns what each attempt did; messages after a
    /// transient failure stay queued and are not listed.
    pub(crate) async fn deliver_outbox(
        &mut self,
        courier: &mut impl Courier,
    ) -> Result<Vec<Attempt>, ClientError> {
        let mut attempts = Vec::new();
        for queued in self.queued_messages()? {
            let name = match (&queued.group, &queued.peer) {
                (Some(group), _) => self
                    .store
                    .conversation(group)?
                    .map_or_else(|| group.to_string(), |c| c.name),
                (None, Some(peer)) => peer.to_string(),
                (None, None) => String::new(),
            };
            let result = match self.deliver(courier, &queued).await {
                Err(e) if is_transient(&e) => {
                    tracing::info!(error = %e, "the outbox waits for the server");
                    break;
                }
                Err(e @ (ClientError::Store(_) | ClientError::Corrupt(_))) => return Err(e),
                Err(e) => {
                    self.store.conn().execute(
                        "UPDATE outbox SET state = 'failed', reason = ?2 WHERE seq = ?1",
                        params![queued.seq, e.to_string()],
                    )?;
                    Err(e)
                }
                Ok(()) => Ok(()),
            };
            attempts.push(Attempt {
                id: queued.id,
                conversation: name,
                result,
            });
        }
        Ok(attempts)
    }

    /// Delivers one queued message: encrypted (unless it was before a
    /// cut), uploaded, and its row dropped once the server took it.
    async fn deliver(
        &mut self,
        courier: &mut impl Courier,
        queued: &Queued,
    ) -> Result<(), ClientError> {
        let mut conversation = self.outbox_conversation(queued).await?;
        let mut sealed = queued.sealed.clone();
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let current = match sealed.take() {
                Some(sealed) => sealed,
                None => self.seal(&conversation, queued)?,
            };
            let group = conversation.group;
            match courier
                .put(self, &group, &queued.id, current.epoch, current.data)
                .await?
            {
                AppendOutcome::Accepted(_) => {
                    return self.store.atomic(|| {
                        self.store
                            .note_counter(&group, &self.id.device, current.counter)?;
                        self.store.note_sent(&group)?;
                        self.store
                            .conn()
                            .execute("DELETE FROM outbox WHERE seq = ?1", [queued.seq])?;
                        Ok(())
                    });
                }
                AppendOutcome::Stale { .. } => {
                    // Nothing was stored: encrypted again once caught up.
                    self.store.conn().execute(
                        "UPDATE outbox SET epoch = NULL, counter = NULL, ciphertext = NULL
                         WHERE seq = ?1",
                        [queued.seq],
                    )?;
                    conversation = self.catch_up_after_stale(&conversation).await?;
                }
            }
        }
        Err(ClientError::CommitConflict)
    }

    /// The active conversation a queued message is for. A 1:1 conversation
    /// not opened yet is opened now, and the message enters its history.
    async fn outbox_conversation(&mut self, queued: &Queued) -> Result<Conversation, ClientError> {
        if let Some(group) = &queued.group {
            let conversation = self
                .store
                .conversation(group)?
                .ok_or_else(|| ClientError::UnknownConversation(group.to_string()))?;
            return if conversation.active {
                Ok(conversation)
            } else {
                Err(self.ended(&conversation))
            };
        }
        let peer = queued
            .peer
            .as_ref()
            .ok_or_else(|| ClientError::Corrupt("an outbox entry names no conversation".into()))?;
        // A founding cancelled earlier may be this very conversation.
        self.settle_pending_commits().await?;
        let conversation = match self.store.conversation_with(peer)? {
            Some(c) if !c.active => return Err(self.ended(&c)),
            Some(c) => c,
            None => self.open_conversation(peer).await?,
        };
        self.store.atomic(|| {
            self.store.conn().execute(
                "UPDATE outbox SET group_id = ?2, peer = NULL WHERE seq = ?1",
                params![queued.seq, conversation.group.to_string()],
            )?;
            self.keep_in_history(
                &conversation.group,
                &queued.id,
                &queued.text,
                queued.queued_at,
            )
        })?;
        Ok(conversation)
    }

    /// Encrypts a queued message in its conversation's current epoch and
    /// keeps the MLS message in its row, in one local transaction.
    fn seal(&self, conversation: &Conversation, queued: &Queued) -> Result<Sealed, ClientError> {
        self.store.atomic(|| {
            let outgoing =
                self.prepare_text(conversation, queued.id, queued.queued_at, &queued.text)?;
            let plaintext = outgoing.envelope.plaintext()?;
            let (epoch, data) =
                self.encrypt_envelope(&conversation.group, &queued.id, &plaintext)?;
            self.store.conn().execute(
                "UPDATE outbox SET epoch = ?2, counter = ?3, ciphertext = ?4 WHERE seq = ?1",
                params![
                    queued.seq,
                    i64::try_from(epoch).map_err(|_| ClientError::Corrupt("epoch".into()))?,
                    i64::try_from(outgoing.counter)
                        .map_err(|_| ClientError::Corrupt("message counter".into()))?,
                    data
                ],
            )?;
            Ok(Sealed {
                epoch,
                counter: outgoing.counter,
                data,
            })
        })
    }

    /// Keeps a text this device wrote in the history.
    fn keep_in_history(
        &self,
        group: &GroupId,
        id: &MessageId,
        text: &str,
        time: i64,
    ) -> Result<(), ClientError> {
        self.keep_message(&StoredMessage {
            group,
            message_id: id,
            sender: &self.id.user,
            sender_device: &self.id.device,
            text,
            sent_at: time,
            unread: false,
        })?;
        Ok(())
    }

    /// The queued messages, oldest first.
    fn queued_messages(&self) -> Result<Vec<Queued>, ClientError> {
        let mut stmt = self.store.conn().prepare(
            "SELECT seq, message_id, group_id, peer, text, queued_at, epoch, counter, ciphertext
             FROM outbox WHERE state = 'queued' ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<Vec<u8>>>(8)?,
            ))
        })?;
        let corrupt = || ClientError::Corrupt("an outbox entry".into());
        let mut queued = Vec::new();
        for row in rows {
            let (seq, id, group, peer, text, queued_at, epoch, counter, data) = row?;
            let sealed = match (epoch, counter, data) {
                (Some(epoch), Some(counter), Some(data)) => Some(Sealed {
                    epoch: u64::try_from(epoch).map_err(|_| corrupt())?,
                    counter: u64::try_from(counter).map_err(|_| corrupt())?,
                    data,
                }),
                _ => None,
            };
            queued.push(Queued {
                seq,
                id: id.parse().map_err(|_| corrupt())?,
                group: group
                    .map(|g| g.parse())
                    .transpose()
                    .map_err(|_| corrupt())?,
                peer: peer.map(|p| p.parse()).transpose().map_err(|_| corrupt())?,
                text,
                queued_at,
                sealed,
            });
        }
        Ok(queued)
    }

    /// Queues again a message that failed: the next delivery of the
    /// outbox (the next sync or send) tries it afresh.
    pub fn retry_message(&self, id: &MessageId) -> Result<(), OutboxError> {
        let state: Option<String> = self
            .store
            .conn()
            .query_row(
                "SELECT state FROM outbox WHERE message_id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        match state.as_deref() {
            None => Err(OutboxError::UnknownMessage(*id)),
            Some("failed") => {
                self.store.conn().execute(
                    "UPDATE outbox SET state = 'queued', reason = NULL, epoch = NULL,
                         counter = NULL, ciphertext = NULL
                     WHERE message_id = ?1",
                    [id.to_string()],
                )?;
                Ok(())
            }
            Some(_) => Err(OutboxError::NotFailed(*id)),
        }
    }
}
