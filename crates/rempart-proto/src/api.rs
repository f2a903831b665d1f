//! Bodies and paths of the HTTP API (version 1).
//!
//! | method | path | auth | body → response |
//! |---|---|---|---|
//! | `GET` | `/health` | none | → [`Health`] |
//! | `GET` | `/openapi.json` | none | → OpenAPI document |
//! | `POST` | `/v1/accounts` | signed by the first device | [`RegisterRequest`] → [`RegisterResponse`] |
//! | `GET` | `/v1/accounts/{user}/devices` | none | → [`SignedDeviceList`] |
//! | `PUT` | `/v1/accounts/{user}/devices` | a device of `user` | [`SignedDeviceList`] → [`DeviceListAccepted`] (409 `mail_address_taken` if it binds a mail address another account holds) |
//! | `POST` | `/v1/keypackages` | device | [`KeyPackageUpload`] → [`KeyPackageStatus`] |
//! | `GET` | `/v1/keypackages` | device | → [`KeyPackageStatus`] |
//! | `POST` | `/v1/accounts/{user}/keypackages/claim` | device | → [`ClaimedKeyPackages`] |
//! | `POST` | `/v1/groups/{group}/commits` | member device | [`CommitUpload`] → [`Appended`] (409 [`ErrorBody`] with `current_epoch`) |
//! | `PUT` | `/v1/groups/{group}/messages/{message_id}?epoch=N` | member device | octet-stream MLS message encrypted in epoch N → [`Appended`] (409 `stale_epoch` if N is not current) |
//! | `GET` | `/v1/groups/{group}/log?after=SEQ&limit=N` | member device, or a removed one up to the commit that removed it | → [`LogPage`] |
//! | `GET` | `/v1/inbox?after=ID&limit=N` | device | → [`InboxPage`] |
//! | `POST` | `/v1/inbox/ack` | device | [`InboxAck`] → [`Acked`] |
//! | `GET` | `/v1/ws` | device (signed upgrade request) | WebSocket session: [`SessionRequest`] text frames in, [`PushEvent`] text frames out |
//! | `POST` | `/v1/keypackages/claim` | device | [`ClaimRequest`] → [`ClaimedKeyPackages`] |
//! | `POST` | `/v1/links` | device | [`LinkCreate`] → 201 |
//! | `PUT` | `/v1/links/{link}/request` | none | octet-stream sealed request → 204 (409 `link_used`) |
//! | `GET` | `/v1/links/{link}` | the creating device | → [`LinkState`] |
//! | `PUT` | `/v1/links/{link}/response` | the creating device | octet-stream sealed response → 204 |
//! | `GET` | `/v1/links/{link}/response` | none | → [`LinkState`] (the link is deleted once its response was read) |
//! | `GET` | `/v1/directory` | none | → [`DirectoryInfo`](crate::directory::DirectoryInfo) |
//! | `GET` | `/v1/directory/head` | none | → latest [`HeadWithCosignatures`](crate::directory::HeadWithCosignatures) (404 before the first epoch) |
//! | `GET` | `/v1/directory/heads/{epoch}` | none | → [`HeadWithCosignatures`](crate::directory::HeadWithCosignatures) (404 if not published) |
//! | `GET` | `/v1/directory/heads?from=A&to=B` | none | → `Vec<`[`HeadWithCosignatures`](crate::directory::HeadWithCosignatures)`>` of epochs A to B (400 unless 1 ≤ A ≤ B ≤ latest and at most 1,000) |
//! | `GET` | `/v1/directory/lookup/{user}` | none | → [`LookupResponse`](crate::directory::LookupResponse) at the latest epoch (404 if not published) |
//! | `GET` | `/v1/directory/history/{user}` | none | → [`HistoryResponse`](crate::directory::HistoryResponse) |
//! | `GET` | `/v1/directory/audit?from=A&to=B` | none | → [`AuditResponse`](crate::directory::AuditResponse) (400 unless 1 ≤ A < B ≤ latest) |
//! | `POST` | `/v1/directory/lookups` | none | [`LookupsRequest`](crate::directory::LookupsRequest) → [`LookupsResponse`](crate::directory::LookupsResponse): the newer published lists with their lookup proofs, at one epoch |
//! | `POST` | `/v1/directory/cosignatures` | none (the witness signature) | [`PostCosignature`](crate::directory::PostCosignature) → 204 (400 unless it verifies against that epoch's head) |
//! | `POST` | `/v1/mail/certificates` | device | [`MailCertificateUpload`](crate::mail::MailCertificateUpload) → 204 (409 `mail_address_taken` if another account holds the fingerprint) |
//! | `POST` | `/v1/mail/lookup` | none | [`MailLookupRequest`](crate::mail::MailLookupRequest) → [`MailLookupResponse`](crate::mail::MailLookupResponse): the holder, its list, both lookup proofs at one epoch, the certificate (404 if no account holds the address or it is not published yet) |
//! | `POST` | `/v1/mail/history` | none | [`MailLookupRequest`](crate::mail::MailLookupRequest) → [`HistoryResponse`](crate::directory::HistoryResponse): every device list the address was published with, and the history proof |
//!
//! A commit on a group that does not exist yet, built on epoch 0, creates the
//! group with the committing device as its first member.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::device_list::SignedDeviceList;
use crate::ids::{DeviceId, GroupId, MessageId, UserName};

