//! Proofs from a real akd directory verify; tampered or mismatched ones do
//! not.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use akd::append_only_zks::AzksParallelismConfig;
use akd::ecvrf::HardCodedAkdVRF;
use akd::proto::specs::types as proto;
use akd::storage::StorageManager;
use akd::storage::memory::AsyncInMemoryDatabase;
use akd::{AkdLabel, AkdValue, Directory, EpochHash, HistoryParams, WhatsAppV1Configuration};
use ed25519_dalek::SigningKey;
use protobuf::Message as _;
use rand::rngs::OsRng;
use rempart_kt::{ProofError, ProvenVersion, verify_audit, verify_history, verify_lookup};
use rempart_proto::directory::{DirectoryHead, directory_value};
use rempart_proto::{DeviceEntry, DeviceId, DeviceList, PublicKey, SignedDeviceList, UserName};

type Akd = Directory<WhatsAppV1Configuration, AsyncInMemoryDatabase, HardCodedAkdVRF>;

struct Fixture {
    akd: Akd,
    vrf: Vec<u8>,
    heads: Vec<DirectoryHead>,
}

impl Fixture {
    async fn new() -> Self {
        let akd = Directory::new(
            StorageManager::new_no_cache(AsyncInMemoryDatabase::new()),
            HardCodedAkdVRF,
            AzksParallelismConfig::default(),
        )
        .await
        .unwrap();
        let vrf = akd.get_public_key().await.unwrap().as_bytes().to_vec();
        Self {
            akd,
            vrf,
            heads: Vec::new(),
        }
    }

    async fn publish(&mut self, lists: &[(&UserName, &SignedDeviceList)]) -> DirectoryHead {
        let updates = lists
            .iter()
            .map(|(user, list)| {
                (
                    AkdLabel::from(user.as_str()),
                    AkdValue(directory_value(list).to_vec()),
                )
            })
            .collect();
        let EpochHash(epoch, root_hash) = self.akd.publish(updates).await.unwrap();
        let head = DirectoryHead {
            server_id: "0123456789abcdef".into(),
            epoch,
            root_hash,
            time: 0,
        };
        self.heads.push(head.clone());
        head
    }

    async fn lookup(&self, user: &UserName) -> Vec<u8> {
        let (proof, _) = self
            .akd
            .lookup(AkdLabel::from(user.as_str()))
            .await
            .unwrap();
        proto::LookupProof::from(&proof).write_to_bytes().unwrap()
    }

    async fn history(&self, user: &UserName) -> Vec<u8> {
        let (proof, _) = self
            .akd
            .key_history(&AkdLabel::from(user.as_str()), HistoryParams::Complete)
            .await
            .unwrap();
        proto::HistoryProof::from(&proof).write_to_bytes().unwrap()
    }

    async fn audit(&self, from: u64, to: u64) -> Vec<u8> {
        let proof = self.akd.audit(from, to).await.unwrap();
        proto::AppendOnlyProof::from(&proof)
            .write_to_bytes()
            .unwrap()
    }
}

fn device_list(user: &UserName, version: u64) -> SignedDeviceList {
    let account = SigningKey::generate(&mut OsRng);
    let list = DeviceList {
        user: user.clone(),
        account_key: PublicKey::new(account.verifying_key()),
        version,
        timestamp: 0,
        devices: vec![DeviceEntry {
            id: DeviceId::random(),
            signature_key: PublicKey::new(SigningKey::generate(&mut OsRng).verifying_key()),
        }],
        mail: Vec::new(),
    };
    SignedDeviceList::sign(&list, &account).unwrap()
}

fn name(text: &str) -> UserName {
    text.parse().unwrap()
}

