//! Appending application messages to a group's log through the `Store`
//! trait, on the server's `SqliteStore` (WAL, `synchronous=FULL`, one
//! group-committing writer thread) in a temporary directory.
//!
//! - `one`: one 256-byte append awaited alone, the latency of a durable
//!   group commit of one;
//! - `concurrent_1000`: 1,000 appends to the same group awaited together,
//!   the throughput of the writer when it can commit many per transaction
//!   (reported per append).
//!
//! The group has two members (a device that sends and one more), created
//! as the server creates groups: a commit on epoch 0.
//!
//! `cargo bench -p rempart-bench --bench log_append`

// A benchmark harness aborting on a setup error is acceptable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use futures_util::future::join_all;
use rempart_proto::api::CommitUpload;
use rempart_proto::{DeviceEntry, DeviceId, DeviceList, GroupId, MessageId, PublicKey};
use rempart_proto::{SignedDeviceList, UserName};
use rempart_server::store::{AccountSignedDeviceList, SqliteStore, Store};
use tokio::runtime::Runtime;

/// An application message's size.
const MESSAGE_BYTES: usize = 256;
/// Appends awaited together in the throughput benchmark.
const BATCH: usize = 1_000;

fn log_append(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let data = tempfile::tempdir().expect("a temporary directory");
    let store = runtime
        .block_on(SqliteStore::open(data.path().join("rempart.db")))
        .expect("the SQLite store opens");
    let (group, sender) = runtime.block_on(group_of_two(&store));
    let message = vec![0x5a; MESSAGE_BYTES];

    let mut benchmarks = c.benchmark_group("log_append");
    benchmarks.throughput(Throughput::Elements(1));
    benchmarks.bench_function("one", |b| {
        b.to_async(&runtime).iter(|| async {
            store
                .append_message(group, sender, MessageId::random(), 1, message.clone())
                .await
                .expect("the append succeeds")
        })
    });
    benchmarks
        .throughput(Throughput::Elements(BATCH as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    benchmarks.bench_function("concurrent_1000", |b| {
        b.to_async(&runtime).iter(|| async {
            let appends = (0..BATCH).map(|_| {
                store.append_message(group, sender, MessageId::random(), 1, message.clone())
            });
            for outcome in join_all(appends).await {
                outcome.expect("the append succeeds");
            }
        })
    });
    benchmarks.finish();
    runtime.block_on(store.close());
}

/// Registers an account with two devices and creates a group of both, at
/// epoch 1; returns the group and the device that sends.
async fn group_of_two(store: &SqliteStore) -> (GroupId, DeviceId) {
    let user: UserName = "bench".parse().expect("a valid user name");
    let account_key = SigningKey::from_bytes(&[1; 32]);
    let devices: Vec<DeviceEntry> = (2..4)
        .map(|seed| DeviceEntry {
            id: DeviceId::random(),
            signature_key: PublicKey::new(SigningKey::from_bytes(&[seed; 32]).verifying_key()),
        })
        .collect();
    let (sender, other) = (devices[0].id, devices[1].id);
    let list = DeviceList {
        user: user.clone(),
        account_key: PublicKey::new(account_key.verifying_key()),
        version: 1,
        timestamp: 1_700_000_000,
        devices,
        mail: Vec::new(),
    };
    let signed = SignedDeviceList::sign(&list, &account_key).expect("a well-formed device list");
    let verified = AccountSignedDeviceList::verify(signed, &user).expect("the list verifies");
    store
        .register(verified)
        .await
        .expect("the account registers");

    let group = GroupId::random();
    let created = store
        .append_commit(
            group,
            sender,
            CommitUpload {
                epoch: 0,
                message_id: MessageId::random(),
                commit: b"the commit that creates the group".to_vec(),
                welcome: None,
                add_devices: vec![other],
                remove_devices: Vec::new(),
            },
        )
        .await
        .expect("the commit creates the group");
    assert_eq!(created.appended.epoch, 1, "the group is at epoch 1");
    (group, sender)
}

criterion_group!(benches, log_append);
criterion_main!(benches);
