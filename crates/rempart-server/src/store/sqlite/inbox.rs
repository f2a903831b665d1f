//! Per-device inboxes (Welcome messages).
//!
//! A Welcome is stored once, in `welcomes`, however many devices it adds;
//! each recipient's inbox row refers to it. A trigger deletes it with the
//! last row that refers to it, whether that row is acknowledged or goes with
//! its device.

use rempart_proto::api::{InboxItem, InboxKind, InboxPage};
use rempart_proto::{DeviceId, GroupId};
use rusqlite::{Connection, params};

use super::{from_sql, to_sql};
use crate::store::StoreError;

pub(super) fn read(
    conn: &Connection,
    device: DeviceId,
    after: u64,
    limit: u32,
) -> Result<InboxPage, StoreError> {
    let mut query = conn.prepare_cached(
        "SELECT i.id, i.kind, i.group_id, i.sender, w.data
         FROM inbox i JOIN welcomes w ON w.id = i.welcome_id
         WHERE i.device_id = ?1 AND i.id > ?2 ORDER BY i.id LIMIT ?3",
    )?;
    let rows = query.query_map(
        params![device.as_bytes(), to_sql(after, "cursor")?, limit],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                GroupId::from_bytes(row.get(2)?),
                DeviceId::from_bytes(row.get(3)?),
                row.get::<_, Vec<u8>>(4)?,
            ))
        },
    )?;
    let mut items = Vec::new();
    for row in rows {
        let (id, kind, group, sender, data) = row?;
        let kind = match kind.as_str() {
            "welcome" => InboxKind::Welcome,
            other => return Err(StoreError::Corrupt(format!("inbox item kind {other:?}"))),
        };
        items.push(InboxItem {
            id: from_sql(id, "inbox id")?,
            kind,
            group,
            sender,
            data,
        });
    }
    Ok(InboxPage { items })
}

/// Puts one Welcome from `sender` into the inbox of each of `devices`,
/// storing its bytes once.
pub(super) fn deliver_welcome(
    conn: &Connection,
    group: GroupId,
    sender: DeviceId,
    devices: &[DeviceId],
    welcome: &[u8],
) -> Result<(), StoreError> {
    if devices.is_empty() {
        return Ok(());
    }
    let welcome_id: i64 = conn
        .prepare_cached("INSERT INTO welcomes (data) VALUES (?1) RETURNING id")?
        .query_row([welcome], |row| row.get(0))?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO inbox (device_id, kind, group_id, sender, welcome_id)
         VALUES (?1, 'welcome', ?2, ?3, ?4)",
    )?;
    for device in devices {
        insert.execute(params![
            device.as_bytes(),
            group.as_bytes(),
            sender.as_bytes(),
            welcome_id
        ])?;
    }
    Ok(())
}

/// Deletes items of `device`'s inbox; a Welcome goes with its last item.
pub(super) fn ack(conn: &Connection, device: DeviceId, ids: &[u64]) -> Result<u64, StoreError> {
    let mut delete = conn.prepare_cached("DELETE FROM inbox WHERE device_id = ?1 AND id = ?2")?;
    let mut deleted = 0;
    for &id in ids {
        // An id beyond SQLite's range names no item.
        let Ok(id) = i64::try_from(id) else { continue };
        deleted += delete.execute(params![device.as_bytes(), id])? as u64;
    }
    Ok(deleted)
}
