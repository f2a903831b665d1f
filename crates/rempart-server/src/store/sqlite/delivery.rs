//! Group logs: ordering of commits by epoch, application messages, membership.

use rempart_proto::api::{Appended, CommitUpload, EntryKind, LogEntry, LogPage};
use rempart_proto::{DeviceId, GroupId, MessageId};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::{from_sql, to_sql};
use crate::store::log::{EarlierEntry, kind_name, parse_kind, retry_of};
use crate::store::{AppendOutcome, StoreError};

/// A group's position: its current epoch and the last `seq` of its log.
struct Head {
    epoch: u64,
    last_seq: u64,
}

/// A log entry about to be written.
struct NewEntry<'a> {
    seq: u64,
    kind: EntryKind,
    epoch: u64,
    sender: DeviceId,
    message_id: MessageId,
    data: &'a [u8],
}

pub(super) fn append_commit(
    conn: &Connection,
    group: GroupId,
    sender: DeviceId,
    upload: &CommitUpload,
) -> Result<AppendOutcome, StoreError> {
    let head = match head(conn, group)? {
        Some(head) => head,
        None if upload.epoch == 0 => create(conn, group, sender)?,
        None => return Err(StoreError::UnknownGroup(group)),
    };
    require_member(conn, group, sender)?;
    let retry = earlier_entry(
        conn,
        group,
        upload.message_id,
        sender,
        EntryKind::Commit,
        &upload.commit,
    )?;
    if let Some((seq, built_on)) = retry {
        return Ok(AppendOutcome {
            appended: Appended {
                seq,
                epoch: built_on + 1,
            },
            fresh: false,
            welcomed: Vec::new(),
        });
    }
    if upload.epoch != head.epoch {
        return Err(StoreError::StaleEpoch {
            current: head.epoch,
        });
    }
    for device in &upload.add_devices {
        let registered: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = ?1)")?
            .query_row([device.as_bytes()], |row| row.get(0))?;
        if !registered {
            return Err(StoreError::UnknownDevice(*device));
        }
    }

    let seq = head.last_seq + 1;
    let epoch = head.epoch + 1;
    let entry = NewEntry {
        seq,
        kind: EntryKind::Commit,
        epoch: head.epoch,
        sender,
        message_id: upload.message_id,
        data: &upload.commit,
    };
    insert_entry(conn, group, &entry)?;
    conn.prepare_cached("UPDATE groups SET epoch = ?2, last_seq = ?3 WHERE group_id = ?1")?
        .execute(params![
            group.as_bytes(),
            to_sql(epoch, "epoch")?,
            to_sql(seq, "seq")?
        ])?;
    for device in &upload.remove_devices {
        let was_member = conn
            .prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND device_id = ?2")?
            .execute(params![group.as_bytes(), device.as_bytes()])?
            > 0;
        // Only a member departs: a commit cannot open the log to others.
        if was_member {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO group_departures (group_id, device_id, last_seq, epoch)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                group.as_bytes(),
                device.as_bytes(),
                to_sql(seq, "seq")?,
                to_sql(epoch, "epoch")?
            ])?;
        }
    }
    for device in &upload.add_devices {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO group_members (group_id, device_id) VALUES (?1, ?2)",
        )?
        .execute(params![group.as_bytes(), device.as_bytes()])?;
        conn.prepare_cached("DELETE FROM group_departures WHERE group_id = ?1 AND device_id = ?2")?
            .execute(params![group.as_bytes(), device.as_bytes()])?;
    }
    let mut welcomed = Vec::new();
    if let Some(welcome) = &upload.welcome {
        super::inbox::deliver_welcome(conn, group, sender, &upload.add_devices, welcome)?;
        welcomed.clone_from(&upload.add_devices);
    }
    Ok(AppendOutcome {
        appended: Appended { seq, epoch },
        fresh: true,
        welcomed,
    })
}

