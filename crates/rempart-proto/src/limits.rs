//! Limits that client and server both enforce. Each one produces a typed error.

/// Largest HTTP request body the server accepts (413 beyond).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest MLS message (commit, Welcome or application message) in bytes.
pub const MAX_MESSAGE_BYTES: usize = MAX_BODY_BYTES - 4096;

/// A signed request's timestamp may differ from the server's clock by at most
/// this many seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// Most devices one account may list.
pub const MAX_DEVICES_PER_ACCOUNT: usize = 16;

/// Most one-time KeyPackages in one upload.
pub const MAX_KEY_PACKAGES_PER_UPLOAD: usize = 100;

/// Most one-time KeyPackages the server keeps per device: a client keeps
/// a few dozen (it tops up 20 when fewer than 10 are left), and 16 devices
/// of one account can hold at most 16 × 101 packages of
/// [`MAX_KEY_PACKAGE_BYTES`], about 6.6 MB.
pub const MAX_KEY_PACKAGES_PER_DEVICE: usize = 100;
/// Largest KeyPackage, in bytes. Rempart's ciphersuite
/// (`MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`, with a basic credential
/// naming the device) gives packages of a few hundred bytes; this leaves
/// room for other implementations' extensions, and no more.
pub const MAX_KEY_PACKAGE_BYTES: usize = 4096;

/// Most log entries or inbox items one read returns.
pub const MAX_PAGE: u32 = 500;

/// Most devices a single commit may add or remove.
pub const MAX_DEVICES_PER_COMMIT: usize = 10_000;

/// A device-linking code expires this many seconds after it was made.
pub const LINK_TTL_SECS: i64 = 600;

/// Largest sealed payload of a link rendezvous.
pub const MAX_LINK_PAYLOAD_BYTES: usize = 64 * 1024;

/// Most users in one batch request (device lists, KeyPackage claims).
pub const MAX_USERS_PER_BATCH: usize = 10_000;

/// Users per `POST /v1/directory/lookups` request (each answer carries a
/// lookup proof of about 4 KB).
pub const MAX_LOOKUPS_PER_REQUEST: usize = 1000;

/// Heads per `GET /v1/directory/heads?from&to` request.
pub const MAX_HEADS_PER_REQUEST: u64 = 1000;

/// Largest application message a push notice carries inline
/// ([`PushEvent::Group`](crate::api::PushEvent::Group)'s `entry`); larger
/// ones are read from the log. Small enough for a PostgreSQL `NOTIFY`
/// payload (8,000 bytes) once in base64 and JSON.
pub const INLINE_PUSH_BYTES: usize = 4096;

/// Largest frame a device may send on its WebSocket session: one
/// [`SessionRequest`](crate::api::SessionRequest) holding a message of
/// [`MAX_MESSAGE_BYTES`] in base64, with room for the JSON around it.
pub const MAX_SESSION_FRAME_BYTES: usize = MAX_MESSAGE_BYTES / 3 * 4 + 4096;

/// Most requests one WebSocket session may have in flight; the server reads
/// no further frames from the session until one is answered.
pub const MAX_SESSION_IN_FLIGHT: usize = 256;

/// Most mail addresses one account may bind in its device list.
pub const MAX_MAIL_ADDRESSES_PER_ACCOUNT: usize = 8;

/// Largest OpenPGP certificate the server keeps, in bytes. Rempart's own
/// (an Ed25519 primary key, one Curve25519 subkey, one User ID) are about
/// 400 bytes; this leaves room for a few more User IDs and subkeys.
pub const MAX_MAIL_CERTIFICATE_BYTES: usize = 16 * 1024;

/// Most certificates the server keeps per account: the current one of each
/// address and the ones they replaced.
pub const MAX_MAIL_CERTIFICATES_PER_ACCOUNT: usize = 64;
