//! What a sync reports: messages, membership changes and security alerts.

use std::fmt;

use rempart_proto::{DeviceId, MessageId, UserName};
use serde::{Deserialize, Serialize};

/// A security alert: something the server or a peer did that Rempart refuses
/// and the user must see. Never only a log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable machine-readable code.
    pub code: AlertCode,
    /// The conversation concerned, if any.
    pub conversation: Option<String>,
    /// The user concerned, if any.
    pub user: Option<UserName>,
    /// What was expected and what was found, in plain words.
    pub message: String,
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "security alert [{}]: {}", self.code, self.message)
    }
}

/// Stable alert codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertCode {
    /// A leaf's credential or KeyPackage is not in its owner's account-signed
    /// device list, or a commit comes from outside the group; refused.
    UnauthorizedMember,
    /// A user's account key differs from the one pinned when first seen.
    AccountKeyChanged,
    /// A device list's signature does not verify under its account key.
    DeviceListSignatureInvalid,
    /// A Welcome or KeyPackage uses a ciphersuite or protocol version other
    /// than the one Rempart requires.
    CiphersuiteDowngrade,
    /// The server skipped entries of a conversation's log.
    MessageGap,
    /// This account's device list, as the server shows it, contains a device
    /// this account did not sign in.
    UnknownOwnDevice,
    /// A directory head is not signed by the pinned directory key.
    DirectoryHeadSignatureInvalid,
    /// A directory head is older than one already seen.
    DirectoryRollback,
    /// Two different signed heads for one epoch (kept as evidence).
    DirectoryEquivocation,
    /// A directory head lacks the configured witnesses' cosignatures.
    WitnessQuorumMissing,
    /// A key-transparency proof (lookup, key history or append-only) does
    /// not verify: the server serves a device list it did not commit to for
    /// everyone, or rewrote the directory's past.
    KtProofInvalid,
    /// This device was added to a conversation with its last-resort
    /// KeyPackage, which is reused: the server had no one-time package of
    /// this device left, or withheld them. The conversation works; its first
    /// epoch's keys came from a package used before.
    LastResortUsed,
    /// Two different commits were shown for the same epoch of a
    /// conversation: the server split it in two.
    ConversationFork,
    /// The server refuses this device a conversation's log although this
    /// device processed no commit removing it: an eviction without a
    /// commit, which the other members cannot see. The conversation is
    /// kept and checked again at every sync.
    ConversationWithheld,
    /// A log entry presented as a commit that the members cannot process as
    /// a commit of the conversation's current epoch (malformed, truncated,
    /// not encrypted as Rempart requires, or forged by the server). Every
    /// member rejects it alike, and the conversation goes on without it.
    InvalidCommit,
    /// The server shows one of this account's mail addresses bound to a
    /// certificate or an account this account did not bind it to.
    UnknownOwnMailKey,
    /// A contact's mail certificate is not the one kept for the address:
    /// the new one is kept aside, never used until the user verifies it.
    MailKeyChanged,
}

impl AlertCode {
    /// The code as written in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnauthorizedMember => "unauthorized_member",
            Self::AccountKeyChanged => "account_key_changed",
            Self::DeviceListSignatureInvalid => "device_list_signature_invalid",
            Self::CiphersuiteDowngrade => "ciphersuite_downgrade",
            Self::MessageGap => "message_gap",
            Self::UnknownOwnDevice => "unknown_own_device",
            Self::DirectoryHeadSignatureInvalid => "directory_head_signature_invalid",
            Self::DirectoryRollback => "directory_rollback",
            Self::DirectoryEquivocation => "directory_equivocation",
            Self::WitnessQuorumMissing => "witness_quorum_missing",
            Self::KtProofInvalid => "kt_proof_invalid",
            Self::LastResortUsed => "last_resort_used",
            Self::ConversationFork => "conversation_fork",
            Self::ConversationWithheld => "conversation_withheld",
            Self::InvalidCommit => "invalid_commit",
            Self::UnknownOwnMailKey => "unknown_own_mail_key",
            Self::MailKeyChanged => "mail_key_changed",
        }
    }
}

impl AlertCode {
    /// What the alert means and what to do, in plain words, for a user
    /// interface to show with it.
    pub fn advice(self) -> &'static str {
        match self {
            Self::UnauthorizedMember => {
                "A device whose key its owner's account did not sign was about to join; it was refused. Ask the people concerned, on another channel, whether they added a device."
            }
            Self::AccountKeyChanged => {
                "This contact's account key is not the one you first saw: their devices are not trusted. Compare safety numbers with them on another channel (`/verify USER`) before you trust the new key."
            }
            Self::DeviceListSignatureInvalid => {
                "A device list is not signed by its account key: the server showed a list its owner never made. Nothing was encrypted to it."
            }
            Self::CiphersuiteDowngrade => {
                "Someone offered weaker cryptography than Rempart's; it was refused."
            }
            Self::MessageGap => {
                "The server skipped part of this conversation: some messages or changes were withheld from you. Tell the others on another channel."
            }
            Self::UnknownOwnDevice => {
                "Your account shows a device you did not add: a ghost device or a fake reset. Check `rempart device list` and remove what you do not know."
            }
            Self::DirectoryHeadSignatureInvalid => {
                "The key directory's head is not signed by the directory key pinned when you set up: the server is not the one you started with, or it is forging."
            }
            Self::DirectoryRollback => {
                "The key directory went back in time: the server is showing you an older state."
            }
            Self::DirectoryEquivocation => {
                "The key directory signed two different states for one moment: it shows different people different keys. Both are kept as evidence."
            }
            Self::WitnessQuorumMissing => {
                "The witnesses did not confirm the key directory: new keys were refused and nothing was encrypted to them. Try again later; if it lasts, the server may be forked away from its witnesses."
            }
            Self::KtProofInvalid => {
                "A key-transparency proof failed: the server showed keys the directory does not prove, or rewrote its past."
            }
            Self::LastResortUsed => {
                "You were added with your reused last-resort key: the server had none of your one-time keys left, or withheld them. The conversation works."
            }
            Self::ConversationFork => {
                "The server split this conversation in two: members on the other side cannot read you. Tell them on another channel."
            }
            Self::ConversationWithheld => {
                "The server refuses you this conversation although nobody removed you: a silent eviction. It is kept and checked again at every sync."
            }
            Self::InvalidCommit => {
                "A change of this conversation was malformed or forged; every member rejected it alike, and the conversation goes on without it."
            }
            Self::UnknownOwnMailKey => {
                "Your mail address is shown bound to a key you did not make: whoever writes to it may encrypt to someone else. Check `rempart mail key show ADDRESS` and tell your contacts on another channel."
            }
            Self::MailKeyChanged => {
                "This contact's mail key is not the one you had: the new one is not used. Compare fingerprints with them on another channel, then `rempart mail key verify ADDRESS FINGERPRINT`."
            }
        }
    }
}

