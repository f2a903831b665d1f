//! The durable queue of directory updates, and the archive of every signed
//! device list by the value it is committed under.
//!
//! [`enqueue`] runs inside the store's own write of a registration or a
//! device-list change (the same writer job, so the same transaction): once a
//! change is acknowledged, its directory update cannot be lost. The
//! publisher drains the queue at each epoch, removing exactly the rows it
//! read.
//!
//! These are the SQLite queries; [`DirectoryDb`](super::DirectoryDb) runs
//! them, or their PostgreSQL counterparts.

use std::collections::BTreeMap;

use rempart_proto::directory::directory_value;
use rempart_proto::mail::mail_label;
use rempart_proto::{AccountSignedDeviceList, SignedDeviceList};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::store::StoreError;

/// Pending updates as the publisher reads them: the latest value per user,
/// and the queue rows they cover.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// Latest value per user name.
    pub(crate) updates: BTreeMap<String, [u8; 32]>,
    /// The ids of the rows read, deleted once published. Only these: a row
    /// with a lower id may commit after they were read (PostgreSQL assigns
    /// ids before commit), and it stays for the next epoch.
    pub(crate) ids: Vec<i64>,
}

/// Queues `directory_value(list)` under each of the list's labels
/// ([`labels`]) and archives the list under each. Runs in the caller's
/// transaction.
pub(crate) fn enqueue(
    conn: &Connection,
    verified: &AccountSignedDeviceList,
) -> Result<(), StoreError> {
    let list = verified.signed();
    let value = directory_value(list);
    for label in labels(verified) {
        conn.execute(
            "INSERT INTO directory_pending (user_name, value) VALUES (?1, ?2)",
            params![label, value.as_slice()],
        )?;
        conn.execute(
            "INSERT OR IGNORE INTO directory_device_lists
                 (user_name, value, device_list, list_signature)
             VALUES (?1, ?2, ?3, ?4)",
            params![label, value.as_slice(), list.list, list.signature],
        )?;
    }
    Ok(())
}

/// The directory labels a device list is published under: its user's
/// name, and the label of each mail address it binds
/// ([`mail_label`]), so that an address always proves its holder's
/// current list.
pub(crate) fn labels(verified: &AccountSignedDeviceList) -> Vec<String> {
    let list = verified.list();
    std::iter::once(list.user.to_string())
        .chain(list.mail.iter().map(|binding| mail_label(&binding.address)))
        .collect()
}

/// Reads the queue: the latest value of each user, in queue order.
pub(crate) fn pending(conn: &Connection) -> Result<Pending, StoreError> {
    let mut pending = Pending::default();
    let mut query =
        conn.prepare("SELECT id, user_name, value FROM directory_pending ORDER BY id")?;
    let mut rows = query.query([])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let user: String = row.get(1)?;
        let value: Vec<u8> = row.get(2)?;
        let value: [u8; 32] = value
            .try_into()
            .map_err(|_| StoreError::Corrupt("pending directory value".into()))?;
        pending.updates.insert(user, value);
        pending.ids.push(id);
    }
    Ok(pending)
}

/// Deletes the queue rows `ids`.
pub(crate) fn remove_published(conn: &Connection, ids: &[i64]) -> Result<(), StoreError> {
    let mut delete = conn.prepare_cached("DELETE FROM directory_pending WHERE id = ?1")?;
    for id in ids {
        delete.execute([id])?;
    }
    Ok(())
}

/// The signed device list of `user` committed under `value`, if any.
pub(crate) fn device_list(
    conn: &Connection,
    user: &str,
    value: &[u8],
) -> Result<Option<SignedDeviceList>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT device_list, list_signature FROM directory_device_lists
             WHERE user_name = ?1 AND value = ?2",
            params![user, value],
            |row| {
                Ok(SignedDeviceList {
                    list: row.get(0)?,
                    signature: row.get(1)?,
                })
            },
        )
        .optional()?)
}

/// What the store knows of one user asked for in a batch lookup.
#[derive(Debug)]
pub(crate) struct LookupFacts {
    /// The user has an account.
    pub(crate) exists: bool,
    /// The user has an update waiting for the next epoch.
    pub(crate) pending: bool,
    /// The archived device list of the user's published value, if any.
    pub(crate) published: Option<SignedDeviceList>,
}

/// For each `(user, published value)`, in order: whether the account exists,
/// whether an update is queued, and the published value's device list.
pub(crate) fn lookup_facts(
    conn: &Connection,
    asked: &[(String, Option<Vec<u8>>)],
) -> Result<Vec<LookupFacts>, StoreError> {
    let mut exists = conn.prepare_cached("SELECT 1 FROM accounts WHERE user_name = ?1")?;
    let mut pending =
        conn.prepare_cached("SELECT 1 FROM directory_pending WHERE user_name = ?1")?;
    asked
        .iter()
        .map(|(user, value)| {
            Ok(LookupFacts {
                exists: exists.exists([user])?,
                pending: pending.exists([user])?,
                published: match value {
                    Some(value) => device_list(conn, user, value)?,
                    None => None,
                },
            })
        })
        .collect()
}