/// `GET /health` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `"ok"` when the server answers.
    pub status: String,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `bad_signature`, `stale_epoch`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// For `stale_epoch`: the group's current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_epoch: Option<u64>,
    /// For `rate_limited` (also in the `Retry-After` header): how many
    /// seconds until the request may be made again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

/// Stable error codes of [`ErrorBody::error`].
pub mod error_code {
    /// The request is malformed.
    pub const BAD_REQUEST: &str = "bad_request";
    /// A user name is not valid.
    pub const INVALID_USER_NAME: &str = "invalid_user_name";
    /// Authentication headers missing or malformed.
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    /// The request signature does not verify.
    pub const BAD_SIGNATURE: &str = "bad_signature";
    /// The signing device is not registered.
    pub const UNKNOWN_DEVICE: &str = "unknown_device";
    /// The timestamp is outside the allowed skew.
    pub const CLOCK_SKEW: &str = "clock_skew";
    /// The nonce was already used.
    pub const REPLAYED_NONCE: &str = "replayed_nonce";
    /// The device may not do this (e.g. it is not a member of the group).
    pub const FORBIDDEN: &str = "forbidden";
    /// Nothing there.
    pub const NOT_FOUND: &str = "not_found";
    /// The user name is taken.
    pub const NAME_TAKEN: &str = "name_taken";
    /// This server registers accounts by invitation only, and the request
    /// carried no invitation code.
    pub const INVITATION_REQUIRED: &str = "invitation_required";
    /// The invitation code is not one of this server's, or was used.
    pub const INVITATION_INVALID: &str = "invitation_invalid";
    /// The commit was built on an epoch that is not the group's current one.
    pub const STALE_EPOCH: &str = "stale_epoch";
    /// A device list is not acceptable (signature, version, account key).
    pub const INVALID_DEVICE_LIST: &str = "invalid_device_list";
    /// The message id was already used for different content.
    pub const DUPLICATE_MESSAGE_ID: &str = "duplicate_message_id";
    /// The link's one-time code was already used.
    pub const LINK_USED: &str = "link_used";
    /// The body is larger than allowed.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// 409: another account holds the mail address (a device list binding
    /// it is refused) or the certificate's fingerprint.
    pub const MAIL_ADDRESS_TAKEN: &str = "mail_address_taken";
    /// The server failed; nothing was stored.
    pub const INTERNAL: &str = "internal";
    /// The server cannot answer for a moment (its database is out of reach,
    /// or a directory epoch is still being stored): retry after the
    /// `Retry-After` header's seconds. A write may or may not have been
    /// stored; retrying it (same message id) is safe.
    pub const UNAVAILABLE: &str = "unavailable";
    /// A rate limit refused the request (429): the message names the limit;
    /// `retry_after_secs` and the `Retry-After` header say when to retry.
    pub const RATE_LIMITED: &str = "rate_limited";
}

/// `POST /v1/accounts`: register a user name with its first device list.
///
/// The request is signed by the first device listed, whose key the server
/// takes from the list itself.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// The user name to claim.
    pub user: UserName,
    /// Version 1 of the account's device list, signed by the account key.
    pub device_list: SignedDeviceList,
    /// An invitation code, on a server that registers by invitation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<String>,
}

/// `POST /v1/accounts` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    /// The registered user name.
    pub user: UserName,
}

/// `PUT /v1/accounts/{user}/devices` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceListAccepted {
    /// The version now stored.
    pub version: u64,
}

/// `POST /v1/keypackages`: the authenticated device's KeyPackages.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct KeyPackageUpload {
    /// One-time KeyPackages (TLS-serialized MLS KeyPackages), base64.
    #[serde(with = "crate::b64::vec")]
    #[schema(value_type = Vec<String>)]
    pub one_time: Vec<Vec<u8>>,
    /// A last-resort KeyPackage replacing the previous one, if any.
    #[serde(
        default,
        with = "crate::b64::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = Byte)]
    pub last_resort: Option<Vec<u8>>,
}

/// How many KeyPackages the server holds for the authenticated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyPackageStatus {
    /// Unclaimed one-time KeyPackages.
    pub one_time: u64,
    /// Whether a last-resort KeyPackage is stored.
    pub last_resort: bool,
    /// One-time KeyPackages of this device handed out by claims so far:
    /// with `one_time`, how the device tells packages claimed by others
    /// from packages that went missing.
    #[serde(default)]
    pub claimed: u64,
}