#[tokio::test]
async fn lookup_proves_the_served_list_and_nothing_else() {
    let mut kt = Fixture::new().await;
    let (alice, bob) = (name("alice"), name("bob"));
    let (alice_1, bob_1) = (device_list(&alice, 1), device_list(&bob, 1));
    kt.publish(&[(&alice, &alice_1), (&bob, &bob_1)]).await;
    let alice_2 = device_list(&alice, 2);
    let head = kt.publish(&[(&alice, &alice_2)]).await;

    let proof = kt.lookup(&alice).await;
    assert_eq!(
        verify_lookup(&kt.vrf, &head, &alice, &proof, &alice_2),
        Ok(ProvenVersion {
            version: 2,
            epoch: 2
        })
    );
    // The old list, or another user's, is not what the proof commits to.
    assert_eq!(
        verify_lookup(&kt.vrf, &head, &alice, &proof, &alice_1),
        Err(ProofError::ValueMismatch)
    );
    // Alice's proof presented as Bob's.
    assert!(matches!(
        verify_lookup(&kt.vrf, &head, &bob, &proof, &alice_2),
        Err(ProofError::Refused { .. })
    ));
    // Against another root (a head the proof was not made for).
    let mut other_root = head.clone();
    other_root.root_hash[0] ^= 1;
    assert!(matches!(
        verify_lookup(&kt.vrf, &other_root, &alice, &proof, &alice_2),
        Err(ProofError::Refused { .. })
    ));
    // Under another VRF key.
    let mut vrf = kt.vrf.clone();
    vrf[3] ^= 1;
    assert!(verify_lookup(&vrf, &head, &alice, &proof, &alice_2).is_err());
    // Garbage bytes.
    assert_eq!(
        verify_lookup(&kt.vrf, &head, &alice, b"\xff\xff\xff", &alice_2),
        Err(ProofError::Malformed("lookup"))
    );
}

#[tokio::test]
async fn history_proves_every_version_in_order() {
    let mut kt = Fixture::new().await;
    let (alice, bob) = (name("alice"), name("bob"));
    let lists: Vec<_> = (1..=3).map(|v| device_list(&alice, v)).collect();
    kt.publish(&[(&alice, &lists[0]), (&bob, &device_list(&bob, 1))])
        .await;
    kt.publish(&[(&alice, &lists[1])]).await;
    kt.publish(&[(&bob, &device_list(&bob, 2))]).await;
    let head = kt.publish(&[(&alice, &lists[2])]).await;

    let proof = kt.history(&alice).await;
    let verified = verify_history(&kt.vrf, &head, &alice, &proof, &lists).unwrap();
    let versions: Vec<_> = verified.iter().map(|(v, _)| (v.version, v.epoch)).collect();
    assert_eq!(versions, [(1, 1), (2, 2), (3, 4)]);

    // A version hidden from the served lists, or a substituted one.
    assert_eq!(
        verify_history(&kt.vrf, &head, &alice, &proof, &lists[1..]),
        Err(ProofError::HistoryMismatch {
            proved: 3,
            served: 2
        })
    );
    let mut swapped = lists.clone();
    swapped[1] = device_list(&alice, 2);
    assert_eq!(
        verify_history(&kt.vrf, &head, &alice, &proof, &swapped),
        Err(ProofError::ValueMismatch)
    );
    // A history made at an earlier epoch does not pass for the latest head:
    // it would hide the newest version.
    let mut old_kt = Fixture::new().await;
    old_kt.publish(&[(&alice, &lists[0])]).await;
    let old_proof = old_kt.history(&alice).await;
    assert!(verify_history(&kt.vrf, &head, &alice, &old_proof, &lists[..1]).is_err());
}

#[tokio::test]
async fn audit_checks_every_epoch_between_two_heads() {
    let mut kt = Fixture::new().await;
    for round in 1..=4 {
        let user = name(&format!("user{round}"));
        kt.publish(&[(&user, &device_list(&user, 1))]).await;
    }
    let heads = kt.heads.clone();
    let proof = kt.audit(1, 4).await;
    assert_eq!(verify_audit(&heads, &proof).await, Ok(()));
    let step = kt.audit(2, 3).await;
    assert_eq!(verify_audit(&heads[1..3], &step).await, Ok(()));

    // A rewritten intermediate root.
    let mut forged = heads.clone();
    forged[2].root_hash[0] ^= 1;
    assert!(matches!(
        verify_audit(&forged, &proof).await,
        Err(ProofError::Refused { .. })
    ));
    // A proof for other epochs than the heads given.
    assert!(matches!(
        verify_audit(&heads[..2], &step).await,
        Err(ProofError::Refused { .. })
    ));
    // Missing or repeated heads.
    let gap = [heads[0].clone(), heads[2].clone()];
    assert_eq!(
        verify_audit(&gap, &proof).await,
        Err(ProofError::HeadsNotConsecutive)
    );
    assert_eq!(
        verify_audit(&heads[..1], &proof).await,
        Err(ProofError::HeadsNotConsecutive)
    );
    assert_eq!(
        verify_audit(&heads, b"\x01\x02").await,
        Err(ProofError::Malformed("append-only"))
    );
}
