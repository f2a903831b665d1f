//! akd's records in PostgreSQL: the rows described in the parent module,
//! written a kind at a time by one statement over arrays (`UNNEST`) per
//! chunk of rows, and read by one statement per batch that joins the keys,
//! passed as arrays, with the table.

use std::collections::BTreeMap;

use akd::storage::Storable as _;
use akd::storage::types::{DbRecord, ValueState, ValueStateKey};
use akd::tree_node::{TreeNode, TreeNodeType, TreeNodeWithPreviousValue};
use akd::{AkdLabel, AkdValue, Azks, AzksValue, NodeLabel};
use deadpool_postgres::{GenericClient as _, Object, Pool, Transaction};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{
    DirectoryStorageError, NODE_STATE_COLUMNS, Pick, TREE_NODE_COLUMNS, VALUE_STATE_COLUMNS, child,
    corrupt, from_sql, label, node_type, to_sql,
};
use crate::store::StoreError;

/// Most rows one write statement carries, so that one statement's arrays
/// stay a bounded size however large the epoch.
const ROWS_PER_STATEMENT: usize = 5_000;

/// The PostgreSQL array type of each of [`TREE_NODE_COLUMNS`], in order.
const TREE_NODE_ARRAY_TYPES: [&str; 2 + 2 * NODE_STATE_COLUMNS] = [
    "int4[]", "bytea[]", // label
    "int8[]", "int8[]", "int4[]", "bytea[]", "int2[]", "int4[]", "bytea[]", "int4[]", "bytea[]",
    "bytea[]", // latest state
    "int8[]", "int8[]", "int4[]", "bytea[]", "int2[]", "int4[]", "bytea[]", "int4[]", "bytea[]",
    "bytea[]", // previous state
];

/// The PostgreSQL array type of each of [`VALUE_STATE_COLUMNS`], in order.
const VALUE_STATE_ARRAY_TYPES: [&str; 6] = [
    "bytea[]", "int8[]", "int8[]", "int4[]", "bytea[]", "bytea[]",
];

/// A connection from the pool; unavailable if none comes.
async fn connect(pool: &Pool) -> Result<Object, DirectoryStorageError> {
    pool.get().await.map_err(|error| {
        tracing::warn!(%error, "no database connection for the directory");
        StoreError::Unavailable.into()
    })
}

// ----- Writes -----

