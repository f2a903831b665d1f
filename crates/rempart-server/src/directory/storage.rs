//! akd's storage trait ([`akd::storage::Database`]) over the server's
//! database: SQLite, or PostgreSQL ([`postgres`]) when several server nodes
//! share one.
//!
//! akd stores three kinds of record, each in its own table (the same columns
//! in both databases, see `store::sqlite::schema` and
//! `store::postgres::schema`):
//!
//! - the **Azks** (`akd_azks`): the latest published epoch and the number of
//!   tree nodes, under akd's one-byte key;
//! - **tree nodes** (`akd_tree_nodes`), by node label (bit length and 32
//!   bytes): each node's latest state and the one it replaced, which proofs
//!   for the previous epoch read while a publish is being written;
//! - **value states** (`akd_values`), by (user label, epoch): the value a
//!   user had from that epoch on, its version and its node label.
//!
//! Every field is a column of its own (integers and fixed-size blobs); no
//! record is serialised whole.
//!
//! # Writes and transactions
//!
//! akd 0.13's [`Database`] has no transaction methods of its own: akd's
//! [`StorageManager`](akd::storage::StorageManager) buffers the writes of a
//! publish in memory and hands them over in one
//! [`batch_set`](Database::batch_set) with [`DbSetState::TransactionCommit`],
//! the new Azks last. Every `batch_set` (and `set`) is one transaction: on
//! SQLite one job of the server's writer (a savepoint of a group commit),
//! answered once that commit is durable; on PostgreSQL one transaction on a
//! pooled connection, its rows written a kind at a time by statements over
//! arrays. Readers see a batch wholly or not at all, never an epoch half
//! written. An epoch commit must carry an Azks whose epoch is above the
//! stored one, checked inside the same transaction (on PostgreSQL with the
//! stored Azks row locked first, so commits racing from several nodes are
//! serialised): two publishers racing on one database cannot both commit the
//! same epoch, the loser gets a [`StorageError::Transaction`] and nothing of
//! its batch is stored.
//!
//! # Reads
//!
//! On SQLite, reads run on the server's pooled read connections, each call
//! in one read transaction. A batch read (`batch_get`,
//! `get_user_state_versions`) runs one cached, prepared point query per key
//! on the primary key, all in that one transaction. On PostgreSQL a batch
//! read is one statement joining the keys, passed as arrays, with the table.
//! A user's state for a [`ValueStateRetrievalFlag`] is the first of that
//! user's rows, by epoch, that the flag's condition admits.
//!
//! # Cost
//!
//! Without a cache in its [`StorageManager`](akd::storage::StorageManager),
//! akd reads the tree one node at a time, and each `get` here is a round trip
//! to the database: on SQLite, to the blocking pool and a read transaction; a
//! publish of 1,000 updates into 100,000 users makes about 19,000 of them,
//! two thirds of its time. With a cache, akd preloads the nodes a publish
//! will visit with one `batch_get` per tree level. The epoch's write (about
//! ten rows per update, keyed by VRF output and so scattered over the
//! tables) is one transaction. `BENCHMARKS.md` has the figures.

mod postgres;

use std::collections::HashMap;
use std::collections::HashSet;
use std::error::Error as _;
use std::fmt::Write as _;

use akd::errors::StorageError;
use akd::storage::types::{
    DbRecord, KeyData, StorageType, ValueState, ValueStateKey, ValueStateRetrievalFlag,
};
use akd::storage::{Database, DbSetState, Storable};
use akd::tree_node::{NodeKey, TreeNode, TreeNodeType, TreeNodeWithPreviousValue};
use akd::{AkdLabel, AkdValue, Azks, AzksValue, NodeLabel};
use async_trait::async_trait;
use deadpool_postgres::Pool;
use rusqlite::{Connection, OptionalExtension as _, Row, Statement, ToSql, params};

use super::DirectoryDb;
use crate::store::{PostgresStore, SharedDatabase, SqliteStore, StoreError};

/// The columns of one tree node row, in the order that [`read_tree_node`]
/// reads and [`write_tree_node`] binds them: the label, then the latest
/// state, then the previous one.
const TREE_NODE_COLUMNS: &str = "label_len, label_val, \
     last_epoch, min_descendant_epoch, parent_len, parent_val, node_type, \
     left_len, left_val, right_len, right_val, hash, \
     prev_last_epoch, prev_min_descendant_epoch, prev_parent_len, prev_parent_val, \
     prev_node_type, prev_left_len, prev_left_val, prev_right_len, prev_right_val, prev_hash";

