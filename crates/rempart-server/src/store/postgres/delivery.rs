//! Group logs: ordering of commits by epoch, application messages, membership.
//!
//! An append holds its group's row lock from its first read to its commit:
//! appends to one group take turns, each checks the epoch and `seq` the
//! previous one stored, and of several commits built on one epoch exactly
//! one is appended. An application message is a constant number of
//! statements whatever the group's size.

use std::collections::HashSet;

use deadpool_postgres::{Client, Transaction};
use rempart_proto::api::{Appended, CommitUpload, EntryKind, LogEntry, LogPage};
use rempart_proto::{DeviceId, GroupId, MessageId};
use tokio_postgres::types::ToSql;

use super::transaction::{device_ids, fixed, from_sql, to_sql};
use crate::store::log::{EarlierEntry, kind_name, parse_kind, retry_of};
use crate::store::{AppendOutcome, StoreError};

/// A group's position: its current epoch and the last `seq` of its log.
struct Head {
    epoch: u64,
    last_seq: u64,
}

/// What an append must know of its group, read under the group's lock
/// (the sender is a member).
struct Locked {
    head: Head,
    /// The entry already in the log under the upload's message id.
    earlier: Option<EarlierEntry>,
}

/// A log entry about to be written, and the group's epoch after it.
struct NewEntry<'a> {
    seq: u64,
    kind: EntryKind,
    epoch: u64,
    sender: DeviceId,
    message_id: MessageId,
    data: &'a [u8],
    epoch_after: u64,
}

/// [`Store::append_commit`](crate::store::Store::append_commit), under the
/// group's row lock.
pub(super) async fn append_commit(
    tx: &Transaction<'_>,
    group: GroupId,
    sender: DeviceId,
    upload: &CommitUpload,
) -> Result<AppendOutcome, StoreError> {
    if upload.epoch == 0 {
        create(tx, group, sender).await?;
    }
    let locked = lock(tx, group, sender, upload.message_id).await?;
    let head = locked.head;
    if let Some((seq, built_on)) = retry_of(
        locked.earlier,
        upload.message_id,
        sender,
        EntryKind::Commit,
        &upload.commit,
    )? {
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
    require_registered(tx, &upload.add_devices).await?;

    let seq = head.last_seq + 1;
    let epoch = head.epoch + 1;
    let entry = NewEntry {
        seq,
        kind: EntryKind::Commit,
        epoch: head.epoch,
        sender,
        message_id: upload.message_id,
        data: &upload.commit,
        epoch_after: epoch,
    };
    insert_entry(tx, group, &entry).await?;
    let gid = group.as_bytes().as_slice();
    if !upload.remove_devices.is_empty() {
        // Only a member departs: a commit cannot open the log to others.
        let remove = tx
            .prepare_cached(
                "WITH removed AS (
                     DELETE FROM group_members WHERE group_id = $1 AND device_id = ANY($2)
                     RETURNING device_id
                 )
                 INSERT INTO group_departures (group_id, device_id, last_seq, epoch)
                 SELECT $1, device_id, $3, $4 FROM removed
                 ON CONFLICT (group_id, device_id)
                 DO UPDATE SET last_seq = EXCLUDED.last_seq, epoch = EXCLUDED.epoch",
            )
            .await?;
        tx.execute(
            &remove,
            &[
                &gid,
                &device_ids(&upload.remove_devices),
                &to_sql(seq, "seq")?,
                &to_sql(epoch, "epoch")?,
            ],
        )
        .await?;
    }
    if !upload.add_devices.is_empty() {
        let add = tx
            .prepare_cached(
                "INSERT INTO group_members (group_id, device_id)
                 SELECT $1, device_id FROM unnest($2::bytea[]) AS added (device_id)
                 ON CONFLICT DO NOTHING",
            )
            .await?;
        tx.execute(&add, &[&gid, &device_ids(&upload.add_devices)])
            .await?;
        let returned = tx
            .prepare_cached(
                "DELETE FROM group_departures WHERE group_id = $1 AND device_id = ANY($2)",
            )
            .await?;
        tx.execute(&returned, &[&gid, &device_ids(&upload.add_devices)])
            .await?;
    }
    let mut welcomed = Vec::new();
    if let Some(welcome) = &upload.welcome {
        super::inbox::deliver_welcome(tx, group, sender, &upload.add_devices, welcome).await?;
        welcomed.clone_from(&upload.add_devices);
    }
    Ok(AppendOutcome {
        appended: Appended { seq, epoch },
        fresh: true,
        welcomed,
    })
}

