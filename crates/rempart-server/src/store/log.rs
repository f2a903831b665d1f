//! The rules of a group's log that every database applies alike: how a
//! log entry's kind is stored, and when an upload whose message id is
//! already in the log is a retry.

use rempart_proto::api::EntryKind;
use rempart_proto::{DeviceId, MessageId};

use crate::store::StoreError;

/// An entry already in a group's log under the message id of an upload.
#[derive(Debug)]
pub(crate) struct EarlierEntry {
    /// Its place in the log.
    pub(crate) seq: u64,
    /// Commit or application message.
    pub(crate) kind: EntryKind,
    /// The epoch it was built or encrypted in.
    pub(crate) epoch: u64,
    /// The device that sent it.
    pub(crate) sender: DeviceId,
    /// Its bytes.
    pub(crate) data: Vec<u8>,
}

/// If `earlier` holds the log's entry under `message_id`: its `(seq, epoch)`
/// when it is this very upload (a retry), else
/// [`StoreError::DuplicateMessageId`].
pub(crate) fn retry_of(
    earlier: Option<EarlierEntry>,
    message_id: MessageId,
    sender: DeviceId,
    kind: EntryKind,
    data: &[u8],
) -> Result<Option<(u64, u64)>, StoreError> {
    let Some(earlier) = earlier else {
        return Ok(None);
    };
    if earlier.kind != kind || earlier.sender != sender || earlier.data != data {
        return Err(StoreError::DuplicateMessageId(message_id));
    }
    Ok(Some((earlier.seq, earlier.epoch)))
}

/// How a kind is stored.
pub(crate) fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Commit => "commit",
        EntryKind::Application => "application",
    }
}

/// A stored kind.
pub(crate) fn parse_kind(name: &str) -> Result<EntryKind, StoreError> {
    match name {
        "commit" => Ok(EntryKind::Commit),
        "application" => Ok(EntryKind::Application),
        other => Err(StoreError::Corrupt(format!("log entry kind {other:?}"))),
    }
}
