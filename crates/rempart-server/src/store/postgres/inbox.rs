//! Per-device inboxes (Welcome messages).
//!
//! A Welcome is stored once, in `welcomes`, however many devices it adds;
//! each recipient's inbox row refers to it, and a trigger deletes it with the
//! last such row. An item's id comes from a counter in its device's row,
//! which the delivering transaction holds locked until it commits: the ids
//! of one device commit in increasing order, so a reader's cursor never
//! passes an id whose item is yet to appear.

use std::collections::HashSet;

use deadpool_postgres::{Client, Transaction};
use rempart_proto::api::{InboxItem, InboxKind, InboxPage};
use rempart_proto::{DeviceId, GroupId};

use super::transaction::{device_ids, fixed, from_sql, to_sql};
use crate::store::StoreError;

/// Up to `limit` items of `device`'s inbox after `after`, in id order.
pub(super) async fn read(
    conn: &Client,
    device: DeviceId,
    after: u64,
    limit: u32,
) -> Result<InboxPage, StoreError> {
    let query = conn
        .prepare_cached(
            "SELECT i.id, i.kind, i.group_id, i.sender, w.data
             FROM inbox i JOIN welcomes w ON w.id = i.welcome_id
             WHERE i.device_id = $1 AND i.id > $2 ORDER BY i.id LIMIT $3",
        )
        .await?;
    let rows = conn
        .query(
            &query,
            &[
                &device.as_bytes().as_slice(),
                &to_sql(after, "cursor")?,
                &i64::from(limit),
            ],
        )
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let kind = match row.try_get::<_, &str>(1)? {
            "welcome" => InboxKind::Welcome,
            other => return Err(StoreError::Corrupt(format!("inbox item kind {other:?}"))),
        };
        items.push(InboxItem {
            id: from_sql(row.try_get(0)?, "inbox id")?,
            kind,
            group: GroupId::from_bytes(fixed(row, 2, "group id")?),
            sender: DeviceId::from_bytes(fixed(row, 3, "sender")?),
            data: row.try_get(4)?,
        });
    }
    Ok(InboxPage { items })
}

/// Puts one Welcome from `sender` into the inbox of each of `devices` (once
/// per device, however often it is listed), storing its bytes once. The
/// devices must be registered.
pub(super) async fn deliver_welcome(
    tx: &Transaction<'_>,
    group: GroupId,
    sender: DeviceId,
    devices: &[DeviceId],
    welcome: &[u8],
) -> Result<(), StoreError> {
    if devices.is_empty() {
        return Ok(());
    }
    let mut seen = HashSet::with_capacity(devices.len());
    let devices: Vec<DeviceId> = devices
        .iter()
        .copied()
        .filter(|d| seen.insert(*d))
        .collect();
    let deliver = tx
        .prepare_cached(
            "WITH welcome AS (
                 INSERT INTO welcomes (data) VALUES ($4) RETURNING id
             ),
             numbered AS (
                 UPDATE devices SET inbox_last_id = inbox_last_id + 1
                 WHERE device_id = ANY($1)
                 RETURNING device_id, inbox_last_id
             )
             INSERT INTO inbox (device_id, id, kind, group_id, sender, welcome_id)
             SELECT numbered.device_id, numbered.inbox_last_id, 'welcome', $2, $3, welcome.id
             FROM numbered CROSS JOIN welcome",
        )
        .await?;
    let delivered = tx
        .execute(
            &deliver,
            &[
                &device_ids(&devices),
                &group.as_bytes().as_slice(),
                &sender.as_bytes().as_slice(),
                &welcome,
            ],
        )
        .await?;
    if delivered != devices.len() as u64 {
        return Err(StoreError::Backend(
            format!(
                "a Welcome reached {delivered} of {} registered devices",
                devices.len()
            )
            .into(),
        ));
    }
    Ok(())
}

