//! Storage: one trait, one implementation per database.
//!
//! The [`Store`] trait is everything the API needs from a database. Each
//! method is one atomic operation: a write either happens completely and is
//! durable when the method returns `Ok`, or leaves nothing behind. Checks that
//! depend on stored state (is the name free, is this the current epoch, is
//! this KeyPackage still unclaimed) run inside the same transaction as the
//! write they guard, so concurrent requests cannot both pass them.
//!
//! [`SqliteStore`] is the embedded default; [`PostgresStore`] serves several
//! server nodes on one database. One conformance suite
//! (`tests/conformance.rs`) runs against both.

mod log;
mod postgres;
mod sqlite;

use async_trait::async_trait;
use rempart_proto::api::{
    Appended, ClaimedKeyPackage, CommitUpload, InboxPage, KeyPackageStatus, KeyPackageUpload,
    LogPage,
};
use rempart_proto::mail::{Fingerprint, MailAddress};
use rempart_proto::{DeviceId, GroupId, LinkId, MessageId};
use rempart_proto::{PublicKey, SignedDeviceList, UserName};

/// The device lists the store keeps are account-signed ones, the type
/// client and server share.
pub use rempart_proto::AccountSignedDeviceList;

pub use postgres::PostgresStore;
pub(crate) use sqlite::SharedDatabase;
pub use sqlite::SqliteStore;

