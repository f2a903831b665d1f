//! Per-device inboxes: reading after a cursor, acknowledging, and what a
//! device's removal takes along.

use rempart_proto::GroupId;
use rempart_proto::api::InboxItem;

use crate::support::{Db, Item, commit, inbox, register, welcome};

/// An item without its id.
fn item(item: &InboxItem) -> Item {
    (item.kind, item.group, item.sender, item.data.clone())
}

/// Reads page after a cursor; an ack deletes only the acknowledging
/// device's own items and says how many there were.
pub async fn read_and_ack(store: Db) {
    let alice = register(&store, "alice", 1).await;
    let bob = register(&store, "bob", 2).await;
    let (a0, b0, b1) = (alice.id(0), bob.id(0), bob.id(1));
    let (g1, g2) = (GroupId::random(), GroupId::random());
    store
        .append_commit(g1, a0, commit(0, &[b0, b1], Some(b"w1")))
        .await
        .unwrap();
    store
        .append_commit(g2, a0, commit(0, &[b0], Some(b"w2")))
        .await
        .unwrap();

    let items = store.read_inbox(b0, 0, 100).await.unwrap().items;
    assert_eq!(
        items.iter().map(item).collect::<Vec<_>>(),
        vec![welcome(g1, a0, b"w1"), welcome(g2, a0, b"w2")]
    );
    let (first, second) = (items[0].id, items[1].id);
    assert!(first < second);
    let page = |after, limit| {
        let store = store.clone();
        async move {
            let items = store.read_inbox(b0, after, limit).await.unwrap().items;
            items.iter().map(|i| i.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(page(first, 100).await, vec![second]);
    assert_eq!(page(0, 1).await, vec![first]);
    assert_eq!(page(second, 100).await, Vec::<u64>::new());
    let theirs = store.read_inbox(b1, 0, 100).await.unwrap().items;
    assert_eq!(theirs.len(), 1);
    let theirs = theirs[0].id;

    // Ids are a device's own: acking ids another device holds (and this one
    // does not) deletes nothing of that device's inbox.
    let not_theirs: Vec<u64> = [first, second]
        .into_iter()
        .filter(|id| *id != theirs)
        .collect();
    assert_eq!(store.ack_inbox(b1, not_theirs).await.unwrap(), 0);
    assert_eq!(page(0, 100).await, vec![first, second]);
    assert_eq!(inbox(&store, b1).await, vec![welcome(g1, a0, b"w1")]);

    let absent = second.max(theirs) + 1_000;
    assert_eq!(
        store
            .ack_inbox(b0, vec![first, absent, u64::MAX])
            .await
            .unwrap(),
        1
    );
    assert_eq!(inbox(&store, b0).await, vec![welcome(g2, a0, b"w2")]);
    assert_eq!(store.ack_inbox(b0, vec![first]).await.unwrap(), 0);
    assert_eq!(store.ack_inbox(b0, Vec::new()).await.unwrap(), 0);
    // Bob's other device still has its copy of the Welcome both got.
    assert_eq!(inbox(&store, b1).await, vec![welcome(g1, a0, b"w1")]);
    assert_eq!(store.ack_inbox(b0, vec![second]).await.unwrap(), 1);
    assert!(inbox(&store, b0).await.is_empty());
    assert_eq!(store.ack_inbox(b1, vec![theirs]).await.unwrap(), 1);
    assert!(inbox(&store, b1).await.is_empty());
}

/// A device dropped from its account's list loses its inbox; the other
/// recipients of the same Welcome keep theirs.
pub async fn removed_device_loses_its_inbox(store: Db) {
    let alice = register(&store, "alice", 1).await;
    let mut bob = register(&store, "bob", 2).await;
    let (a0, b0, b1) = (alice.id(0), bob.id(0), bob.id(1));
    let group = GroupId::random();
    store
        .append_commit(group, a0, commit(0, &[b0, b1], Some(b"welcome")))
        .await
        .unwrap();
    let items = store.read_inbox(b1, 0, 100).await.unwrap().items;
    assert_eq!(items.len(), 1);

    bob.devices.truncate(1);
    assert_eq!(
        store.replace_device_list(b0, bob.list(2)).await.unwrap(),
        vec![b1]
    );
    assert!(inbox(&store, b1).await.is_empty());
    assert_eq!(store.ack_inbox(b1, vec![items[0].id]).await.unwrap(), 0);
    assert_eq!(
        inbox(&store, b0).await,
        vec![welcome(group, a0, b"welcome")]
    );
}
