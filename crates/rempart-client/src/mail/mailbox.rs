//! The mail kept on this device: each message as it was read (decrypted
//! and verified when it arrived, in the device's store, encrypted at rest
//! with it), with its security state beside its content, and threaded by
//! `Message-ID`, `In-Reply-To` and `References`.

use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;

use super::mime::Opened;
use super::{MailAddress, MailError, MailKeySource};
use crate::Client;
use crate::api::unix_now;
use crate::error::ClientError;

/// The folder received mail is read from unless another is named.
pub const INBOX: &str = "INBOX";

/// The folder this device keeps the copies of what it sent in.
pub const SENT: &str = "Sent";

/// The mailbox component's tables: the messages, and how far each IMAP
/// folder was read.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mail_messages (
    id           INTEGER PRIMARY KEY,
    address      TEXT NOT NULL,
    folder       TEXT NOT NULL,
    uid_validity INTEGER,
    uid          INTEGER,
    message_id   TEXT,
    in_reply_to  TEXT,
    refs         TEXT NOT NULL,
    thread       TEXT NOT NULL,
    sender       TEXT,
    to_addrs     TEXT NOT NULL,
    cc_addrs     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    body         TEXT,
    encrypted    INTEGER NOT NULL,
    signed_by    TEXT,
    assurance    TEXT,
    problem      TEXT,
    in_clear_to  TEXT NOT NULL DEFAULT '[]',
    bcc_addrs    TEXT NOT NULL DEFAULT '[]',
    date         INTEGER,
    kept_at      INTEGER NOT NULL,
    UNIQUE (address, folder, uid_validity, uid)
);
CREATE INDEX IF NOT EXISTS mail_messages_by_id ON mail_messages (message_id);
CREATE INDEX IF NOT EXISTS mail_messages_by_thread ON mail_messages (folder, thread);
CREATE TABLE IF NOT EXISTS mail_folders (
    address      TEXT NOT NULL,
    folder       TEXT NOT NULL,
    uid_validity INTEGER NOT NULL,
    last_uid     INTEGER NOT NULL,
    PRIMARY KEY (address, folder)
);
";

/// A kept message, without its text: what `rempart mail list` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailSummary {
    /// This device's number for it.
    pub id: i64,
    /// The folder it is in.
    pub folder: String,
    /// The sender.
    pub from: Option<String>,
    /// The `To` recipients.
    pub to: Vec<String>,
    /// The `Cc` recipients.
    pub cc: Vec<String>,
    /// The subject (the protected one of an encrypted message).
    pub subject: String,
    /// When it says it was written (Unix time).
    pub date: Option<i64>,
    /// Whether its text came from one encrypted root whose integrity check
    /// passed (for a sent copy: whether every copy went encrypted).
    pub encrypted: bool,
    /// The fingerprint of the certificate that signed it, held for its
    /// `From` address; `None` if unsigned or not verified.
    pub signed_by: Option<String>,
    /// Where that certificate came from: how sure it is.
    pub assurance: Option<MailKeySource>,
    /// The thread: the id of its first message known.
    pub thread: String,
    /// Its `Message-ID`.
    pub message_id: Option<String>,
    /// Why its text is not shown (it could not be decrypted or read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// For a sent copy: the recipients it went to in the clear.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sent_in_clear_to: Vec<String>,
    /// For a sent copy: its `Bcc` recipients (no other copy names them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<String>,
}

/// A kept message with its text: what `rempart mail read` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailMessage {
    /// Its list entry.
    #[serde(flatten)]
    pub summary: MailSummary,
    /// Its text; `None` when it could not be read.
    pub body: Option<String>,
    /// The id of the message it answers.
    pub in_reply_to: Option<String>,
    /// The ids of the thread before it.
    pub references: Vec<String>,
}

/// Where a message to keep came from.
pub(crate) struct Place<'a> {
    /// This account's address whose mailbox it is in.
    pub address: &'a MailAddress,
    /// The folder.
    pub folder: &'a str,
    /// Its IMAP UIDVALIDITY and UID, for mail read from a server.
    pub uid: Option<(u32, u32)>,
}

