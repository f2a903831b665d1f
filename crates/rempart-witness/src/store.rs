//! What the witness remembers, in one SQLite file ([`STATE_FILE`]) in its
//! data directory: the directory it pinned, every head it cosigned (with
//! the cosignature, and whether the server has taken it) and the evidence of
//! every misbehaviour it saw.
//!
//! The cosigned heads are keyed by epoch and only ever appended, one epoch
//! after the last, in one transaction per step: the schema itself stops the
//! witness from signing two roots for one epoch or going back. The file
//! holds no secret.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rempart_proto::PublicKey;
use rempart_proto::directory::{Cosignature, SignedHead};
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use crate::{Evidence, EvidenceKind};

/// The state file in the data directory.
pub const STATE_FILE: &str = "witness.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS directory (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    server_id TEXT NOT NULL,
    directory_key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cosigned (
    epoch INTEGER PRIMARY KEY,
    head BLOB NOT NULL,
    head_signature BLOB NOT NULL,
    witness BLOB NOT NULL,
    cosignature BLOB NOT NULL,
    posted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    first_head BLOB NOT NULL,
    first_signature BLOB NOT NULL,
    second_head BLOB NOT NULL,
    second_signature BLOB NOT NULL,
    found_at INTEGER NOT NULL
);
";

/// The directory pinned on first contact: every later head must be signed
/// by this key for this server id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pinned {
    /// The server id heads name.
    pub(crate) server_id: String,
    /// The key that signs heads.
    pub(crate) directory_key: PublicKey,
}

/// A head the witness verified, with its cosignature.
#[derive(Debug, Clone)]
pub(crate) struct Cosigned {
    pub(crate) epoch: u64,
    pub(crate) head: SignedHead,
    pub(crate) cosignature: Cosignature,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("the witness state database failed")]
    Sqlite(#[from] rusqlite::Error),
    /// The state file holds something this witness never wrote.
    #[error("the witness state database is corrupt: {0}")]
    Corrupt(String),
    /// Heads to record do not follow the last verified epoch one by one.
    #[error("refusing to record epoch {epoch}: the next epoch to record is {expected}")]
    NotNext {
        /// The epoch offered.
        epoch: u64,
        /// The epoch after the last verified one.
        expected: u64,
    },
    /// An epoch beyond SQLite's integers.
    #[error("epoch {0} is out of range")]
    OutOfRange(u64),
    /// A database task panicked or was cancelled.
    #[error("a witness state task failed")]
    Task,
}

