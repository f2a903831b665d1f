//! The directory's queue, archive, heads and cosignatures in PostgreSQL:
//! the queries of [`queue`](crate::directory::queue) and
//! [`heads`](crate::directory::heads), with the same meaning.

use deadpool_postgres::{Object, Pool};
use rempart_proto::directory::{Cosignature, HeadWithCosignatures, SignedHead};
use rempart_proto::{PublicKey, SignedDeviceList};
use tokio_postgres::Row;

use crate::directory::queue::{LookupFacts, Pending};
use crate::store::StoreError;

/// A connection from the pool; unavailable if none comes.
pub(in crate::directory) async fn connect(pool: &Pool) -> Result<Object, StoreError> {
    pool.get().await.map_err(|error| {
        tracing::warn!(%error, "no database connection for the directory");
        StoreError::Unavailable
    })
}

/// Records `(directory_key, vrf_key)` as the deployment's keys unless keys
/// are recorded already; returns the recorded ones.
pub(super) async fn pin_keys(
    pool: &Pool,
    directory_key: &[u8],
    vrf_key: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let conn = connect(pool).await?;
    conn.execute(
        "INSERT INTO directory_keys (directory_key, vrf_key) VALUES ($1, $2)
         ON CONFLICT (one_row) DO NOTHING",
        &[&directory_key, &vrf_key],
    )
    .await?;
    let row = conn
        .query_one("SELECT directory_key, vrf_key FROM directory_keys", &[])
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Reads the queue: the latest value of each user, in queue order.
pub(super) async fn pending(pool: &Pool) -> Result<Pending, StoreError> {
    let conn = connect(pool).await?;
    let statement = conn
        .prepare_cached("SELECT id, user_name, value FROM directory_pending ORDER BY id")
        .await?;
    let mut pending = Pending::default();
    for row in conn.query(&statement, &[]).await? {
        let id: i64 = row.try_get(0)?;
        let user: String = row.try_get(1)?;
        let value: &[u8] = row.try_get(2)?;
        let value: [u8; 32] = value
            .try_into()
            .map_err(|_| StoreError::Corrupt("pending directory value".into()))?;
        pending.updates.insert(user, value);
        pending.ids.push(id);
    }
    Ok(pending)
}

/// In one transaction: stores `head`, if any, and deletes the queue rows
/// `published`.
pub(super) async fn finish_epoch(
    pool: &Pool,
    head: Option<(u64, &SignedHead)>,
    published: &[i64],
) -> Result<(), StoreError> {
    let mut conn = connect(pool).await?;
    let tx = conn.transaction().await?;
    if let Some((epoch, head)) = head {
        tx.execute(
            "INSERT INTO directory_heads (epoch, head, signature) VALUES ($1, $2, $3)",
            &[&epoch_sql(epoch)?, &head.head, &head.signature],
        )
        .await?;
    }
    if !published.is_empty() {
        tx.execute(
            "DELETE FROM directory_pending WHERE id = ANY($1::int8[])",
            &[&published],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The highest epoch with a stored head (0 if none).
pub(super) async fn latest_epoch(pool: &Pool) -> Result<u64, StoreError> {
    let conn = connect(pool).await?;
    latest_on(&conn).await
}

async fn latest_on(conn: &Object) -> Result<u64, StoreError> {
    let statement = conn
        .prepare_cached("SELECT coalesce(max(epoch), 0) FROM directory_heads")
        .await?;
    let epoch: i64 = conn.query_one(&statement, &[]).await?.try_get(0)?;
    u64::try_from(epoch).map_err(|_| StoreError::Corrupt("negative epoch".into()))
}

/// The signed head of `epoch`, if published.
pub(super) async fn head(pool: &Pool, epoch: u64) -> Result<Option<SignedHead>, StoreError> {
    let Ok(epoch) = i64::try_from(epoch) else {
        return Ok(None);
    };
    let conn = connect(pool).await?;
    let statement = conn
        .prepare_cached("SELECT head, signature FROM directory_heads WHERE epoch = $1")
        .await?;
    conn.query_opt(&statement, &[&epoch])
        .await?
        .map(|row| signed_head(&row, 0))
        .transpose()
}

/// The signed head of `epoch` (the latest if `None`) and its cosignatures,
/// if published.
pub(super) async fn head_with_cosignatures(
    pool: &Pool,
    epoch: Option<u64>,
) -> Result<Option<HeadWithCosignatures>, StoreError> {
    let mut conn = connect(pool).await?;
    // One snapshot: the latest epoch and its head agree.
    let tx = conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let epoch = match epoch {
        Some(epoch) => epoch,
        None => {
            let epoch: i64 = tx
                .query_one("SELECT coalesce(max(epoch), 0) FROM directory_heads", &[])
                .await?
                .try_get(0)?;
            u64::try_from(epoch).map_err(|_| StoreError::Corrupt("negative epoch".into()))?
        }
    };
    let Ok(epoch) = i64::try_from(epoch) else {
        return Ok(None);
    };
    let heads = heads_in(&tx, epoch, epoch).await?;
    tx.commit().await?;
    Ok(heads.into_iter().next())
}

/// The heads of epochs `from..=to` with their cosignatures, oldest first,
/// up to the first epoch without one.
pub(super) async fn heads_with_cosignatures(
    pool: &Pool,
    from: u64,
    to: u64,
) -> Result<Vec<HeadWithCosignatures>, StoreError> {
    let (Ok(from), Ok(to)) = (i64::try_from(from), i64::try_from(to)) else {
        return Ok(Vec::new());
    };
    let mut conn = connect(pool).await?;
    let tx = conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let heads = heads_in(&tx, from, to).await?;
    tx.commit().await?;
    Ok(heads)
}

/// The heads of epochs `from..=to` and their cosignatures, oldest first, up
/// to the first epoch without one. Two queries: run them in one snapshot.
async fn heads_in(
    tx: &deadpool_postgres::Transaction<'_>,
    from: i64,
    to: i64,
) -> Result<Vec<HeadWithCosignatures>, StoreError> {
    let heads = tx
        .query(
            "SELECT epoch, head, signature FROM directory_heads
             WHERE epoch BETWEEN $1 AND $2 ORDER BY epoch",
            &[&from, &to],
        )
        .await?;
    let cosignatures = tx
        .query(
            "SELECT epoch, witness, signature FROM directory_cosignatures
             WHERE epoch BETWEEN $1 AND $2 ORDER BY epoch, witness",
            &[&from, &to],
        )
        .await?;
    let mut cosignatures = cosignatures.iter().peekable();
    let mut found = Vec::with_capacity(heads.len());
    for (expected, row) in (from..).zip(&heads) {
        let epoch: i64 = row.try_get(0)?;
        if epoch != expected {
            break;
        }
        let mut with = HeadWithCosignatures {
            head: signed_head(row, 1)?,
            cosignatures: Vec::new(),
        };
        while let Some(cosignature) = cosignatures.peek() {
            let of: i64 = cosignature.try_get(0)?;
            if of > epoch {
                break;
            }
            if of == epoch {
                with.cosignatures.push(witness_cosignature(cosignature)?);
            }
            cosignatures.next();
        }
        found.push(with);
    }
    Ok(found)
}

/// Stores a (verified) cosignature of `epoch`; a second one by the same
/// witness for the same epoch is ignored.
pub(super) async fn store_cosignature(
    pool: &Pool,
    epoch: u64,
    cosignature: &Cosignature,
) -> Result<(), StoreError> {
    let conn = connect(pool).await?;
    conn.execute(
        "INSERT INTO directory_cosignatures (epoch, witness, signature) VALUES ($1, $2, $3)
         ON CONFLICT (epoch, witness) DO NOTHING",
        &[
            &epoch_sql(epoch)?,
            &cosignature.witness.as_bytes().as_slice(),
            &cosignature.signature,
        ],
    )
    .await?;
    Ok(())
}

/// The signed device list of `user` committed under `value`, if any.
pub(super) async fn device_list(
    pool: &Pool,
    user: &str,
    value: &[u8],
) -> Result<Option<SignedDeviceList>, StoreError> {
    let conn = connect(pool).await?;
    let statement = conn
        .prepare_cached(
            "SELECT device_list, list_signature FROM directory_device_lists
             WHERE user_name = $1 AND value = $2",
        )
        .await?;
    conn.query_opt(&statement, &[&user, &value])
        .await?
        .map(|row| {
            Ok(SignedDeviceList {
                list: row.try_get(0)?,
                signature: row.try_get(1)?,
            })
        })
        .transpose()
}

/// For each `(user, published value)`, in order: whether the account
/// exists, whether an update is queued, and the published value's device
/// list.
pub(super) async fn lookup_facts(
    pool: &Pool,
    asked: &[(String, Option<Vec<u8>>)],
) -> Result<Vec<LookupFacts>, StoreError> {
    let users: Vec<&str> = asked.iter().map(|(user, _)| user.as_str()).collect();
    let values: Vec<Option<&[u8]>> = asked.iter().map(|(_, value)| value.as_deref()).collect();
    let conn = connect(pool).await?;
    let statement = conn
        .prepare_cached(
            "SELECT
                 EXISTS (SELECT 1 FROM accounts a WHERE a.user_name = k.name),
                 EXISTS (SELECT 1 FROM directory_pending p WHERE p.user_name = k.name),
                 d.device_list,
                 d.list_signature
             FROM UNNEST($1::text[], $2::bytea[]) WITH ORDINALITY AS k (name, value, ord)
             LEFT JOIN directory_device_lists d
                 ON d.user_name = k.name AND d.value = k.value
             ORDER BY k.ord",
        )
        .await?;
    conn.query(&statement, &[&users, &values])
        .await?
        .iter()
        .map(|row| {
            let list: Option<Vec<u8>> = row.try_get(2)?;
            let signature: Option<Vec<u8>> = row.try_get(3)?;
            Ok(LookupFacts {
                exists: row.try_get(0)?,
                pending: row.try_get(1)?,
                published: list
                    .zip(signature)
                    .map(|(list, signature)| SignedDeviceList { list, signature }),
            })
        })
        .collect()
}

/// The signed head in columns `first` (head) and `first + 1` (signature).
fn signed_head(row: &Row, first: usize) -> Result<SignedHead, StoreError> {
    Ok(SignedHead {
        head: row.try_get(first)?,
        signature: row.try_get(first + 1)?,
    })
}

/// The cosignature in columns 1 (witness) and 2 (signature).
fn witness_cosignature(row: &Row) -> Result<Cosignature, StoreError> {
    let witness: &[u8] = row.try_get(1)?;
    let witness =
        PublicKey::from_bytes(witness).map_err(|_| StoreError::Corrupt("witness key".into()))?;
    Ok(Cosignature {
        witness,
        signature: row.try_get(2)?,
    })
}

fn epoch_sql(epoch: u64) -> Result<i64, StoreError> {
    i64::try_from(epoch).map_err(|_| StoreError::OutOfRange("epoch"))
}
