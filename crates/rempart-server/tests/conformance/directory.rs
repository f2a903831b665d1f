//! The key-transparency directory's storage (akd's `Database`) over the
//! server's database.

use akd::errors::StorageError;
use akd::storage::types::{DbRecord, ValueState, ValueStateRetrievalFlag as Flag};
use akd::storage::{Database as _, DbSetState};
use akd::{AkdLabel, AkdValue, NodeLabel};
use rempart_server::directory::DirectoryStorage;

/// akd's own test cases for a storage back end.
pub async fn akd_storage_test_cases(storage: DirectoryStorage) {
    akd::storage::tests::run_test_cases_for_storage_impl(storage).await;
}

fn state(user: &str, epoch: u64, version: u64, value: &str) -> ValueState {
    ValueState {
        username: AkdLabel::from(user),
        epoch,
        version,
        label: NodeLabel::new([version as u8; 32], 256),
        value: AkdValue::from(value),
    }
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
