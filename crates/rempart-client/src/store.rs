//! The device's local store: one SQLite file in the home directory holding
//! the account and device keys, pinned account keys of contacts, the
//! conversations with their log cursors, the message history, and the
//! openmls group state (openmls_sqlite_storage tables in the same file).
//!
//! Every change that spans openmls state and Rempart's own tables runs in
//! one SQLite transaction ([`Store::atomic`]), because openmls has no storage
//! transactions of its own.

use std::fs;
use std::path::{Path, PathBuf};

use openmls_sqlite_storage::SqliteStorageProvider;
use rempart_proto::api::CommitUpload;
use rempart_proto::directory::SignedHead;
use rempart_proto::{DeviceId, GroupId, MessageId, PublicKey, SignedDeviceList, UserName};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::Digest as _;

use crate::at_rest::{self, AtRestError, Passphrase, StoreKey, Unlock};
use crate::directory::PinnedDirectory;
use crate::error::ClientError;
use crate::event::Event;
use crate::keys::{AccountKey, DeviceKey};
use crate::mls::JsonCodec;

/// File name of the store inside the home directory.
pub const STORE_FILE: &str = "rempart.db";

/// The layout of the store this version writes (`PRAGMA user_version`).
/// A change of layout raises it, with a migration from the one before.
const SCHEMA_VERSION: i64 = 7;

/// Migration `i` brings a store from version `i + 1` to `i + 2`.
const MIGRATIONS: &[&str] = &[
    // Version 2: ended conversations say who ended them, each
    // conversation maps the server's epoch counter to its MLS epoch, and
    // remembers that the server withholds its log.
    "ALTER TABLE conversations ADD COLUMN ended_by TEXT;
     ALTER TABLE conversations ADD COLUMN epoch_offset INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE conversations ADD COLUMN withheld INTEGER NOT NULL DEFAULT 0;",
    // Version 3: a device that joined from a Welcome skips the log entries
    // from before the commit that added it.
    "ALTER TABLE conversations ADD COLUMN join_epoch INTEGER;",
    // Version 4: a cached device list keeps the directory epoch of its
    // proof.
    "ALTER TABLE contacts ADD COLUMN proven_epoch INTEGER;",
    // Version 5: a pending commit keeps what was uploaded (and, for a
    // group being founded, its name and peer), to be settled after a
    // cancelled operation.
    "ALTER TABLE pending_commits ADD COLUMN upload TEXT;
     ALTER TABLE pending_commits ADD COLUMN founding_name TEXT;
     ALTER TABLE pending_commits ADD COLUMN founding_peer TEXT;",
    // Version 6: a received message is unread until its conversation's
    // history is read.
    "ALTER TABLE messages ADD COLUMN unread INTEGER NOT NULL DEFAULT 0;",
    // Version 7: the outbox (its table is created with the schema, by
    // `crate::outbox::SCHEMA`).
    "",
];

