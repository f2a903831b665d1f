//! A client's check of a key-transparency lookup proof, on a proof from a
//! directory of 1,000 users (akd's in-memory store, the server's tree
//! configuration `WhatsAppV1Configuration` and parallelism settings, 100
//! users published per epoch).
//!
//! - `rempart_kt_verify_lookup`: what `rempart-client` runs on every
//!   device list it fetches, `rempart_kt::verify_lookup`: decode the
//!   protobuf proof as the server serves it, verify it with akd, compare the
//!   proven value with the hash of the signed device list;
//! - `akd_lookup_verify`: akd's verifier alone, `akd::client::lookup_verify`,
//!   on the decoded proof.
//!
//! `cargo bench -p rempart-bench --bench lookup_verify`

// A benchmark harness aborting on a setup error is acceptable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use akd::append_only_zks::AzksParallelismConfig;
use akd::ecvrf::HardCodedAkdVRF;
use akd::proto::specs::types as proto;
use akd::storage::StorageManager;
use akd::storage::memory::AsyncInMemoryDatabase;
use akd::{AkdLabel, AkdValue, Directory, EpochHash, LookupProof, WhatsAppV1Configuration};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use protobuf::Message as _;
use rempart_proto::directory::{DirectoryHead, directory_value};
use rempart_proto::{DeviceEntry, DeviceId, DeviceList, PublicKey, SignedDeviceList, UserName};
use sha2::{Digest as _, Sha256};
use tokio::runtime::Runtime;

/// akd's tree configuration, as the server runs it.
type Config = WhatsAppV1Configuration;

/// Users in the directory.
const USERS: u64 = 1_000;
/// Users published per epoch.
const BATCH: u64 = 100;

/// Everything a client holds when it checks a lookup: the VRF key it
/// pinned, the signed head, the proof as served and the device list served
/// beside it.
struct Lookup {
    vrf_public_key: Vec<u8>,
    head: DirectoryHead,
    user: UserName,
    encoded: Vec<u8>,
    decoded: LookupProof,
    list: SignedDeviceList,
}

fn lookup_verify(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    let lookup = runtime.block_on(lookup_in_directory());
    let label = AkdLabel::from(lookup.user.as_str());
    // Measure the path of a proof that verifies, not an early refusal.
    rempart_kt::verify_lookup(
        &lookup.vrf_public_key,
        &lookup.head,
        &lookup.user,
        &lookup.encoded,
        &lookup.list,
    )
    .expect("the lookup proof verifies");

    let mut group = c.benchmark_group("lookup_verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("rempart_kt_verify_lookup", |b| {
        b.iter(|| {
            rempart_kt::verify_lookup(
                black_box(&lookup.vrf_public_key),
                black_box(&lookup.head),
                black_box(&lookup.user),
                black_box(&lookup.encoded),
                black_box(&lookup.list),
            )
        })
    });
    group.bench_function("akd_lookup_verify", |b| {
        b.iter_batched(
            || (label.clone(), lookup.decoded.clone()),
            |(label, proof)| {
                akd::client::lookup_verify::<Config>(
                    black_box(&lookup.vrf_public_key),
                    lookup.head.root_hash,
                    lookup.head.epoch,
                    label,
                    proof,
                )
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Builds the directory with `alice` (a real signed device list) among
/// `USERS - 1` others, and has it prove `alice`'s value at the last epoch.
async fn lookup_in_directory() -> Lookup {
    let user: UserName = "alice".parse().expect("a valid user name");
    let list = device_list(&user);
    let akd = Directory::<Config, _, _>::new(
        StorageManager::new_no_cache(AsyncInMemoryDatabase::new()),
        HardCodedAkdVRF,
        AzksParallelismConfig::default(),
    )
    .await
    .expect("the directory starts");
    for first in (0..USERS).step_by(BATCH as usize) {
        let updates = (first..first + BATCH)
            .map(|k| {
                if k == 0 {
                    let value = AkdValue(directory_value(&list).to_vec());
                    (AkdLabel::from(user.as_str()), value)
                } else {
                    let value = Sha256::digest(k.to_be_bytes()).to_vec();
                    (
                        AkdLabel::from(format!("user{k:06}").as_str()),
                        AkdValue(value),
                    )
                }
            })
            .collect();
        akd.publish(updates).await.expect("the epoch publishes");
    }
    let (proof, EpochHash(epoch, root_hash)) = akd
        .lookup(AkdLabel::from(user.as_str()))
        .await
        .expect("the lookup proof");
    let vrf_public_key = akd
        .get_public_key()
        .await
        .expect("the VRF key")
        .as_bytes()
        .to_vec();
    let encoded = proto::LookupProof::from(&proof)
        .write_to_bytes()
        .expect("the proof encodes");
    Lookup {
        vrf_public_key,
        head: DirectoryHead {
            server_id: "bench".to_owned(),
            epoch,
            root_hash,
            time: 1_700_000_000,
        },
        user,
        encoded,
        decoded: proof,
        list,
    }
}

/// `user`'s signed device list, of one device.
fn device_list(user: &UserName) -> SignedDeviceList {
    let account_key = SigningKey::from_bytes(&[1; 32]);
    let list = DeviceList {
        user: user.clone(),
        account_key: PublicKey::new(account_key.verifying_key()),
        version: 1,
        timestamp: 1_700_000_000,
        devices: vec![DeviceEntry {
            id: DeviceId::random(),
            signature_key: PublicKey::new(SigningKey::from_bytes(&[2; 32]).verifying_key()),
        }],
        mail: Vec::new(),
    };
    SignedDeviceList::sign(&list, &account_key).expect("a well-formed device list")
}

criterion_group!(benches, lookup_verify);
criterion_main!(benches);
