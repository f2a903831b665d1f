//! Errors of the client engine.
//!
//! [`ClientError::Alert`] is the one to show loudly: the server or a peer
//! misbehaved. The other variants are failures (network, local store) or
//! misuse (no account yet, unknown user).

use std::path::PathBuf;

use rempart_proto::{DeviceId, UserName};

use crate::event::Alert;

/// Everything that can go wrong in the client engine.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The home directory holds no account.
    #[error("no account in {}: run `rempart init`", home.display())]
    NoAccount {
        /// The home directory that was searched.
        home: PathBuf,
    },
    /// The store is encrypted, and no passphrase was given.
    #[error(
        "the store in {} is encrypted: give its passphrase in the file named by REMPART_PASSPHRASE_FILE, or run this on a terminal to type it",
        home.display()
    )]
    StoreLocked {
        /// The home directory.
        home: PathBuf,
    },
    /// The passphrase does not open the store.
    #[error(
        "the passphrase does not open the store in {}: check it and try again (nothing was changed)",
        home.display()
    )]
    WrongPassphrase {
        /// The home directory.
        home: PathBuf,
    },
    /// The store is encrypted, and its header is missing.
    #[error(
        "{} is encrypted, and no {} beside it says how to open it",
        path.display(),
        crate::at_rest::HEADER_FILE
    )]
    NotPlain {
        /// The store.
        path: PathBuf,
    },
    /// A mail operation failed.
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    /// The store's encryption at rest failed.
    #[error(transparent)]
    AtRest(#[from] crate::at_rest::AtRestError),
    /// The home directory already holds an account.
    #[error("{} already holds an account: use another --home", home.display())]
    AccountExists {
        /// The home directory.
        home: PathBuf,
    },
    /// A security alert: the operation was refused.
    #[error("{0}")]
    Alert(Alert),
    /// The server answered with an error.
    #[error("server refused the request: {message} ({code}, HTTP {status})")]
    Server {
        /// HTTP status.
        status: u16,
        /// Stable error code from the server.
        code: String,
        /// The server's explanation.
        message: String,
    },
    /// The server could not be reached or answered something unreadable.
    #[error("cannot reach the server at {url}: {reason}")]
    Network {
        /// The server's URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The user does not exist on the server.
    #[error("no user named {0} on this server")]
    UnknownUser(UserName),
    /// None of the user's devices has a KeyPackage to start a conversation.
    #[error(
        "{0} has no device ready to receive a new conversation; ask them to run `rempart sync`"
    )]
    NoKeyPackages(UserName),
    /// No conversation by that name.
    #[error("no conversation named {0:?} here: see `rempart group list`")]
    UnknownConversation(String),
    /// A group by that name already exists here.
    #[error("a group named {0:?} already exists here: choose another name")]
    GroupExists(String),
    /// A group name that is empty, too long or has control characters.
    #[error("invalid group name {0:?}: use 1 to 64 printable characters")]
    InvalidGroupName(String),
    /// The user is already in the group.
    #[error("{0} is already in {1:?}")]
    AlreadyMember(UserName, String),
    /// The user is not in the group.
    #[error("{0} is not in {1:?}")]
    NotAMember(UserName, String),
    /// Removing oneself is leaving.
    #[error("to remove yourself, use `rempart group leave`")]
    UseLeave,
    /// The device-linking code is malformed.
    #[error("that linking code is not valid: copy it exactly as `rempart device link` shows it")]
    BadLinkCode,
    /// The device-linking code expired or was used.
    #[error("that linking code expired or was already used: run `rempart device link` again")]
    LinkExpired,
    /// The device-linking exchange was tampered with.
    #[error(
        "the linking exchange could not be authenticated: someone other than your device answered; run `rempart device link` again"
    )]
    LinkTampered,
    /// The device is not in this account's device list.
    #[error("no device {0} in your account: see `rempart device list`")]
    UnknownDevice(DeviceId),
    /// The server does not know this device (it was removed from its
    /// account).
    #[error("the server does not know this device: it was removed from its account")]
    DeviceUnknown,
    /// The safety number typed does not match.
    #[error("the safety number does not match: compare it again with {0}, on a channel you trust")]
    SafetyNumberMismatch(UserName),
    /// A device cannot remove itself this way.
    #[error("this device cannot remove itself: remove it from another of your devices")]
    RemoveSelf,
    /// A conversation with oneself was asked for.
    #[error("you cannot open a conversation with yourself")]
    SelfConversation,
    /// The server served a conversation's log in a way no honest server
    /// does (pages that repeat themselves without end).
    #[error(
        "the server's log of {conversation:?} is not well-formed ({reason}); nothing was lost here: sync again later, and report it if it persists"
    )]
    BadLog {
        /// The conversation.
        conversation: String,
        /// What was wrong.
        reason: String,
    },
    /// This device was removed from the conversation, which is kept as
    /// ended history.
    #[error(
        "you were removed from {conversation:?} by {by}: it is kept as ended history and cannot be written to"
    )]
    Removed {
        /// The conversation.
        conversation: String,
        /// Who removed this device.
        by: UserName,
    },
    /// This account left the conversation, which is kept as ended history.
    #[error("you left {0:?}: it is kept as ended history and cannot be written to")]
    Left(String),
    /// The conversation ended here (before Rempart recorded how).
    #[error("{0:?} has ended here: it is kept as history and cannot be written to")]
    Ended(String),
    /// The directory did not publish this account's device list in time.
    #[error(
        "the server's directory does not publish your account yet: nothing can be proven for it; try again in a minute"
    )]
    OwnAccountUnpublished,
    /// The history could not be read.
    #[error(transparent)]
    History(Box<crate::history::HistoryError>),
    /// A commit kept conflicting with others.
    #[error("the conversation kept changing under this device; try again")]
    CommitConflict,
    /// An MLS operation failed.
    #[error("MLS error: {0}")]
    Mls(String),
    /// The local store failed.
    #[error("local store error: {0}")]
    Store(#[from] rusqlite::Error),
    /// The local store holds something unreadable.
    #[error("local store is corrupt: {0}")]
    Corrupt(String),
    /// The local store was made by another version of Rempart, whose layout
    /// this one cannot use.
    #[error(
        "{} was made by {made_by} version of Rempart and cannot be used by this one: keep it, and set this device up again in another --home with `rempart init`",
        path.display()
    )]
    StoreVersion {
        /// The store.
        path: PathBuf,
        /// "an older" or "a newer".
        made_by: &'static str,
    },
    /// A file-system operation on the home directory failed.
    #[error("cannot use {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is longer than a message may be.
    #[error("message is {0} bytes, more than the limit of {max}", max = crate::MAX_TEXT_BYTES)]
    TextTooLong(usize),
}

impl ClientError {
    pub(crate) fn mls(e: impl std::fmt::Display) -> Self {
        ClientError::Mls(e.to_string())
    }
}

impl From<Alert> for ClientError {
    fn from(alert: Alert) -> Self {
        ClientError::Alert(alert)
    }
}

impl From<crate::history::HistoryError> for ClientError {
    fn from(error: crate::history::HistoryError) -> Self {
        match error {
            crate::history::HistoryError::Store(inner) => inner,
            other => Self::History(Box::new(other)),
        }
    }
}
