//! The Rempart client engine: everything a user interface needs, and no UI.
//!
//! A [`Client`] is one device of one account. It keeps its keys and MLS
//! state in a local SQLite store under its home directory, talks to one
//! server with signed requests, and guarantees:
//!
//! - every conversation, 1:1 included, is an MLS group (RFC 9420, openmls);
//! - a device key reaches a conversation only if its owner's account key
//!   signed it ([`VerifiedDeviceList`]); a KeyPackage, Welcome or commit that
//!   breaks this is refused with an [`Alert`];
//! - the first account key seen for a user is pinned; a different one later
//!   is the `account_key_changed` alert;
//! - this device's own commits are merged only after the server accepted
//!   them; a commit refused as stale is rebuilt after fetching what won;
//! - no plaintext, key or secret is logged or sent to the server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rempart_client::Client;
//!
//! let home = std::path::Path::new("/tmp/alice");
//! let mut alice = Client::create_account(home, "http://127.0.0.1:7800", "alice".parse()?).await?;
//! alice.send_text(&"bob".parse()?, "hello Bob").await?;
//! for event in alice.sync().await? {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

mod api;
pub mod at_rest;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench;
mod conversation;
mod device_list;
mod devices;
mod directory;
mod error;
mod event;
pub mod history;
mod keys;
pub mod mail;
mod mls;
pub mod outbox;
mod safety;
pub mod session;
mod store;
mod sync;

use std::path::{Path, PathBuf};

use openmls_rust_crypto::RustCrypto;
use rempart_proto::api::KeyPackageUpload;
use rempart_proto::{DeviceEntry, DeviceId, DeviceList, PublicKey, SignedDeviceList, UserName};

pub use crate::at_rest::Passphrase;
pub use crate::conversation::{ConversationInfo, MAX_GROUP_NAME_CHARS, RosterEntry};
pub use crate::device_list::VerifiedDeviceList;
pub use crate::devices::{DeviceInfo, PendingLink};
pub use crate::directory::{AuditReport, DEFAULT_WITNESS_GRACE, DEFAULT_WITNESS_WAIT};
pub use crate::error::ClientError;
pub use crate::event::{Alert, AlertCode, Event};
pub use crate::outbox::{DeliveryState, Outgoing};
pub use crate::safety::{SafetyNumber, safety_number};
pub use crate::store::STORE_FILE;

use crate::api::{ServerApi, Signer};
use crate::keys::{AccountKey, DeviceKey};
use crate::mls::Provider;
use crate::store::{Identity, Store};

/// Protocol constants other implementations (and test peers) need to
/// interoperate: the ciphersuite, the metadata extension, leaf capabilities.
pub mod protocol {
    pub use crate::mls::{CIPHERSUITE, METADATA_EXTENSION, capabilities, join_config};
}

/// Longest text message, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// One-time KeyPackages uploaded per batch.
const KEY_PACKAGE_BATCH: usize = 20;

/// A new batch is uploaded when fewer one-time KeyPackages than this remain.
const KEY_PACKAGE_LOW_WATER: u64 = 10;

/// Setting: how many one-time KeyPackages the server held for this device
/// when it last looked.
const SETTING_ONE_TIME_HELD: &str = "one_time_key_packages_held";
/// Setting: how many of this device's one-time KeyPackages the server
/// said were claimed, when it last looked.
const SETTING_CLAIMED_SEEN: &str = "one_time_key_packages_claimed";
/// Setting: when this device last found its one-time KeyPackages all
/// claimed (Unix seconds).
const SETTING_DRAINED_AT: &str = "key_packages_drained_at";
/// How long after a drain a last-resort package's use is put down to it.
const DRAINED_RECENTLY_SECS: i64 = 24 * 3600;

fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

const SETTING_UPDATE_INTERVAL: &str = "update_interval_secs";
const SETTING_UPDATE_AFTER: &str = "update_after_messages";

/// When a device does an MLS self-update commit in a conversation, for
/// post-compromise security: after `interval_secs` since its last one, or
/// after it sent `after_messages` messages, whichever comes first (checked
/// at each sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdatePolicy {
    /// Seconds between self-updates (default one day).
    pub interval_secs: i64,
    /// Sent messages between self-updates (default 100).
    pub after_messages: u64,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        Self {
            interval_secs: 24 * 60 * 60,
            after_messages: 100,
        }
    }
}

