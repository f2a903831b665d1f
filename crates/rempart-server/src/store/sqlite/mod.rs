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
use rempart_proto::{DeviceId, GroupId, MessageId, SignedDeviceList, UserName};
use rusqlite::{Connection, OpenFlags};

use self::writer::Writer;
use crate::store::{AppendOutcome, DeviceRecord, Store, StoreError, VerifiedDeviceList};

/// Most idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// How long a connection waits for a lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
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
        conn.busy_timeout(BUSY_TIMEOUT)?;
        schema::migrate(&mut conn)?;
        accounts::prune_nonces(&conn);
        let writer = Writer::spawn(conn, accounts::prune_nonces)?;
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
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.run(query))
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?
    }
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
    async fn register(&self, list: VerifiedDeviceList) -> Result<(), StoreError> {
        self.writer
            .execute(move |conn| accounts::register(conn, &list))
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
        list: VerifiedDeviceList,
    ) -> Result<Vec<DeviceId>, StoreError> {
        self.writer
            .execute(move |conn| accounts::replace_device_list(conn, signer, &list))
            .await
    }

    async fn device(&self, device: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        self.read(move |conn| accounts::device(conn, device)).await
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
        user: &UserName,
    ) -> Result<Vec<ClaimedKeyPackage>, StoreError> {
        let user = user.clone();
        self.writer
            .execute(move |conn| keypackages::claim(conn, &user))
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
        data: Vec<u8>,
    ) -> Result<AppendOutcome, StoreError> {
        self.writer
            .execute(move |conn| delivery::append_message(conn, group, sender, message_id, &data))
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

    async fn close(&self) {
        self.writer.stop().await;
    }
}

/// A pool of read-only connections.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn run<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
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
            let tx = conn.unchecked_transaction()?;
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
