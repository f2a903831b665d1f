//! Stored epoch heads and witness cosignatures.
//!
//! These are the SQLite queries; [`DirectoryDb`](super::DirectoryDb) runs
//! them, or their PostgreSQL counterparts.

use rempart_proto::PublicKey;
use rempart_proto::directory::{Cosignature, HeadWithCosignatures, SignedHead};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::store::StoreError;

/// Stores the signed head of `epoch`.
pub(crate) fn store_head(
    conn: &Connection,
    epoch: u64,
    head: &SignedHead,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO directory_heads (epoch, head, signature) VALUES (?1, ?2, ?3)",
        params![epoch_sql(epoch)?, head.head, head.signature],
    )?;
    Ok(())
}

/// The highest epoch with a stored head (0 if none).
pub(crate) fn latest_epoch(conn: &Connection) -> Result<u64, StoreError> {
    let epoch: Option<i64> =
        conn.query_row("SELECT max(epoch) FROM directory_heads", [], |row| {
            row.get(0)
        })?;
    u64::try_from(epoch.unwrap_or(0)).map_err(|_| StoreError::Corrupt("negative epoch".into()))
}

/// The signed head of `epoch`, if published.
pub(crate) fn head(conn: &Connection, epoch: u64) -> Result<Option<SignedHead>, StoreError> {
    let Ok(epoch) = i64::try_from(epoch) else {
        return Ok(None);
    };
    Ok(conn
        .query_row(
            "SELECT head, signature FROM directory_heads WHERE epoch = ?1",
            [epoch],
            |row| {
                Ok(SignedHead {
                    head: row.get(0)?,
                    signature: row.get(1)?,
                })
            },
        )
        .optional()?)
}

/// The signed head of `epoch` and its cosignatures, if published.
pub(crate) fn head_with_cosignatures(
    conn: &Connection,
    epoch: u64,
) -> Result<Option<HeadWithCosignatures>, StoreError> {
    let Some(head) = head(conn, epoch)? else {
        return Ok(None);
    };
    let mut query = conn.prepare_cached(
        "SELECT witness, signature FROM directory_cosignatures WHERE epoch = ?1 ORDER BY witness",
    )?;
    let cosignatures = query
        .query_map([epoch_sql(epoch)?], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?
        .map(|row| {
            let (witness, signature) = row?;
            let witness = PublicKey::from_bytes(&witness)
                .map_err(|_| StoreError::Corrupt("witness key".into()))?;
            Ok(Cosignature { witness, signature })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(HeadWithCosignatures { head, cosignatures }))
}

/// The heads of epochs `from..=to` with their cosignatures, oldest first,
/// up to the first epoch without one.
pub(crate) fn heads_with_cosignatures(
    conn: &Connection,
    from: u64,
    to: u64,
) -> Result<Vec<HeadWithCosignatures>, StoreError> {
    let mut heads = Vec::new();
    for epoch in from..=to {
        match head_with_cosignatures(conn, epoch)? {
            Some(head) => heads.push(head),
            None => break,
        }
    }
    Ok(heads)
}

/// Stores a (verified) cosignature of `epoch`; a second one by the same
/// witness for the same epoch is ignored.
pub(crate) fn store_cosignature(
    conn: &Connection,
    epoch: u64,
    cosignature: &Cosignature,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO directory_cosignatures (epoch, witness, signature)
         VALUES (?1, ?2, ?3)",
        params![
            epoch_sql(epoch)?,
            cosignature.witness.as_bytes().as_slice(),
            cosignature.signature
        ],
    )?;
    Ok(())
}

fn epoch_sql(epoch: u64) -> Result<i64, StoreError> {
    i64::try_from(epoch).map_err(|_| StoreError::OutOfRange("epoch"))
}