/// Who this device is, for display.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WhoAmI {
    /// The account's user name.
    pub user: UserName,
    /// This device's id.
    pub device: DeviceId,
    /// The server's URL.
    pub server: String,
    /// Fingerprint of the account key.
    pub account_fingerprint: String,
    /// Fingerprint of this device's key.
    pub device_fingerprint: String,
    /// How many witnesses must cosign each directory head (0: none
    /// configured, and nothing independent checks the directory).
    pub witness_quorum: usize,
    /// Whether this device's store is encrypted at rest.
    pub store_encrypted: bool,
}

/// One device of one account.
pub struct Client {
    home: PathBuf,
    store: Store,
    api: ServerApi,
    crypto: RustCrypto,
    id: Identity,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.id.user)
            .field("device", &self.id.device)
            .field("server", &self.id.server)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Creates an account named `user` on the server at `server_url`, with
    /// this device as its first device, and stores it in `home`.
    ///
    /// Generates the account key and the device key, signs the first device
    /// list, registers, and uploads KeyPackages. If registration fails
    /// nothing is left in `home`.
    pub async fn create_account(
        home: &Path,
        server_url: &str,
        user: UserName,
    ) -> Result<Self, ClientError> {
        Self::create_account_with(home, server_url, user, NewAccount::default()).await
    }

    /// [`Self::create_account`], with an invitation code and a store
    /// encrypted under a passphrase as `options` says.
    pub async fn create_account_with(
        home: &Path,
        server_url: &str,
        user: UserName,
        options: NewAccount<'_>,
    ) -> Result<Self, ClientError> {
        let api = ServerApi::new(server_url)?;
        let store = Store::create(home, options.passphrase)?;
        let result = Self::register(home, store, api, user, options.invitation).await;
        if result.is_err() {
            remove_store(home);
        }
        result
    }

    async fn register(
        home: &Path,
        store: Store,
        api: ServerApi,
        user: UserName,
        invitation: Option<&str>,
    ) -> Result<Self, ClientError> {
        let id = new_identity(user, api.base())?;
        let signer = Signer {
            device: id.device,
            key: &id.device_key,
        };
        api.register(signer, &id.user, &id.device_list, invitation)
            .await?;
        store.atomic(|| {
            store.save_identity(&id)?;
            store.pin_key(&id.user, &id.account_key.public())
        })?;
        let client = Self::assemble(home, store, api, id);
        client.pin_directory().await?;
        client.upload_key_packages(true).await?;
        Ok(client)
    }

    fn assemble(home: &Path, store: Store, api: ServerApi, id: Identity) -> Self {
        Self {
            home: home.to_owned(),
            store,
            api,
            crypto: RustCrypto::default(),
            id,
        }
    }

    /// Opens the account stored in `home`, a plain store.
    pub fn open(home: &Path) -> Result<Self, ClientError> {
        Self::open_with(home, None)
    }

    /// Opens the account stored in `home`, with the passphrase of its
    /// encrypted store.
    pub fn open_with(home: &Path, passphrase: Option<&Passphrase>) -> Result<Self, ClientError> {
        let no_account = || ClientError::NoAccount {
            home: home.to_owned(),
        };
        let store = Store::open_existing(home, passphrase)?.ok_or_else(no_account)?;
        let id = store.load_identity()?.ok_or_else(no_account)?;
        let api = ServerApi::new(&id.server)?;
        Ok(Self::assemble(home, store, api, id))
    }

    /// Encrypts this device's store under `passphrase`: a plain store in
    /// place, an encrypted one re-keyed from its old passphrase. Returns
    /// whether it was encrypted before. An interruption leaves a store that
    /// opens with the old passphrase (or as plain) or with the new one.
    pub fn change_passphrase(self, passphrase: &Passphrase) -> Result<bool, ClientError> {
        let was = at_rest::is_encrypted(&self.home);
        let home = self.home.clone();
        self.store.rekey(&home, passphrase)?;
        Ok(was)
    }

    /// When this device self-updates in each conversation.
    pub fn update_policy(&self) -> Result<UpdatePolicy, ClientError> {
        let default = UpdatePolicy::default();
        let interval_secs = self
            .store
            .setting(SETTING_UPDATE_INTERVAL)?
            .unwrap_or(default.interval_secs);
        let after_messages = self
            .store
            .setting(SETTING_UPDATE_AFTER)?
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(default.after_messages);
        Ok(UpdatePolicy {
            interval_secs,
            after_messages,
        })
    }

    /// Changes when this device self-updates.
    pub fn set_update_policy(&self, policy: UpdatePolicy) -> Result<(), ClientError> {
        self.store.atomic(|| {
            self.store
                .set_setting(SETTING_UPDATE_INTERVAL, policy.interval_secs)?;
            self.store.set_setting(
                SETTING_UPDATE_AFTER,
                i64::try_from(policy.after_messages).unwrap_or(i64::MAX),
            )
        })
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// This account's user name.
    pub fn user(&self) -> &UserName {
        &self.id.user
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.id.device
    }

    /// This account's key.
    pub fn account_key(&self) -> PublicKey {
        self.id.account_key.public()
    }

    /// Who this device is.
    pub fn whoami(&self) -> WhoAmI {
        let witness_quorum = self.witnesses().map(|(_, q)| q).unwrap_or(0);
        WhoAmI {
            witness_quorum,
            store_encrypted: at_rest::is_encrypted(&self.home),
            user: self.id.user.clone(),
            device: self.id.device,
            server: self.id.server.clone(),
            account_fingerprint: self.id.account_key.public().fingerprint(),
            device_fingerprint: self.id.device_key.public().fingerprint(),
        }
    }

    fn signer(&self) -> Signer<'_> {
        Signer {
            device: self.id.device,
            key: &self.id.device_key,
        }
    }

    fn provider(&self) -> Provider<'_> {
        Provider::new(&self.crypto, self.store.conn())
    }

    /// Uploads a batch of one-time KeyPackages, and a last-resort one if
    /// `last_resort`. The private parts are committed locally first.
    async fn upload_key_packages(&self, last_resort: bool) -> Result<(), ClientError> {
        let status = self.upload_key_package_batch(last_resort).await?;
        self.note_key_packages(&status)
    }

    /// Remembers what the server holds for this device and how many it
    /// says were claimed, to compare with at the next look.
    fn note_key_packages(
        &self,
        status: &rempart_proto::api::KeyPackageStatus,
    ) -> Result<(), ClientError> {
        self.store
            .set_setting(SETTING_ONE_TIME_HELD, clamp_i64(status.one_time))?;
        self.store
            .set_setting(SETTING_CLAIMED_SEEN, clamp_i64(status.claimed))
    }

    /// Since the last look: how many one-time packages this device had
    /// left on the server, and how many of them the server says were
    /// claimed.
    fn key_packages_since(
        &self,
        status: &rempart_proto::api::KeyPackageStatus,
    ) -> Result<(u64, u64), ClientError> {
        let setting = |key| -> Result<u64, ClientError> {
            Ok(u64::try_from(self.store.setting(key)?.unwrap_or(0)).unwrap_or(0))
        };
        let held = setting(SETTING_ONE_TIME_HELD)?;
        let claimed = status
            .claimed
            .saturating_sub(setting(SETTING_CLAIMED_SEEN)?);
        Ok((held, claimed))
    }

    /// [`Self::upload_key_packages`]; what the server then holds.
    async fn upload_key_package_batch(
        &self,
        last_resort: bool,
    ) -> Result<rempart_proto::api::KeyPackageStatus, ClientError> {
        let upload = self.store.atomic(|| {
            let provider = self.provider();
            let credential =
                || mls::credential(&self.id.user, &self.id.device, &self.id.device_key);
            let one_time = (0..KEY_PACKAGE_BATCH)
                .map(|_| {
                    mls::new_key_package(&provider, &self.id.device_key, credential(), false)
                        .map(|(bytes, _)| bytes)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let last_resort = match last_resort {
                true => {
                    let (bytes, hash_ref) =
                        mls::new_key_package(&provider, &self.id.device_key, credential(), true)?;
                    // Recognized later in a Welcome: see `last_resort_used`.
                    self.store.note_last_resort(&hash_ref)?;
                    Some(bytes)
                }
                false => None,
            };
            Ok(KeyPackageUpload {
                one_time,
                last_resort,
            })
        })?;
        self.api.upload_key_packages(self.signer(), &upload).await
    }

    /// Uploads more KeyPackages if the server is running low. If the
    /// one-time ones this device left on the server were all claimed since
    /// it last looked, says so: contacts starting conversations, or someone
    /// claiming them to drain them, took them (the server's answer is all
    /// this device can know).
    async fn replenish_key_packages(&self) -> Result<Option<Event>, ClientError> {
        let status = self.api.key_package_status(self.signer()).await?;
        let (held, claimed) = self.key_packages_since(&status)?;
        // All gone, and the server counts as many claims: others took them.
        let drained = (status.one_time == 0 && held > 0 && claimed >= held).then(|| {
            Event::KeyPackagesDrained {
                user: self.id.user.clone(),
                device: self.id.device,
                claimed,
            }
        });
        if drained.is_some() {
            self.store
                .set_setting(SETTING_DRAINED_AT, api::unix_now())?;
        }
        let status = if status.one_time < KEY_PACKAGE_LOW_WATER || !status.last_resort {
            self.upload_key_package_batch(!status.last_resort).await?
        } else {
            status
        };
        self.note_key_packages(&status)?;
        Ok(drained)
    }

    /// Why a Welcome came with this device's last-resort KeyPackage, in
    /// plain words. Claims by others (all the one-time packages gone, and
    /// as many claims counted; or a drain seen by a sync within
    /// [`DRAINED_RECENTLY_SECS`]) are nobody's attack on this device's
    /// keys; one-time packages still held, or gone without claims, are the
    /// server's doing.
    pub(crate) async fn last_resort_reason(&self) -> Result<String, ClientError> {
        let status = self.api.key_package_status(self.signer()).await?;
        let (held, claimed) = self.key_packages_since(&status)?;
        let drained_lately = self
            .store
            .setting(SETTING_DRAINED_AT)?
            .is_some_and(|at| api::unix_now().saturating_sub(at) <= DRAINED_RECENTLY_SECS);
        Ok(if status.one_time > 0 && !drained_lately {
            format!(
                "the server still holds {} one-time KeyPackages of this device: it withheld them",
                status.one_time
            )
        } else if status.one_time == 0 && claimed < held && !drained_lately {
            format!(
                "of the {held} one-time KeyPackages this device left on the server, only {claimed} were claimed: the server withheld the rest"
            )
        } else {
            "its one-time KeyPackages had all been claimed (by people starting conversations with you, or by someone draining them), not withheld by the server".to_owned()
        })
    }
}

/// The identity of a new account's first device: fresh account and device
/// keys, and the first device list, signed by the account key.
fn new_identity(user: UserName, server: &str) -> Result<Identity, ClientError> {
    let account_key = AccountKey::generate();
    let device_key = DeviceKey::generate();
    let device = DeviceId::random();
    let list = DeviceList {
        user: user.clone(),
        account_key: account_key.public(),
        version: 1,
        timestamp: api::unix_now(),
        devices: vec![DeviceEntry {
            id: device,
            signature_key: device_key.public(),
        }],
        mail: Vec::new(),
    };
    let device_list = SignedDeviceList::sign(&list, account_key.signing_key())
        .map_err(|e| ClientError::Corrupt(format!("cannot sign own device list: {e}")))?;
    Ok(Identity {
        user,
        device,
        server: server.to_owned(),
        account_key,
        device_key,
        device_list,
    })
}

pub(crate) fn remove_store(home: &Path) {
    let path = Store::path(home);
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        // Best effort: the files may not exist.
        let _ = std::fs::remove_file(file);
    }
    let _ = std::fs::remove_file(at_rest::header_path(home));
}

/// How to make a new account ([`Client::create_account_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct NewAccount<'a> {
    /// An invitation code, for a server that registers by invitation only.
    pub invitation: Option<&'a str>,
    /// The passphrase that encrypts the store; `None` keeps it plain.
    pub passphrase: Option<&'a Passphrase>,
}