/// The state file, shared by the follower and the HTTP endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (or creates) the state file in `data_dir`.
    pub(crate) fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(data_dir.join(STATE_FILE))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `work` on the connection, off the async runtime.
    async fn call<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction
            // half-applied (SQLite rolls it back), so a poisoned lock is
            // still a usable connection.
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut conn)
        })
        .await
        .map_err(|_| StoreError::Task)?
    }

    /// The pinned directory, if any.
    pub(crate) async fn pinned(&self) -> Result<Option<Pinned>, StoreError> {
        self.call(|conn| {
            let row: Option<(String, Vec<u8>)> = conn
                .query_row(
                    "SELECT server_id, directory_key FROM directory WHERE id = 1",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            row.map(|(server_id, key)| {
                let directory_key = PublicKey::from_bytes(&key)
                    .map_err(|_| StoreError::Corrupt("pinned directory key".into()))?;
                Ok(Pinned {
                    server_id,
                    directory_key,
                })
            })
            .transpose()
        })
        .await
    }

    /// Pins the directory. Fails if one is already pinned.
    pub(crate) async fn pin(&self, pinned: &Pinned) -> Result<(), StoreError> {
        let (server_id, key) = (pinned.server_id.clone(), *pinned.directory_key.as_bytes());
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO directory (id, server_id, directory_key) VALUES (1, ?1, ?2)",
                params![server_id, key.as_slice()],
            )?;
            Ok(())
        })
        .await
    }

    /// The last verified (and cosigned) epoch.
    pub(crate) async fn verified_epoch(&self) -> Result<Option<u64>, StoreError> {
        self.call(|conn| last_epoch(conn)).await
    }

    /// The head the witness verified for `epoch`.
    pub(crate) async fn head(&self, epoch: u64) -> Result<Option<SignedHead>, StoreError> {
        let Ok(epoch) = i64::try_from(epoch) else {
            return Ok(None);
        };
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT head, head_signature FROM cosigned WHERE epoch = ?1",
                    [epoch],
                    |row| {
                        Ok(SignedHead {
                            head: row.get(0)?,
                            signature: row.get(1)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// The witness's cosignature of `epoch`.
    pub(crate) async fn cosignature(&self, epoch: u64) -> Result<Option<Cosignature>, StoreError> {
        let Ok(epoch) = i64::try_from(epoch) else {
            return Ok(None);
        };
        self.call(move |conn| {
            let row: Option<(Vec<u8>, Vec<u8>)> = conn
                .query_row(
                    "SELECT witness, cosignature FROM cosigned WHERE epoch = ?1",
                    [epoch],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            row.map(|(witness, signature)| cosignature_from(&witness, signature))
                .transpose()
        })
        .await
    }

    /// Records newly verified heads with their cosignatures, in one
    /// transaction: they must be consecutive and start right after the last
    /// verified epoch (or at 1).
    pub(crate) async fn record(&self, heads: Vec<Cosigned>) -> Result<(), StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut expected = last_epoch(&tx)?.map_or(1, |epoch| epoch.saturating_add(1));
            for cosigned in heads {
                if cosigned.epoch != expected {
                    return Err(StoreError::NotNext {
                        epoch: cosigned.epoch,
                        expected,
                    });
                }
                tx.execute(
                    "INSERT INTO cosigned (epoch, head, head_signature, witness, cosignature)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        epoch_sql(cosigned.epoch)?,
                        cosigned.head.head,
                        cosigned.head.signature,
                        cosigned.cosignature.witness.as_bytes().as_slice(),
                        cosigned.cosignature.signature,
                    ],
                )?;
                expected = expected.saturating_add(1);
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Cosignatures the server has not taken yet, oldest first.
    pub(crate) async fn unposted(&self) -> Result<Vec<(u64, Cosignature)>, StoreError> {
        self.call(|conn| {
            let mut query = conn.prepare(
                "SELECT epoch, witness, cosignature FROM cosigned WHERE posted = 0 ORDER BY epoch",
            )?;
            let rows = query.query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (epoch, witness, signature) = row?;
                Ok((epoch_from(epoch)?, cosignature_from(&witness, signature)?))
            })
            .collect()
        })
        .await
    }

    /// Notes that the server took the cosignature of `epoch`.
    pub(crate) async fn mark_posted(&self, epoch: u64) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.execute(
                "UPDATE cosigned SET posted = 1 WHERE epoch = ?1",
                [epoch_sql(epoch)?],
            )?;
            Ok(())
        })
        .await
    }

    /// Keeps a pair of conflicting signed heads.
    pub(crate) async fn keep_evidence(&self, evidence: Evidence) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO evidence
                 (kind, first_head, first_signature, second_head, second_signature, found_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    evidence.kind.as_str(),
                    evidence.first.head,
                    evidence.first.signature,
                    evidence.second.head,
                    evidence.second.signature,
                    evidence.found_at,
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Every piece of evidence kept, oldest first.
    pub(crate) async fn evidence(&self) -> Result<Vec<Evidence>, StoreError> {
        self.call(|conn| {
            let mut query = conn.prepare(
                "SELECT kind, first_head, first_signature, second_head, second_signature, found_at
                 FROM evidence ORDER BY id",
            )?;
            let rows = query.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    SignedHead {
                        head: row.get(1)?,
                        signature: row.get(2)?,
                    },
                    SignedHead {
                        head: row.get(3)?,
                        signature: row.get(4)?,
                    },
                    row.get::<_, i64>(5)?,
                ))
            })?;
            rows.map(|row| {
                let (kind, first, second, found_at) = row?;
                let kind = EvidenceKind::from_str(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("evidence kind {kind:?}")))?;
                Ok(Evidence {
                    kind,
                    first,
                    second,
                    found_at,
                })
            })
            .collect()
        })
        .await
    }

    /// How many pieces of evidence are kept.
    pub(crate) async fn evidence_count(&self) -> Result<u64, StoreError> {
        self.call(|conn| {
            let count: i64 =
                conn.query_row("SELECT count(*) FROM evidence", [], |row| row.get(0))?;
            u64::try_from(count).map_err(|_| StoreError::Corrupt("evidence count".into()))
        })
        .await
    }
}

fn last_epoch(conn: &Connection) -> Result<Option<u64>, StoreError> {
    let epoch: Option<i64> =
        conn.query_row("SELECT max(epoch) FROM cosigned", [], |row| row.get(0))?;
    epoch.map(epoch_from).transpose()
}

fn cosignature_from(witness: &[u8], signature: Vec<u8>) -> Result<Cosignature, StoreError> {
    let witness = PublicKey::from_bytes(witness)
        .map_err(|_| StoreError::Corrupt("cosignature witness key".into()))?;
    Ok(Cosignature { witness, signature })
}

fn epoch_sql(epoch: u64) -> Result<i64, StoreError> {
    i64::try_from(epoch).map_err(|_| StoreError::OutOfRange(epoch))
}

fn epoch_from(epoch: i64) -> Result<u64, StoreError> {
    u64::try_from(epoch).map_err(|_| StoreError::Corrupt(format!("negative epoch {epoch}")))
}