fn has_table(conn: &Connection, name: &str) -> Result<bool, ClientError> {
    Ok(conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
        .exists([name])?)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS identity (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    user TEXT NOT NULL,
    device_id TEXT NOT NULL,
    server TEXT NOT NULL,
    account_secret BLOB NOT NULL,
    device_secret BLOB NOT NULL,
    device_list TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (
    user TEXT PRIMARY KEY,
    account_key TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    device_list TEXT,
    -- The account key the user confirmed by comparing safety numbers.
    verified_key TEXT,
    -- A different, validly signed account key the server now presents.
    presented_key TEXT,
    presented_list TEXT,
    -- The directory epoch at which device_list was proven.
    proven_epoch INTEGER
);
CREATE TABLE IF NOT EXISTS conversations (
    group_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    peer TEXT,
    is_group INTEGER NOT NULL DEFAULT 0,
    cursor INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    updated_at INTEGER NOT NULL DEFAULT 0,
    sent_since_update INTEGER NOT NULL DEFAULT 0,
    -- Once inactive: the user who removed this device (this account's own
    -- user if it left), or NULL if not known.
    ended_by TEXT,
    -- The server's epoch counter minus the MLS epoch: the entries the
    -- server took as commits and the members rejected.
    epoch_offset INTEGER NOT NULL DEFAULT 0,
    -- 1 while the server refuses this device the log with no commit that
    -- removed it (`conversation_withheld` was said once for it).
    withheld INTEGER NOT NULL DEFAULT 0,
    -- For a device that joined from a Welcome, until it has found in the
    -- log the commit that added it: the MLS epoch it joined at. Entries
    -- before that commit are history it was never part of.
    join_epoch INTEGER
);
CREATE INDEX IF NOT EXISTS conversations_peer ON conversations(peer);
CREATE INDEX IF NOT EXISTS conversations_name ON conversations(name);
CREATE TABLE IF NOT EXISTS leave_requests (
    group_id TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (group_id, user)
);
CREATE TABLE IF NOT EXISTS queued_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS directory (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    server_id TEXT NOT NULL,
    directory_key TEXT NOT NULL,
    vrf_key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sender_counters (
    group_id TEXT NOT NULL,
    device TEXT NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (group_id, device)
);
CREATE TABLE IF NOT EXISTS merged_commits (
    group_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (group_id, epoch)
);
CREATE TABLE IF NOT EXISTS last_resort_key_packages (
    hash_ref BLOB PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS gossiped_heads (
    epoch INTEGER PRIMARY KEY,
    head TEXT NOT NULL,
    conversation TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uncosigned_heads (
    epoch INTEGER PRIMARY KEY,
    first_seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS witnesses (
    witness_key TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS directory_heads (
    epoch INTEGER PRIMARY KEY,
    head TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS directory_evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    epoch INTEGER NOT NULL,
    first_head TEXT NOT NULL,
    second_head TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sent (
    group_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (group_id, message_id)
);
CREATE TABLE IF NOT EXISTS pending_commits (
    group_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    -- The CommitUpload as JSON, sent again to settle it after a cancel.
    upload TEXT,
    -- For a group being founded: its conversation's name and peer.
    founding_name TEXT,
    founding_peer TEXT
);
";

/// The identity of this device, as stored.
pub(crate) struct Identity {
    pub user: UserName,
    pub device: DeviceId,
    pub server: String,
    pub account_key: AccountKey,
    pub device_key: DeviceKey,
    pub device_list: SignedDeviceList,
}

/// A conversation as stored.
#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    pub group: GroupId,
    pub name: String,
    pub is_group: bool,
    pub cursor: u64,
    /// Unix seconds of this device's last self-update (or joining).
    pub updated_at: i64,
    /// Messages this device sent since its last self-update.
    pub sent_since_update: u64,
    /// False once this device left or was removed.
    pub active: bool,
    /// Once ended: who removed this device (this account's user if it
    /// left), if known.
    pub ended_by: Option<UserName>,
    /// The server's epoch counter minus the group's MLS epoch.
    pub epoch_offset: u64,
    /// Whether the server refuses this device the log although no commit
    /// removed it (already alerted).
    pub withheld: bool,
    /// For a device that joined from a Welcome and has not yet found in the
    /// log the commit that added it: the MLS epoch it joined at.
    pub join_epoch: Option<u64>,
}

/// A commit of this device whose outcome is not known yet: built and kept
/// as openmls's pending commit, uploaded or about to be.
#[derive(Debug, Clone)]
pub(crate) struct PendingCommit {
    pub group: GroupId,
    pub upload: CommitUpload,
    /// For a group being founded: its conversation's name and peer.
    pub founding: Option<(String, Option<UserName>)>,
}

/// What this device knows of a contact's account keys.
#[derive(Debug, Clone)]
pub(crate) struct ContactKeys {
    /// The key pinned when first seen (or last confirmed).
    pub pinned: PublicKey,
    /// The key the user confirmed by comparing safety numbers, if any.
    pub verified: Option<PublicKey>,
    /// A different key the server presents, validly signed, not accepted.
    pub presented: Option<PublicKey>,
}

/// A transaction of the store (see [`Store::begin`]).
pub(crate) struct Transaction<'s> {
    conn: Option<&'s Connection>,
    nested: bool,
}

impl Transaction<'_> {
    /// Keeps what the transaction stored.
    pub fn commit(mut self) -> Result<(), ClientError> {
        let Some(conn) = self.conn.take() else {
            return Ok(());
        };
        let done = conn.execute_batch(if self.nested {
            "RELEASE rempart"
        } else {
            "COMMIT"
        });
        if done.is_err() {
            rollback(conn, self.nested);
        }
        Ok(done?)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            rollback(conn, self.nested);
        }
    }
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("nested", &self.nested)
            .finish_non_exhaustive()
    }
}

/// Discards an open transaction or savepoint. A failure leaves nothing to
/// do: SQLite rolls back a transaction whose statement failed, and the
/// error that led here is the one to report.
fn rollback(conn: &Connection, nested: bool) {
    let _ = conn.execute_batch(if nested {
        "ROLLBACK TO rempart; RELEASE rempart"
    } else {
        "ROLLBACK"
    });
}

/// The local store.
pub(crate) struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Path of the store in `home`.
    pub fn path(home: &Path) -> PathBuf {
        home.join(STORE_FILE)
    }

    /// Opens an existing store, or `None` if `home` has none. An encrypted
    /// store needs its passphrase.
    pub fn open_existing(
        home: &Path,
        passphrase: Option<&Passphrase>,
    ) -> Result<Option<Self>, ClientError> {
        let path = Self::path(home);
        if !path.exists() {
            return Ok(None);
        }
        // A re-key interrupted after its new file took the store's place
        // left the store under the staged header: finish it.
        let staged = at_rest::staged_header_path(home);
        let mut locked = false;
        if staged.exists() {
            // A staged header that cannot be read was never complete, so
            // the store never went under it: it is tried no further.
            let attempt = match Self::try_open(home, &path, &staged, passphrase) {
                Err(ClientError::AtRest(AtRestError::Header(_))) => Attempt::Refused,
                attempt => attempt?,
            };
            match attempt {
                Attempt::Opened(store) => {
                    let header = at_rest::header_path(home);
                    fs::rename(&staged, &header).map_err(|source| ClientError::Io {
                        path: header,
                        source,
                    })?;
                    sync_dir(home)?;
                    return Ok(Some(store));
                }
                Attempt::Locked => locked = true,
                Attempt::Refused => {}
            }
        }
        let header = at_rest::header_path(home);
        match Self::try_open(home, &path, &header, passphrase)? {
            Attempt::Opened(store) => {
                // A re-key interrupted before that: it never happened.
                remove_rekey_leftovers(home);
                Ok(Some(store))
            }
            Attempt::Locked => Err(ClientError::StoreLocked {
                home: home.to_owned(),
            }),
            Attempt::Refused if locked => Err(ClientError::StoreLocked {
                home: home.to_owned(),
            }),
            Attempt::Refused => Err(ClientError::WrongPassphrase {
                home: home.to_owned(),
            }),
        }
    }

    /// The store at `path` under the header at `header` (plain if there is
    /// none), if it opens that way.
    fn try_open(
        home: &Path,
        path: &Path,
        header: &Path,
        passphrase: Option<&Passphrase>,
    ) -> Result<Attempt, ClientError> {
        let key = match at_rest::unlock_with(header, passphrase)? {
            Unlock::Plain => None,
            Unlock::Locked => return Ok(Attempt::Locked),
            Unlock::Key(key) => Some(key),
        };
        match Self::open_path(home, path, key.as_ref()) {
            Ok(store) => Ok(Attempt::Opened(store)),
            Err(ClientError::WrongPassphrase { .. } | ClientError::NotPlain { .. }) => {
                Ok(Attempt::Refused)
            }
            Err(error) => Err(error),
        }
    }

    /// Encrypts the whole store under `passphrase` (a plain one in place),
    /// in a new file that replaces it only once complete: an interruption
    /// at any point leaves a store that opens with the old passphrase or
    /// the new one.
    pub(crate) fn rekey(self, home: &Path, passphrase: &Passphrase) -> Result<(), ClientError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ClientError::Io { path, source }
        };
        remove_rekey_leftovers(home);
        let key = at_rest::stage(home, passphrase)?;
        let fresh = rekey_path(home);
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        self.conn.execute_batch(&key.attach(&fresh, "rekeyed"))?;
        self.conn
            .query_row("SELECT sqlcipher_export('rekeyed')", [], |_| Ok(()))?;
        self.conn.execute_batch(&format!(
            "PRAGMA rekeyed.user_version = {version}; DETACH DATABASE rekeyed;"
        ))?;
        // Out of WAL mode: the log is copied into the old file and deleted,
        // or this fails and the old file stays as it was.
        let mode: String =
            self.conn
                .pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(ClientError::Corrupt(format!(
                "the store could not leave WAL mode (it is in {mode} mode); nothing was changed"
            )));
        }
        drop(self);
        let path = Self::path(home);
        // The old file's log and index are checkpointed: gone, they cannot
        // be applied to the new file.
        for suffix in ["-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            match fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(io(Path::new(&file))(source)),
            }
        }
        restrict(&fresh, 0o600).map_err(io(&fresh))?;
        fs::File::open(&fresh)
            .and_then(|f| f.sync_all())
            .map_err(io(&fresh))?;
        fs::rename(&fresh, &path).map_err(io(&path))?;
        sync_dir(home)?;
        let header = at_rest::header_path(home);
        fs::rename(at_rest::staged_header_path(home), &header).map_err(io(&header))?;
        sync_dir(home)
    }

    /// Creates a new store in `home` (created with mode 0700 if missing),
    /// encrypted under `passphrase` if given.
    pub fn create(home: &Path, passphrase: Option<&Passphrase>) -> Result<Self, ClientError> {
        let io = |source| ClientError::Io {
            path: home.to_owned(),
            source,
        };
        fs::create_dir_all(home).map_err(io)?;
        restrict(home, 0o700).map_err(io)?;
        let path = Self::path(home);
        if path.exists() {
            return Err(ClientError::AccountExists {
                home: home.to_owned(),
            });
        }
        let key = passphrase
            .map(|passphrase| at_rest::protect(home, passphrase))
            .transpose()?;
        let store = Self::open_path(home, &path, key.as_ref())?;
        restrict(&path, 0o600).map_err(|source| ClientError::Io { path, source })?;
        Ok(store)
    }

    fn open_path(home: &Path, path: &Path, key: Option<&StoreKey>) -> Result<Self, ClientError> {
        let mut conn = Connection::open(path)?;
        if let Some(key) = key {
            // Before anything else reads the file.
            conn.execute_batch(&key.pragma())?;
        }
        // A wrong key is this function's error to tell, not a log line of
        // SQLCipher's on stderr (its default once a key is set).
        conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
        // Temporary tables and indices stay in memory: nothing of the
        // store goes to a temporary file.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // The first read tells a wrong key (or a key missing).
        match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        }) {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::NotADatabase =>
            {
                return Err(match key {
                    Some(_) => ClientError::WrongPassphrase {
                        home: home.to_owned(),
                    },
                    None => ClientError::NotPlain {
                        path: path.to_owned(),
                    },
                });
            }
            Err(error) => return Err(error.into()),
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let made_by = match version {
            // Version 0 is a new file, or a store from before versions
            // were kept (without key transparency), which has an identity.
            0 if !has_table(&conn, "identity")? => None,
            0 => Some("an older"),
            v if v > SCHEMA_VERSION => Some("a newer"),
            v if v < 0 => Some("an unknown"),
            _ => None,
        };
        if let Some(made_by) = made_by {
            return Err(ClientError::StoreVersion {
                path: path.to_owned(),
                made_by,
            });
        }
        // `version` is 0 (new) or 1 ..= SCHEMA_VERSION here.
        if version >= 1 {
            let done = usize::try_from(version - 1).unwrap_or(usize::MAX);
            for (step, migration) in MIGRATIONS.iter().enumerate().skip(done) {
                let tx = conn.transaction()?;
                tx.execute_batch(migration)?;
                tx.pragma_update(None, "user_version", step as i64 + 2)?;
                tx.commit()?;
            }
        }
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::history::SCHEMA)?;
        conn.execute_batch(crate::outbox::SCHEMA)?;
        conn.execute_batch(crate::mail::SCHEMA)?;
        conn.execute_batch(crate::mail::account::SCHEMA)?;
        conn.execute_batch(crate::mail::mailbox::SCHEMA)?;
        crate::mail::mailbox::upgrade(&conn)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        SqliteStorageProvider::<JsonCodec, &mut Connection>::new(&mut conn)
            .run_migrations()
            .map_err(|e| ClientError::Corrupt(format!("openmls storage migration: {e}")))?;
        Ok(Self { conn })
    }

    /// The connection, for the openmls provider.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Opens a transaction: an immediate one, or inside one already open a
    /// savepoint of it. It is rolled back when dropped uncommitted, so no
    /// early return, error or cancelled future leaves it open. Never held
    /// across a network call: callers build, record, call the network,
    /// then apply, each step in a transaction of its own.
    pub fn begin(&self) -> Result<Transaction<'_>, ClientError> {
        let nested = !self.conn.is_autocommit();
        self.conn.execute_batch(if nested {
            "SAVEPOINT rempart"
        } else {
            "BEGIN IMMEDIATE"
        })?;
        Ok(Transaction {
            conn: Some(&self.conn),
            nested,
        })
    }

    /// Runs `f` in one transaction: all of it is stored, or none.
    pub fn atomic<T>(&self, f: impl FnOnce() -> Result<T, ClientError>) -> Result<T, ClientError> {
        let tx = self.begin()?;
        let value = f()?;
        tx.commit()?;
        Ok(value)
    }

    /// Runs `f` in one transaction, kept only if `f` returns `Ok(true)`.
    pub fn atomic_if(
        &self,
        f: impl FnOnce() -> Result<bool, ClientError>,
    ) -> Result<bool, ClientError> {
        let tx = self.begin()?;
        let keep = f()?;
        if keep {
            tx.commit()?;
        }
        Ok(keep)
    }

    pub fn save_identity(&self, id: &Identity) -> Result<(), ClientError> {
        let list = serde_json::to_string(&id.device_list)
            .map_err(|e| ClientError::Corrupt(e.to_string()))?;
        self.conn.execute(
            "INSERT INTO identity (id, user, device_id, server, account_secret, device_secret, device_list)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id.user.as_str(),
                id.device.to_string(),
                id.server,
                &id.account_key.secret_bytes()[..],
                &id.device_key.secret_bytes()[..],
                list
            ],
        )?;
        Ok(())
    }

    pub fn load_identity(&self) -> Result<Option<Identity>, ClientError> {
        let row = self
            .conn
            .query_row(
                "SELECT user, device_id, server, account_secret, device_secret, device_list FROM identity WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        zeroize::Zeroizing::new(r.get::<_, Vec<u8>>(3)?),
                        zeroize::Zeroizing::new(r.get::<_, Vec<u8>>(4)?),
                        r.get::<_, String>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((user, device, server, account, device_secret, list)) = row else {
            return Ok(None);
        };
        let corrupt = |what: &str| ClientError::Corrupt(format!("identity: bad {what}"));
        Ok(Some(Identity {
            user: user.parse().map_err(|_| corrupt("user"))?,
            device: device.parse().map_err(|_| corrupt("device id"))?,
            server,
            account_key: AccountKey::from_secret(&account).ok_or_else(|| corrupt("account key"))?,
            device_key: DeviceKey::from_secret(&device_secret)
                .ok_or_else(|| corrupt("device key"))?,
            device_list: serde_json::from_str(&list).map_err(|_| corrupt("device list"))?,
        }))
    }

    /// The account key pinned for `user`, if any.
    pub fn pinned_key(&self, user: &UserName) -> Result<Option<PublicKey>, ClientError> {
        let key: Option<String> = self
            .conn
            .query_row(
                "SELECT account_key FROM contacts WHERE user = ?1",
                [user.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        key.map(|k| {
            PublicKey::try_from(k)
                .map_err(|_| ClientError::Corrupt(format!("pinned key of {user}")))
        })
        .transpose()
    }

    pub fn pin_key(&self, user: &UserName, key: &PublicKey) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT INTO contacts (user, account_key) VALUES (?1, ?2)",
            params![user.as_str(), String::from(*key)],
        )?;
        Ok(())
    }

    /// Records that the server presents `key` (with a list it validly
    /// signs) for `user`, whose pinned key is another.
    pub fn note_presented_key(
        &self,
        user: &UserName,
        key: &PublicKey,
        list: &SignedDeviceList,
    ) -> Result<(), ClientError> {
        let json = serde_json::to_string(list).map_err(|e| ClientError::Corrupt(e.to_string()))?;
        self.conn.execute(
            "UPDATE contacts SET presented_key = ?2, presented_list = ?3 WHERE user = ?1",
            params![user.as_str(), String::from(*key), json],
        )?;
        Ok(())
    }

    /// What is known of `user`'s keys: pinned, verified, presented.
    pub fn contact_keys(&self, user: &UserName) -> Result<Option<ContactKeys>, ClientError> {
        let row: Option<(String, Option<String>, Option<String>)> = self
            .conn
            .query_row(
                "SELECT account_key, verified_key, presented_key FROM contacts WHERE user = ?1",
                [user.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((pinned, verified, presented)) = row else {
            return Ok(None);
        };
        let key = |k: String| {
            PublicKey::try_from(k).map_err(|_| ClientError::Corrupt(format!("a key of {user}")))
        };
        Ok(Some(ContactKeys {
            pinned: key(pinned)?,
            verified: verified.map(key).transpose()?,
            presented: presented.map(key).transpose()?,
        }))
    }

    /// Marks `key` as verified for `user`; if it is the presented key, it
    /// becomes the pinned one and its list the cached one.
    pub fn confirm_key(&self, user: &UserName, key: &PublicKey) -> Result<(), ClientError> {
        let key = String::from(*key);
        self.conn.execute(
            "UPDATE contacts SET
                 account_key = ?2,
                 device_list = CASE WHEN presented_key = ?2 THEN presented_list ELSE device_list END,
                 version = CASE WHEN presented_key = ?2 THEN 0 ELSE version END,
                 verified_key = ?2,
                 presented_key = NULL,
                 presented_list = NULL
             WHERE user = ?1",
            params![user.as_str(), key],
        )?;
        Ok(())
    }

    pub fn add_conversation(
        &self,
        group: &GroupId,
        name: &str,
        peer: Option<&UserName>,
        now: i64,
    ) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT INTO conversations (group_id, name, peer, is_group, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![group.to_string(), name, peer.map(UserName::as_str), peer.is_none(), now],
        )?;
        Ok(())
    }

    /// The highest message counter seen from (or, for this device, sent
    /// by) `device` in `group`.
    pub fn last_counter(
        &self,
        group: &GroupId,
        device: &DeviceId,
    ) -> Result<Option<u64>, ClientError> {
        let last: Option<i64> = self
            .conn
            .query_row(
                "SELECT last FROM sender_counters WHERE group_id = ?1 AND device = ?2",
                params![group.to_string(), device.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(last.and_then(|l| u64::try_from(l).ok()))
    }

    /// Raises the counter of `device` in `group` to `counter`.
    pub fn note_counter(
        &self,
        group: &GroupId,
        device: &DeviceId,
        counter: u64,
    ) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT INTO sender_counters (group_id, device, last) VALUES (?1, ?2, ?3)
             ON CONFLICT (group_id, device) DO UPDATE SET last = MAX(last, excluded.last)",
            params![
                group.to_string(),
                device.to_string(),
                i64::try_from(counter).unwrap_or(i64::MAX)
            ],
        )?;
        Ok(())
    }

    /// Forgets the counters of other devices in `group` (on joining it
    /// again: what was sent meanwhile was never for this device).
    pub fn forget_peer_counters(&self, group: &GroupId, own: &DeviceId) -> Result<(), ClientError> {
        self.conn.execute(
            "DELETE FROM sender_counters WHERE group_id = ?1 AND device != ?2",
            params![group.to_string(), own.to_string()],
        )?;
        Ok(())
    }

    /// Forgets a conversation (not its message history), e.g. before
    /// joining it again.
    pub fn remove_conversation(&self, group: &GroupId) -> Result<(), ClientError> {
        self.conn.execute(
            "DELETE FROM conversations WHERE group_id = ?1",
            [group.to_string()],
        )?;
        Ok(())
    }

    /// The group conversation named `name`: the active one, or else the
    /// one that ended last.
    pub fn group_named(&self, name: &str) -> Result<Option<Conversation>, ClientError> {
        let mut found = self.conversations_where("name = ?1 AND is_group = 1", [name])?;
        Ok(match found.iter().rposition(|c| c.active) {
            Some(active) => Some(found.swap_remove(active)),
            None => found.pop(),
        })
    }

    pub fn note_sent(&self, group: &GroupId) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE conversations SET sent_since_update = sent_since_update + 1 WHERE group_id = ?1",
            [group.to_string()],
        )?;
        Ok(())
    }

    pub fn note_updated(&self, group: &GroupId, now: i64) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE conversations SET sent_since_update = 0, updated_at = ?2 WHERE group_id = ?1",
            params![group.to_string(), now],
        )?;
        Ok(())
    }

    pub fn add_leave_request(&self, group: &GroupId, user: &UserName) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO leave_requests (group_id, user) VALUES (?1, ?2)",
            params![group.to_string(), user.as_str()],
        )?;
        Ok(())
    }

    pub fn leave_requests(&self, group: &GroupId) -> Result<Vec<UserName>, ClientError> {
        let mut stmt = self
            .conn
            .prepare("SELECT user FROM leave_requests WHERE group_id = ?1 ORDER BY user")?;
        let rows = stmt.query_map([group.to_string()], |r| r.get::<_, String>(0))?;
        rows.map(|r| {
            r?.parse()
                .map_err(|_| ClientError::Corrupt("leave request user".into()))
        })
        .collect()
    }

    pub fn clear_leave_request(
        &self,
        group: &GroupId,
        user: &UserName,
    ) -> Result<bool, ClientError> {
        let deleted = self.conn.execute(
            "DELETE FROM leave_requests WHERE group_id = ?1 AND user = ?2",
            params![group.to_string(), user.as_str()],
        )?;
        Ok(deleted > 0)
    }

    /// The device list of `user` cached here, with the directory epoch it
    /// was proven at (`None` for a list cached before epochs were kept).
    pub fn cached_device_list(
        &self,
        user: &UserName,
    ) -> Result<Option<(SignedDeviceList, Option<u64>)>, ClientError> {
        let row: Option<(Option<String>, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT device_list, proven_epoch FROM contacts WHERE user = ?1",
                [user.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((Some(list), epoch)) = row else {
            return Ok(None);
        };
        let list = serde_json::from_str(&list)
            .map_err(|_| ClientError::Corrupt(format!("cached device list of {user}")))?;
        Ok(Some((list, epoch.and_then(|e| u64::try_from(e).ok()))))
    }

    /// Caches a verified device list of `user` (whose key is pinned),
    /// proven at directory epoch `epoch`.
    pub fn cache_device_list(
        &self,
        user: &UserName,
        version: u64,
        list: &SignedDeviceList,
        epoch: u64,
    ) -> Result<(), ClientError> {
        let json = serde_json::to_string(list).map_err(|e| ClientError::Corrupt(e.to_string()))?;
        self.conn.execute(
            "UPDATE contacts SET version = ?2, device_list = ?3, proven_epoch = ?4 WHERE user = ?1",
            params![
                user.as_str(),
                i64::try_from(version).unwrap_or(i64::MAX),
                json,
                i64::try_from(epoch).unwrap_or(i64::MAX)
            ],
        )?;
        Ok(())
    }

    /// This device's copy of its own account's device list.
    pub fn own_device_list(&self) -> Result<SignedDeviceList, ClientError> {
        let json: String =
            self.conn
                .query_row("SELECT device_list FROM identity WHERE id = 1", [], |r| {
                    r.get(0)
                })?;
        serde_json::from_str(&json).map_err(|_| ClientError::Corrupt("own device list".into()))
    }

    /// Replaces this device's copy of its own account's device list.
    pub fn set_own_device_list(&self, list: &SignedDeviceList) -> Result<(), ClientError> {
        let json = serde_json::to_string(list).map_err(|e| ClientError::Corrupt(e.to_string()))?;
        self.conn
            .execute("UPDATE identity SET device_list = ?1 WHERE id = 1", [json])?;
        Ok(())
    }

    /// Keeps events learnt outside a sync, for the next sync to report.
    pub fn queue_events(&self, events: &[Event]) -> Result<(), ClientError> {
        for event in events {
            let json =
                serde_json::to_string(event).map_err(|e| ClientError::Corrupt(e.to_string()))?;
            self.conn
                .execute("INSERT INTO queued_events (event) VALUES (?1)", [json])?;
        }
        Ok(())
    }

    /// The queued events and the id of the last one.
    pub fn queued_events(&self) -> Result<(Vec<Event>, i64), ClientError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, event FROM queued_events ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut events = Vec::new();
        let mut last = 0;
        for row in rows {
            let (id, json) = row?;
            last = id;
            events.push(
                serde_json::from_str(&json)
                    .map_err(|_| ClientError::Corrupt("queued event".into()))?,
            );
        }
        Ok((events, last))
    }

    /// Forgets the queued events up to `last`, once reported.
    pub fn drop_queued_events(&self, last: i64) -> Result<(), ClientError> {
        self.conn
            .execute("DELETE FROM queued_events WHERE id <= ?1", [last])?;
        Ok(())
    }

    pub fn pin_directory(&self, pinned: &PinnedDirectory) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT INTO directory (id, server_id, directory_key, vrf_key) VALUES (1, ?1, ?2, ?3)",
            params![
                pinned.server_id,
                String::from(pinned.directory_key),
                pinned.vrf_public_key
            ],
        )?;
        Ok(())
    }

    pub fn pinned_directory(&self) -> Result<Option<PinnedDirectory>, ClientError> {
        let row: Option<(String, String, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT server_id, directory_key, vrf_key FROM directory WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(server_id, key, vrf_public_key)| {
            let directory_key = PublicKey::try_from(key)
                .map_err(|_| ClientError::Corrupt("pinned directory key".into()))?;
            Ok(PinnedDirectory {
                server_id,
                directory_key,
                vrf_public_key,
            })
        })
        .transpose()
    }

    /// Remembers the digest of the commit this device merged to leave
    /// `epoch` of `group`.
    pub fn note_merged_commit(
        &self,
        group: &GroupId,
        epoch: u64,
        commit: &[u8],
    ) -> Result<(), ClientError> {
        let digest = sha2::Sha256::digest(commit);
        self.conn.execute(
            "INSERT OR REPLACE INTO merged_commits (group_id, epoch, digest) VALUES (?1, ?2, ?3)",
            params![
                group.to_string(),
                i64::try_from(epoch).unwrap_or(i64::MAX),
                digest.as_slice()
            ],
        )?;
        Ok(())
    }

    /// Whether `commit` is another commit than the one this device merged
    /// to leave `epoch` of `group` (false when it merged none there).
    pub fn is_other_commit(
        &self,
        group: &GroupId,
        epoch: u64,
        commit: &[u8],
    ) -> Result<bool, ClientError> {
        let merged: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT digest FROM merged_commits WHERE group_id = ?1 AND epoch = ?2",
                params![group.to_string(), i64::try_from(epoch).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(merged.is_some_and(|d| d.as_slice() != sha2::Sha256::digest(commit).as_slice()))
    }

    /// Remembers the hash reference of a last-resort KeyPackage this device
    /// uploaded.
    pub fn note_last_resort(&self, hash_ref: &[u8]) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO last_resort_key_packages (hash_ref) VALUES (?1)",
            [hash_ref],
        )?;
        Ok(())
    }

    /// Whether `hash_ref` is one of this device's last-resort KeyPackages.
    pub fn is_last_resort(&self, hash_ref: &[u8]) -> Result<bool, ClientError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM last_resort_key_packages WHERE hash_ref = ?1")?
            .exists([hash_ref])?)
    }

    /// Keeps a head a member gossiped for an epoch this device has not
    /// seen, to compare with the server's at the end of the sync.
    pub fn note_gossip(
        &self,
        epoch: u64,
        head: &SignedHead,
        conversation: &str,
    ) -> Result<(), ClientError> {
        let json = serde_json::to_string(head).map_err(|e| ClientError::Corrupt(e.to_string()))?;
        self.conn.execute(
            "INSERT OR IGNORE INTO gossiped_heads (epoch, head, conversation) VALUES (?1, ?2, ?3)",
            params![i64::try_from(epoch).unwrap_or(i64::MAX), json, conversation],
        )?;
        Ok(())
    }

    /// The gossiped heads waiting for comparison, by epoch.
    pub fn gossip(&self) -> Result<Vec<(u64, SignedHead, String)>, ClientError> {
        let mut stmt = self
            .conn
            .prepare("SELECT epoch, head, conversation FROM gossiped_heads ORDER BY epoch")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|r| {
            let (epoch, head, conversation) = r?;
            let head = serde_json::from_str(&head)
                .map_err(|_| ClientError::Corrupt("gossiped head".into()))?;
            Ok((u64::try_from(epoch).unwrap_or(0), head, conversation))
        })
        .collect()
    }

    pub fn forget_gossip(&self, epoch: u64) -> Result<(), ClientError> {
        self.conn.execute(
            "DELETE FROM gossiped_heads WHERE epoch = ?1",
            [i64::try_from(epoch).unwrap_or(i64::MAX)],
        )?;
        Ok(())
    }

    /// Notes that the head of `epoch` was accepted before the witness
    /// quorum cosigned it, at `now` (kept if already noted).
    pub fn note_uncosigned(&self, epoch: u64, now: i64) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO uncosigned_heads (epoch, first_seen) VALUES (?1, ?2)",
            params![i64::try_from(epoch).unwrap_or(i64::MAX), now],
        )?;
        Ok(())
    }

    /// The epochs accepted without their quorum, with when each was first
    /// seen, oldest first.
    pub fn uncosigned(&self) -> Result<Vec<(u64, i64)>, ClientError> {
        let mut stmt = self
            .conn
            .prepare("SELECT epoch, first_seen FROM uncosigned_heads ORDER BY epoch")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        rows.map(|r| {
            let (epoch, seen) = r?;
            Ok((u64::try_from(epoch).unwrap_or(0), seen))
        })
        .collect()
    }

    pub fn forget_uncosigned(&self, epoch: u64) -> Result<(), ClientError> {
        self.conn.execute(
            "DELETE FROM uncosigned_heads WHERE epoch = ?1",
            [i64::try_from(epoch).unwrap_or(i64::MAX)],
        )?;
        Ok(())
    }

    pub fn set_witnesses(&self, witnesses: &[PublicKey]) -> Result<(), ClientError> {
        self.conn.execute("DELETE FROM witnesses", [])?;
        for witness in witnesses {
            self.conn.execute(
                "INSERT OR IGNORE INTO witnesses (witness_key) VALUES (?1)",
                [String::from(*witness)],
            )?;
        }
        Ok(())
    }

    pub fn witnesses(&self) -> Result<Vec<PublicKey>, ClientError> {
        let mut stmt = self
            .conn
            .prepare("SELECT witness_key FROM witnesses ORDER BY witness_key")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| {
            PublicKey::try_from(r?).map_err(|_| ClientError::Corrupt("witness key".into()))
        })
        .collect()
    }

    /// The head this device accepted for `epoch`, if any.
    pub fn seen_head(&self, epoch: u64) -> Result<Option<SignedHead>, ClientError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT head FROM directory_heads WHERE epoch = ?1",
                [i64::try_from(epoch).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|_| ClientError::Corrupt("stored head".into()))
        })
        .transpose()
    }

    /// The newest epoch this device accepted a head for (0 for none).
    pub fn newest_head_epoch(&self) -> Result<u64, ClientError> {
        let epoch: Option<i64> =
            self.conn
                .query_row("SELECT MAX(epoch) FROM directory_heads", [], |r| r.get(0))?;
        Ok(epoch.and_then(|e| u64::try_from(e).ok()).unwrap_or(0))
    }

    /// The newest head this device accepted, if any.
    pub fn newest_head(&self) -> Result<Option<SignedHead>, ClientError> {
        match self.newest_head_epoch()? {
            0 => Ok(None),
            epoch => self.seen_head(epoch),
        }
    }

    pub fn see_head(&self, epoch: u64, head: &SignedHead) -> Result<(), ClientError> {
        let json = serde_json::to_string(head).map_err(|e| ClientError::Corrupt(e.to_string()))?;
        self.conn.execute(
            "INSERT OR IGNORE INTO directory_heads (epoch, head) VALUES (?1, ?2)",
            params![i64::try_from(epoch).unwrap_or(i64::MAX), json],
        )?;
        Ok(())
    }

    /// Keeps two signed heads for one epoch: proof of equivocation.
    pub fn keep_evidence(
        &self,
        epoch: u64,
        first: &SignedHead,
        second: &SignedHead,
    ) -> Result<(), ClientError> {
        let json = |h: &SignedHead| {
            serde_json::to_string(h).map_err(|e| ClientError::Corrupt(e.to_string()))
        };
        self.conn.execute(
            "INSERT INTO directory_evidence (epoch, first_head, second_head) VALUES (?1, ?2, ?3)",
            params![
                i64::try_from(epoch).unwrap_or(i64::MAX),
                json(first)?,
                json(second)?
            ],
        )?;
        Ok(())
    }

    /// Every pair of conflicting heads kept as evidence.
    pub fn evidence(&self) -> Result<Vec<(SignedHead, SignedHead)>, ClientError> {
        let mut stmt = self
            .conn
            .prepare("SELECT first_head, second_head FROM directory_evidence ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (a, b) = r?;
            let parse = |j: &str| {
                serde_json::from_str(j).map_err(|_| ClientError::Corrupt("evidence".into()))
            };
            Ok((parse(&a)?, parse(&b)?))
        })
        .collect()
    }

    pub fn setting(&self, key: &str) -> Result<Option<i64>, ClientError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn set_setting(&self, key: &str, value: i64) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn conversation_with(&self, peer: &UserName) -> Result<Option<Conversation>, ClientError> {
        self.conversations_where("peer = ?1 AND is_group = 0 AND active = 1", [peer.as_str()])
            .map(|mut v| v.pop())
    }

    pub fn conversation(&self, group: &GroupId) -> Result<Option<Conversation>, ClientError> {
        self.conversations_where("group_id = ?1", [group.to_string()])
            .map(|mut v| v.pop())
    }

    pub fn active_conversations(&self) -> Result<Vec<Conversation>, ClientError> {
        self.conversations_where("active = 1", [])
    }

    /// The active conversations whose log the server serves this device.
    pub fn writable_conversations(&self) -> Result<Vec<Conversation>, ClientError> {
        self.conversations_where("active = 1 AND withheld = 0", [])
    }

    /// Every conversation, active or ended, oldest first.
    pub fn all_conversations(&self) -> Result<Vec<Conversation>, ClientError> {
        self.conversations_where("1 = 1", [])
    }

    fn conversations_where<P: rusqlite::Params>(
        &self,
        filter: &str,
        params: P,
    ) -> Result<Vec<Conversation>, ClientError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT group_id, name, is_group, cursor, updated_at, sent_since_update, active,
                    ended_by, epoch_offset, withheld, join_epoch
             FROM conversations WHERE {filter} ORDER BY rowid"
        ))?;
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, bool>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, bool>(9)?,
                r.get::<_, Option<i64>>(10)?,
            ))
        })?;
        rows.map(|row| {
            let (
                group,
                name,
                is_group,
                cursor,
                updated_at,
                sent,
                active,
                ended_by,
                offset,
                withheld,
                join_epoch,
            ) = row?;
            Ok(Conversation {
                group: group
                    .parse()
                    .map_err(|_| ClientError::Corrupt("conversation group id".into()))?,
                name,
                is_group,
                cursor: u64::try_from(cursor).unwrap_or(0),
                updated_at,
                sent_since_update: u64::try_from(sent).unwrap_or(0),
                active,
                ended_by: ended_by
                    .map(|u| u.parse())
                    .transpose()
                    .map_err(|_| ClientError::Corrupt("conversation ended_by".into()))?,
                epoch_offset: u64::try_from(offset).unwrap_or(0),
                withheld,
                join_epoch: join_epoch.and_then(|e| u64::try_from(e).ok()),
            })
        })
        .collect()
    }

    pub fn set_cursor(&self, group: &GroupId, cursor: u64) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE conversations SET cursor = ?2 WHERE group_id = ?1",
            params![group.to_string(), i64::try_from(cursor).unwrap_or(i64::MAX)],
        )?;
        Ok(())
    }

    /// Ends a conversation here: it stays as history, `by` the user who
    /// removed this device (this account's own user if it left).
    pub fn end(&self, group: &GroupId, by: &UserName) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE conversations SET active = 0, ended_by = ?2 WHERE group_id = ?1",
            params![group.to_string(), by.as_str()],
        )?;
        Ok(())
    }

    /// Records whether the server withholds the conversation's log from
    /// this device.
    pub fn set_withheld(&self, group: &GroupId, withheld: bool) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE conversations SET withheld = ?2 WHERE group_id = ?1",
            params![group.to_string(), withheld],
        )?;
        Ok(())
    }

    /// Records the MLS epoch this device joined the group at from a
    /// Welcome, until it finds the commit that added it (`None`).
    pub fn set_join_epoch(&self, group: &GroupId, epoch: Option<u64>) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE conversations SET join_epoch = ?2 WHERE group_id = ?1",
            params![
                group.to_string(),
                epoch.map(|e| i64::try_from(e).unwrap_or(i64::MAX))
            ],
        )?;
        Ok(())
    }

    /// Records the server's epoch counter minus the group's MLS epoch.
    pub fn set_epoch_offset(&self, group: &GroupId, offset: u64) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE conversations SET epoch_offset = ?2 WHERE group_id = ?1",
            params![group.to_string(), i64::try_from(offset).unwrap_or(i64::MAX)],
        )?;
        Ok(())
    }

    /// Records that this device uploaded `message_id` to `group`.
    pub fn record_sent(&self, group: &GroupId, message_id: &MessageId) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO sent (group_id, message_id) VALUES (?1, ?2)",
            params![group.to_string(), message_id.to_string()],
        )?;
        Ok(())
    }

    pub fn was_sent(&self, group: &GroupId, message_id: &MessageId) -> Result<bool, ClientError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM sent WHERE group_id = ?1 AND message_id = ?2",
                params![group.to_string(), message_id.to_string()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Records `upload` as this device's commit to `group` whose outcome
    /// is not known yet (`None`: none is).
    pub fn set_pending_commit(
        &self,
        group: &GroupId,
        upload: Option<&CommitUpload>,
    ) -> Result<(), ClientError> {
        self.set_pending(group, upload, None)
    }

    /// [`Store::set_pending_commit`], for the commit founding `group`, with
    /// the name and peer its conversation gets once the server accepts it.
    pub fn set_pending_founding(
        &self,
        group: &GroupId,
        upload: &CommitUpload,
        name: &str,
        peer: Option<&UserName>,
    ) -> Result<(), ClientError> {
        self.set_pending(group, Some(upload), Some((name, peer)))
    }

    fn set_pending(
        &self,
        group: &GroupId,
        upload: Option<&CommitUpload>,
        founding: Option<(&str, Option<&UserName>)>,
    ) -> Result<(), ClientError> {
        match upload {
            Some(upload) => {
                let json = serde_json::to_string(upload)
                    .map_err(|e| ClientError::Corrupt(e.to_string()))?;
                self.conn.execute(
                    "INSERT OR REPLACE INTO pending_commits
                         (group_id, message_id, upload, founding_name, founding_peer)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        group.to_string(),
                        upload.message_id.to_string(),
                        json,
                        founding.map(|(name, _)| name),
                        founding.and_then(|(_, peer)| peer.map(UserName::as_str))
                    ],
                )?
            }
            None => self.conn.execute(
                "DELETE FROM pending_commits WHERE group_id = ?1",
                [group.to_string()],
            )?,
        };
        Ok(())
    }

    /// Every commit of this device whose outcome is not known yet.
    pub fn pending_commits(&self) -> Result<Vec<PendingCommit>, ClientError> {
        let mut stmt = self.conn.prepare(
            "SELECT group_id, upload, founding_name, founding_peer FROM pending_commits
             WHERE upload IS NOT NULL ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (group, upload, name, peer) = row?;
            let corrupt = || ClientError::Corrupt("pending commit".into());
            Ok(PendingCommit {
                group: group.parse().map_err(|_| corrupt())?,
                upload: serde_json::from_str(&upload).map_err(|_| corrupt())?,
                founding: match name {
                    Some(name) => Some((
                        name,
                        peer.map(|p| p.parse()).transpose().map_err(|_| corrupt())?,
                    )),
                    None => None,
                },
            })
        })
        .collect()
    }

    pub fn pending_commit(&self, group: &GroupId) -> Result<Option<MessageId>, ClientError> {
        let id: Option<String> = self
            .conn
            .query_row(
                "SELECT message_id FROM pending_commits WHERE group_id = ?1",
                [group.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|id| {
            id.parse()
                .map_err(|_| ClientError::Corrupt("pending commit id".into()))
        })
        .transpose()
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// How one way of opening a store went.
enum Attempt {
    Opened(Store),
    /// Not this way: another key, or not plain.
    Refused,
    /// Encrypted, and no passphrase to try.
    Locked,
}

/// Where a re-key writes the store's new file.
fn rekey_path(home: &Path) -> PathBuf {
    home.join(format!("{STORE_FILE}.rekey"))
}

/// What an interrupted re-key may have left: its new file, and the header
/// it staged. Only called once the store opened under its old header.
fn remove_rekey_leftovers(home: &Path) {
    let fresh = rekey_path(home);
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut file = fresh.clone().into_os_string();
        file.push(suffix);
        // Best effort: they are not read again.
        let _ = fs::remove_file(file);
    }
    let staged = at_rest::staged_header_path(home);
    let mut partial = staged.clone().into_os_string();
    partial.push(".part");
    let _ = fs::remove_file(partial);
    let _ = fs::remove_file(staged);
}

/// Makes the renames in `home` durable.
fn sync_dir(home: &Path) -> Result<(), ClientError> {
    fs::File::open(home)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| ClientError::Io {
            path: home.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_of_another_layout_is_refused_with_what_to_do() {
        let home = tempfile::TempDir::new().unwrap();
        drop(Store::create(home.path(), None).unwrap());
        assert!(Store::open_existing(home.path(), None).unwrap().is_some());
        let conn = Connection::open(Store::path(home.path())).unwrap();
        for (version, expected) in [(0, "an older"), (SCHEMA_VERSION + 1, "a newer")] {
            conn.pragma_update(None, "user_version", version).unwrap();
            match Store::open_existing(home.path(), None) {
                Err(ClientError::StoreVersion { made_by, .. }) => assert_eq!(made_by, expected),
                Err(other) => panic!("expected a version refusal, got {other}"),
                Ok(_) => panic!("a store of version {version} was opened"),
            }
        }
    }

    #[test]
    fn a_version_1_store_is_migrated_in_place_keeping_its_conversations() {
        let home = tempfile::TempDir::new().unwrap();
        let group = GroupId::random();
        {
            let store = Store::create(home.path(), None).unwrap();
            store.add_conversation(&group, "team", None, 7).unwrap();
        }
        // What version 1 wrote: the same tables without the later columns.
        let conn = Connection::open(Store::path(home.path())).unwrap();
        conn.execute_batch(
            "CREATE TABLE c1 AS SELECT group_id, name, peer, is_group, cursor, active,
                 updated_at, sent_since_update FROM conversations;
             DROP TABLE conversations;
             ALTER TABLE c1 RENAME TO conversations;
             ALTER TABLE contacts DROP COLUMN proven_epoch;
             DROP TABLE pending_commits;
             CREATE TABLE pending_commits (
                 group_id TEXT PRIMARY KEY,
                 message_id TEXT NOT NULL
             );
             DROP TABLE messages;
             CREATE TABLE messages (
                 group_id TEXT NOT NULL,
                 message_id TEXT NOT NULL,
                 sender TEXT NOT NULL,
                 sender_device TEXT NOT NULL,
                 text TEXT NOT NULL,
                 sent_at INTEGER NOT NULL,
                 PRIMARY KEY (group_id, message_id)
             );",
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        drop(conn);

        let store = Store::open_existing(home.path(), None).unwrap().unwrap();
        let kept = store.conversation(&group).unwrap().unwrap();
        assert_eq!((kept.name.as_str(), kept.active), ("team", true));
        assert_eq!(
            (
                kept.ended_by,
                kept.epoch_offset,
                kept.withheld,
                kept.join_epoch
            ),
            (None, 0, false, None)
        );
        let by: UserName = "carol".parse().unwrap();
        store.end(&group, &by).unwrap();
        assert_eq!(
            store.conversation(&group).unwrap().unwrap().ended_by,
            Some(by)
        );
        let version: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_negative_store_version_is_refused() {
        let home = tempfile::TempDir::new().unwrap();
        drop(Store::create(home.path(), None).unwrap());
        let conn = Connection::open(Store::path(home.path())).unwrap();
        conn.pragma_update(None, "user_version", -3).unwrap();
        assert!(matches!(
            Store::open_existing(home.path(), None),
            Err(ClientError::StoreVersion {
                made_by: "an unknown",
                ..
            })
        ));
    }
}