/// How many columns one state of a node takes.
const NODE_STATE_COLUMNS: usize = 10;

/// The columns of one value state row, in the order [`read_value_state`]
/// reads them.
const VALUE_STATE_COLUMNS: &str = "username, epoch, version, label_len, label_val, value";

/// akd's storage layer over the server's database.
///
/// Cheap to clone: clones share the database's connections with the store
/// it was made from. Once a [`SqliteStore`] is
/// [closed](crate::store::Store::close), writes fail.
///
/// Pass it to akd through a [`StorageManager`](akd::storage::StorageManager)
/// (see the [module example](crate::directory)).
#[derive(Clone, Debug)]
pub struct DirectoryStorage {
    backend: Backend,
}

/// Where the records are.
#[derive(Clone, Debug)]
enum Backend {
    /// The SQLite store's writer and readers.
    Sqlite(SharedDatabase),
    /// The PostgreSQL store's pool.
    Postgres(Pool),
}

impl DirectoryStorage {
    /// The directory's storage in `store`'s database, whose schema already
    /// holds its tables (opening the store migrates it).
    pub fn new(store: &SqliteStore) -> Self {
        Self::from_shared(store.shared())
    }

    /// The directory's storage in `store`'s PostgreSQL database, whose
    /// schema already holds its tables (opening the store migrates it).
    pub fn new_postgres(store: &PostgresStore) -> Self {
        Self::from_db(&DirectoryDb::Postgres(store.pool().clone()))
    }

    /// The directory's storage over an open SQLite database.
    pub(crate) fn from_shared(db: SharedDatabase) -> Self {
        Self {
            backend: Backend::Sqlite(db),
        }
    }

    /// The directory's storage in the server's database.
    pub(crate) fn from_db(db: &DirectoryDb) -> Self {
        match db {
            DirectoryDb::Sqlite(shared) => Self::from_shared(shared.clone()),
            DirectoryDb::Postgres(pool) => Self {
                backend: Backend::Postgres(pool.clone()),
            },
        }
    }

    /// The value states that `flag` picks for `users` (no duplicates), in
    /// the order asked; users with none are left out.
    async fn user_states(
        &self,
        users: Vec<AkdLabel>,
        flag: ValueStateRetrievalFlag,
    ) -> Result<Vec<ValueState>, StorageError> {
        let Some(pick) = Pick::for_flag(flag) else {
            return Ok(Vec::new());
        };
        Ok(match &self.backend {
            Backend::Sqlite(db) => {
                db.read(move |conn| read_user_states(conn, &users, &pick))
                    .await?
            }
            Backend::Postgres(pool) => postgres::read_user_states(pool, &users, &pick).await?,
        })
    }
}

#[async_trait]
impl Database for DirectoryStorage {
    async fn set(&self, record: DbRecord) -> Result<(), StorageError> {
        self.batch_set(vec![record], DbSetState::General).await
    }

    async fn batch_set(
        &self,
        records: Vec<DbRecord>,
        state: DbSetState,
    ) -> Result<(), StorageError> {
        if records.is_empty() {
            return Ok(());
        }
        let epoch_commit = matches!(state, DbSetState::TransactionCommit);
        match &self.backend {
            Backend::Sqlite(db) => db
                .write(move |conn| write_records(conn, &records, epoch_commit))
                .await
                .map_err(StorageError::from),
            Backend::Postgres(pool) => postgres::write_records(pool, &records, epoch_commit)
                .await
                .map_err(StorageError::from),
        }
    }

    async fn get<St: Storable>(&self, id: &St::StorageKey) -> Result<DbRecord, StorageError> {
        self.batch_get::<St>(std::slice::from_ref(id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StorageError::NotFound(format!("{:?} {id:?}", St::data_type())))
    }

    async fn batch_get<St: Storable>(
        &self,
        ids: &[St::StorageKey],
    ) -> Result<Vec<DbRecord>, StorageError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = Keys::decode::<St>(ids)?;
        Ok(match &self.backend {
            Backend::Sqlite(db) => {
                db.read(move |conn| match keys {
                    Keys::Azks(keys) => read_azks(conn, &keys),
                    Keys::TreeNodes(labels) => read_tree_nodes(conn, &labels),
                    Keys::ValueStates(keys) => read_value_states(conn, &keys),
                })
                .await?
            }
            Backend::Postgres(pool) => match keys {
                Keys::Azks(keys) => postgres::read_azks(pool, &keys).await?,
                Keys::TreeNodes(labels) => postgres::read_tree_nodes(pool, &labels).await?,
                Keys::ValueStates(keys) => postgres::read_value_states(pool, &keys).await?,
            },
        })
    }