/// [`Store::append_message`](crate::store::Store::append_message), under the
/// group's row lock.
pub(super) async fn append_message(
    tx: &Transaction<'_>,
    group: GroupId,
    sender: DeviceId,
    message_id: MessageId,
    epoch: u64,
    data: &[u8],
) -> Result<AppendOutcome, StoreError> {
    let locked = lock(tx, group, sender, message_id).await?;
    let head = locked.head;
    if let Some((seq, epoch)) = retry_of(
        locked.earlier,
        message_id,
        sender,
        EntryKind::Application,
        data,
    )? {
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
        epoch_after: head.epoch,
    };
    insert_entry(tx, group, &entry).await?;
    Ok(AppendOutcome {
        appended: Appended {
            seq,
            epoch: head.epoch,
        },
        fresh: true,
        welcomed: Vec::new(),
    })
}

/// The group's head, the reader's membership and the entries, in one
/// statement (one snapshot).
pub(super) async fn read_log(
    conn: &Client,
    group: GroupId,
    reader: DeviceId,
    after: u64,
    limit: u32,
) -> Result<LogPage, StoreError> {
    let query = conn
        .prepare_cached(
            "SELECT g.epoch, g.last_seq, m.member, d.last_seq, d.epoch,
                    l.seq, l.kind, l.epoch, l.sender, l.message_id, l.data
             FROM groups g
             CROSS JOIN LATERAL (
                 SELECT EXISTS (
                     SELECT 1 FROM group_members
                     WHERE group_id = g.group_id AND device_id = $2
                 ) AS member
             ) m
             LEFT JOIN group_departures d
                 ON d.group_id = g.group_id AND d.device_id = $2 AND NOT m.member
             LEFT JOIN LATERAL (
                 SELECT seq, kind, epoch, sender, message_id, data FROM log
                 WHERE log.group_id = g.group_id AND log.seq > $3
                   AND (m.member OR log.seq <= d.last_seq)
                 ORDER BY seq LIMIT $4
             ) l ON true
             WHERE g.group_id = $1
             ORDER BY l.seq",
        )
        .await?;
    let rows = conn
        .query(
            &query,
            &[
                &group.as_bytes().as_slice(),
                &reader.as_bytes().as_slice(),
                &to_sql(after, "cursor")?,
                &i64::from(limit),
            ],
        )
        .await?;
    let Some(first) = rows.first() else {
        return Err(StoreError::UnknownGroup(group));
    };
    let head = if first.try_get::<_, bool>(2)? {
        Head {
            epoch: from_sql(first.try_get(0)?, "epoch")?,
            last_seq: from_sql(first.try_get(1)?, "seq")?,
        }
    } else {
        // A removed device reads up to its removal, and learns nothing of
        // the group's later life.
        match (
            first.try_get::<_, Option<i64>>(3)?,
            first.try_get::<_, Option<i64>>(4)?,
        ) {
            (Some(last_seq), Some(epoch)) => Head {
                epoch: from_sql(epoch, "epoch")?,
                last_seq: from_sql(last_seq, "seq")?,
            },
            _ => {
                return Err(StoreError::NotMember {
                    group,
                    device: reader,
                });
            }
        }
    };
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        // A page without entries is one row of NULLs.
        let Some(seq) = row.try_get::<_, Option<i64>>(5)? else {
            continue;
        };
        entries.push(LogEntry {
            seq: from_sql(seq, "seq")?,
            kind: parse_kind(row.try_get(6)?)?,
            epoch: from_sql(row.try_get(7)?, "epoch")?,
            sender: DeviceId::from_bytes(fixed(row, 8, "sender")?),
            message_id: MessageId::from_bytes(fixed(row, 9, "message id")?),
            data: row.try_get(10)?,
        });
    }
    Ok(LogPage {
        entries,
        epoch: head.epoch,
        last_seq: head.last_seq,
    })
}