impl fmt::Display for AlertCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing that happened, as reported by [`crate::Client::sync`].
///
/// Every variant but [`Event::KeyPackagesDrained`] (about this device)
/// names its `conversation` (the peer's user name for a 1:1 conversation)
/// and its `sender`: the author of a message, the member who made a
/// membership change, or the user an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A text message, decrypted.
    Message {
        /// The conversation.
        conversation: String,
        /// Who wrote it (from the MLS credential, checked against their
        /// device list when they joined).
        sender: UserName,
        /// The device that sent it.
        sender_device: DeviceId,
        /// The text.
        text: String,
        /// The message's id (inside the encryption).
        message_id: MessageId,
        /// When the sender says it was sent (Unix seconds).
        sent_at: i64,
    },
    /// A device was added to a conversation by a member's commit.
    MemberAdded {
        /// The conversation.
        conversation: String,
        /// The member who committed the addition.
        sender: UserName,
        /// The user whose device was added.
        user: UserName,
        /// The added device.
        device: DeviceId,
    },
    /// A device was removed from a conversation by a member's commit.
    MemberRemoved {
        /// The conversation.
        conversation: String,
        /// The member who committed the removal.
        sender: UserName,
        /// The user whose device was removed.
        user: UserName,
        /// The removed device.
        device: DeviceId,
    },
    /// A device of a user already in the conversation was added (the user
    /// linked a new device).
    DeviceAdded {
        /// The conversation.
        conversation: String,
        /// The member who committed the addition.
        sender: UserName,
        /// The user whose device was added.
        user: UserName,
        /// The added device.
        device: DeviceId,
    },
    /// A device was removed while its user stays in the conversation.
    DeviceRemoved {
        /// The conversation.
        conversation: String,
        /// The member who committed the removal.
        sender: UserName,
        /// The user whose device was removed.
        user: UserName,
        /// The removed device.
        device: DeviceId,
    },
    /// A log entry or Welcome that could not be processed (not a security
    /// alert: e.g. corrupted data).
    Undecryptable {
        /// The conversation.
        conversation: String,
        /// The claimed sender, if known.
        sender: Option<UserName>,
        /// What failed.
        reason: String,
    },
    /// A message this device wrote was kept in the outbox: the server
    /// could not be reached. It goes when the server can be.
    MessageQueued {
        /// The conversation.
        conversation: String,
        /// This account's user.
        sender: UserName,
        /// The message's id.
        message_id: MessageId,
    },
    /// A message this device wrote earlier left the outbox: the server has
    /// it in the conversation's log.
    MessageSent {
        /// The conversation.
        conversation: String,
        /// This account's user.
        sender: UserName,
        /// The message's id.
        message_id: MessageId,
    },
    /// A message this device wrote could not be delivered: the server or
    /// the conversation refused it. It stays in the outbox, failed, until
    /// the user retries it.
    MessageFailed {
        /// The conversation.
        conversation: String,
        /// This account's user.
        sender: UserName,
        /// The message's id.
        message_id: MessageId,
        /// Why, in plain words.
        reason: String,
    },
    /// The one-time KeyPackages this device left on the server were all
    /// claimed: people starting conversations with it, or someone claiming
    /// them to drain them (not a security alert: any user may claim, within
    /// the server's limits). New ones are uploaded; meanwhile new
    /// conversations with this device started from its reusable
    /// last-resort package.
    KeyPackagesDrained {
        /// This account's user.
        user: UserName,
        /// This device.
        device: DeviceId,
        /// How many the server held when this device last looked.
        claimed: u64,
    },
    /// A security alert.
    Alert {
        /// The conversation concerned, if any.
        conversation: Option<String>,
        /// The user concerned, if any.
        sender: Option<UserName>,
        /// Stable alert code.
        code: AlertCode,
        /// Plain-words explanation.
        message: String,
    },
}

impl Event {
    /// True for security alerts.
    pub fn is_alert(&self) -> bool {
        matches!(self, Event::Alert { .. })
    }
}

impl From<Alert> for Event {
    fn from(alert: Alert) -> Self {
        Event::Alert {
            conversation: alert.conversation,
            sender: alert.user,
            code: alert.code,
            message: alert.message,
        }
    }
}