/// Writes `records` in one transaction; for an epoch commit, first locks
/// the stored Azks and checks that the commit advances it.
pub(super) async fn write_records(
    pool: &Pool,
    records: &[DbRecord],
    epoch_commit: bool,
) -> Result<(), DirectoryStorageError> {
    let batch = Batch::sort(records)?;
    if epoch_commit && batch.azks.is_empty() {
        return Err(DirectoryStorageError::CommitWithoutAzks);
    }
    let mut conn = connect(pool).await?;
    let tx = conn.transaction().await?;
    // The Azks row first: a second epoch commit waits here until the first
    // one ends, then sees its epoch.
    let mut stored_azks = BTreeMap::new();
    for (key, azks) in &batch.azks {
        let stored: Option<i64> = tx
            .query_opt(
                "SELECT latest_epoch FROM akd_azks WHERE azks_key = $1 FOR UPDATE",
                &[key],
            )
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        if let (true, Some(stored)) = (epoch_commit, stored) {
            let stored = from_sql(stored, "Azks epoch")?;
            if azks.latest_epoch <= stored {
                return Err(DirectoryStorageError::EpochNotAdvanced {
                    stored,
                    found: azks.latest_epoch,
                });
            }
        }
        stored_azks.insert(*key, stored.is_some());
    }
    for chunk in batch.nodes.chunks(ROWS_PER_STATEMENT) {
        write_tree_nodes(&tx, chunk).await?;
    }
    for chunk in batch.states.chunks(ROWS_PER_STATEMENT) {
        write_value_states(&tx, chunk).await?;
    }
    for (key, azks) in &batch.azks {
        let latest_epoch = to_sql(azks.latest_epoch, "Azks epoch")?;
        let num_nodes = to_sql(azks.num_nodes, "Azks node count")?;
        let params: [&(dyn ToSql + Sync); 3] = [key, &latest_epoch, &num_nodes];
        if stored_azks.get(key).copied().unwrap_or(false) {
            tx.execute(
                "UPDATE akd_azks SET latest_epoch = $2, num_nodes = $3 WHERE azks_key = $1",
                &params,
            )
            .await?;
        } else if epoch_commit {
            // No row to lock: a concurrent commit may be creating it.
            let inserted = tx
                .execute(
                    "INSERT INTO akd_azks (azks_key, latest_epoch, num_nodes)
                     VALUES ($1, $2, $3) ON CONFLICT (azks_key) DO NOTHING",
                    &params,
                )
                .await?;
            if inserted != 1 {
                return Err(DirectoryStorageError::CommitRaced);
            }
        } else {
            tx.execute(
                "INSERT INTO akd_azks (azks_key, latest_epoch, num_nodes)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (azks_key) DO UPDATE
                 SET latest_epoch = EXCLUDED.latest_epoch, num_nodes = EXCLUDED.num_nodes",
                &params,
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The records of one batch by kind, the last record of each key winning
/// (as when written one after the other), sorted by key.
struct Batch<'a> {
    azks: BTreeMap<i16, &'a Azks>,
    nodes: Vec<&'a TreeNodeWithPreviousValue>,
    states: Vec<&'a ValueState>,
}

impl<'a> Batch<'a> {
    fn sort(records: &'a [DbRecord]) -> Result<Self, DirectoryStorageError> {
        let mut azks = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        let mut states = BTreeMap::new();
        for record in records {
            match record {
                DbRecord::Azks(record) => {
                    azks.insert(i16::from(record.get_id()), record);
                }
                DbRecord::TreeNode(node) => {
                    check_labels(node)?;
                    nodes.insert((node.label.label_len, node.label.label_val), node);
                }
                DbRecord::ValueState(state) => {
                    states.insert((&state.username.0, state.epoch), state);
                }
            }
        }
        Ok(Self {
            azks,
            nodes: nodes.into_values().collect(),
            states: states.into_values().collect(),
        })
    }
}

/// The row has one label column set: every state in it must have that label.
fn check_labels(node: &TreeNodeWithPreviousValue) -> Result<(), DirectoryStorageError> {
    for state in std::iter::once(&node.latest_node).chain(&node.previous_node) {
        if state.label != node.label {
            return Err(DirectoryStorageError::LabelMismatch {
                record: node.label,
                state: state.label,
            });
        }
    }
    Ok(())
}

/// `INSERT INTO table (columns) SELECT * FROM UNNEST($1::type, ...)`,
/// replacing every non-key column of a row whose key is already stored.
fn upsert_sql(table: &str, columns: &str, types: &[&str], key_columns: usize) -> String {
    let arrays = types
        .iter()
        .enumerate()
        .map(|(i, array)| format!("${}::{array}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let names: Vec<&str> = columns.split(',').map(str::trim).collect();
    let key = names[..key_columns.min(names.len())].join(", ");
    let updates = names
        .iter()
        .skip(key_columns)
        .map(|name| format!("{name} = EXCLUDED.{name}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({columns}) SELECT * FROM UNNEST({arrays})
         ON CONFLICT ({key}) DO UPDATE SET {updates}"
    )
}

/// One state of each of a chunk of tree nodes, a column at a time.
#[derive(Default)]
struct StateArrays<'a> {
    last_epoch: Vec<Option<i64>>,
    min_descendant_epoch: Vec<Option<i64>>,
    parent_len: Vec<Option<i32>>,
    parent_val: Vec<Option<&'a [u8]>>,
    node_type: Vec<Option<i16>>,
    left_len: Vec<Option<i32>>,
    left_val: Vec<Option<&'a [u8]>>,
    right_len: Vec<Option<i32>>,
    right_val: Vec<Option<&'a [u8]>>,
    hash: Vec<Option<&'a [u8]>>,
}

impl<'a> StateArrays<'a> {
    fn push(&mut self, node: Option<&'a TreeNode>) -> Result<(), DirectoryStorageError> {
        let epoch = |epoch| to_sql(epoch, "tree node epoch");
        self.last_epoch
            .push(node.map(|n| epoch(n.last_epoch)).transpose()?);
        self.min_descendant_epoch
            .push(node.map(|n| epoch(n.min_descendant_epoch)).transpose()?);
        self.parent_len
            .push(node.map(|n| label_len(n.parent)).transpose()?);
        self.parent_val
            .push(node.map(|n| n.parent.label_val.as_slice()));
        self.node_type
            .push(node.map(|n| node_type_small(n.node_type)));
        let left = node.and_then(|n| n.left_child.as_ref());
        let right = node.and_then(|n| n.right_child.as_ref());
        self.left_len
            .push(left.map(|child| label_len(*child)).transpose()?);
        self.left_val
            .push(left.map(|child| child.label_val.as_slice()));
        self.right_len
            .push(right.map(|child| label_len(*child)).transpose()?);
        self.right_val
            .push(right.map(|child| child.label_val.as_slice()));
        self.hash.push(node.map(|n| n.hash.0.as_slice()));
        Ok(())
    }

    /// The arrays in [`TREE_NODE_COLUMNS`] order.
    fn params(&self) -> [&(dyn ToSql + Sync); NODE_STATE_COLUMNS] {
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

async fn write_tree_nodes(
    tx: &Transaction<'_>,
    nodes: &[&TreeNodeWithPreviousValue],
) -> Result<(), DirectoryStorageError> {
    let mut label_lens = Vec::with_capacity(nodes.len());
    let mut label_vals = Vec::with_capacity(nodes.len());
    let mut latest = StateArrays::default();
    let mut previous = StateArrays::default();
    for node in nodes {
        label_lens.push(label_len(node.label)?);
        label_vals.push(node.label.label_val.as_slice());
        latest.push(Some(&node.latest_node))?;
        previous.push(node.previous_node.as_ref())?;
    }
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&label_lens, &label_vals];
    params.extend(latest.params());
    params.extend(previous.params());
    let sql = upsert_sql(
        "akd_tree_nodes",
        TREE_NODE_COLUMNS,
        &TREE_NODE_ARRAY_TYPES,
        2,
    );
    let statement = tx.prepare_cached(&sql).await?;
    tx.execute(&statement, &params).await?;
    Ok(())
}

async fn write_value_states(
    tx: &Transaction<'_>,
    states: &[&ValueState],
) -> Result<(), DirectoryStorageError> {
    let mut usernames = Vec::with_capacity(states.len());
    let mut epochs = Vec::with_capacity(states.len());
    let mut versions = Vec::with_capacity(states.len());
    let mut label_lens = Vec::with_capacity(states.len());
    let mut label_vals = Vec::with_capacity(states.len());
    let mut values = Vec::with_capacity(states.len());
    for state in states {
        usernames.push(state.username.0.as_slice());
        epochs.push(to_sql(state.epoch, "value state epoch")?);
        versions.push(to_sql(state.version, "value state version")?);
        label_lens.push(label_len(state.label)?);
        label_vals.push(state.label.label_val.as_slice());
        values.push(state.value.0.as_slice());
    }
    let params: [&(dyn ToSql + Sync); 6] = [
        &usernames,
        &epochs,
        &versions,
        &label_lens,
        &label_vals,
        &values,
    ];
    let sql = upsert_sql(
        "akd_values",
        VALUE_STATE_COLUMNS,
        &VALUE_STATE_ARRAY_TYPES,
        2,
    );
    let statement = tx.prepare_cached(&sql).await?;
    tx.execute(&statement, &params).await?;
    Ok(())
}

fn label_len(label: NodeLabel) -> Result<i32, DirectoryStorageError> {
    i32::try_from(label.label_len).map_err(|_| StoreError::OutOfRange("node label length").into())
}

/// The node type's code, as [`node_type_code`](super::node_type_code) gives it, in PostgreSQL's
/// `smallint`.
fn node_type_small(node_type: TreeNodeType) -> i16 {
    match node_type {
        TreeNodeType::Leaf => 1,
        TreeNodeType::Root => 2,
        TreeNodeType::Interior => 3,
    }
}

// ----- Reads -----

/// The stored Azks records among `keys`, in the order asked.
pub(super) async fn read_azks(
    pool: &Pool,
    keys: &[u8],
) -> Result<Vec<DbRecord>, DirectoryStorageError> {
    let asked: Vec<i16> = keys.iter().map(|key| i16::from(*key)).collect();
    let conn = connect(pool).await?;
    let statement = conn
        .prepare_cached(
            "SELECT k.key, a.latest_epoch, a.num_nodes
             FROM UNNEST($1::int2[]) WITH ORDINALITY AS k (key, ord)
             JOIN akd_azks a ON a.azks_key = k.key
             ORDER BY k.ord",
        )
        .await?;
    conn.query(&statement, &[&asked])
        .await?
        .iter()
        .map(|row| {
            Ok(DbRecord::Azks(Azks {
                latest_epoch: from_sql(row.try_get(1)?, "Azks epoch")?,
                num_nodes: from_sql(row.try_get(2)?, "Azks node count")?,
            }))
        })
        .collect()
}

/// The stored nodes among `labels`, in the order asked (a label asked twice
/// comes twice).
pub(super) async fn read_tree_nodes(
    pool: &Pool,
    labels: &[NodeLabel],
) -> Result<Vec<DbRecord>, DirectoryStorageError> {
    let mut lens = Vec::with_capacity(labels.len());
    let mut vals = Vec::with_capacity(labels.len());
    for asked in labels {
        // A length beyond PostgreSQL's integers cannot be stored: not found.
        let Ok(len) = label_len(*asked) else {
            continue;
        };
        lens.push(len);
        vals.push(asked.label_val.as_slice());
    }
    let conn = connect(pool).await?;
    let statement = conn
        .prepare_cached(&format!(
            "SELECT {TREE_NODE_COLUMNS}
             FROM UNNEST($1::int4[], $2::bytea[]) WITH ORDINALITY AS k (len, val, ord)
             JOIN akd_tree_nodes n ON n.label_len = k.len AND n.label_val = k.val
             ORDER BY k.ord"
        ))
        .await?;
    conn.query(&statement, &[&lens, &vals])
        .await?
        .iter()
        .map(|row| read_tree_node(row).map(DbRecord::TreeNode))
        .collect()
}

/// The stored value states among `keys`, in the order asked.
pub(super) async fn read_value_states(
    pool: &Pool,
    keys: &[ValueStateKey],
) -> Result<Vec<DbRecord>, DirectoryStorageError> {
    let mut users = Vec::with_capacity(keys.len());
    let mut epochs = Vec::with_capacity(keys.len());
    for ValueStateKey(user, epoch) in keys {
        // An epoch beyond PostgreSQL's integers cannot be stored: not found.
        let Ok(epoch) = i64::try_from(*epoch) else {
            continue;
        };
        users.push(user.as_slice());
        epochs.push(epoch);
    }
    let conn = connect(pool).await?;
    let statement = conn
        .prepare_cached(&format!(
            "SELECT {VALUE_STATE_COLUMNS}
             FROM UNNEST($1::bytea[], $2::int8[]) WITH ORDINALITY AS k (name, at, ord)
             JOIN akd_values v ON v.username = k.name AND v.epoch = k.at
             ORDER BY k.ord"
        ))
        .await?;
    conn.query(&statement, &[&users, &epochs])
        .await?
        .iter()
        .map(|row| read_value_state(row).map(DbRecord::ValueState))
        .collect()
}

/// All value states of `user`, by ascending epoch.
pub(super) async fn read_user_data(
    pool: &Pool,
    user: &AkdLabel,
) -> Result<Vec<ValueState>, DirectoryStorageError> {
    let conn = connect(pool).await?;
    let statement = conn
        .prepare_cached(&format!(
            "SELECT {VALUE_STATE_COLUMNS} FROM akd_values WHERE username = $1 ORDER BY epoch"
        ))
        .await?;
    conn.query(&statement, &[&user.0.as_slice()])
        .await?
        .iter()
        .map(read_value_state)
        .collect()
}

/// For each of `users` (no duplicates) that has one, the value state that
/// `pick` picks, in the order asked. Users with none are left out.
pub(super) async fn read_user_states(
    pool: &Pool,
    users: &[AkdLabel],
    pick: &Pick,
) -> Result<Vec<ValueState>, DirectoryStorageError> {
    let names: Vec<&[u8]> = users.iter().map(|user| user.0.as_slice()).collect();
    let filter = pick
        .filter
        .map(|(condition, _)| format!("AND {condition} $2::int8"))
        .unwrap_or_default();
    let conn = connect(pool).await?;
    let statement = conn
        .prepare_cached(&format!(
            "SELECT v.* FROM UNNEST($1::bytea[]) WITH ORDINALITY AS k (name, ord)
             CROSS JOIN LATERAL (
                 SELECT {VALUE_STATE_COLUMNS} FROM akd_values
                 WHERE username = k.name {filter}
                 ORDER BY epoch {} LIMIT 1
             ) v
             ORDER BY k.ord",
            pick.order,
        ))
        .await?;
    let rows = match &pick.filter {
        Some((_, bound)) => conn.query(&statement, &[&names, bound]).await?,
        None => conn.query(&statement, &[&names]).await?,
    };
    rows.iter().map(read_value_state).collect()
}

// ----- Row decoding -----

fn read_tree_node(row: &Row) -> Result<TreeNodeWithPreviousValue, DirectoryStorageError> {
    let label = node_label(row.try_get(0)?, row.try_get(1)?)?;
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
    row: &Row,
    first: usize,
    label: NodeLabel,
) -> Result<Option<TreeNode>, DirectoryStorageError> {
    let Some(last_epoch) = row.try_get::<_, Option<i64>>(first)? else {
        return Ok(None);
    };
    let column = |offset: usize| first + offset;
    let child_of = |len: usize, val: usize| -> Result<_, DirectoryStorageError> {
        let len: Option<i32> = row.try_get(column(len))?;
        let val: Option<&[u8]> = row.try_get(column(val))?;
        child(len.map(i64::from), val.map(bytes32).transpose()?)
    };
    Ok(Some(TreeNode {
        label,
        last_epoch: from_sql(last_epoch, "tree node epoch")?,
        min_descendant_epoch: from_sql(row.try_get(column(1))?, "tree node epoch")?,
        parent: node_label(row.try_get(column(2))?, row.try_get(column(3))?)?,
        node_type: node_type(i64::from(row.try_get::<_, i16>(column(4))?))?,
        left_child: child_of(5, 6)?,
        right_child: child_of(7, 8)?,
        hash: AzksValue(bytes32(row.try_get(column(9))?)?),
    }))
}

fn read_value_state(row: &Row) -> Result<ValueState, DirectoryStorageError> {
    Ok(ValueState {
        username: AkdLabel(row.try_get(0)?),
        epoch: from_sql(row.try_get(1)?, "value state epoch")?,
        version: from_sql(row.try_get(2)?, "value state version")?,
        label: node_label(row.try_get(3)?, row.try_get(4)?)?,
        value: AkdValue(row.try_get(5)?),
    })
}

fn node_label(len: i32, val: &[u8]) -> Result<NodeLabel, DirectoryStorageError> {
    label(i64::from(len), bytes32(val)?)
}

fn bytes32(bytes: &[u8]) -> Result<[u8; 32], DirectoryStorageError> {
    bytes
        .try_into()
        .map_err(|_| corrupt(format!("{} bytes where 32 were expected", bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_types_have_the_same_codes_in_both_databases() {
        for node_type in [
            TreeNodeType::Leaf,
            TreeNodeType::Root,
            TreeNodeType::Interior,
        ] {
            let code = node_type_small(node_type);
            assert_eq!(i64::from(code), super::super::node_type_code(node_type));
        }
    }

    #[test]
    fn every_node_column_has_an_array_type() {
        assert_eq!(
            TREE_NODE_COLUMNS.split(',').count(),
            TREE_NODE_ARRAY_TYPES.len()
        );
    }

    #[test]
    fn an_upsert_replaces_the_non_key_columns() {
        assert_eq!(
            upsert_sql("t", "a, b, c", &["int4[]", "bytea[]", "int8[]"], 2),
            "INSERT INTO t (a, b, c) SELECT * FROM UNNEST($1::int4[], $2::bytea[], $3::int8[])
         ON CONFLICT (a, b) DO UPDATE SET c = EXCLUDED.c"
        );
    }
}
