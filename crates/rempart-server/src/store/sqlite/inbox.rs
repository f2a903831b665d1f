//! Per-device inboxes (Welcome messages).

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
        "SELECT id, kind, group_id, sender, data FROM inbox
         WHERE device_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
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