/// Appends with one insert and one update, whatever the group's size.
pub(super) fn append_message(
    conn: &Connection,
    group: GroupId,
    sender: DeviceId,
    message_id: MessageId,
    epoch: u64,
    data: &[u8],
) -> Result<AppendOutcome, StoreError> {
    let head = head(conn, group)?.ok_or(StoreError::UnknownGroup(group))?;
    require_member(conn, group, sender)?;
    let retry = earlier_entry(
        conn,
        group,
        message_id,
        sender,
        EntryKind::Application,
        data,
    )?;
    if let Some((seq, epoch)) = retry {
        return Ok(AppendOutcome {
            appended: Appended { seq, epoch },
            fresh: false,
            welcomed: Vec::new(),
        });
    }
    // A message encrypted in an older epoch could not be read by members
    // added since: the sender must catch up and encrypt again.
    if epoch != head.epoch {
        return Err(StoreError::StaleEpoch {
            current: head.epoch,
        });
    }
    let seq = head.last_seq + 1;
    let entry = NewEntry {
        seq,
        kind: EntryKind::Application,
        epoch: head.epoch,
        sender,
        message_id,
        data,
    };
    insert_entry(conn, group, &entry)?;
    conn.prepare_cached("UPDATE groups SET last_seq = ?2 WHERE group_id = ?1")?
        .execute(params![group.as_bytes(), to_sql(seq, "seq")?])?;
    Ok(AppendOutcome {
        appended: Appended {
            seq,
            epoch: head.epoch,
        },
        fresh: true,
        welcomed: Vec::new(),
    })
}

pub(super) fn read_log(
    conn: &Connection,
    group: GroupId,
    reader: DeviceId,
    after: u64,
    limit: u32,
) -> Result<LogPage, StoreError> {
    let mut head = head(conn, group)?.ok_or(StoreError::UnknownGroup(group))?;
    if !is_member(conn, group, reader)? {
        // A removed device reads up to its removal, and learns nothing of
        // the group's later life.
        let departure: Option<(i64, i64)> = conn
            .prepare_cached(
                "SELECT last_seq, epoch FROM group_departures
                 WHERE group_id = ?1 AND device_id = ?2",
            )?
            .query_row(params![group.as_bytes(), reader.as_bytes()], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        let Some((last_seq, epoch)) = departure else {
            return Err(StoreError::NotMember {
                group,
                device: reader,
            });
        };
        head = Head {
            epoch: from_sql(epoch, "epoch")?,
            last_seq: from_sql(last_seq, "seq")?,
        };
    }
    let mut query = conn.prepare_cached(
        "SELECT seq, kind, epoch, sender, message_id, data FROM log
         WHERE group_id = ?1 AND seq > ?2 AND seq <= ?4 ORDER BY seq LIMIT ?3",
    )?;
    let rows = query.query_map(
        params![
            group.as_bytes(),
            to_sql(after, "cursor")?,
            limit,
            to_sql(head.last_seq, "seq")?
        ],
        |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                DeviceId::from_bytes(row.get(3)?),
                MessageId::from_bytes(row.get(4)?),
                row.get::<_, Vec<u8>>(5)?,
            ))
        },
    )?;
    let mut entries = Vec::new();
    for row in rows {
        let (seq, kind, epoch, sender, message_id, data) = row?;
        entries.push(LogEntry {
            seq: from_sql(seq, "seq")?,
            kind: parse_kind(&kind)?,
            epoch: from_sql(epoch, "epoch")?,
            sender,
            message_id,
            data,
        });
    }
    Ok(LogPage {
        entries,
        epoch: head.epoch,
        last_seq: head.last_seq,
    })
}