/// One claimed KeyPackage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaimedKeyPackage {
    /// The user the device belongs to (according to the server).
    pub user: UserName,
    /// The device the package belongs to (according to the server).
    pub device: DeviceId,
    /// The TLS-serialized MLS KeyPackage, base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub key_package: Vec<u8>,
    /// True when the device had no one-time package left and this is its
    /// last-resort package (which may be handed out again).
    pub last_resort: bool,
}

/// `POST /v1/accounts/{user}/keypackages/claim` response: one package per
/// device of the user that has one.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaimedKeyPackages {
    /// The claimed packages.
    pub packages: Vec<ClaimedKeyPackage>,
}

/// `POST /v1/groups/{group}/commits`: append an MLS commit to a group's log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommitUpload {
    /// The epoch the commit was built on; accepted only if it is the group's
    /// current epoch (0 for a group that does not exist yet).
    pub epoch: u64,
    /// Client-chosen id; a retry with the same id returns the first result.
    pub message_id: MessageId,
    /// The MLS commit (TLS-serialized `MlsMessageOut`), base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub commit: Vec<u8>,
    /// A Welcome for the added devices, delivered to each one's inbox.
    #[serde(
        default,
        with = "crate::b64::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = Byte)]
    pub welcome: Option<Vec<u8>>,
    /// Devices the commit adds (they may read the log from this commit on).
    #[serde(default)]
    pub add_devices: Vec<DeviceId>,
    /// Devices the commit removes (they may no longer read the log).
    #[serde(default)]
    pub remove_devices: Vec<DeviceId>,
}

/// Where an accepted commit or message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Appended {
    /// Its sequence number in the group's log (starts at 1).
    pub seq: u64,
    /// The group's epoch after it.
    pub epoch: u64,
}

/// `?epoch=` of an application message upload: the epoch it was encrypted
/// in, which must be the group's current one.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EpochQuery {
    /// The epoch the message was encrypted in.
    pub epoch: u64,
}

/// `?after=&limit=` of log and inbox reads.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Return entries strictly after this cursor (0 for the start).
    #[serde(default)]
    pub after: u64,
    /// At most this many entries (default and maximum [`crate::limits::MAX_PAGE`]).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Kind of a group log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// An MLS commit.
    Commit,
    /// An MLS application message.
    Application,
}

/// One entry of a group's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogEntry {
    /// Position in the log; consecutive from 1.
    pub seq: u64,
    /// Commit or application message.
    pub kind: EntryKind,
    /// For a commit, the epoch it was built on; for a message, the group's
    /// epoch when it was appended.
    pub epoch: u64,
    /// The device that uploaded it (as authenticated by the server).
    pub sender: DeviceId,
    /// The client-chosen id.
    pub message_id: MessageId,
    /// The MLS message, base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub data: Vec<u8>,
}

/// `GET /v1/groups/{group}/log` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LogPage {
    /// Entries in `seq` order.
    pub entries: Vec<LogEntry>,
    /// The group's current epoch (for a removed device: the epoch its
    /// removal started).
    pub epoch: u64,
    /// The highest `seq` in the log (for a removed device: the commit that
    /// removed it).
    pub last_seq: u64,
}

/// Kind of an inbox item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InboxKind {
    /// An MLS Welcome to a group.
    Welcome,
}

/// One item in a device's inbox.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboxItem {
    /// Cursor of this item in the inbox.
    pub id: u64,
    /// What it is.
    pub kind: InboxKind,
    /// The group it concerns.
    pub group: GroupId,
    /// The device that put it there.
    pub sender: DeviceId,
    /// The payload (for a Welcome, the TLS-serialized `MlsMessageOut`), base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub data: Vec<u8>,
}

/// `GET /v1/inbox` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboxPage {
    /// Items in id order.
    pub items: Vec<InboxItem>,
}

/// `POST /v1/inbox/ack`: delete items from the authenticated device's inbox.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboxAck {
    /// Ids of the items to delete.
    pub ids: Vec<u64>,
}

/// `POST /v1/inbox/ack` response.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct Acked {
    /// How many items were deleted.
    pub deleted: u64,
}

