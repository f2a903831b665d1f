//! The SQLite backend: one database file, one writer thread, pooled readers.
//!
//! The database runs in WAL mode with `synchronous=FULL`, so a committed
//! transaction survives a power cut, and readers never block the writer.
//! Every write goes through the [`writer`] thread, which commits in groups;
//! reads run on a small pool of read-only connections on the blocking pool.

mod accounts;
mod delivery;
mod inbox;
mod keypackages;
mod links;
mod mail;
mod schema;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rempart_proto::api::{
    ClaimedKeyPackage, CommitUpload, InboxPage, KeyPackageStatus, KeyPackageUpload, LogPage,
};
use rempart_proto::mail::{Fingerprint, MailAddress};
use rempart_proto::{DeviceId, GroupId, LinkId, MessageId, SignedDeviceList, UserName};
use rusqlite::{Connection, OpenFlags};

use self::writer::Writer;
use crate::store::{
    AccountSignedDeviceList, AppendOutcome, DeviceRecord, Pruned, Store, StoreError,
};

/// Most idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// How long a connection waits for a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The writer's page cache, as SQLite's `cache_size` takes it (negative:
/// KiB): 64 MiB.
const WRITER_CACHE_KIB: i64 = -64 * 1024;
/// Prepared statements each connection keeps (the hot paths use about 20).
const STATEMENT_CACHE: usize = 64;
/// Most users named in one `IN (…)` or `VALUES` list of a batch query.
const USERS_PER_QUERY: usize = 500;

/// The SQLite [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    writer: Arc<Writer>,
    readers: Arc<Readers>,
}

impl SqliteStore {
    /// Opens the database at `path` (creating it if needed), migrates its
    /// schema and starts the writer thread.
    pub async fn open(path: PathBuf) -> Result<Self, StoreError> {
        tokio::task::spawn_blocking(move || Self::open_blocking(path))
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
    }

    fn open_blocking(path: PathBuf) -> Result<Self, StoreError> {
        let mut conn = Connection::open(&path)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(
                format!("the database refused WAL mode (it is in {mode} mode)").into(),
            ));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Appends touch pages all over the log's indexes (one group's pages
        // per message); keep them in memory rather than read them back.
        conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.busy_timeout(BUSY_TIMEOUT)?;
        schema::migrate(&mut conn)?;
        maintain(&conn);
        let writer = Arc::new(Writer::spawn(conn, maintain)?);
        let readers = Arc::new(Readers {
            path: path.clone(),
            idle: Mutex::new(Vec::new()),
        });
        Ok(Self {
            path,
            writer,
            readers,
        })
    }

    /// Runs `query` in one read transaction on a pooled connection.
    async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        read_on(&self.readers, query).await
    }

    /// The writer and the readers of this database, for the parts of the
    /// server that keep their own tables in it (the key-transparency
    /// directory). Writes through it are group-committed with the store's
    /// own, and fail with [`StoreError::Closed`] once the store is closed.
    pub(crate) fn shared(&self) -> SharedDatabase {
        SharedDatabase {
            writer: self.writer.clone(),
            readers: self.readers.clone(),
        }
    }
}

/// Access to an open [`SqliteStore`]'s database for code outside the store:
/// jobs for its writer and queries on its read connections, each with its
/// own error type.
#[derive(Clone)]
pub(crate) struct SharedDatabase {
    writer: Arc<Writer>,
    readers: Arc<Readers>,
}

impl SharedDatabase {
    /// Runs `work` as one job of the writer: in its own savepoint of the
    /// next group commit, answered once that commit is durable. If `work`
    /// fails, nothing it wrote stays.
    pub(crate) async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        self.writer.execute(work).await
    }

    /// Runs `query` in one read transaction (one snapshot) on a pooled
    /// read-only connection.
    pub(crate) async fn read<T, E, F>(&self, query: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        read_on(&self.readers, query).await
    }
}

impl fmt::Debug for SharedDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedDatabase")
            .field("path", &self.readers.path)
            .finish_non_exhaustive()
    }
}