/// The devices the server counts as members of a group, by id.
pub(super) async fn members(conn: &Client, group: GroupId) -> Result<Vec<DeviceId>, StoreError> {
    let query = conn
        .prepare_cached(
            "SELECT device_id FROM group_members WHERE group_id = $1 ORDER BY device_id",
        )
        .await?;
    conn.query(&query, &[&group.as_bytes().as_slice()])
        .await?
        .iter()
        .map(|row| Ok(DeviceId::from_bytes(fixed(row, 0, "device id")?)))
        .collect()
}

pub(super) async fn groups_of(conn: &Client, device: DeviceId) -> Result<Vec<GroupId>, StoreError> {
    let query = conn
        .prepare_cached("SELECT group_id FROM group_members WHERE device_id = $1")
        .await?;
    conn.query(&query, &[&device.as_bytes().as_slice()])
        .await?
        .iter()
        .map(|row| Ok(GroupId::from_bytes(fixed(row, 0, "group id")?)))
        .collect()
}

/// Creates the group at epoch 0 with `creator` as its only member, unless it
/// exists. A concurrent creation makes this wait for its outcome.
async fn create(tx: &Transaction<'_>, group: GroupId, creator: DeviceId) -> Result<(), StoreError> {
    let create = tx
        .prepare_cached(
            "WITH created AS (
                 INSERT INTO groups (group_id, epoch, last_seq) VALUES ($1, 0, 0)
                 ON CONFLICT (group_id) DO NOTHING
                 RETURNING group_id
             )
             INSERT INTO group_members (group_id, device_id)
             SELECT group_id, $2 FROM created",
        )
        .await?;
    tx.execute(
        &create,
        &[&group.as_bytes().as_slice(), &creator.as_bytes().as_slice()],
    )
    .await?;
    Ok(())
}

/// Locks the group's row, then reads the sender's membership and the entry
/// under `message_id`; [`StoreError::UnknownGroup`] or
/// [`StoreError::NotMember`] if the append cannot go on.
async fn lock(
    tx: &Transaction<'_>,
    group: GroupId,
    sender: DeviceId,
    message_id: MessageId,
) -> Result<Locked, StoreError> {
    let (lock, check) = tokio::try_join!(
        tx.prepare_cached(
            "SELECT epoch, last_seq FROM groups WHERE group_id = $1 FOR NO KEY UPDATE"
        ),
        tx.prepare_cached(
            "SELECT m.member, e.seq, e.kind, e.epoch, e.sender, e.data
             FROM (
                 SELECT EXISTS (
                     SELECT 1 FROM group_members WHERE group_id = $1 AND device_id = $2
                 ) AS member
             ) m
             LEFT JOIN log e ON e.group_id = $1 AND e.message_id = $3",
        ),
    )?;
    let (gid, sid, mid) = (
        group.as_bytes().as_slice(),
        sender.as_bytes().as_slice(),
        message_id.as_bytes().as_slice(),
    );
    let lock_params: [&(dyn ToSql + Sync); 1] = [&gid];
    let check_params: [&(dyn ToSql + Sync); 3] = [&gid, &sid, &mid];
    // Sent together, but the check runs after the lock is granted, in a
    // snapshot that holds what the appends before this one committed.
    let (head, check) = tokio::try_join!(
        tx.query_opt(&lock, &lock_params),
        tx.query_one(&check, &check_params),
    )?;
    let head = head.ok_or(StoreError::UnknownGroup(group))?;
    if !check.try_get::<_, bool>(0)? {
        return Err(StoreError::NotMember {
            group,
            device: sender,
        });
    }
    let earlier = match check.try_get::<_, Option<i64>>(1)? {
        None => None,
        Some(seq) => Some(EarlierEntry {
            seq: from_sql(seq, "seq")?,
            kind: parse_kind(check.try_get(2)?)?,
            epoch: from_sql(check.try_get(3)?, "epoch")?,
            sender: DeviceId::from_bytes(fixed(&check, 4, "sender")?),
            data: check.try_get(5)?,
        }),
    };
    Ok(Locked {
        head: Head {
            epoch: from_sql(head.try_get(0)?, "epoch")?,
            last_seq: from_sql(head.try_get(1)?, "seq")?,
        },
        earlier,
    })
}