pub(super) fn members(conn: &Connection, group: GroupId) -> Result<Vec<DeviceId>, StoreError> {
    let members = conn
        .prepare_cached("SELECT device_id FROM group_members WHERE group_id = ?1")?
        .query_map([group.as_bytes()], |row| {
            Ok(DeviceId::from_bytes(row.get(0)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(members)
}

pub(super) fn groups_of(conn: &Connection, device: DeviceId) -> Result<Vec<GroupId>, StoreError> {
    let groups = conn
        .prepare_cached("SELECT group_id FROM group_members WHERE device_id = ?1")?
        .query_map([device.as_bytes()], |row| {
            Ok(GroupId::from_bytes(row.get(0)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(groups)
}

fn head(conn: &Connection, group: GroupId) -> Result<Option<Head>, StoreError> {
    let row: Option<(i64, i64)> = conn
        .prepare_cached("SELECT epoch, last_seq FROM groups WHERE group_id = ?1")?
        .query_row([group.as_bytes()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(epoch, last_seq)| {
        Ok(Head {
            epoch: from_sql(epoch, "epoch")?,
            last_seq: from_sql(last_seq, "seq")?,
        })
    })
    .transpose()
}

/// Creates a group at epoch 0 with `creator` as its only member.
fn create(conn: &Connection, group: GroupId, creator: DeviceId) -> Result<Head, StoreError> {
    conn.prepare_cached("INSERT INTO groups (group_id, epoch, last_seq) VALUES (?1, 0, 0)")?
        .execute([group.as_bytes()])?;
    conn.prepare_cached("INSERT INTO group_members (group_id, device_id) VALUES (?1, ?2)")?
        .execute(params![group.as_bytes(), creator.as_bytes()])?;
    Ok(Head {
        epoch: 0,
        last_seq: 0,
    })
}

fn is_member(conn: &Connection, group: GroupId, device: DeviceId) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM group_members WHERE group_id = ?1 AND device_id = ?2)",
        )?
        .query_row(params![group.as_bytes(), device.as_bytes()], |row| {
            row.get(0)
        })?)
}

fn require_member(conn: &Connection, group: GroupId, device: DeviceId) -> Result<(), StoreError> {
    if !is_member(conn, group, device)? {
        return Err(StoreError::NotMember { group, device });
    }
    Ok(())
}

/// If `message_id` is already in the group's log: its `(seq, epoch)` when the
/// entry is this very upload (a retry), else [`StoreError::DuplicateMessageId`].
fn earlier_entry(
    conn: &Connection,
    group: GroupId,
    message_id: MessageId,
    sender: DeviceId,
    kind: EntryKind,
    data: &[u8],
) -> Result<Option<(u64, u64)>, StoreError> {
    let earlier = conn
        .prepare_cached(
            "SELECT seq, kind, epoch, sender, data FROM log
             WHERE group_id = ?1 AND message_id = ?2",
        )?
        .query_row(params![group.as_bytes(), message_id.as_bytes()], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                DeviceId::from_bytes(row.get(3)?),
                row.get::<_, Vec<u8>>(4)?,
            ))
        })
        .optional()?
        .map(|(seq, kind, epoch, sender, data)| {
            Ok::<_, StoreError>(EarlierEntry {
                seq: from_sql(seq, "seq")?,
                kind: parse_kind(&kind)?,
                epoch: from_sql(epoch, "epoch")?,
                sender,
                data,
            })
        })
        .transpose()?;
    retry_of(earlier, message_id, sender, kind, data)
}

fn insert_entry(conn: &Connection, group: GroupId, entry: &NewEntry<'_>) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO log (group_id, seq, kind, epoch, sender, message_id, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        group.as_bytes(),
        to_sql(entry.seq, "seq")?,
        kind_name(entry.kind),
        to_sql(entry.epoch, "epoch")?,
        entry.sender.as_bytes(),
        entry.message_id.as_bytes(),
        entry.data,
    ])?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::sqlite::{inbox, testing};

    fn welcome_bytes(conn: &Connection) -> i64 {
        conn.query_row(
            "SELECT coalesce(sum(length(data)), 0) FROM welcomes",
            [],
            |row| row.get(0),
        )
        .unwrap()
    }

    fn adding(devices: &[DeviceId], welcome: &[u8]) -> CommitUpload {
        CommitUpload {
            epoch: 0,
            message_id: MessageId::random(),
            commit: b"commit".to_vec(),
            welcome: Some(welcome.to_vec()),
            add_devices: devices.to_vec(),
            remove_devices: Vec::new(),
        }
    }

    #[test]
    fn a_welcome_to_three_devices_is_stored_once_and_goes_with_the_last_ack() {
        let conn = testing::database();
        let creator = testing::device(&conn, "alice");
        let added: Vec<DeviceId> = (0..3).map(|_| testing::device(&conn, "bob")).collect();
        let welcome = vec![0x5a; 10_000];
        let group = GroupId::random();
        let upload = adding(&added, &welcome);
        let outcome = append_commit(&conn, group, creator, &upload).unwrap();
        assert_eq!(outcome.welcomed, added);
        assert_eq!(testing::rows(&conn, "welcomes"), 1);
        assert_eq!(welcome_bytes(&conn), 10_000, "the bytes are stored once");
        assert_eq!(testing::rows(&conn, "inbox"), 3);
        // A retry of the commit stores nothing more.
        assert!(!append_commit(&conn, group, creator, &upload).unwrap().fresh);
        assert_eq!(testing::rows(&conn, "welcomes"), 1);

        let mut ids = Vec::new();
        for device in &added {
            let page = inbox::read(&conn, *device, 0, 500).unwrap();
            assert_eq!(page.items.len(), 1);
            assert_eq!(page.items[0].data, welcome);
            assert_eq!(page.items[0].sender, creator);
            ids.push(page.items[0].id);
        }
        for (device, id) in added.iter().zip(&ids).take(2) {
            assert_eq!(inbox::ack(&conn, *device, &[*id]).unwrap(), 1);
            assert_eq!(testing::rows(&conn, "welcomes"), 1, "still referenced");
        }
        // Another device's ack of the last item deletes nothing.
        assert_eq!(inbox::ack(&conn, added[0], &[ids[2]]).unwrap(), 0);
        assert_eq!(testing::rows(&conn, "welcomes"), 1);
        assert_eq!(inbox::ack(&conn, added[2], &[ids[2]]).unwrap(), 1);
        assert_eq!(testing::rows(&conn, "welcomes"), 0);
        assert_eq!(testing::rows(&conn, "inbox"), 0);
    }

    #[test]
    fn a_removed_device_releases_its_share_of_a_welcome() {
        let conn = testing::database();
        let creator = testing::device(&conn, "alice");
        let added: Vec<DeviceId> = (0..2).map(|_| testing::device(&conn, "bob")).collect();
        let upload = adding(&added, b"welcome");
        append_commit(&conn, GroupId::random(), creator, &upload).unwrap();
        let remove = |device: &DeviceId| {
            // What a device-list update does to a device it drops.
            conn.execute(
                "DELETE FROM devices WHERE device_id = ?1",
                [device.as_bytes()],
            )
            .unwrap();
        };
        remove(&added[0]);
        assert_eq!(testing::rows(&conn, "welcomes"), 1);
        let page = inbox::read(&conn, added[1], 0, 500).unwrap();
        assert_eq!(page.items[0].data, b"welcome");
        remove(&added[1]);
        assert_eq!(testing::rows(&conn, "welcomes"), 0);
    }

    #[test]
    fn a_welcome_without_added_devices_is_not_stored() {
        let conn = testing::database();
        let creator = testing::device(&conn, "alice");
        let upload = adding(&[], b"welcome for nobody");
        append_commit(&conn, GroupId::random(), creator, &upload).unwrap();
        assert_eq!(testing::rows(&conn, "welcomes"), 0);
    }
}