/// Runs `query` on the blocking pool, in one read transaction on a
/// connection of `readers`.
async fn read_on<T, E, F>(readers: &Arc<Readers>, query: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
{
    let readers = readers.clone();
    tokio::task::spawn_blocking(move || readers.run(query))
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn register(&self, list: AccountSignedDeviceList) -> Result<(), StoreError> {
        self.writer
            .execute(move |conn| accounts::register(conn, &list))
            .await
    }

    async fn register_invited(
        &self,
        list: AccountSignedDeviceList,
        invitation: [u8; 32],
    ) -> Result<(), StoreError> {
        self.writer
            .execute(move |conn| {
                accounts::spend_invitation(conn, &invitation, &list.list().user)?;
                accounts::register(conn, &list)
            })
            .await
    }

    async fn device_list(&self, user: &UserName) -> Result<Option<SignedDeviceList>, StoreError> {
        let user = user.clone();
        self.read(move |conn| accounts::device_list(conn, &user))
            .await
    }

    async fn replace_device_list(
        &self,
        signer: DeviceId,
        list: AccountSignedDeviceList,
    ) -> Result<Vec<DeviceId>, StoreError> {
        self.writer
            .execute(move |conn| accounts::replace_device_list(conn, signer, &list))
            .await
    }

    async fn device(&self, device: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        self.read(move |conn| accounts::device(conn, device)).await
    }

    async fn put_mail_certificate(
        &self,
        user: UserName,
        fingerprint: Fingerprint,
        certificate: Vec<u8>,
    ) -> Result<(), StoreError> {
        self.writer
            .execute(move |conn| mail::put_certificate(conn, &user, &fingerprint, &certificate))
            .await
    }

    async fn mail_certificate(
        &self,
        user: &UserName,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (user, fingerprint) = (user.clone(), fingerprint.clone());
        self.read(move |conn| mail::certificate(conn, &user, &fingerprint))
            .await
    }

    async fn mail_holder(&self, address: &MailAddress) -> Result<Option<UserName>, StoreError> {
        let address = address.clone();
        self.read(move |conn| mail::holder(conn, &address)).await
    }

    async fn consume_nonce(
        &self,
        device: DeviceId,
        nonce: String,
        timestamp: i64,
    ) -> Result<(), StoreError> {
        self.writer
            .execute(move |conn| accounts::consume_nonce(conn, device, &nonce, timestamp))
            .await
    }

    async fn upload_key_packages(
        &self,
        device: DeviceId,
        upload: KeyPackageUpload,
    ) -> Result<KeyPackageStatus, StoreError> {
        self.writer
            .execute(move |conn| keypackages::upload(conn, device, &upload))
            .await
    }

    async fn key_package_status(&self, device: DeviceId) -> Result<KeyPackageStatus, StoreError> {
        self.read(move |conn| keypackages::status(conn, device))
            .await
    }

    async fn claim_key_packages(
        &self,
        claimer: DeviceId,
        user: &UserName,
    ) -> Result<Vec<ClaimedKeyPackage>, StoreError> {
        let user = user.clone();
        self.writer
            .execute(move |conn| keypackages::claim(conn, claimer, &user))
            .await
    }

    async fn claim_key_packages_batch(
        &self,
        claimer: DeviceId,
        users: Vec<UserName>,
    ) -> Result<Vec<ClaimedKeyPackage>, StoreError> {
        self.writer
            .execute(move |conn| keypackages::claim_batch(conn, claimer, &users))
            .await
    }

    async fn append_commit(
        &self,
        group: GroupId,
        sender: DeviceId,
        commit: CommitUpload,
    ) -> Result<AppendOutcome, StoreError> {
        self.writer
            .execute(move |conn| delivery::append_commit(conn, group, sender, &commit))
            .await
    }

    async fn append_message(
        &self,
        group: GroupId,
        sender: DeviceId,
        message_id: MessageId,
        epoch: u64,
        data: Vec<u8>,
    ) -> Result<AppendOutcome, StoreError> {
        self.writer
            .execute(move |conn| {
                delivery::append_message(conn, group, sender, message_id, epoch, &data)
            })
            .await
    }

    async fn read_log(
        &self,
        group: GroupId,
        reader: DeviceId,
        after: u64,
        limit: u32,
    ) -> Result<LogPage, StoreError> {
        self.read(move |conn| delivery::read_log(conn, group, reader, after, limit))
            .await
    }

    async fn group_members(&self, group: GroupId) -> Result<Vec<DeviceId>, StoreError> {
        self.read(move |conn| delivery::members(conn, group)).await
    }

    async fn device_groups(&self, device: DeviceId) -> Result<Vec<GroupId>, StoreError> {
        self.read(move |conn| delivery::groups_of(conn, device))
            .await
    }

    async fn read_inbox(
        &self,
        device: DeviceId,
        after: u64,
        limit: u32,
    ) -> Result<InboxPage, StoreError> {
        self.read(move |conn| inbox::read(conn, device, after, limit))
            .await
    }

    async fn ack_inbox(&self, device: DeviceId, ids: Vec<u64>) -> Result<u64, StoreError> {
        self.writer
            .execute(move |conn| inbox::ack(conn, device, &ids))
            .await
    }

    async fn create_link(
        &self,
        creator: DeviceId,
        link: LinkId,
        now: i64,
    ) -> Result<(), StoreError> {
        self.writer
            .execute(move |conn| links::create(conn, creator, link, now))
            .await
    }

    async fn put_link_request(
        &self,
        link: LinkId,
        sealed: Vec<u8>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.writer
            .execute(move |conn| links::put_request(conn, link, &sealed, now))
            .await
    }

    async fn link_request(
        &self,
        reader: DeviceId,
        link: LinkId,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(move |conn| links::request(conn, reader, link, now))
            .await
    }

    async fn put_link_response(
        &self,
        responder: DeviceId,
        link: LinkId,
        sealed: Vec<u8>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.writer
            .execute(move |conn| links::put_response(conn, responder, link, &sealed, now))
            .await
    }

    async fn take_link_response(
        &self,
        link: LinkId,
        now: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // The new device polls until the response is there: answer the
        // polls with a read, and only the one that gets it with a write.
        if self
            .read(move |conn| links::peek_response(conn, link, now))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        self.writer
            .execute(move |conn| links::take_response(conn, link, now))
            .await
    }

    async fn prune(&self, now: i64) -> Result<Pruned, StoreError> {
        self.writer.execute(move |conn| prune(conn, now)).await
    }

    async fn close(&self) {
        self.writer.stop().await;
    }
}

/// Deletes the nonces and links expired at `now`.
fn prune(conn: &Connection, now: i64) -> Result<Pruned, StoreError> {
    Ok(Pruned {
        nonces: accounts::prune_nonces(conn, now)? as u64,
        links: links::prune(conn, now)? as u64,
    })
}

/// The writer's periodic upkeep: forget expired nonces and links.
fn maintain(conn: &Connection) {
    match prune(conn, crate::auth::unix_now()) {
        Ok(pruned) => tracing::debug!(?pruned, "pruned expired nonces and links"),
        Err(error) => tracing::warn!(%error, "could not prune expired nonces and links"),
    }
}

/// A pool of read-only connections.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn run<T, E: From<StoreError>>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path)?,
        };
        let result = {
            // One snapshot for all the statements of the query; dropping
            // the transaction ends it (there is nothing to commit).
            let tx = conn.unchecked_transaction().map_err(StoreError::from)?;
            query(&tx)
        };
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Backend(Box::new(error))
    }
}