/// The operations the server needs from its database.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates an account with its first device list and all listed devices.
    async fn register(&self, list: AccountSignedDeviceList) -> Result<(), StoreError>;

    /// [`Self::register`], spending the invitation whose code hashes
    /// (SHA-256) to `invitation` in the same transaction: one spent before
    /// is [`StoreError::InvitationUsed`], and then nothing is created.
    async fn register_invited(
        &self,
        list: AccountSignedDeviceList,
        invitation: [u8; 32],
    ) -> Result<(), StoreError>;

    /// The user's current signed device list, if the user exists.
    async fn device_list(&self, user: &UserName) -> Result<Option<SignedDeviceList>, StoreError>;

    /// Replaces a user's device list, on behalf of `signer` (a current device
    /// of that user). The list must name the stored account key and carry a
    /// higher version. Returns the devices it removed: they lose their
    /// KeyPackages and inbox and can no longer authenticate.
    async fn replace_device_list(
        &self,
        signer: DeviceId,
        list: AccountSignedDeviceList,
    ) -> Result<Vec<DeviceId>, StoreError>;

    /// A registered device's owner and key.
    async fn device(&self, device: DeviceId) -> Result<Option<DeviceRecord>, StoreError>;

    /// Keeps one of `user`'s OpenPGP certificates under its fingerprint (a
    /// new copy of the same certificate replaces the old one). One of
    /// another account's is [`StoreError::MailCertificateTaken`]; beyond
    /// [`MAX_MAIL_CERTIFICATES_PER_ACCOUNT`], [`StoreError::TooManyMailCertificates`].
    ///
    /// [`MAX_MAIL_CERTIFICATES_PER_ACCOUNT`]: rempart_proto::limits::MAX_MAIL_CERTIFICATES_PER_ACCOUNT
    async fn put_mail_certificate(
        &self,
        user: UserName,
        fingerprint: Fingerprint,
        certificate: Vec<u8>,
    ) -> Result<(), StoreError>;

    /// `user`'s certificate with `fingerprint`, if the user uploaded it.
    async fn mail_certificate(
        &self,
        user: &UserName,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// The user whose device list first bound `address`, if any: an
    /// address, once bound, stays with its account.
    async fn mail_holder(&self, address: &MailAddress) -> Result<Option<UserName>, StoreError>;

    /// Records a request nonce of `device`; fails with
    /// [`StoreError::ReplayedNonce`] if that device already used it.
    async fn consume_nonce(
        &self,
        device: DeviceId,
        nonce: String,
        timestamp: i64,
    ) -> Result<(), StoreError>;

    /// Adds one-time KeyPackages of `device` and replaces its last-resort one.
    async fn upload_key_packages(
        &self,
        device: DeviceId,
        upload: KeyPackageUpload,
    ) -> Result<KeyPackageStatus, StoreError>;

    /// How many KeyPackages the server holds for `device`.
    async fn key_package_status(&self, device: DeviceId) -> Result<KeyPackageStatus, StoreError>;

    /// Takes one KeyPackage for each current device of `user` other than
    /// `claimer`: a one-time package (deleted as it is handed out) or else
    /// the last-resort one. Fails with [`StoreError::UnknownUser`] if there
    /// is no such user.
    async fn claim_key_packages(
        &self,
        claimer: DeviceId,
        user: &UserName,
    ) -> Result<Vec<ClaimedKeyPackage>, StoreError>;

    /// [`Self::claim_key_packages`] for several users in one atomic write;
    /// unknown users are left out.
    async fn claim_key_packages_batch(
        &self,
        claimer: DeviceId,
        users: Vec<UserName>,
    ) -> Result<Vec<ClaimedKeyPackage>, StoreError>;

    /// Appends a commit by `sender` to a group's log (creating the group when
    /// it does not exist and the commit is built on epoch 0), advances the
    /// epoch, applies the membership changes and delivers the Welcome.
    async fn append_commit(
        &self,
        group: GroupId,
        sender: DeviceId,
        commit: CommitUpload,
    ) -> Result<AppendOutcome, StoreError>;

    /// Appends an application message by `sender` to a group's log.
    async fn append_message(
        &self,
        group: GroupId,
        sender: DeviceId,
        message_id: MessageId,
        epoch: u64,
        data: Vec<u8>,
    ) -> Result<AppendOutcome, StoreError>;

    /// Up to `limit` log entries after `after`, for a member `reader`, or
    /// for a device removed from the group up to and including the commit
    /// that removed it (and a head that ends there): it learns of its
    /// removal, and nothing of what follows.
    async fn read_log(
        &self,
        group: GroupId,
        reader: DeviceId,
        after: u64,
        limit: u32,
    ) -> Result<LogPage, StoreError>;

    /// The devices the server counts as members of a group.
    async fn group_members(&self, group: GroupId) -> Result<Vec<DeviceId>, StoreError>;

    /// The groups the server counts `device` a member of (to route its
    /// push notices).
    async fn device_groups(&self, device: DeviceId) -> Result<Vec<GroupId>, StoreError>;

    /// Up to `limit` items of `device`'s inbox after `after`.
    async fn read_inbox(
        &self,
        device: DeviceId,
        after: u64,
        limit: u32,
    ) -> Result<InboxPage, StoreError>;

    /// Deletes the listed items from `device`'s inbox; returns how many existed.
    async fn ack_inbox(&self, device: DeviceId, ids: Vec<u64>) -> Result<u64, StoreError>;

    /// Opens a device-linking rendezvous created by `creator` at `now`
    /// (Unix seconds). Fails with [`StoreError::LinkExists`] while a live
    /// link has this id.
    async fn create_link(
        &self,
        creator: DeviceId,
        link: LinkId,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Stores a live link's sealed request, which may be posted once
    /// ([`StoreError::LinkUsed`] after that).
    async fn put_link_request(
        &self,
        link: LinkId,
        sealed: Vec<u8>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// A live link's sealed request, if posted, for the device that created
    /// the link ([`StoreError::NotLinkCreator`] for any other).
    async fn link_request(
        &self,
        reader: DeviceId,
        link: LinkId,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores a live link's sealed response, by the device that created the
    /// link, once.
    async fn put_link_response(
        &self,
        responder: DeviceId,
        link: LinkId,
        sealed: Vec<u8>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// A live link's sealed response, if posted; returning it deletes the
    /// link, so it is returned at most once.
    async fn take_link_response(
        &self,
        link: LinkId,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Forgets what has expired at `now` (Unix seconds): request nonces too
    /// old to be accepted again, and device-linking rendezvous past their
    /// lifetime. The server calls it periodically.
    async fn prune(&self, now: i64) -> Result<Pruned, StoreError>;

    /// Finishes the writes already queued and releases the write side of the
    /// database. Later writes fail with [`StoreError::Closed`].
    async fn close(&self);
}

/// A registered device.
#[derive(Debug, Clone)]
pub struct DeviceRecord {
    /// The account it belongs to.
    pub user: UserName,
    /// Its Ed25519 signature key, which verifies its requests.
    pub signature_key: PublicKey,
}

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Expired request nonces.
    pub nonces: u64,
    /// Expired device-linking rendezvous.
    pub links: u64,
}

/// The result of an append to a group's log.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    /// Where the entry is.
    pub appended: Appended,
    /// False when this was a retry of an entry already in the log.
    pub fresh: bool,
    /// Devices that received a Welcome in their inbox.
    pub welcomed: Vec<DeviceId>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The user name is already registered.
    #[error("the user name {0} is taken")]
    NameTaken(UserName),
    /// The invitation was spent by an earlier registration.
    #[error("this invitation code was used already")]
    InvitationUsed,
    /// A listed device id is registered to another account.
    #[error("device {0} is already registered to another account")]
    DeviceTaken(DeviceId),
    /// No account has this name.
    #[error("no account named {0}")]
    UnknownUser(UserName),
    /// The device is not registered.
    #[error("device {0} is not registered")]
    UnknownDevice(DeviceId),
    /// The device is not one of the account's current devices.
    #[error("device {device} is not a current device of {user}")]
    NotOwnDevice {
        /// The device that asked.
        device: DeviceId,
        /// The account it asked about.
        user: UserName,
    },
    /// The new device list names another account key than the stored one.
    #[error("the device list names another account key than the registered one")]
    AccountKeyChanged,
    /// The new device list's version does not exceed the stored one.
    #[error("device list version {found} does not exceed the stored version {stored}")]
    StaleDeviceList {
        /// The stored version.
        stored: u64,
        /// The submitted version.
        found: u64,
    },
    /// The upload would leave the device with too many one-time KeyPackages.
    #[error(
        "the device would hold {would_hold} one-time KeyPackages, more than the limit of {max}",
        max = rempart_proto::limits::MAX_KEY_PACKAGES_PER_DEVICE
    )]
    TooManyKeyPackages {
        /// How many it would hold after the upload.
        would_hold: u64,
    },
    /// The device already used this request nonce.
    #[error("the request nonce was already used")]
    ReplayedNonce,
    /// No group has this id.
    #[error("no group {0}")]
    UnknownGroup(GroupId),
    /// The device is not a member of the group.
    #[error("device {device} is not a member of group {group}")]
    NotMember {
        /// The group.
        group: GroupId,
        /// The device.
        device: DeviceId,
    },
    /// The commit was built on another epoch than the group's current one.
    #[error("the commit is built on a stale epoch; the group is at epoch {current}")]
    StaleEpoch {
        /// The group's current epoch.
        current: u64,
    },
    /// The message id is already used in this group for another entry.
    #[error("message id {0} is already used in this group for other content")]
    DuplicateMessageId(MessageId),
    /// A live link already has this id.
    #[error("a link with this id is already open; pick another code")]
    LinkExists,
    /// No live link has this id: it never existed, expired or was completed.
    #[error("no open link with this id (unknown, expired or already completed)")]
    UnknownLink,
    /// The link already holds this part; a linking code works once.
    #[error("the link already holds a {0}; a linking code works once")]
    LinkUsed(&'static str),
    /// Only the device that opened a link may read its request or respond.
    #[error("device {device} did not open this link")]
    NotLinkCreator {
        /// The device that asked.
        device: DeviceId,
    },
    /// The device list binds a mail address another account holds.
    #[error("the mail address {0} belongs to another account")]
    MailAddressTaken(MailAddress),
    /// Another account uploaded a certificate with this fingerprint.
    #[error("another account holds the certificate {0}")]
    MailCertificateTaken(Fingerprint),
    /// The account holds as many certificates as allowed.
    #[error(
        "the account holds {max} certificates, the limit",
        max = rempart_proto::limits::MAX_MAIL_CERTIFICATES_PER_ACCOUNT
    )]
    TooManyMailCertificates,
    /// A number does not fit the database's integer range.
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
    /// Stored data could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The transaction holding this write failed to commit; nothing was stored.
    #[error("the write transaction failed to commit")]
    CommitFailed,
    /// The store is closed.
    #[error("the store is closed")]
    Closed,
    /// The database cannot be reached or dropped the connection; the
    /// operation may be retried. If it was a write, it may or may not have
    /// committed: a retry of an idempotent request settles it.
    #[error("the database is unavailable")]
    Unavailable,
    /// The database failed.
    #[error("database error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}
