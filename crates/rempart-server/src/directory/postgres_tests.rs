//! The directory over PostgreSQL: akd's own storage test cases, the
//! storage's batches and epoch-commit rule, the queue and heads against the
//! SQLite ones, and several nodes sharing one database.
//!
//! Each test runs in a schema of its own ([`TestSchema`]). When PostgreSQL
//! cannot be reached, a test says `SKIPPED ...` on stderr and passes, unless
//! `REMPART_REQUIRE_POSTGRES=1` makes it fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use akd::ecvrf::HardCodedAkdVRF;
use akd::errors::{AkdError, StorageError};
use akd::proto::specs::types as proto;
use akd::storage::types::{DbRecord, ValueState};
use akd::storage::{Database as _, DbSetState, StorageManager};
use akd::{
    AkdLabel, AkdValue, AppendOnlyProof, Azks, AzksParallelismConfig, Directory, LookupProof,
    NodeLabel, WhatsAppV1Configuration,
};
use deadpool_postgres::Pool;
use ed25519_dalek::SigningKey;
use protobuf::Message as _;
use rempart_proto::directory::{Cosignature, SignedHead};
use rempart_proto::{PublicKey, UserName};
use rempart_testkit::postgres::TestSchema;

use super::epochs::{Answer, Turn};
use super::{DirectoryDb, DirectoryService, DirectoryServiceError, DirectoryStorage};
use crate::store::{PostgresStore, SqliteStore, Store as _};

type Config = WhatsAppV1Configuration;

/// A schema of one test's own in the test database, and a connection to it.
struct Schema {
    schema: TestSchema,
    name: String,
    admin: tokio_postgres::Client,
}

impl Schema {
    /// Creates the schema, or returns `None` after printing `SKIPPED` when
    /// PostgreSQL is unreachable (a failure if `REMPART_REQUIRE_POSTGRES=1`).
    async fn create(test: &str) -> Option<Self> {
        let schema = TestSchema::create(test).await?;
        let admin = schema.client().await;
        Some(Self {
            name: schema.name().to_owned(),
            schema,
            admin,
        })
    }

    /// The URL of the test database with this schema as its search path.
    fn url(&self) -> String {
        self.schema.url()
    }

    /// A store on this schema (which creates the tables).
    async fn store(&self) -> PostgresStore {
        PostgresStore::open(&self.url()).await.unwrap()
    }

    /// Drops the schema (after cutting its remaining connections).
    async fn drop(self) {
        drop(self.admin);
        tokio::task::spawn_blocking(move || drop(self.schema))
            .await
            .unwrap();
    }
}

fn postgres_storage(store: &PostgresStore) -> DirectoryStorage {
    DirectoryStorage::new_postgres(store)
}

// ----- akd's storage -----

fn label(byte: u8, len: u32) -> NodeLabel {
    NodeLabel::new([byte; 32], len)
}

fn state(user: &str, epoch: u64, version: u64, value: &str) -> ValueState {
    ValueState {
        username: AkdLabel::from(user),
        epoch,
        version,
        label: label(version as u8, 256),
        value: AkdValue::from(value),
    }
}

fn azks(latest_epoch: u64) -> DbRecord {
    DbRecord::Azks(Azks {
        latest_epoch,
        num_nodes: 1,
    })
}

#[tokio::test]
async fn of_two_nodes_committing_one_epoch_at_once_one_wins() {
    let Some(schema) = Schema::create("same_epoch").await else {
        return;
    };
    let store = schema.store().await;
    let storage = postgres_storage(&store);
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
    // Two nodes committing the same epoch at once: the second waits for
    // the first's lock on the Azks row, then is refused.
    let other_store = schema.store().await;
    let other = postgres_storage(&other_store);
    let (first, second) = tokio::join!(
        storage.batch_set(commit(2, "bob"), DbSetState::TransactionCommit),
        other.batch_set(commit(2, "mallory"), DbSetState::TransactionCommit),
    );
    assert!(
        first.is_ok() != second.is_ok(),
        "exactly one commit of epoch 2 goes through: {first:?}, {second:?}"
    );
    assert_eq!(storage.get::<Azks>(&1).await.unwrap(), azks(2));
    let bob = storage.get_user_data(&AkdLabel::from("bob")).await;
    let mallory = storage.get_user_data(&AkdLabel::from("mallory")).await;
    assert!(bob.is_ok() != mallory.is_ok());
    schema.drop().await;
}