/// A message to keep: read, or not readable and why.
pub(crate) struct Kept {
    /// What was read of it.
    pub opened: Opened,
    /// Where its signer's certificate came from.
    pub assurance: Option<MailKeySource>,
    /// Why its text is not shown.
    pub problem: Option<String>,
    /// The recipients a sent copy went to in the clear.
    pub sent_in_clear_to: Vec<String>,
    /// A sent copy's `Bcc` recipients.
    pub bcc: Vec<String>,
}

fn to_json<T: Serialize>(value: &T) -> Result<String, ClientError> {
    serde_json::to_string(value).map_err(|e| ClientError::Corrupt(e.to_string()))
}

fn from_json(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn strings(addresses: &[MailAddress]) -> Vec<String> {
    addresses.iter().map(ToString::to_string).collect()
}

const COLUMNS: &str = "id, folder, sender, to_addrs, cc_addrs, subject, date, encrypted,
    signed_by, assurance, thread, message_id, problem, in_clear_to, body, in_reply_to, refs,
    bcc_addrs";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MailMessage> {
    let assurance: Option<String> = r.get(9)?;
    Ok(MailMessage {
        summary: MailSummary {
            id: r.get(0)?,
            folder: r.get(1)?,
            from: r.get(2)?,
            to: from_json(&r.get::<_, String>(3)?),
            cc: from_json(&r.get::<_, String>(4)?),
            subject: r.get(5)?,
            date: r.get(6)?,
            encrypted: r.get(7)?,
            signed_by: r.get(8)?,
            assurance: assurance.and_then(|a| MailKeySource::parse(&a).ok()),
            thread: r.get(10)?,
            message_id: r.get(11)?,
            problem: r.get(12)?,
            sent_in_clear_to: from_json(&r.get::<_, String>(13)?),
            bcc: from_json(&r.get::<_, String>(17)?),
        },
        body: r.get(14)?,
        in_reply_to: r.get(15)?,
        references: from_json(&r.get::<_, String>(16)?),
    })
}

/// Brings a mailbox table made before a column existed up to [`SCHEMA`].
pub(crate) fn upgrade(conn: &rusqlite::Connection) -> Result<(), ClientError> {
    let has_bcc: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('mail_messages') WHERE name = 'bcc_addrs'",
        [],
        |r| r.get(0),
    )?;
    if !has_bcc {
        conn.execute_batch(
            "ALTER TABLE mail_messages ADD COLUMN bcc_addrs TEXT NOT NULL DEFAULT '[]'",
        )?;
    }
    Ok(())
}

