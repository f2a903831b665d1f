//! The database the directory keeps its state in: the server's own, SQLite
//! or PostgreSQL.
//!
//! [`DirectoryDb`] is what the directory service asks of it besides akd's
//! records (those go through [`DirectoryStorage`](super::DirectoryStorage)):
//! the queue of pending updates, the archive of device lists, the signed
//! heads and their cosignatures. On SQLite it runs the queries of
//! [`queue`] and [`heads`] on the store's writer and readers; on PostgreSQL
//! the same queries in PostgreSQL's SQL ([`postgres`]), each call one
//! transaction on a pooled connection.

mod postgres;

use deadpool_postgres::Pool;
use rempart_proto::SignedDeviceList;
use rempart_proto::directory::{Cosignature, HeadWithCosignatures, SignedHead};

use super::heads;
use super::queue::{self, LookupFacts, Pending};
use crate::store::{SharedDatabase, StoreError};

pub(super) use self::postgres::connect as postgres_connect;

/// How this node's keys compare with the deployment's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyCheck {
    /// Both are the deployment's.
    Same,
    /// Another node signs heads with another key.
    OtherDirectoryKey,
    /// Another node derives labels with another VRF key.
    OtherVrfKey,
}

/// The server's database, as the directory reaches it.
#[derive(Debug, Clone)]
pub(crate) enum DirectoryDb {
    /// The SQLite store's writer and readers.
    Sqlite(SharedDatabase),
    /// The PostgreSQL store's pool.
    Postgres(Pool),
}

impl DirectoryDb {
    /// The pending updates: the latest value of each user, and the ids of
    /// the rows read.
    pub(crate) async fn pending(&self) -> Result<Pending, StoreError> {
        match self {
            Self::Sqlite(db) => db.read(queue::pending).await,
            Self::Postgres(pool) => postgres::pending(pool).await,
        }
    }

    /// Deletes the queue rows `ids` (their values are published).
    pub(crate) async fn remove_published(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(db) => {
                db.write(move |conn| queue::remove_published(conn, &ids))
                    .await
            }
            Self::Postgres(pool) => postgres::finish_epoch(pool, None, &ids).await,
        }
    }

    /// Stores the signed head of `epoch` and deletes the queue rows
    /// `published`, in one transaction.
    pub(crate) async fn store_head(
        &self,
        epoch: u64,
        head: SignedHead,
        published: Vec<i64>,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(db) => {
                db.write(move |conn| {
                    heads::store_head(conn, epoch, &head)?;
                    queue::remove_published(conn, &published)
                })
                .await
            }
            Self::Postgres(pool) => {
                postgres::finish_epoch(pool, Some((epoch, &head)), &published).await
            }
        }
    }

    /// Checks that this node's directory key and VRF key are the
    /// deployment's: on PostgreSQL, the first node to start records its
    /// public keys and every node compares its own with them. (On SQLite
    /// there is one node, whose keys are the deployment's.)
    pub(crate) async fn check_keys(
        &self,
        directory_key: &[u8],
        vrf_key: &[u8],
    ) -> Result<KeyCheck, StoreError> {
        match self {
            Self::Sqlite(_) => Ok(KeyCheck::Same),
            Self::Postgres(pool) => {
                let recorded = postgres::pin_keys(pool, directory_key, vrf_key).await?;
                Ok(if recorded.0 != directory_key {
                    KeyCheck::OtherDirectoryKey
                } else if recorded.1 != vrf_key {
                    KeyCheck::OtherVrfKey
                } else {
                    KeyCheck::Same
                })
            }
        }
    }

    /// The highest epoch with a stored head (0 if none).
    pub(crate) async fn latest_epoch(&self) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(db) => db.read(heads::latest_epoch).await,
            Self::Postgres(pool) => postgres::latest_epoch(pool).await,
        }
    }

    /// The signed head of `epoch`, if published.
    pub(crate) async fn head(&self, epoch: u64) -> Result<Option<SignedHead>, StoreError> {
        match self {
            Self::Sqlite(db) => db.read(move |conn| heads::head(conn, epoch)).await,
            Self::Postgres(pool) => postgres::head(pool, epoch).await,
        }
    }

    /// The signed head of `epoch` (the latest if `None`) and its
    /// cosignatures, if published.
    pub(crate) async fn head_with_cosignatures(
        &self,
        epoch: Option<u64>,
    ) -> Result<Option<HeadWithCosignatures>, StoreError> {
        match self {
            Self::Sqlite(db) => {
                db.read(move |conn| {
                    let epoch = match epoch {
                        Some(epoch) => epoch,
                        None => heads::latest_epoch(conn)?,
                    };
                    heads::head_with_cosignatures(conn, epoch)
                })
                .await
            }
            Self::Postgres(pool) => postgres::head_with_cosignatures(pool, epoch).await,
        }
    }

    /// The heads of epochs `from..=to` with their cosignatures, oldest
    /// first, up to the first epoch without one.
    pub(crate) async fn heads_with_cosignatures(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<HeadWithCosignatures>, StoreError> {
        match self {
            Self::Sqlite(db) => {
                db.read(move |conn| heads::heads_with_cosignatures(conn, from, to))
                    .await
            }
            Self::Postgres(pool) => postgres::heads_with_cosignatures(pool, from, to).await,
        }
    }

    /// Stores a (verified) cosignature of `epoch`; a second one by the same
    /// witness for the same epoch is ignored.
    pub(crate) async fn store_cosignature(
        &self,
        epoch: u64,
        cosignature: Cosignature,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(db) => {
                db.write(move |conn| heads::store_cosignature(conn, epoch, &cosignature))
                    .await
            }
            Self::Postgres(pool) => postgres::store_cosignature(pool, epoch, &cosignature).await,
        }
    }

    /// The signed device list of `user` committed under `value`, if any.
    pub(crate) async fn device_list(
        &self,
        user: String,
        value: Vec<u8>,
    ) -> Result<Option<SignedDeviceList>, StoreError> {
        match self {
            Self::Sqlite(db) => {
                db.read(move |conn| queue::device_list(conn, &user, &value))
                    .await
            }
            Self::Postgres(pool) => postgres::device_list(pool, &user, &value).await,
        }
    }

    /// For each `(user, published value)`, in order: whether the account
    /// exists, whether an update is queued, and the published value's
    /// device list.
    pub(crate) async fn lookup_facts(
        &self,
        asked: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<Vec<LookupFacts>, StoreError> {
        match self {
            Self::Sqlite(db) => db.read(move |conn| queue::lookup_facts(conn, &asked)).await,
            Self::Postgres(pool) => postgres::lookup_facts(pool, &asked).await,
        }
    }
}
