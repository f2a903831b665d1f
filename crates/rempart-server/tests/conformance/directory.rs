//! The key-transparency directory's storage (akd's `Database`) over the
//! server's database.

use akd::errors::StorageError;
use akd::storage::types::{DbRecord, ValueState, ValueStateKey, ValueStateRetrievalFlag as Flag};
use akd::storage::{Database as _, DbSetState};
use akd::tree_node::{NodeKey, TreeNodeType, TreeNodeWithPreviousValue};
use akd::{AkdLabel, AkdValue, Azks, NodeLabel};
use rempart_server::directory::DirectoryStorage;

use crate::akd_records::{SmallTree, azks, label, node, node_key, state, tree_node};

/// akd's own test cases for a storage back end.
pub async fn akd_storage_test_cases(storage: DirectoryStorage) {
    akd::storage::tests::run_test_cases_for_storage_impl(storage).await;
}

/// Each retrieval flag picks the state akd expects, alone and in bulk.
pub async fn retrieval_flags(storage: DirectoryStorage) {
    let alice = AkdLabel::from("alice");
    let states = [
        state("alice", 2, 1, "v1"),
        state("alice", 5, 2, "v2"),
        state("alice", 9, 3, "v3"),
        state("bob", 4, 1, "bob v1"),
    ];
    storage
        .batch_set(
            states.iter().cloned().map(DbRecord::ValueState).collect(),
            DbSetState::General,
        )
        .await
        .unwrap();

    let pick = |flag| {
        let (storage, alice) = (storage.clone(), alice.clone());
        async move { storage.get_user_state(&alice, flag).await.map(|s| s.epoch) }
    };
    assert_eq!(pick(Flag::MinEpoch).await, Ok(2));
    assert_eq!(pick(Flag::MaxEpoch).await, Ok(9));
    assert_eq!(pick(Flag::SpecificVersion(2)).await, Ok(5));
    assert_eq!(pick(Flag::SpecificEpoch(9)).await, Ok(9));
    assert_eq!(pick(Flag::LeqEpoch(5)).await, Ok(5));
    assert_eq!(pick(Flag::LeqEpoch(8)).await, Ok(5));
    assert_eq!(pick(Flag::LeqEpoch(u64::MAX)).await, Ok(9));
    for missing in [
        Flag::LeqEpoch(1),
        Flag::SpecificEpoch(3),
        Flag::SpecificVersion(4),
        Flag::SpecificVersion(u64::MAX),
        Flag::SpecificEpoch(u64::MAX),
    ] {
        assert!(
            matches!(pick(missing).await, Err(StorageError::NotFound(_))),
            "{missing:?}"
        );
    }
    assert!(matches!(
        storage
            .get_user_state(&AkdLabel::from("carol"), Flag::MaxEpoch)
            .await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        storage.get_user_data(&AkdLabel::from("carol")).await,
        Err(StorageError::NotFound(_))
    ));

    // In bulk: version and value per user that has a matching state.
    let users = [
        alice.clone(),
        AkdLabel::from("bob"),
        AkdLabel::from("carol"),
        alice.clone(),
    ];
    let versions = storage
        .get_user_state_versions(&users, Flag::LeqEpoch(4))
        .await
        .unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[&alice], (1, AkdValue::from("v1")));
    assert_eq!(
        versions[&AkdLabel::from("bob")],
        (1, AkdValue::from("bob v1"))
    );
    let versions = storage
        .get_user_state_versions(&users, Flag::SpecificVersion(3))
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[&alice], (3, AkdValue::from("v3")));
}

/// Records come back whole, the last write of a key counting, in the order asked.
pub async fn records_come_back_whole_and_in_the_order_asked(storage: DirectoryStorage) {
    let SmallTree {
        interior,
        leaf,
        root,
        states,
    } = SmallTree::new();
    // A record written twice in one batch: the last one counts.
    let mut records = vec![
        tree_node(node(label(0xab, 256), 2, TreeNodeType::Leaf), None),
        interior.clone(),
        leaf.clone(),
        root.clone(),
    ];
    records.extend(states.iter().cloned().map(DbRecord::ValueState));
    records.push(azks(7));
    storage
        .batch_set(records, DbSetState::TransactionCommit)
        .await
        .unwrap();

    assert_eq!(storage.get::<Azks>(&1).await.unwrap(), azks(7));
    let keys = [
        node_key(&leaf),
        node_key(&root),
        NodeKey(label(0xee, 7)),
        node_key(&interior),
        node_key(&leaf),
    ];
    assert_eq!(
        storage
            .batch_get::<TreeNodeWithPreviousValue>(&keys)
            .await
            .unwrap(),
        [leaf.clone(), root, interior, leaf]
    );
    let alice = storage
        .get_user_data(&AkdLabel::from("alice"))
        .await
        .unwrap();
    assert_eq!(alice.states, states[..2]);
    assert_eq!(
        storage
            .batch_get::<ValueState>(&[
                ValueStateKey(b"bob".to_vec(), 3),
                ValueStateKey(b"bob".to_vec(), u64::MAX),
                ValueStateKey(b"alice".to_vec(), 1),
            ])
            .await
            .unwrap(),
        [
            DbRecord::ValueState(states[2].clone()),
            DbRecord::ValueState(states[0].clone())
        ]
    );
}