    async fn get_user_data(&self, username: &AkdLabel) -> Result<KeyData, StorageError> {
        let states = match &self.backend {
            Backend::Sqlite(db) => {
                let user = username.clone();
                db.read(move |conn| read_user_data(conn, &user)).await?
            }
            Backend::Postgres(pool) => postgres::read_user_data(pool, username).await?,
        };
        if states.is_empty() {
            return Err(StorageError::NotFound(format!(
                "value states of {username:?}"
            )));
        }
        Ok(KeyData { states })
    }

    async fn get_user_state(
        &self,
        username: &AkdLabel,
        flag: ValueStateRetrievalFlag,
    ) -> Result<ValueState, StorageError> {
        self.user_states(vec![username.clone()], flag)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| StorageError::NotFound(format!("value state {flag:?} of {username:?}")))
    }

    async fn get_user_state_versions(
        &self,
        usernames: &[AkdLabel],
        flag: ValueStateRetrievalFlag,
    ) -> Result<HashMap<AkdLabel, (u64, AkdValue)>, StorageError> {
        let mut seen = HashSet::with_capacity(usernames.len());
        let users: Vec<AkdLabel> = usernames
            .iter()
            .filter(|user| seen.insert(*user))
            .cloned()
            .collect();
        let states = self.user_states(users, flag).await?;
        Ok(states
            .into_iter()
            .map(|state| (state.username, (state.version, state.value)))
            .collect())
    }
}

/// Why a directory storage operation failed. At the trait's boundary it
/// becomes akd's [`StorageError`].
#[derive(Debug, thiserror::Error)]
enum DirectoryStorageError {
    /// The database failed, is closed, or the commit holding a write failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An epoch commit carried no Azks record.
    #[error("an epoch commit must carry the new Azks record, and this one carries none")]
    CommitWithoutAzks,
    /// Another transaction created the Azks record while this epoch commit
    /// was being written.
    #[error("another publisher created the Azks record concurrently")]
    CommitRaced,
    /// An epoch commit would not move the directory forward.
    #[error(
        "an epoch commit must advance the directory past the stored epoch {stored}, \
         but carries epoch {found}"
    )]
    EpochNotAdvanced {
        /// The latest epoch in the database.
        stored: u64,
        /// The epoch of the Azks the commit carried.
        found: u64,
    },
    /// A tree node record holds a state labelled otherwise than the record.
    #[error("tree node record {record:?} holds a state labelled {state:?}")]
    LabelMismatch {
        /// The record's label (its key).
        record: NodeLabel,
        /// The label of the state within it.
        state: NodeLabel,
    },
    /// akd asked for a key that does not decode as a key of its record type.
    #[error("undecodable {kind:?} key: {reason}")]
    UndecodableKey {
        /// The record type asked for.
        kind: StorageType,
        /// What akd's decoder said.
        reason: String,
    },
}

impl From<rusqlite::Error> for DirectoryStorageError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Store(error.into())
    }
}

impl From<tokio_postgres::Error> for DirectoryStorageError {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Store(error.into())
    }
}

impl From<DirectoryStorageError> for StorageError {
    fn from(error: DirectoryStorageError) -> Self {
        let message = describe(&error);
        match error {
            DirectoryStorageError::Store(StoreError::Closed | StoreError::Unavailable) => {
                StorageError::Connection(message)
            }
            DirectoryStorageError::Store(StoreError::CommitFailed)
            | DirectoryStorageError::CommitWithoutAzks
            | DirectoryStorageError::CommitRaced
            | DirectoryStorageError::EpochNotAdvanced { .. } => StorageError::Transaction(message),
            DirectoryStorageError::Store(_)
            | DirectoryStorageError::LabelMismatch { .. }
            | DirectoryStorageError::UndecodableKey { .. } => StorageError::Other(message),
        }
    }
}