/// Fails with [`StoreError::UnknownDevice`] (the first such in `devices`)
/// unless every device is registered; the registered ones stay so until the
/// transaction ends (a concurrent removal waits), so that their inbox rows
/// can be written.
async fn require_registered(tx: &Transaction<'_>, devices: &[DeviceId]) -> Result<(), StoreError> {
    if devices.is_empty() {
        return Ok(());
    }
    let query = tx
        .prepare_cached("SELECT device_id FROM devices WHERE device_id = ANY($1) FOR KEY SHARE")
        .await?;
    let registered: HashSet<DeviceId> = tx
        .query(&query, &[&device_ids(devices)])
        .await?
        .iter()
        .map(|row| Ok(DeviceId::from_bytes(fixed(row, 0, "device id")?)))
        .collect::<Result<_, StoreError>>()?;
    match devices.iter().find(|device| !registered.contains(device)) {
        Some(device) => Err(StoreError::UnknownDevice(*device)),
        None => Ok(()),
    }
}

/// Writes the entry and moves the group's head past it, in one statement.
async fn insert_entry(
    tx: &Transaction<'_>,
    group: GroupId,
    entry: &NewEntry<'_>,
) -> Result<(), StoreError> {
    let insert = tx
        .prepare_cached(
            "WITH entry AS (
                 INSERT INTO log (group_id, seq, kind, epoch, sender, message_id, data)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
             )
             UPDATE groups SET epoch = $8, last_seq = $2 WHERE group_id = $1",
        )
        .await?;
    tx.execute(
        &insert,
        &[
            &group.as_bytes().as_slice(),
            &to_sql(entry.seq, "seq")?,
            &kind_name(entry.kind),
            &to_sql(entry.epoch, "epoch")?,
            &entry.sender.as_bytes().as_slice(),
            &entry.message_id.as_bytes().as_slice(),
            &entry.data,
            &to_sql(entry.epoch_after, "epoch")?,
        ],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::Store as _;
    use crate::store::postgres::testing::TestDatabase;

    fn commit(epoch: u64, add: &[DeviceId]) -> CommitUpload {
        let message_id = MessageId::random();
        CommitUpload {
            epoch,
            message_id,
            commit: message_id.as_bytes().to_vec(),
            welcome: None,
            add_devices: add.to_vec(),
            remove_devices: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_concurrent_commits_on_one_epoch_exactly_one_is_appended() {
        let Some(db) = TestDatabase::open("log_epoch").await else {
            return;
        };
        let mut members = vec![db.device("alice").await];
        for _ in 0..7 {
            members.push(db.device("bob").await);
        }
        let group = GroupId::random();
        db.store
            .append_commit(group, members[0], commit(0, &members[1..]))
            .await
            .unwrap();

        let commits: Vec<_> = members
            .iter()
            .map(|&member| {
                let store = db.store.clone();
                tokio::spawn(
                    async move { store.append_commit(group, member, commit(1, &[])).await },
                )
            })
            .collect();
        let mut appended = Vec::new();
        for result in commits {
            match result.await.unwrap() {
                Ok(outcome) => appended.push(outcome.appended),
                Err(StoreError::StaleEpoch { current }) => assert_eq!(current, 2),
                Err(other) => panic!("expected StaleEpoch, got {other:?}"),
            }
        }
        assert_eq!(appended.len(), 1, "exactly one commit wins");
        assert_eq!((appended[0].seq, appended[0].epoch), (2, 2));
        let page = db.store.read_log(group, members[0], 0, 500).await.unwrap();
        assert_eq!((page.epoch, page.last_seq, page.entries.len()), (2, 2, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_messages_get_consecutive_seqs() {
        let Some(db) = TestDatabase::open("log_seq").await else {
            return;
        };
        let alice = db.device("alice").await;
        let group = GroupId::random();
        db.store
            .append_commit(group, alice, commit(0, &[]))
            .await
            .unwrap();
        let sends: Vec<_> = (0..16_u8)
            .map(|i| {
                let store = db.store.clone();
                tokio::spawn(async move {
                    store
                        .append_message(group, alice, MessageId::random(), 1, vec![i])
                        .await
                })
            })
            .collect();
        let mut seqs = Vec::new();
        for send in sends {
            seqs.push(send.await.unwrap().unwrap().appended.seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=17).collect::<Vec<u64>>());
        let page = db.store.read_log(group, alice, 1, 500).await.unwrap();
        let logged: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
        assert_eq!(logged, seqs);
    }
}