/// Batches larger than one statement's worth of keys are written and read whole.
pub async fn batch_reads_span_several_queries(storage: DirectoryStorage) {
    // More than one statement's worth of keys and rows on either database
    // (SQLite reads 500 keys per query; PostgreSQL writes 5,000 rows per
    // statement).
    let count: u32 = 2_600;
    let nodes: Vec<DbRecord> = (0..count)
        .map(|i| {
            let mut val = [0u8; 32];
            val[..4].copy_from_slice(&i.to_be_bytes());
            tree_node(node(NodeLabel::new(val, 32), 1, TreeNodeType::Leaf), None)
        })
        .collect();
    let users: Vec<AkdLabel> = (0..count)
        .map(|i| AkdLabel::from(format!("user {i}").as_str()))
        .collect();
    let mut records = nodes.clone();
    for (i, user) in users.iter().enumerate() {
        for epoch in [1, 2] {
            records.push(DbRecord::ValueState(ValueState {
                username: user.clone(),
                epoch,
                version: epoch,
                label: label(1, 256),
                value: AkdValue::from(format!("{i} at {epoch}").as_str()),
            }));
        }
    }
    storage
        .batch_set(records, DbSetState::General)
        .await
        .unwrap();

    // Reversed, with keys that are not stored mixed in: found ones come back
    // in the order asked, missing ones are left out.
    let mut keys: Vec<NodeKey> = nodes.iter().rev().map(node_key).collect();
    keys.insert(700, NodeKey(label(0xff, 256)));
    keys.push(NodeKey(label(0xee, 7)));
    let got = storage
        .batch_get::<TreeNodeWithPreviousValue>(&keys)
        .await
        .unwrap();
    assert_eq!(got, nodes.iter().rev().cloned().collect::<Vec<_>>());

    let keys: Vec<ValueStateKey> = users
        .iter()
        .map(|user| ValueStateKey(user.0.clone(), 2))
        .chain([
            ValueStateKey(b"nobody".to_vec(), 1),
            ValueStateKey(users[0].0.clone(), u64::MAX),
        ])
        .collect();
    assert_eq!(
        storage.batch_get::<ValueState>(&keys).await.unwrap().len(),
        users.len()
    );

    let versions = storage
        .get_user_state_versions(&users, Flag::MaxEpoch)
        .await
        .unwrap();
    assert_eq!(versions.len(), users.len());
    assert_eq!(versions[&users[1000]], (2, AkdValue::from("1000 at 2")));
    let versions = storage
        .get_user_state_versions(&users, Flag::MinEpoch)
        .await
        .unwrap();
    assert_eq!(versions[&users[2599]], (1, AkdValue::from("2599 at 1")));
}

/// An epoch commit is refused unless it raises the stored epoch (two publishers never both commit one).
pub async fn an_epoch_commit_must_advance_the_epoch(storage: DirectoryStorage) {
    let commit = |epoch, user: &str| {
        vec![
            DbRecord::ValueState(state(user, epoch, 1, "value")),
            azks(epoch),
        ]
    };
    storage.set(azks(0)).await.unwrap();
    storage
        .batch_set(commit(1, "alice"), DbSetState::TransactionCommit)
        .await
        .unwrap();

    // A second publisher that also built epoch 1 loses, and stores nothing.
    let stale = storage
        .batch_set(commit(1, "mallory"), DbSetState::TransactionCommit)
        .await;
    assert!(
        matches!(stale, Err(StorageError::Transaction(_))),
        "{stale:?}"
    );
    let older = storage
        .batch_set(commit(0, "mallory"), DbSetState::TransactionCommit)
        .await;
    assert!(
        matches!(older, Err(StorageError::Transaction(_))),
        "{older:?}"
    );
    let without_azks = storage
        .batch_set(
            vec![DbRecord::ValueState(state("mallory", 2, 1, "value"))],
            DbSetState::TransactionCommit,
        )
        .await;
    assert!(
        matches!(without_azks, Err(StorageError::Transaction(_))),
        "{without_azks:?}"
    );
    assert!(matches!(
        storage.get_user_data(&AkdLabel::from("mallory")).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(storage.get::<Azks>(&1).await.unwrap(), azks(1));

    // The next epoch goes through.
    storage
        .batch_set(commit(2, "bob"), DbSetState::TransactionCommit)
        .await
        .unwrap();
    assert_eq!(storage.get::<Azks>(&1).await.unwrap(), azks(2));
}

/// A batch that fails part-way stores nothing of it.
pub async fn a_failing_batch_leaves_nothing(storage: DirectoryStorage) {
    // The last record's epoch does not fit a database integer.
    let records = vec![
        tree_node(node(label(1, 256), 1, TreeNodeType::Leaf), None),
        DbRecord::ValueState(state("alice", 1, 1, "value")),
        DbRecord::ValueState(state("alice", u64::MAX, 2, "value")),
    ];
    let failed = storage.batch_set(records, DbSetState::General).await;
    assert!(matches!(failed, Err(StorageError::Other(_))), "{failed:?}");
    assert!(matches!(
        storage
            .get::<TreeNodeWithPreviousValue>(&NodeKey(label(1, 256)))
            .await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        storage.get_user_data(&AkdLabel::from("alice")).await,
        Err(StorageError::NotFound(_))
    ));

    // A node record holding a state of another label is refused.
    let mismatched = DbRecord::TreeNode(TreeNodeWithPreviousValue {
        label: label(2, 256),
        latest_node: node(label(3, 256), 1, TreeNodeType::Leaf),
        previous_node: None,
    });
    assert!(matches!(
        storage.set(mismatched).await,
        Err(StorageError::Other(_))
    ));
}
