//! The key-transparency directory's storage over SQLite: durability across
//! a reopen, batching, the epoch-commit rule, and a whole akd directory that
//! publishes, stops, reopens and still proves lookups. (akd's own storage
//! test cases and the retrieval flags run on both databases, in the
//! conformance suite.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use akd::ecvrf::HardCodedAkdVRF;
use akd::errors::StorageError;
use akd::storage::types::{DbRecord, ValueState, ValueStateKey};
use akd::storage::{Database, DbSetState, StorageManager};
use akd::tree_node::TreeNodeWithPreviousValue;
use akd::{
    AkdLabel, AkdValue, Azks, AzksParallelismConfig, Directory, EpochHash, HistoryParams,
    HistoryVerificationParams, WhatsAppV1Configuration,
};
use rempart_server::directory::DirectoryStorage;
use rempart_server::store::{SqliteStore, Store as _};
use tempfile::TempDir;

#[path = "conformance/akd_records.rs"]
mod akd_records;

use akd_records::{SmallTree, node_key, state};

type Config = WhatsAppV1Configuration;

async fn open(path: &Path) -> (SqliteStore, DirectoryStorage) {
    let store = SqliteStore::open(path.to_path_buf()).await.unwrap();
    let storage = DirectoryStorage::new(&store);
    (store, storage)
}

#[tokio::test]
async fn records_survive_a_reopen() {
    let data = TempDir::new().unwrap();
    let path = data.path().join("db");

    let azks = DbRecord::Azks(Azks {
        latest_epoch: 7,
        num_nodes: 3,
    });
    let SmallTree {
        interior,
        leaf,
        root,
        states,
    } = SmallTree::new();
    let mut records = vec![interior.clone(), leaf.clone(), root.clone()];
    records.extend(states.iter().cloned().map(DbRecord::ValueState));
    records.push(azks.clone());

    let (store, storage) = open(&path).await;
    storage
        .batch_set(records, DbSetState::TransactionCommit)
        .await
        .unwrap();
    store.close().await;
    drop(storage);
    drop(store);

    let (store, storage) = open(&path).await;
    assert_eq!(storage.get::<Azks>(&1).await.unwrap(), azks);
    for record in [&interior, &leaf, &root] {
        let got = storage
            .get::<TreeNodeWithPreviousValue>(&node_key(record))
            .await
            .unwrap();
        assert_eq!(&got, record);
    }
    let keys = [node_key(&leaf), node_key(&root), node_key(&interior)];
    assert_eq!(
        storage
            .batch_get::<TreeNodeWithPreviousValue>(&keys)
            .await
            .unwrap(),
        [leaf, root, interior]
    );
    let alice = storage
        .get_user_data(&AkdLabel::from("alice"))
        .await
        .unwrap();
    assert_eq!(alice.states, states[..2]);
    assert_eq!(
        storage
            .get::<ValueState>(&ValueStateKey(b"bob".to_vec(), 3))
            .await
            .unwrap(),
        DbRecord::ValueState(states[2].clone())
    );
    store.close().await;
}

#[tokio::test]
async fn writes_fail_once_the_store_is_closed() {
    let data = TempDir::new().unwrap();
    let (store, storage) = open(&data.path().join("db")).await;
    store.close().await;
    let result = storage
        .set(DbRecord::ValueState(state("alice", 1, 1, "value")))
        .await;
    assert!(
        matches!(result, Err(StorageError::Connection(_))),
        "{result:?}"
    );
}

async fn directory(
    storage: DirectoryStorage,
) -> Directory<Config, DirectoryStorage, HardCodedAkdVRF> {
    Directory::new(
        StorageManager::new_no_cache(storage),
        HardCodedAkdVRF,
        AzksParallelismConfig::default(),
    )
    .await
    .unwrap()
}

async fn verify_lookup(
    akd: &Directory<Config, DirectoryStorage, HardCodedAkdVRF>,
    user: &str,
) -> akd::VerifyResult {
    let (proof, head) = akd.lookup(AkdLabel::from(user)).await.unwrap();
    let vrf_key = akd.get_public_key().await.unwrap();
    akd::client::lookup_verify::<Config>(
        vrf_key.as_bytes(),
        head.hash(),
        head.epoch(),
        AkdLabel::from(user),
        proof,
    )
    .unwrap()
}

#[tokio::test]
async fn a_directory_publishes_reopens_and_proves() {
    let data = TempDir::new().unwrap();
    let path = data.path().join("db");
    let users = ["alice", "bob", "carol", "dave", "erin"];

    let (store, storage) = open(&path).await;
    let akd = directory(storage).await;
    let EpochHash(_, first_root) = akd
        .publish(
            users
                .iter()
                .map(|user| {
                    (
                        AkdLabel::from(*user),
                        AkdValue::from(format!("{user} list 1").as_str()),
                    )
                })
                .collect(),
        )
        .await
        .unwrap();
    let EpochHash(epoch, root) = akd
        .publish(vec![(
            AkdLabel::from("alice"),
            AkdValue::from("alice list 2"),
        )])
        .await
        .unwrap();
    assert_eq!(epoch, 2);
    drop(akd);
    store.close().await;
    drop(store);

    let (store, storage) = open(&path).await;
    let akd = directory(storage).await;
    // The same directory: same epoch and root hash, not a fresh one.
    let head = akd.get_epoch_hash().await.unwrap();
    assert_eq!((head.epoch(), head.hash()), (epoch, root));

    let alice = verify_lookup(&akd, "alice").await;
    assert_eq!((alice.epoch, alice.version), (2, 2));
    assert_eq!(alice.value, AkdValue::from("alice list 2"));
    let erin = verify_lookup(&akd, "erin").await;
    assert_eq!((erin.epoch, erin.version), (1, 1));
    assert_eq!(erin.value, AkdValue::from("erin list 1"));

    // Alice's history proves both her values.
    let (history, head) = akd
        .key_history(&AkdLabel::from("alice"), HistoryParams::default())
        .await
        .unwrap();
    let vrf_key = akd.get_public_key().await.unwrap();
    let values = akd::client::key_history_verify::<Config>(
        vrf_key.as_bytes(),
        head.hash(),
        head.epoch(),
        AkdLabel::from("alice"),
        history,
        HistoryVerificationParams::default(),
    )
    .unwrap();
    let values: Vec<_> = values.into_iter().map(|v| (v.version, v.value)).collect();
    assert_eq!(
        values,
        [
            (2, AkdValue::from("alice list 2")),
            (1, AkdValue::from("alice list 1")),
        ]
    );

    // Publishing goes on from the stored epoch, and the audit proof links
    // the epochs before and after the reopen.
    let EpochHash(epoch, third_root) = akd
        .publish(vec![(
            AkdLabel::from("frank"),
            AkdValue::from("frank list 1"),
        )])
        .await
        .unwrap();
    assert_eq!(epoch, 3);
    let frank = verify_lookup(&akd, "frank").await;
    assert_eq!((frank.epoch, frank.version), (3, 1));
    let audit = akd.audit(1, 3).await.unwrap();
    akd::auditor::audit_verify::<Config>(vec![first_root, root, third_root], audit)
        .await
        .unwrap();
    let audit = akd.audit(1, 3).await.unwrap();
    assert!(
        akd::auditor::audit_verify::<Config>(vec![first_root, third_root, root], audit)
            .await
            .is_err(),
        "an audit against the wrong heads must fail"
    );
    store.close().await;
}
