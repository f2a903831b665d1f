//! Group logs: creation, membership checks, the epoch rule, idempotent
//! retries, application messages, membership changes and Welcomes.

use rempart_proto::api::{Appended, CommitUpload, EntryKind};
use rempart_proto::{GroupId, MessageId};
use rempart_server::store::StoreError;

use crate::support::{
    Db, Device, assert_err, commit, create_group, inbox, register, sorted, together, welcome,
};

/// Where an append landed, briefly.
fn at(seq: u64, epoch: u64) -> Appended {
    Appended { seq, epoch }
}

/// A commit at epoch 0 creates the group with its sender as member; only
/// members may read or append, and only to groups that exist.
pub async fn create_and_membership_checks(store: Db) {
    let alice = register(&store, "alice", 1).await;
    let bob = register(&store, "bob", 1).await;
    let carol = register(&store, "carol", 1).await;
    let (a0, b0, c0) = (alice.id(0), bob.id(0), carol.id(0));

    let group = GroupId::random();
    let upload = commit(0, &[b0], Some(b"welcome"));
    let outcome = store
        .append_commit(group, a0, upload.clone())
        .await
        .unwrap();
    assert_eq!(outcome.appended, at(1, 1));
    assert!(outcome.fresh);
    assert_eq!(outcome.welcomed, vec![b0]);
    assert_eq!(
        sorted(store.group_members(group).await.unwrap()),
        sorted([a0, b0])
    );
    let page = store.read_log(group, b0, 0, 100).await.unwrap();
    assert_eq!((page.epoch, page.last_seq, page.entries.len()), (1, 1, 1));
    let entry = &page.entries[0];
    assert_eq!(
        (entry.seq, entry.kind, entry.epoch, entry.sender),
        (1, EntryKind::Commit, 0, a0)
    );
    assert_eq!(
        (entry.message_id, &entry.data),
        (upload.message_id, &upload.commit)
    );

    let not_member = |result| {
        assert_err!(
            result,
            StoreError::NotMember { group: g, device } if g == group && device == c0
        );
    };
    not_member(store.read_log(group, c0, 0, 100).await.map(drop));
    not_member(
        store
            .append_message(group, c0, MessageId::random(), 1, b"hi".to_vec())
            .await
            .map(drop),
    );
    not_member(
        store
            .append_commit(group, c0, commit(1, &[], None))
            .await
            .map(drop),
    );

    let unknown = GroupId::random();
    let unknown_group = |result| {
        assert_err!(result, StoreError::UnknownGroup(g) if g == unknown);
    };
    unknown_group(store.read_log(unknown, a0, 0, 100).await.map(drop));
    unknown_group(
        store
            .append_message(unknown, a0, MessageId::random(), 0, b"hi".to_vec())
            .await
            .map(drop),
    );
    unknown_group(
        store
            .append_commit(unknown, a0, commit(1, &[], None))
            .await
            .map(drop),
    );
    assert!(store.group_members(unknown).await.unwrap().is_empty());

    // Epoch 0 again does not create the group anew.
    assert_err!(
        store.append_commit(group, a0, commit(0, &[c0], None)).await,
        StoreError::StaleEpoch { current: 1 }
    );
    // Only registered devices can be added.
    let stranger = Device::new().id;
    assert_err!(
        store.append_commit(group, a0, commit(1, &[stranger], None)).await,
        StoreError::UnknownDevice(device) if device == stranger
    );
    let page = store.read_log(group, a0, 0, 100).await.unwrap();
    assert_eq!((page.epoch, page.last_seq, page.entries.len()), (1, 1, 1));
    assert_eq!(
        sorted(store.group_members(group).await.unwrap()),
        sorted([a0, b0])
    );
}

/// Members racing to commit on the same epoch: one wins, the others learn
/// the new epoch.
pub async fn one_commit_per_epoch_under_concurrency(store: Db) {
    const MEMBERS: usize = 8;
    let alice = register(&store, "alice", MEMBERS).await;
    let group = create_group(&store, alice.id(0), &alice.ids()[1..]).await;

    let results = together(MEMBERS, |i| {
        let (store, sender) = (store.clone(), alice.id(i));
        async move {
            store
                .append_commit(group, sender, commit(1, &[], None))
                .await
        }
    })
    .await;

    let mut winners = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(outcome) => {
                assert_eq!(outcome.appended, at(2, 2));
                assert!(outcome.fresh);
                winners.push(alice.id(i));
            }
            Err(StoreError::StaleEpoch { current: 2 }) => {}
            Err(other) => panic!("expected StaleEpoch {{ current: 2 }}, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one commit wins");
    let page = store.read_log(group, alice.id(0), 0, 100).await.unwrap();
    assert_eq!((page.epoch, page.last_seq, page.entries.len()), (2, 2, 2));
    assert_eq!(page.entries[1].sender, winners[0]);
}