/// A count or cursor as an SQLite integer.
fn to_sql(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange(what))
}

/// An SQLite integer that must not be negative.
fn from_sql(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}")))
}

/// Helpers for the unit tests of this backend.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod testing {
    use rusqlite::Connection;

    use rempart_proto::DeviceId;

    /// A migrated in-memory database, with foreign keys on as in production.
    pub(crate) fn database() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        super::schema::migrate(&mut conn).unwrap();
        conn
    }

    /// Registers a new device of `user` (and the account if needed), with
    /// placeholder keys: the store does not check them.
    pub(crate) fn device(conn: &Connection, user: &str) -> DeviceId {
        conn.execute(
            "INSERT OR IGNORE INTO accounts VALUES (?1, x'00', x'00', x'00', 1)",
            [user],
        )
        .unwrap();
        let device = DeviceId::random();
        conn.execute(
            "INSERT INTO devices (device_id, user_name, signature_key) VALUES (?1, ?2, x'00')",
            rusqlite::params![device.as_bytes(), user],
        )
        .unwrap();
        device
    }

    /// The number of rows in `table`.
    pub(crate) fn rows(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .unwrap()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rempart_proto::api::CommitUpload;
    use rusqlite::params;

    use super::*;

    fn user_version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    /// Puts a Welcome into a version-1 inbox row, as version 1 did: a copy
    /// per device.
    fn v1_welcome(
        conn: &Connection,
        device: DeviceId,
        group: GroupId,
        sender: DeviceId,
        data: &[u8],
    ) {
        conn.execute(
            "INSERT INTO inbox (device_id, kind, group_id, sender, data)
             VALUES (?1, 'welcome', ?2, ?3, ?4)",
            params![device.as_bytes(), group.as_bytes(), sender.as_bytes(), data],
        )
        .unwrap();
    }

    async fn inbox_of(store: &SqliteStore, device: DeviceId) -> Vec<(u64, Vec<u8>)> {
        let page = store.read_inbox(device, 0, 500).await.unwrap();
        page.items.into_iter().map(|i| (i.id, i.data)).collect()
    }

    #[tokio::test]
    async fn a_version_1_database_opens_and_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let (first, second) = (b"welcome to g".to_vec(), b"welcome to h".to_vec());
        let (g, h) = (GroupId::random(), GroupId::random());
        let (alice, bobs) = {
            let mut conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "foreign_keys", true).unwrap();
            schema::migrate_to(&mut conn, 1).unwrap();
            assert_eq!(user_version(&conn), 1);
            let alice = testing::device(&conn, "alice");
            let bobs: Vec<DeviceId> = (0..3).map(|_| testing::device(&conn, "bob")).collect();
            for bob in &bobs {
                v1_welcome(&conn, *bob, g, alice, &first); // ids 1, 2, 3
            }
            v1_welcome(&conn, bobs[0], h, alice, &second); // id 4
            v1_welcome(&conn, bobs[0], h, alice, b"acked"); // id 5, then acked
            conn.execute("DELETE FROM inbox WHERE id = 5", []).unwrap();
            (alice, bobs)
        };

        let store = SqliteStore::open(path.clone()).await.unwrap();
        let check = Connection::open(&path).unwrap();
        assert_eq!(user_version(&check), schema::LATEST_VERSION as i64);
        assert_eq!(testing::rows(&check, "welcomes"), 2, "one copy per Welcome");
        assert_eq!(
            inbox_of(&store, bobs[0]).await,
            [(1, first.clone()), (4, second.clone())]
        );
        assert_eq!(inbox_of(&store, bobs[1]).await, [(2, first.clone())]);
        assert_eq!(inbox_of(&store, bobs[2]).await, [(3, first.clone())]);

        // New items number on after every id ever handed out, so that no
        // device's cursor skips them.
        let upload = CommitUpload {
            epoch: 0,
            message_id: MessageId::random(),
            commit: b"commit".to_vec(),
            welcome: Some(b"new welcome".to_vec()),
            add_devices: vec![bobs[1]],
            remove_devices: Vec::new(),
        };
        store
            .append_commit(GroupId::random(), alice, upload)
            .await
            .unwrap();
        assert_eq!(
            inbox_of(&store, bobs[1]).await,
            [(2, first.clone()), (6, b"new welcome".to_vec())]
        );

        // Migrated Welcomes go with their last item, like new ones.
        assert_eq!(store.ack_inbox(bobs[0], vec![1, 4]).await.unwrap(), 2);
        assert_eq!(testing::rows(&check, "welcomes"), 2);
        assert_eq!(store.ack_inbox(bobs[1], vec![2, 6]).await.unwrap(), 2);
        assert_eq!(store.ack_inbox(bobs[2], vec![3]).await.unwrap(), 1);
        assert_eq!(testing::rows(&check, "welcomes"), 0);
        store.close().await;

        // Opening again finds the latest version and changes nothing.
        let store = SqliteStore::open(path).await.unwrap();
        assert_eq!(user_version(&check), schema::LATEST_VERSION as i64);
        store.close().await;
    }

    #[tokio::test]
    async fn version_5_keeps_the_directory_rows_in_tables_without_rowids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let mut conn = Connection::open(&path).unwrap();
            schema::migrate_to(&mut conn, 4).unwrap();
            conn.execute(
                "INSERT INTO akd_tree_nodes (label_len, label_val, last_epoch,
                     min_descendant_epoch, parent_len, parent_val, node_type, hash)
                 VALUES (0, ?1, 1, 1, 0, ?1, 2, ?2)",
                params![[0_u8; 32].as_slice(), [7_u8; 32].as_slice()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO akd_values (username, epoch, version, label_len, label_val, value)
                 VALUES (x'616c696365', 1, 1, 256, ?1, x'01')",
                [[9_u8; 32].as_slice()],
            )
            .unwrap();
        }
        let store = SqliteStore::open(path.clone()).await.unwrap();
        let check = Connection::open(&path).unwrap();
        assert_eq!(user_version(&check), schema::LATEST_VERSION as i64);
        assert_eq!(testing::rows(&check, "akd_tree_nodes"), 1);
        assert_eq!(testing::rows(&check, "akd_values"), 1);
        let hash: Vec<u8> = check
            .query_row("SELECT hash FROM akd_tree_nodes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(hash, [7_u8; 32]);
        for table in ["akd_tree_nodes", "akd_values"] {
            assert!(
                check
                    .query_row(&format!("SELECT rowid FROM {table}"), [], |_| Ok(()))
                    .is_err(),
                "{table} has no rowid"
            );
        }
        store.close().await;
    }

    #[tokio::test]
    async fn a_negative_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", -3).unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(path).await,
            Err(StoreError::Corrupt(message)) if message.contains("-3")
        ));
    }

    #[tokio::test]
    async fn a_database_from_a_newer_server_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(path).await,
            Err(StoreError::Corrupt(_))
        ));
    }
}