/// `error` and its sources, as one line (akd's errors carry strings only).
fn describe(error: &DirectoryStorageError) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Writing to a String cannot fail.
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    message
}

/// The keys of one `batch_get`, decoded from akd's binary key form.
enum Keys {
    Azks(Vec<u8>),
    TreeNodes(Vec<NodeLabel>),
    ValueStates(Vec<ValueStateKey>),
}

impl Keys {
    fn decode<St: Storable>(ids: &[St::StorageKey]) -> Result<Self, DirectoryStorageError> {
        let kind = St::data_type();
        let undecodable = |reason: String| DirectoryStorageError::UndecodableKey { kind, reason };
        let binary = ids.iter().map(St::get_full_binary_key_id);
        Ok(match kind {
            StorageType::Azks => Self::Azks(
                binary
                    .map(|id| match id.as_slice() {
                        [tag, key] if *tag == StorageType::Azks as u8 => Ok(*key),
                        _ => Err(undecodable(format!("{id:?} is not an Azks key"))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            StorageType::TreeNode => Self::TreeNodes(
                binary
                    .map(|id| {
                        TreeNodeWithPreviousValue::key_from_full_binary(&id)
                            .map(|NodeKey(label)| label)
                            .map_err(undecodable)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            StorageType::ValueState => Self::ValueStates(
                binary
                    .map(|id| ValueState::key_from_full_binary(&id).map_err(undecodable))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

// ----- Writes -----

/// Writes `records` in order; for an epoch commit, first checks that it
/// advances the stored epoch.
fn write_records(
    conn: &Connection,
    records: &[DbRecord],
    epoch_commit: bool,
) -> Result<(), DirectoryStorageError> {
    if epoch_commit {
        check_epoch_advances(conn, records)?;
    }
    // Each kind of row is replaced whole: akd hands over every field of the
    // record it keeps (for a node, both the states it keeps).
    let mut put_azks = conn.prepare_cached(
        "INSERT OR REPLACE INTO akd_azks (azks_key, latest_epoch, num_nodes)
         VALUES (?1, ?2, ?3)",
    )?;
    let mut put_node = conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO akd_tree_nodes ({TREE_NODE_COLUMNS}) VALUES ({})",
        placeholders(2 + 2 * NODE_STATE_COLUMNS),
    ))?;
    let mut put_state = conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO akd_values ({VALUE_STATE_COLUMNS}) VALUES ({})",
        placeholders(6),
    ))?;
    for record in records {
        match record {
            DbRecord::Azks(azks) => write_azks(&mut put_azks, azks)?,
            DbRecord::TreeNode(node) => write_tree_node(&mut put_node, node)?,
            DbRecord::ValueState(state) => write_value_state(&mut put_state, state)?,
        }
    }
    Ok(())
}

/// Refuses an epoch commit that carries no Azks, or an Azks whose epoch
/// does not exceed the stored one.
fn check_epoch_advances(
    conn: &Connection,
    records: &[DbRecord],
) -> Result<(), DirectoryStorageError> {
    let mut carried = false;
    for record in records {
        let DbRecord::Azks(azks) = record else {
            continue;
        };
        carried = true;
        let stored: Option<i64> = conn
            .query_row(
                "SELECT latest_epoch FROM akd_azks WHERE azks_key = ?1",
                [azks.get_id()],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(stored) = stored {
            let stored = from_sql(stored, "Azks epoch")?;
            if azks.latest_epoch <= stored {
                return Err(DirectoryStorageError::EpochNotAdvanced {
                    stored,
                    found: azks.latest_epoch,
                });
            }
        }
    }
    if carried {
        Ok(())
    } else {
        Err(DirectoryStorageError::CommitWithoutAzks)
    }
}

fn write_azks(put: &mut Statement<'_>, azks: &Azks) -> Result<(), DirectoryStorageError> {
    put.execute(params![
        azks.get_id(),
        to_sql(azks.latest_epoch, "Azks epoch")?,
        to_sql(azks.num_nodes, "Azks node count")?,
    ])?;
    Ok(())
}

fn write_tree_node(
    put: &mut Statement<'_>,
    node: &TreeNodeWithPreviousValue,
) -> Result<(), DirectoryStorageError> {
    // The row has one label column set: every state in it must have that label.
    for state in std::iter::once(&node.latest_node).chain(&node.previous_node) {
        if state.label != node.label {
            return Err(DirectoryStorageError::LabelMismatch {
                record: node.label,
                state: state.label,
            });
        }
    }
    let latest = NodeState::columns(Some(&node.latest_node))?;
    let previous = NodeState::columns(node.previous_node.as_ref())?;
    let label_len = i64::from(node.label.label_len);
    let mut values: Vec<&dyn ToSql> = vec![&label_len, &node.label.label_val];
    values.extend(latest.params());
    values.extend(previous.params());
    put.execute(values.as_slice())?;
    Ok(())
}

fn write_value_state(
    put: &mut Statement<'_>,
    state: &ValueState,
) -> Result<(), DirectoryStorageError> {
    put.execute(params![
        state.username.0,
        to_sql(state.epoch, "value state epoch")?,
        to_sql(state.version, "value state version")?,
        i64::from(state.label.label_len),
        state.label.label_val,
        state.value.0,
    ])?;
    Ok(())
}

/// One state of a tree node as column values; all `None` for a node with no
/// previous state.
#[derive(Default)]
struct NodeState {
    last_epoch: Option<i64>,
    min_descendant_epoch: Option<i64>,
    parent_len: Option<i64>,
    parent_val: Option<[u8; 32]>,
    node_type: Option<i64>,
    left_len: Option<i64>,
    left_val: Option<[u8; 32]>,
    right_len: Option<i64>,
    right_val: Option<[u8; 32]>,
    hash: Option<[u8; 32]>,
}

impl NodeState {
    fn columns(node: Option<&TreeNode>) -> Result<Self, DirectoryStorageError> {
        let Some(node) = node else {
            return Ok(Self::default());
        };
        Ok(Self {
            last_epoch: Some(to_sql(node.last_epoch, "tree node epoch")?),
            min_descendant_epoch: Some(to_sql(node.min_descendant_epoch, "tree node epoch")?),
            parent_len: Some(node.parent.label_len.into()),
            parent_val: Some(node.parent.label_val),
            node_type: Some(node_type_code(node.node_type)),
            left_len: node.left_child.map(|child| child.label_len.into()),
            left_val: node.left_child.map(|child| child.label_val),
            right_len: node.right_child.map(|child| child.label_len.into()),
            right_val: node.right_child.map(|child| child.label_val),
            hash: Some(node.hash.0),
        })
    }

    /// The values in [`TREE_NODE_COLUMNS`] order.
    fn params(&self) -> [&dyn ToSql; NODE_STATE_COLUMNS] {
        [
            &self.last_epoch,
            &self.min_descendant_epoch,
            &self.parent_len,
            &self.parent_val,
            &self.node_type,
            &self.left_len,
            &self.left_val,
            &self.right_len,
            &self.right_val,
            &self.hash,
        ]
    }
}

fn node_type_code(node_type: TreeNodeType) -> i64 {
    match node_type {
        TreeNodeType::Leaf => 1,
        TreeNodeType::Root => 2,
        TreeNodeType::Interior => 3,
    }
}

// ----- Reads -----

fn read_azks(conn: &Connection, keys: &[u8]) -> Result<Vec<DbRecord>, DirectoryStorageError> {
    let mut query =
        conn.prepare_cached("SELECT latest_epoch, num_nodes FROM akd_azks WHERE azks_key = ?1")?;
    let mut found = Vec::new();
    for key in keys {
        let row: Option<(i64, i64)> = query
            .query_row([key], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        if let Some((latest_epoch, num_nodes)) = row {
            found.push(DbRecord::Azks(Azks {
                latest_epoch: from_sql(latest_epoch, "Azks epoch")?,
                num_nodes: from_sql(num_nodes, "Azks node count")?,
            }));
        }
    }
    Ok(found)
}

/// The stored nodes among `labels`, in the order asked (a label asked twice
/// comes twice).
fn read_tree_nodes(
    conn: &Connection,
    labels: &[NodeLabel],
) -> Result<Vec<DbRecord>, DirectoryStorageError> {
    let mut query = conn.prepare_cached(&format!(
        "SELECT {TREE_NODE_COLUMNS} FROM akd_tree_nodes WHERE label_len = ?1 AND label_val = ?2"
    ))?;
    let mut found = Vec::with_capacity(labels.len());
    for label in labels {
        let mut rows = query.query(params![i64::from(label.label_len), label.label_val])?;
        if let Some(row) = rows.next()? {
            found.push(DbRecord::TreeNode(read_tree_node(row)?));
        }
    }
    Ok(found)
}

/// The stored value states among `keys`, in the order asked.
fn read_value_states(
    conn: &Connection,
    keys: &[ValueStateKey],
) -> Result<Vec<DbRecord>, DirectoryStorageError> {
    let mut query = conn.prepare_cached(&format!(
        "SELECT {VALUE_STATE_COLUMNS} FROM akd_values WHERE username = ?1 AND epoch = ?2"
    ))?;
    let mut found = Vec::with_capacity(keys.len());
    for ValueStateKey(user, epoch) in keys {
        // An epoch beyond SQLite's integers cannot be stored: not found.
        let Ok(epoch) = i64::try_from(*epoch) else {
            continue;
        };
        let mut rows = query.query(params![user, epoch])?;
        if let Some(row) = rows.next()? {
            found.push(DbRecord::ValueState(read_value_state(row)?));
        }
    }
    Ok(found)
}

/// All value states of `user`, by ascending epoch.
fn read_user_data(
    conn: &Connection,
    user: &AkdLabel,
) -> Result<Vec<ValueState>, DirectoryStorageError> {
    let mut query = conn.prepare_cached(&format!(
        "SELECT {VALUE_STATE_COLUMNS} FROM akd_values WHERE username = ?1 ORDER BY epoch"
    ))?;
    let mut rows = query.query([&user.0])?;
    let mut states = Vec::new();
    while let Some(row) = rows.next()? {
        states.push(read_value_state(row)?);
    }
    Ok(states)
}

/// For each of `users` (no duplicates) that has one, the value state that
/// `pick` picks, in the order asked. Users with none are left out.
fn read_user_states(
    conn: &Connection,
    users: &[AkdLabel],
    pick: &Pick,
) -> Result<Vec<ValueState>, DirectoryStorageError> {
    let filter = pick
        .filter
        .map(|(condition, _)| format!("AND {condition} ?2"))
        .unwrap_or_default();
    let mut query = conn.prepare_cached(&format!(
        "SELECT {VALUE_STATE_COLUMNS} FROM akd_values WHERE username = ?1 {filter}
         ORDER BY epoch {} LIMIT 1",
        pick.order,
    ))?;
    let mut found = Vec::with_capacity(users.len());
    for user in users {
        let mut rows = match &pick.filter {
            Some((_, bound)) => query.query(params![user.0, bound])?,
            None => query.query([&user.0])?,
        };
        if let Some(row) = rows.next()? {
            found.push(read_value_state(row)?);
        }
    }
    Ok(found)
}

/// How a [`ValueStateRetrievalFlag`] picks one of a user's states: among
/// those meeting `filter` (a column and comparison, and the value to compare
/// with), the first by epoch in `order`.
struct Pick {
    filter: Option<(&'static str, i64)>,
    order: &'static str,
}

impl Pick {
    /// `None` when the flag names a number that no stored state can have.
    fn for_flag(flag: ValueStateRetrievalFlag) -> Option<Pick> {
        let exact = |condition, number: u64| {
            i64::try_from(number).ok().map(|number| Pick {
                filter: Some((condition, number)),
                order: "ASC",
            })
        };
        match flag {
            ValueStateRetrievalFlag::SpecificVersion(version) => exact("version =", version),
            ValueStateRetrievalFlag::SpecificEpoch(epoch) => exact("epoch =", epoch),
            // Every stored epoch is at most i64::MAX.
            ValueStateRetrievalFlag::LeqEpoch(epoch) => Some(Pick {
                filter: Some(("epoch <=", i64::try_from(epoch).unwrap_or(i64::MAX))),
                order: "DESC",
            }),
            ValueStateRetrievalFlag::MaxEpoch => Some(Pick {
                filter: None,
                order: "DESC",
            }),
            ValueStateRetrievalFlag::MinEpoch => Some(Pick {
                filter: None,
                order: "ASC",
            }),
        }
    }
}

// ----- Row decoding -----

fn read_tree_node(row: &Row<'_>) -> Result<TreeNodeWithPreviousValue, DirectoryStorageError> {
    let label = label(row.get(0)?, row.get(1)?)?;
    let latest_node = read_node_state(row, 2, label)?
        .ok_or_else(|| corrupt("a tree node row without its latest state"))?;
    let previous_node = read_node_state(row, 2 + NODE_STATE_COLUMNS, label)?;
    Ok(TreeNodeWithPreviousValue {
        label,
        latest_node,
        previous_node,
    })
}

/// The node state in the [`NODE_STATE_COLUMNS`] columns from `first`, if
/// they hold one.
fn read_node_state(
    row: &Row<'_>,
    first: usize,
    label: NodeLabel,
) -> Result<Option<TreeNode>, DirectoryStorageError> {
    let Some(last_epoch) = row.get::<_, Option<i64>>(first)? else {
        return Ok(None);
    };
    let column = |offset: usize| first + offset;
    Ok(Some(TreeNode {
        label,
        last_epoch: from_sql(last_epoch, "tree node epoch")?,
        min_descendant_epoch: from_sql(row.get(column(1))?, "tree node epoch")?,
        parent: self::label(row.get(column(2))?, row.get(column(3))?)?,
        node_type: node_type(row.get(column(4))?)?,
        left_child: child(row.get(column(5))?, row.get(column(6))?)?,
        right_child: child(row.get(column(7))?, row.get(column(8))?)?,
        hash: AzksValue(row.get(column(9))?),
    }))
}

fn read_value_state(row: &Row<'_>) -> Result<ValueState, DirectoryStorageError> {
    Ok(ValueState {
        username: AkdLabel(row.get(0)?),
        epoch: from_sql(row.get(1)?, "value state epoch")?,
        version: from_sql(row.get(2)?, "value state version")?,
        label: label(row.get(3)?, row.get(4)?)?,
        value: AkdValue(row.get(5)?),
    })
}

fn label(len: i64, val: [u8; 32]) -> Result<NodeLabel, DirectoryStorageError> {
    let len = u32::try_from(len).map_err(|_| corrupt(format!("node label length {len}")))?;
    Ok(NodeLabel::new(val, len))
}

fn child(
    len: Option<i64>,
    val: Option<[u8; 32]>,
) -> Result<Option<NodeLabel>, DirectoryStorageError> {
    match (len, val) {
        (Some(len), Some(val)) => label(len, val).map(Some),
        (None, None) => Ok(None),
        _ => Err(corrupt("a child label with only one of its two columns")),
    }
}

fn node_type(code: i64) -> Result<TreeNodeType, DirectoryStorageError> {
    match code {
        1 => Ok(TreeNodeType::Leaf),
        2 => Ok(TreeNodeType::Root),
        3 => Ok(TreeNodeType::Interior),
        other => Err(corrupt(format!("tree node type {other}"))),
    }
}

// ----- Helpers -----

/// `count` numbered SQL parameters: `?1, ?2, ?3`.
fn placeholders(count: usize) -> String {
    (1..=count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A number as an SQLite integer.
fn to_sql(value: u64, what: &'static str) -> Result<i64, DirectoryStorageError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange(what).into())
}

/// An SQLite integer that must not be negative.
fn from_sql(value: i64, what: &str) -> Result<u64, DirectoryStorageError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what}")))
}

fn corrupt(what: impl Into<String>) -> DirectoryStorageError {
    StoreError::Corrupt(what.into()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_lists_are_numbered_in_order() {
        assert_eq!(placeholders(3), "?1, ?2, ?3");
    }

    #[test]
    fn the_node_row_has_a_column_per_field() {
        assert_eq!(
            TREE_NODE_COLUMNS.split(',').count(),
            2 + 2 * NODE_STATE_COLUMNS
        );
        assert_eq!(VALUE_STATE_COLUMNS.split(',').count(), 6);
    }

    #[test]
    fn numbers_beyond_sqlite_integers_pick_nothing_or_everything() {
        let beyond = u64::MAX;
        assert!(Pick::for_flag(ValueStateRetrievalFlag::SpecificEpoch(beyond)).is_none());
        assert!(Pick::for_flag(ValueStateRetrievalFlag::SpecificVersion(beyond)).is_none());
        let all = Pick::for_flag(ValueStateRetrievalFlag::LeqEpoch(beyond));
        assert_eq!(
            all.and_then(|pick| pick.filter),
            Some(("epoch <=", i64::MAX))
        );
    }
}