/// An akd directory over `storage`, with a cache as the server keeps one.
async fn raw_directory(
    storage: DirectoryStorage,
) -> Directory<Config, DirectoryStorage, HardCodedAkdVRF> {
    Directory::new(
        StorageManager::new(storage, None, None, None),
        HardCodedAkdVRF,
        AzksParallelismConfig::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_stale_publisher_cannot_commit_over_another() {
    let Some(schema) = Schema::create("stale").await else {
        return;
    };
    let (store_a, store_b) = (schema.store().await, schema.store().await);
    let first = raw_directory(postgres_storage(&store_a)).await;
    // Opened at epoch 0 and caching it, as a node that did not take the
    // publisher lock and does not know another node published.
    let second = raw_directory(postgres_storage(&store_b)).await;
    let alice = AkdLabel::from("alice");
    first
        .publish(vec![(alice.clone(), AkdValue::from("alice 1"))])
        .await
        .unwrap();
    let stale = second
        .publish(vec![(
            AkdLabel::from("mallory"),
            AkdValue::from("mallory 1"),
        )])
        .await;
    assert!(
        matches!(
            stale,
            Err(AkdError::Storage(StorageError::Transaction(ref message)))
                if message.contains("epoch 1")
        ),
        "{stale:?}"
    );
    // The first publisher's epoch stands, and it goes on from there.
    let storage = postgres_storage(&store_a);
    match storage.get::<Azks>(&1).await.unwrap() {
        DbRecord::Azks(azks) => assert_eq!(azks.latest_epoch, 1),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        storage.get_user_data(&AkdLabel::from("mallory")).await,
        Err(StorageError::NotFound(_))
    ));
    let epoch = first
        .publish(vec![(alice.clone(), AkdValue::from("alice 2"))])
        .await
        .unwrap();
    assert_eq!(epoch.epoch(), 2);
    let (proof, head) = first.lookup(alice.clone()).await.unwrap();
    let vrf_key = first.get_public_key().await.unwrap();
    let verified = akd::client::lookup_verify::<Config>(
        vrf_key.as_bytes(),
        head.hash(),
        head.epoch(),
        alice,
        proof,
    )
    .unwrap();
    assert_eq!(verified.value, AkdValue::from("alice 2"));
    schema.drop().await;
}

// ----- Queue and heads -----

/// What the directory's own tables answer after the same operations, to
/// compare between the two databases.
async fn queue_and_heads(db: &DirectoryDb) -> Vec<String> {
    let mut seen = Vec::new();
    let pending = db.pending().await.unwrap();
    seen.push(format!("{:?}", pending.updates));
    let ids = pending.ids;
    assert_eq!(ids.len(), 4);
    let head = |epoch: u8| SignedHead {
        head: vec![epoch; 8],
        signature: vec![epoch; 64],
    };
    // The rows read, and only those, go with the head.
    db.store_head(1, head(1), ids[..2].to_vec()).await.unwrap();
    let left = db.pending().await.unwrap();
    assert_eq!(left.ids, ids[2..]);
    seen.push(format!("{:?}", left.updates));
    db.remove_published(vec![ids[2]]).await.unwrap();
    let left = db.pending().await.unwrap();
    assert_eq!(left.ids, ids[3..]);
    seen.push(format!("{:?}", left.updates));

    db.store_head(2, head(2), Vec::new()).await.unwrap();
    db.store_head(4, head(4), Vec::new()).await.unwrap();
    assert!(db.store_head(2, head(2), Vec::new()).await.is_err());
    assert_eq!(db.latest_epoch().await.unwrap(), 4);
    assert_eq!(db.head(2).await.unwrap(), Some(head(2)));
    assert_eq!(db.head(3).await.unwrap(), None);
    assert_eq!(db.head(u64::MAX).await.unwrap(), None);

    let witness = |seed: u8| PublicKey::new(SigningKey::from_bytes(&[seed; 32]).verifying_key());
    for (epoch, seed, signature) in [(2, 9, 1), (2, 8, 2), (2, 9, 3), (1, 7, 4)] {
        let cosignature = Cosignature {
            witness: witness(seed),
            signature: vec![signature; 64],
        };
        db.store_cosignature(epoch, cosignature).await.unwrap();
    }
    let latest = db.head_with_cosignatures(None).await.unwrap().unwrap();
    assert_eq!(latest.head, head(4));
    assert!(latest.cosignatures.is_empty());
    let second = db.head_with_cosignatures(Some(2)).await.unwrap().unwrap();
    assert_eq!(second.cosignatures.len(), 2);
    // Up to the first epoch without a head.
    let heads = db.heads_with_cosignatures(1, 4).await.unwrap();
    assert_eq!(heads.len(), 2);
    seen.push(format!("{heads:?}"));

    assert_eq!(
        db.device_list("alice".into(), vec![1; 32])
            .await
            .unwrap()
            .map(|list| list.list),
        Some(b"alice list 1".to_vec())
    );
    assert_eq!(
        db.device_list("alice".into(), vec![9; 32]).await.unwrap(),
        None
    );
    let facts = db
        .lookup_facts(vec![
            ("alice".into(), Some(vec![2; 32])),
            ("bob".into(), None),
            ("carol".into(), Some(vec![3; 32])),
            ("alice".into(), Some(vec![9; 32])),
        ])
        .await
        .unwrap();
    seen.push(format!("{facts:?}"));
    seen
}

/// The updates queued, `(user, [byte; 32])`, each with an archived list.
fn queue_rows() -> Vec<(&'static str, u8)> {
    vec![("alice", 1), ("bob", 5), ("alice", 2), ("carol", 3)]
}

#[tokio::test]
async fn queue_and_heads_answer_as_on_sqlite() {
    let Some(schema) = Schema::create("queue").await else {
        return;
    };
    let store = schema.store().await;
    let pool = store.pool().clone();
    let conn = pool.get().await.unwrap();
    conn.execute(
        "INSERT INTO accounts (user_name, account_key, device_list, list_signature, version)
         VALUES ('alice', '\\x00', '\\x00', '\\x00', 1)",
        &[],
    )
    .await
    .unwrap();
    for (user, byte) in queue_rows() {
        let list = format!("{user} list {byte}").into_bytes();
        conn.execute(
            "INSERT INTO directory_device_lists (user_name, value, device_list, list_signature)
             VALUES ($1, $2, $3, '\\x00')",
            &[&user, &vec![byte; 32], &list],
        )
        .await
        .unwrap();
    }
    for (user, byte) in queue_rows() {
        enqueue_row(&pool, user, byte).await;
    }
    drop(conn);

    let data = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(data.path().join("db")).await.unwrap();
    let shared = sqlite.shared();
    shared
        .write(|conn| -> Result<(), crate::store::StoreError> {
            conn.execute(
                "INSERT INTO accounts (user_name, account_key, device_list, list_signature, version)
                 VALUES ('alice', x'00', x'00', x'00', 1)",
                [],
            )?;
            for (user, byte) in queue_rows() {
                let list = format!("{user} list {byte}").into_bytes();
                conn.execute(
                    "INSERT INTO directory_device_lists
                         (user_name, value, device_list, list_signature)
                     VALUES (?1, ?2, ?3, x'00')",
                    rusqlite::params![user, vec![byte; 32], list],
                )?;
            }
            for (user, byte) in queue_rows() {
                conn.execute(
                    "INSERT INTO directory_pending (user_name, value) VALUES (?1, ?2)",
                    rusqlite::params![user, vec![byte; 32]],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();

    let on_postgres = queue_and_heads(&DirectoryDb::Postgres(pool)).await;
    let on_sqlite = queue_and_heads(&DirectoryDb::Sqlite(shared)).await;
    assert_eq!(on_postgres, on_sqlite);
    sqlite.close().await;
    schema.drop().await;
}

// ----- Several nodes -----

/// Queues `(user, [byte; 32])`, as a registration or device-list change
/// does, with `"{user} list {byte}"` as its archived list.
async fn enqueue(pool: &Pool, user: &str, byte: u8) {
    let list = format!("{user} list {byte}").into_bytes();
    pool.get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO directory_device_lists (user_name, value, device_list, list_signature)
             VALUES ($1, $2, $3, '\\x00') ON CONFLICT DO NOTHING",
            &[&user, &vec![byte; 32], &list],
        )
        .await
        .unwrap();
    enqueue_row(pool, user, byte).await;
}

async fn enqueue_row(pool: &Pool, user: &str, byte: u8) {
    pool.get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO directory_pending (user_name, value) VALUES ($1, $2)",
            &[&user, &vec![byte; 32]],
        )
        .await
        .unwrap();
}

/// One server node: its store (its own pool) and its directory.
struct Node {
    store: PostgresStore,
    directory: Arc<DirectoryService>,
}

async fn node_on(schema: &Schema, data: &std::path::Path) -> Node {
    let store = schema.store().await;
    let directory = DirectoryService::open(DirectoryDb::Postgres(store.pool().clone()), data)
        .await
        .unwrap();
    Node {
        store,
        directory: Arc::new(directory),
    }
}

/// `user`'s lookup served by `node`, verified against its signed head:
/// the head's epoch and the value proven.
async fn verified_lookup(node: &DirectoryService, user: &str) -> (u64, u8) {
    let info = node.info();
    let user_name: UserName = user.parse().unwrap();
    let Answer::Found(lookup) = node.lookup(&user_name).await.unwrap() else {
        panic!("{user} is not in the directory");
    };
    let head = lookup.head.head.verify(&info.directory_key).unwrap();
    let proof = proto::LookupProof::parse_from_bytes(&lookup.proof).unwrap();
    let proof = LookupProof::try_from(&proof).unwrap();
    let verified = akd::client::lookup_verify::<Config>(
        &info.vrf_public_key,
        head.root_hash,
        head.epoch,
        AkdLabel::from(user),
        proof,
    )
    .unwrap();
    let byte = verified.value.0[0];
    assert_eq!(verified.value.0, vec![byte; 32]);
    assert_eq!(
        lookup.device_list.list,
        format!("{user} list {byte}").into_bytes()
    );
    (head.epoch, byte)
}

/// Waits until no session holds the publisher lock of `schema`.
async fn until_the_lock_is_free(schema: &Schema) {
    for _ in 0..1_000 {
        let held: i64 = schema
            .admin
            .query_one(
                "SELECT count(*) FROM pg_locks
                 WHERE locktype = 'advisory' AND classid::int8 = $1
                   AND objid = hashtext($2)::oid AND objsubid = 2",
                &[&0x5245_4d02_i64, &schema.name],
            )
            .await
            .unwrap()
            .get(0);
        if held == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the publisher lock was never released");
}

#[tokio::test]
async fn nodes_share_one_directory_and_take_over_from_a_stopped_leader() {
    let Some(schema) = Schema::create("nodes").await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let a = node_on(&schema, data.path()).await;
    let b = node_on(&schema, data.path()).await;
    let (info_a, info_b) = (a.directory.info(), b.directory.info());
    assert_eq!(
        (info_a.server_id, info_a.vrf_public_key),
        (info_b.server_id, info_b.vrf_public_key)
    );
    let pool = a.store.pool().clone();

    // One node publishes per tick; the other only takes turns.
    enqueue(&pool, "alice", 1).await;
    enqueue(&pool, "bob", 1).await;
    assert_eq!(a.directory.turn().await.unwrap(), Turn::Published(Some(1)));
    assert_eq!(b.directory.turn().await.unwrap(), Turn::Followed);
    assert_eq!(verified_lookup(&b.directory, "alice").await, (1, 1));

    // The follower's cache has epoch 1: it sees the leader's epoch 2.
    enqueue(&pool, "alice", 2).await;
    enqueue(&pool, "carol", 1).await;
    assert_eq!(b.directory.turn().await.unwrap(), Turn::Followed);
    assert_eq!(a.directory.turn().await.unwrap(), Turn::Published(Some(2)));
    assert_eq!(b.directory.turn().await.unwrap(), Turn::Followed);
    assert_eq!(verified_lookup(&b.directory, "alice").await, (2, 2));
    assert_eq!(verified_lookup(&b.directory, "carol").await, (2, 1));
    assert_eq!(verified_lookup(&b.directory, "bob").await, (2, 1));
    assert!(matches!(
        b.directory.lookup(&"dave".parse().unwrap()).await,
        Ok(Answer::Missing(_))
    ));

    // The leader stops after committing epoch 2 but before storing its
    // head: the follower cannot prove epoch 2 until a leader stores it.
    pool.get()
        .await
        .unwrap()
        .execute("DELETE FROM directory_heads WHERE epoch = 2", &[])
        .await
        .unwrap();
    let not_ready = b.directory.lookup(&"alice".parse().unwrap()).await;
    assert!(
        matches!(not_ready, Err(DirectoryServiceError::NotReady(2))),
        "{:?}",
        not_ready.err()
    );
    drop(a);
    until_the_lock_is_free(&schema).await;

    // The other node takes over: it stores the missing head, then
    // publishes the next epoch.
    enqueue(&pool, "dave", 1).await;
    assert_eq!(b.directory.turn().await.unwrap(), Turn::Published(Some(3)));
    assert_eq!(verified_lookup(&b.directory, "alice").await, (3, 2));
    assert_eq!(verified_lookup(&b.directory, "dave").await, (3, 1));
    let queued = DirectoryDb::Postgres(pool.clone()).pending().await.unwrap();
    assert!(queued.ids.is_empty());

    // A node started now follows, and proves what the new leader published.
    let c = node_on(&schema, data.path()).await;
    assert_eq!(c.directory.turn().await.unwrap(), Turn::Followed);
    assert_eq!(verified_lookup(&c.directory, "dave").await, (3, 1));

    // The audit across the takeover verifies against the stored heads.
    let info = b.directory.info();
    let Answer::Found(heads) = c.directory.heads(1, 3).await.unwrap() else {
        panic!("the heads of epochs 1 to 3 are stored");
    };
    let roots: Vec<[u8; 32]> = heads
        .iter()
        .map(|head| head.head.verify(&info.directory_key).unwrap().root_hash)
        .collect();
    let Answer::Found(audit) = c.directory.audit(1, 3).await.unwrap() else {
        panic!("the audit from 1 to 3 is refused");
    };
    assert_eq!(audit.end.verify(&info.directory_key).unwrap().epoch, 3);
    let proof = proto::AppendOnlyProof::parse_from_bytes(&audit.proof).unwrap();
    let proof = AppendOnlyProof::try_from(&proof).unwrap();
    akd::auditor::audit_verify::<Config>(roots.clone(), proof.clone())
        .await
        .unwrap();
    let mut swapped = roots;
    swapped.swap(1, 2);
    assert!(
        akd::auditor::audit_verify::<Config>(swapped, proof)
            .await
            .is_err()
    );
    drop((b, c));
    schema.drop().await;
}

#[tokio::test]
async fn a_node_with_other_keys_is_refused() {
    let Some(schema) = Schema::create("other_keys").await else {
        return;
    };
    let (first, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let _first = node_on(&schema, first.path()).await;
    let store = schema.store().await;
    let refused = DirectoryService::open(DirectoryDb::Postgres(store.pool().clone()), other.path())
        .await
        .map(|_| ());
    assert!(
        matches!(
            refused,
            Err(DirectoryServiceError::OtherKeys("directory.key"))
        ),
        "{refused:?}"
    );
    // With the first node's directory key but its own VRF key.
    std::fs::copy(
        first.path().join(super::DIRECTORY_KEY_FILE),
        other.path().join(super::DIRECTORY_KEY_FILE),
    )
    .unwrap();
    let refused = DirectoryService::open(DirectoryDb::Postgres(store.pool().clone()), other.path())
        .await
        .map(|_| ());
    assert!(
        matches!(refused, Err(DirectoryServiceError::OtherKeys("vrf.key"))),
        "{refused:?}"
    );
    schema.drop().await;
}