/// A commit sent again with its message id is answered with where it is,
/// even after the group moved on, and stored once; the same id with
/// anything else is refused.
pub async fn retries_and_duplicate_message_ids(store: Db) {
    let alice = register(&store, "alice", 1).await;
    let bob = register(&store, "bob", 1).await;
    let carol = register(&store, "carol", 1).await;
    let (a0, b0, c0) = (alice.id(0), bob.id(0), carol.id(0));
    let group = GroupId::random();

    let first = commit(0, &[b0], Some(b"welcome"));
    let outcome = store.append_commit(group, a0, first.clone()).await.unwrap();
    assert_eq!((outcome.appended, outcome.fresh), (at(1, 1), true));
    let retry = store.append_commit(group, a0, first.clone()).await.unwrap();
    assert_eq!((retry.appended, retry.fresh), (at(1, 1), false));
    assert!(retry.welcomed.is_empty());

    let second = commit(1, &[c0], Some(b"second welcome"));
    let outcome = store
        .append_commit(group, a0, second.clone())
        .await
        .unwrap();
    assert_eq!((outcome.appended, outcome.fresh), (at(2, 2), true));
    for (upload, appended) in [(&first, at(1, 1)), (&second, at(2, 2))] {
        let retry = store
            .append_commit(group, a0, upload.clone())
            .await
            .unwrap();
        assert_eq!((retry.appended, retry.fresh), (appended, false));
        assert!(retry.welcomed.is_empty());
    }
    assert_eq!(
        inbox(&store, b0).await,
        vec![welcome(group, a0, b"welcome")]
    );
    assert_eq!(
        inbox(&store, c0).await,
        vec![welcome(group, a0, b"second welcome")]
    );

    let reused = first.message_id;
    let duplicate = |result| {
        assert_err!(result, StoreError::DuplicateMessageId(id) if id == reused);
    };
    let other_content = CommitUpload {
        commit: b"other content".to_vec(),
        ..first.clone()
    };
    duplicate(
        store
            .append_commit(group, a0, other_content)
            .await
            .map(drop),
    );
    duplicate(
        store
            .append_commit(group, b0, first.clone())
            .await
            .map(drop),
    );
    duplicate(
        store
            .append_message(group, a0, reused, 2, first.commit.clone())
            .await
            .map(drop),
    );
    let page = store.read_log(group, a0, 0, 100).await.unwrap();
    assert_eq!((page.epoch, page.last_seq, page.entries.len()), (2, 2, 2));
}

/// Application messages go to the current epoch's log once; a retry is
/// recognised, a reused id or an old epoch refused.
pub async fn application_messages(store: Db) {
    let alice = register(&store, "alice", 1).await;
    let bob = register(&store, "bob", 1).await;
    let (a0, b0) = (alice.id(0), bob.id(0));
    let group = create_group(&store, a0, &[b0]).await;

    let id = MessageId::random();
    let outcome = store
        .append_message(group, b0, id, 1, b"hello".to_vec())
        .await
        .unwrap();
    assert_eq!((outcome.appended, outcome.fresh), (at(2, 1), true));
    assert!(outcome.welcomed.is_empty());
    let retry = store
        .append_message(group, b0, id, 1, b"hello".to_vec())
        .await
        .unwrap();
    assert_eq!((retry.appended, retry.fresh), (at(2, 1), false));

    let duplicate = |result| {
        assert_err!(result, StoreError::DuplicateMessageId(reused) if reused == id);
    };
    duplicate(
        store
            .append_message(group, b0, id, 1, b"bye".to_vec())
            .await
            .map(drop),
    );
    duplicate(
        store
            .append_message(group, a0, id, 1, b"hello".to_vec())
            .await
            .map(drop),
    );
    for epoch in [0, 2] {
        assert_err!(
            store
                .append_message(group, b0, MessageId::random(), epoch, b"x".to_vec())
                .await,
            StoreError::StaleEpoch { current: 1 }
        );
    }

    let outcome = store
        .append_commit(group, a0, commit(1, &[], None))
        .await
        .unwrap();
    assert_eq!(outcome.appended, at(3, 2));
    assert_err!(
        store
            .append_message(group, b0, MessageId::random(), 1, b"late".to_vec())
            .await,
        StoreError::StaleEpoch { current: 2 }
    );
    let retry = store
        .append_message(group, b0, id, 1, b"hello".to_vec())
        .await
        .unwrap();
    assert_eq!((retry.appended, retry.fresh), (at(2, 1), false));

    let page = store.read_log(group, a0, 0, 100).await.unwrap();
    assert_eq!((page.epoch, page.last_seq), (2, 3));
    let entries: Vec<_> = page
        .entries
        .iter()
        .map(|e| (e.seq, e.kind, e.epoch, e.sender))
        .collect();
    assert_eq!(
        entries,
        vec![
            (1, EntryKind::Commit, 0, a0),
            (2, EntryKind::Application, 1, b0),
            (3, EntryKind::Commit, 1, a0),
        ]
    );
    assert_eq!(
        (page.entries[1].message_id, page.entries[1].data.as_slice()),
        (id, b"hello".as_slice())
    );
}