/// Deletes items of `device`'s inbox; a Welcome goes with its last item.
pub(super) async fn ack(conn: &Client, device: DeviceId, ids: &[u64]) -> Result<u64, StoreError> {
    // An id beyond the bigint range names no item.
    let ids: Vec<i64> = ids
        .iter()
        .filter_map(|&id| i64::try_from(id).ok())
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let delete = conn
        .prepare_cached("DELETE FROM inbox WHERE device_id = $1 AND id = ANY($2)")
        .await?;
    Ok(conn
        .execute(&delete, &[&device.as_bytes().as_slice(), &ids])
        .await?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use rempart_proto::MessageId;
    use rempart_proto::api::CommitUpload;

    use super::*;
    use crate::store::Store as _;
    use crate::store::postgres::testing::{TestDatabase, backend_pid};

    /// A commit creating a group and welcoming `devices`.
    fn welcoming(devices: &[DeviceId], welcome: &[u8]) -> CommitUpload {
        CommitUpload {
            epoch: 0,
            message_id: MessageId::random(),
            commit: b"commit".to_vec(),
            welcome: Some(welcome.to_vec()),
            add_devices: devices.to_vec(),
            remove_devices: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_device_inbox_ids_commit_in_order_so_a_cursor_skips_none() {
        let Some(db) = TestDatabase::open("inbox_order").await else {
            return;
        };
        let alice = db.device("alice").await;
        let bob = db.device("bob").await;

        // A delivery that took id 1 and has not committed yet...
        let mut conn = db.store.conn().await.unwrap();
        let tx = conn.transaction().await.unwrap();
        let holder = backend_pid(&tx).await;
        deliver_welcome(&tx, GroupId::random(), alice, &[bob], b"first")
            .await
            .unwrap();

        // ...makes the next delivery to that device wait for it.
        let store = db.store.clone();
        let next = tokio::spawn(async move {
            store
                .append_commit(GroupId::random(), alice, welcoming(&[bob], b"second"))
                .await
        });
        assert!(
            db.blocked_by(holder, &next).await,
            "the second delivery did not wait for the first to commit"
        );
        let page = db.store.read_inbox(bob, 0, 500).await.unwrap();
        assert!(page.items.is_empty(), "nothing committed yet");

        tx.commit().await.unwrap();
        assert!(next.await.unwrap().unwrap().fresh);
        let page = db.store.read_inbox(bob, 0, 500).await.unwrap();
        let items: Vec<(u64, Vec<u8>)> = page.items.into_iter().map(|i| (i.id, i.data)).collect();
        assert_eq!(items, [(1, b"first".to_vec()), (2, b"second".to_vec())]);
        // Ids are per device: another device's inbox starts at 1.
        let carol = db.device("carol").await;
        let upload = welcoming(&[carol], b"third");
        db.store
            .append_commit(GroupId::random(), alice, upload)
            .await
            .unwrap();
        let page = db.store.read_inbox(carol, 0, 500).await.unwrap();
        assert_eq!(page.items[0].id, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_devices_acknowledging_a_welcome_at_once_release_it() {
        let Some(db) = TestDatabase::open("inbox_release").await else {
            return;
        };
        let alice = db.device("alice").await;
        let (bob, carol) = (db.device("bob").await, db.device("carol").await);
        let upload = welcoming(&[bob, carol], b"welcome");
        db.store
            .append_commit(GroupId::random(), alice, upload)
            .await
            .unwrap();
        assert_eq!(db.rows("welcomes").await, 1);

        // Bob's acknowledgement, not committed yet, while Carol's runs.
        let mut conn = db.store.conn().await.unwrap();
        let tx = conn.transaction().await.unwrap();
        let holder = backend_pid(&tx).await;
        let acked = tx
            .execute(
                "DELETE FROM inbox WHERE device_id = $1",
                &[&bob.as_bytes().as_slice()],
            )
            .await
            .unwrap();
        assert_eq!(acked, 1);
        let store = db.store.clone();
        let carol_ack = tokio::spawn(async move { store.ack_inbox(carol, vec![1]).await });
        // Carol's waits for Bob's if the trigger serialises them; either way
        // the Welcome must be gone once both committed.
        db.blocked_by(holder, &carol_ack).await;
        tx.commit().await.unwrap();
        assert_eq!(carol_ack.await.unwrap().unwrap(), 1);
        assert_eq!(db.rows("inbox").await, 0);
        assert_eq!(db.rows("welcomes").await, 0, "the Welcome was left behind");
    }
}
