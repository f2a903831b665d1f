//! The history: every conversation's messages as this device keeps them,
//! read back page by page, with what is unread.
//!
//! Messages enter the history as they are written (with the outbox, which
//! tells whether they are still queued or failed) and as `sync` or a live
//! session receives them, received ones unread. Reading a conversation's history ([`Client::history`]) marks it
//! read.

use rempart_proto::{DeviceId, GroupId, MessageId, UserName};
use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use crate::Client;
use crate::error::ClientError;
use crate::store::Conversation;

/// The history's table.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    group_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    -- 1 for a received message not read yet.
    unread INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (group_id, message_id)
);
";

/// The most messages one page holds.
pub const MAX_HISTORY_PAGE: usize = 1000;

/// One message of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// Its id.
    pub id: MessageId,
    /// Who wrote it.
    pub sender: UserName,
    /// When its sender wrote it (Unix seconds, the sender's clock).
    pub time: i64,
    /// The text.
    pub text: String,
    /// Where it stands.
    pub state: MessageState,
    /// Why it failed, for [`MessageState::Failed`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Written here, in the outbox until the server can be reached.
    Queued,
    /// Written here and refused (see the entry's `reason`); kept in the
    /// outbox until retried.
    Failed,
    /// Written by this account and accepted by the server.
    Sent,
    /// Written by someone else and received here.
    Received,
}

/// Why the history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// No conversation here by that name (a user for a 1:1, or a group).
    #[error("no conversation named {0:?} here: see `rempart group list`")]
    UnknownConversation(String),
    /// `before` names no message of the conversation.
    #[error("no message {0} in this conversation")]
    UnknownMessage(MessageId),
    /// A page of no message, or of more than [`MAX_HISTORY_PAGE`].
    #[error("a page holds 1 to {MAX_HISTORY_PAGE} messages, not {0}")]
    BadLimit(usize),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] ClientError),
}

impl From<rusqlite::Error> for HistoryError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Store(error.into())
    }
}

/// A message kept in the local history.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage<'a> {
    pub group: &'a GroupId,
    pub message_id: &'a MessageId,
    pub sender: &'a UserName,
    pub sender_device: &'a DeviceId,
    pub text: &'a str,
    pub sent_at: i64,
    /// Received and not read yet.
    pub unread: bool,
}

impl Client {
    /// Stores a message in the history. Returns false if its id was already
    /// there (a duplicate).
    pub(crate) fn keep_message(&self, m: &StoredMessage<'_>) -> Result<bool, ClientError> {
        let inserted = self.store.conn().execute(
            "INSERT OR IGNORE INTO messages
                 (group_id, message_id, sender, sender_device, text, sent_at, unread)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                m.group.to_string(),
                m.message_id.to_string(),
                m.sender.as_str(),
                m.sender_device.to_string(),
                m.text,
                m.sent_at,
                m.unread
            ],
        )?;
        Ok(inserted == 1)
    }

    /// The last `limit` messages of `conversation` (a user name for a 1:1
    /// conversation, or a group name), or the `limit` before message
    /// `before`, oldest first; and the conversation is marked read.
    pub fn history(
        &self,
        conversation: &str,
        limit: usize,
        before: Option<&MessageId>,
    ) -> Result<Vec<HistoryEntry>, HistoryError> {
        if limit == 0 || limit > MAX_HISTORY_PAGE {
            return Err(HistoryError::BadLimit(limit));
        }
        let found = self.named_conversation(conversation)?;
        let group = found.group.to_string();
        let conn = self.store.conn();
        let bound: i64 = match before {
            Some(id) => conn
                .query_row(
                    "SELECT rowid FROM messages WHERE group_id = ?1 AND message_id = ?2",
                    params![group, id.to_string()],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or(HistoryError::UnknownMessage(*id))?,
            None => i64::MAX,
        };
        let mut stmt = conn.prepare(
            "SELECT m.message_id, m.sender, m.sent_at, m.text, o.state, o.reason
             FROM messages m LEFT JOIN outbox o ON o.message_id = m.message_id
             WHERE m.group_id = ?1 AND m.rowid < ?2 ORDER BY m.rowid DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            params![group, bound, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            },
        )?;
        let mut page = Vec::with_capacity(limit);
        for row in rows {
            let (id, sender, time, text, outbox, reason) = row?;
            let corrupt = || ClientError::Corrupt("a message of the history".into());
            let sender: UserName = sender.parse().map_err(|_| corrupt())?;
            let state = match outbox.as_deref() {
                Some("queued") => MessageState::Queued,
                Some("failed") => MessageState::Failed,
                Some(_) => return Err(corrupt().into()),
                None if sender == self.id.user => MessageState::Sent,
                None => MessageState::Received,
            };
            page.push(HistoryEntry {
                id: id.parse().map_err(|_| corrupt())?,
                state,
                reason,
                sender,
                time,
                text,
            });
        }
        page.reverse();
        conn.execute(
            "UPDATE messages SET unread = 0 WHERE group_id = ?1 AND unread = 1",
            [group],
        )?;
        Ok(page)
    }

    /// How many received messages of `group` are unread, and the time of
    /// its newest message (0 if none).
    pub(crate) fn unread_and_last(&self, group: &str) -> Result<(u64, i64), ClientError> {
        Ok(self.store.conn().query_row(
            "SELECT coalesce(sum(unread), 0), coalesce(max(sent_at), 0) FROM messages
             WHERE group_id = ?1",
            [group],
            |r| {
                Ok((
                    u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    r.get::<_, i64>(1)?,
                ))
            },
        )?)
    }

    /// The conversation a user names: a group of that name, else the 1:1
    /// conversation with that user.
    fn named_conversation(&self, name: &str) -> Result<Conversation, HistoryError> {
        if let Some(group) = self.store.group_named(name)? {
            return Ok(group);
        }
        let peer = name.parse::<UserName>().ok();
        match peer.map(|p| self.store.conversation_with(&p)).transpose()? {
            Some(Some(conversation)) => Ok(conversation),
            _ => Err(HistoryError::UnknownConversation(name.to_owned())),
        }
    }
}