/// Commits add and remove members; a Welcome reaches each added device's
/// inbox, and only theirs.
pub async fn membership_changes_and_welcomes(store: Db) {
    let alice = register(&store, "alice", 1).await;
    let bob = register(&store, "bob", 2).await;
    let carol = register(&store, "carol", 1).await;
    let (a0, b0, b1, c0) = (alice.id(0), bob.id(0), bob.id(1), carol.id(0));
    let group = GroupId::random();

    let outcome = store
        .append_commit(group, a0, commit(0, &[b0, b1], Some(b"first")))
        .await
        .unwrap();
    assert_eq!(sorted(outcome.welcomed), sorted([b0, b1]));
    for device in [b0, b1] {
        assert_eq!(
            inbox(&store, device).await,
            vec![welcome(group, a0, b"first")]
        );
    }
    for device in [a0, c0] {
        assert!(inbox(&store, device).await.is_empty());
    }

    let swap = CommitUpload {
        remove_devices: vec![b1],
        ..commit(1, &[c0], Some(b"second"))
    };
    let outcome = store.append_commit(group, b0, swap).await.unwrap();
    assert_eq!((outcome.appended, outcome.welcomed), (at(2, 2), vec![c0]));
    assert_eq!(
        sorted(store.group_members(group).await.unwrap()),
        sorted([a0, b0, c0])
    );
    // A device's groups follow its memberships (push routing).
    let other = GroupId::random();
    store
        .append_commit(other, c0, commit(0, &[a0], None))
        .await
        .unwrap();
    assert_eq!(
        sorted(store.device_groups(a0).await.unwrap()),
        sorted([group, other])
    );
    assert_eq!(
        sorted(store.device_groups(c0).await.unwrap()),
        sorted([group, other])
    );
    assert_eq!(store.device_groups(b0).await.unwrap(), vec![group]);
    assert!(store.device_groups(b1).await.unwrap().is_empty());
    assert_eq!(inbox(&store, c0).await, vec![welcome(group, b0, b"second")]);
    assert_eq!(inbox(&store, b0).await, vec![welcome(group, a0, b"first")]);
    let page = store.read_log(group, c0, 2, 100).await.unwrap();
    assert_eq!((page.epoch, page.last_seq, page.entries.len()), (2, 2, 0));

    let not_member = |result| {
        assert_err!(
            result,
            StoreError::NotMember { group: g, device } if g == group && device == b1
        );
    };
    // The removed device reads the log up to the commit that removed it,
    // and nothing of the group's later life.
    let page = store.read_log(group, b1, 0, 100).await.unwrap();
    let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
    assert_eq!((page.epoch, page.last_seq, seqs), (2, 2, vec![1, 2]));
    store
        .append_message(group, a0, MessageId::random(), 2, b"after".to_vec())
        .await
        .unwrap();
    let page = store.read_log(group, b1, 2, 100).await.unwrap();
    assert_eq!((page.epoch, page.last_seq, page.entries.len()), (2, 2, 0));
    // A device that never was a member is not let in by "removing" it.
    let dave = register(&store, "dave", 1).await.id(0);
    let outcome = store
        .append_commit(
            group,
            a0,
            CommitUpload {
                remove_devices: vec![dave],
                ..commit(2, &[], None)
            },
        )
        .await
        .unwrap();
    assert_eq!(outcome.appended, at(4, 3));
    assert_err!(
        store.read_log(group, dave, 0, 100).await,
        StoreError::NotMember { device, .. } if device == dave
    );
    not_member(
        store
            .append_message(group, b1, MessageId::random(), 3, b"hi".to_vec())
            .await
            .map(drop),
    );
    not_member(
        store
            .append_commit(group, b1, commit(3, &[], None))
            .await
            .map(drop),
    );

    // Added back without a Welcome: a member again, nothing delivered.
    let outcome = store
        .append_commit(group, a0, commit(3, &[b1], None))
        .await
        .unwrap();
    assert_eq!(outcome.appended, at(5, 4));
    assert!(outcome.welcomed.is_empty());
    assert_eq!(inbox(&store, b1).await, vec![welcome(group, a0, b"first")]);
    let page = store.read_log(group, b1, 0, 100).await.unwrap();
    assert_eq!((page.epoch, page.last_seq, page.entries.len()), (4, 5, 5));
}