impl Client {
    /// The thread a message belongs to: the thread of a kept message it
    /// names in `References` or `In-Reply-To`, else the oldest id it
    /// names, else its own id.
    fn thread_of(&self, opened: &Opened) -> Result<String, ClientError> {
        let conn = self.store.conn();
        let named: Vec<&String> = opened
            .references
            .iter()
            .chain(opened.in_reply_to.as_ref())
            .collect();
        for id in &named {
            let thread: Option<String> = conn
                .query_row(
                    "SELECT thread FROM mail_messages WHERE message_id = ?1 ORDER BY id LIMIT 1",
                    [id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(thread) = thread {
                return Ok(thread);
            }
        }
        Ok(named
            .first()
            .map(|id| (*id).clone())
            .or_else(|| opened.message_id.clone())
            .unwrap_or_else(|| format!("local-{}", super::mime::new_message_id("thread"))))
    }

    /// Keeps `kept` at `place`; a message already kept there (same UID)
    /// is not kept twice. Returns its id.
    pub(crate) fn keep_mail(&self, place: &Place<'_>, kept: &Kept) -> Result<i64, ClientError> {
        let opened = &kept.opened;
        let thread = self.thread_of(opened)?;
        let (validity, uid) = place.uid.unzip();
        let conn = self.store.conn();
        conn.execute(
            "INSERT OR IGNORE INTO mail_messages (address, folder, uid_validity, uid, message_id,
                 in_reply_to, refs, thread, sender, to_addrs, cc_addrs, subject, body, encrypted,
                 signed_by, assurance, problem, in_clear_to, date, kept_at, bcc_addrs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?21)",
            params![
                place.address.as_str(),
                place.folder,
                validity,
                uid,
                opened.message_id,
                opened.in_reply_to,
                to_json(&opened.references)?,
                thread,
                opened.from.as_ref().map(MailAddress::as_str),
                to_json(&strings(&opened.to))?,
                to_json(&strings(&opened.cc))?,
                opened.subject,
                kept.problem.is_none().then_some(opened.body.as_str()),
                opened.encrypted,
                opened.signed_by.as_ref().map(|f| f.as_str()),
                kept.assurance.map(MailKeySource::as_str),
                kept.problem,
                to_json(&kept.sent_in_clear_to)?,
                opened.date,
                unix_now(),
                to_json(&kept.bcc)?
            ],
        )?;
        let id = match place.uid {
            Some((validity, uid)) => conn.query_row(
                "SELECT id FROM mail_messages
                 WHERE address = ?1 AND folder = ?2 AND uid_validity = ?3 AND uid = ?4",
                params![place.address.as_str(), place.folder, validity, uid],
                |r| r.get(0),
            )?,
            None => conn.last_insert_rowid(),
        };
        Ok(id)
    }

    /// The messages kept in `folder`, a thread's messages together (the
    /// thread begun first, first), each thread in the order written.
    pub fn mail_list(&self, folder: &str) -> Result<Vec<MailSummary>, ClientError> {
        let conn = self.store.conn();
        let mut query = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM mail_messages m WHERE folder = ?1
             ORDER BY (SELECT min(coalesce(date, kept_at)) FROM mail_messages t
                       WHERE t.thread = m.thread AND t.folder = m.folder),
                      thread, coalesce(date, kept_at), id"
        ))?;
        let rows = query
            .query_map([folder], message_row)?
            .map(|row| row.map(|m| m.summary))
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// The message kept as `id`, with its text.
    pub fn mail_read(&self, id: i64) -> Result<MailMessage, ClientError> {
        self.store
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM mail_messages WHERE id = ?1"),
                [id],
                message_row,
            )
            .optional()?
            .ok_or_else(|| MailError::NoMessage(id).into())
    }

    /// How far `folder` of `address` was read: its UIDVALIDITY and the
    /// last UID kept.
    pub(crate) fn folder_mark(
        &self,
        address: &MailAddress,
        folder: &str,
    ) -> Result<Option<(u32, u32)>, ClientError> {
        Ok(self
            .store
            .conn()
            .query_row(
                "SELECT uid_validity, last_uid FROM mail_folders WHERE address = ?1 AND folder = ?2",
                params![address.as_str(), folder],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Records that `folder` of `address` was read up to `last_uid`.
    pub(crate) fn set_folder_mark(
        &self,
        address: &MailAddress,
        folder: &str,
        (validity, last_uid): (u32, u32),
    ) -> Result<(), ClientError> {
        self.store.conn().execute(
            "INSERT OR REPLACE INTO mail_folders (address, folder, uid_validity, last_uid)
             VALUES (?1, ?2, ?3, ?4)",
            params![address.as_str(), folder, validity, last_uid],
        )?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_table_made_before_the_bcc_column_gains_it() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let without = SCHEMA.replace("    bcc_addrs    TEXT NOT NULL DEFAULT '[]',\n", "");
        assert_ne!(without, SCHEMA);
        conn.execute_batch(&without).unwrap();
        upgrade(&conn).unwrap();
        upgrade(&conn).unwrap();
        let columns: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('mail_messages') WHERE name = 'bcc_addrs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(columns, 1);
    }
}