/// What the server sends on a device's WebSocket session (`GET /v1/ws`),
/// one JSON text frame each: push notifications, and the answers to the
/// device's [`SessionRequest`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PushEvent {
    /// The group's log has entries up to `seq`.
    Group {
        /// The group.
        group: GroupId,
        /// The highest sequence number now in its log.
        seq: u64,
        /// The entry at `seq`, when it is an application message of at most
        /// [`INLINE_PUSH_BYTES`](crate::limits::INLINE_PUSH_BYTES): a device
        /// whose cursor is at `seq - 1` needs no read. Anything else is read
        /// from the log by cursor, as without it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry: Option<LogEntry>,
    },
    /// The device's inbox has new items.
    Inbox,
    /// Answer to [`SessionRequest::Send`] `id`: the message is durably in
    /// the log.
    Sent {
        /// The request's id.
        id: u64,
        /// Where the message landed (as the HTTP upload answers).
        #[serde(flatten)]
        appended: Appended,
    },
    /// Answer to request `id`: refused, and nothing was stored.
    Refused {
        /// The request's id.
        id: u64,
        /// The HTTP status the same request would have had.
        status: u16,
        /// The error, as an HTTP error body.
        #[serde(flatten)]
        error: ErrorBody,
    },
}

/// What a device sends on its WebSocket session (`GET /v1/ws`), one JSON
/// text frame each. The session was opened by a signed request, so these
/// carry no signature: they are the device's by the session.
///
/// Requests may be pipelined: each is answered by a [`PushEvent::Sent`] or
/// [`PushEvent::Refused`] with its `id`, possibly out of order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SessionRequest {
    /// Appends an application message to a group's log, exactly as
    /// `PUT /v1/groups/{group}/messages/{message_id}?epoch=N` does
    /// (idempotent by `message_id`; `stale_epoch` if `epoch` is not current).
    Send {
        /// Chosen by the device to match the answer; unique per session.
        id: u64,
        /// The group.
        group: GroupId,
        /// The client-chosen message id.
        message_id: MessageId,
        /// The epoch the message was encrypted in.
        epoch: u64,
        /// The MLS message, base64.
        #[serde(with = "crate::b64")]
        #[schema(value_type = String, format = Byte)]
        data: Vec<u8>,
    },
}

/// A user and the device-list version the caller already holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KnownVersion {
    /// The user.
    pub user: UserName,
    /// The version the caller holds; only newer lists are returned.
    #[serde(default)]
    pub version: u64,
}

/// `POST /v1/keypackages/claim`: claim KeyPackages for every device of
/// several users in one request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaimRequest {
    /// The users.
    pub users: Vec<UserName>,
}

/// `POST /v1/links`: open a device-linking rendezvous, valid for
/// [`crate::limits::LINK_TTL_SECS`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LinkCreate {
    /// The rendezvous id, derived from the one-time code.
    pub link: crate::ids::LinkId,
}

/// What a link rendezvous holds: sealed bytes the server cannot read.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LinkState {
    /// The sealed payload, once posted.
    #[serde(
        default,
        with = "crate::b64::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = Byte)]
    pub sealed: Option<Vec<u8>>,
}

/// Path of a link rendezvous.
pub fn link_path(link: &crate::ids::LinkId) -> String {
    format!("/v1/links/{link}")
}

/// Path of a link rendezvous's request.
pub fn link_request_path(link: &crate::ids::LinkId) -> String {
    format!("/v1/links/{link}/request")
}

/// Path of a link rendezvous's response.
pub fn link_response_path(link: &crate::ids::LinkId) -> String {
    format!("/v1/links/{link}/response")
}

/// Path to claim KeyPackages of several users.
pub const CLAIM_PATH: &str = "/v1/keypackages/claim";
/// Path to open a link rendezvous.
pub const LINKS_PATH: &str = "/v1/links";

/// Path of a user's device list.
pub fn devices_path(user: &UserName) -> String {
    format!("/v1/accounts/{user}/devices")
}

/// Path to claim a user's KeyPackages.
pub fn claim_path(user: &UserName) -> String {
    format!("/v1/accounts/{user}/keypackages/claim")
}

/// Path to append a commit to a group.
pub fn commits_path(group: &GroupId) -> String {
    format!("/v1/groups/{group}/commits")
}

/// Path to append an application message encrypted in `epoch` to a group.
pub fn message_path(group: &GroupId, message_id: &MessageId, epoch: u64) -> String {
    format!("/v1/groups/{group}/messages/{message_id}?epoch={epoch}")
}

/// Path (with query) to read a group's log after `after`.
pub fn log_path(group: &GroupId, after: u64, limit: u32) -> String {
    format!("/v1/groups/{group}/log?after={after}&limit={limit}")
}

/// Path (with query) to read the inbox after `after`.
pub fn inbox_path(after: u64, limit: u32) -> String {
    format!("/v1/inbox?after={after}&limit={limit}")
}

/// Path to register an account.
pub const ACCOUNTS_PATH: &str = "/v1/accounts";
/// Path to upload or count KeyPackages.
pub const KEYPACKAGES_PATH: &str = "/v1/keypackages";
/// Path to acknowledge inbox items.
pub const INBOX_ACK_PATH: &str = "/v1/inbox/ack";
/// Path of the push WebSocket.
pub const WS_PATH: &str = "/v1/ws";
