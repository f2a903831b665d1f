//! The directory's heads are checked at every sync: each forged state the
//! server could show is an alert with its exact code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ed25519_dalek::SigningKey;
use rempart_client::AlertCode;
use rempart_proto::PublicKey;
use rempart_testkit::{
    TestServer, cosign_latest_head, equivocate_latest_head, forge_unsigned_head, wait_for_epoch,
};
use tempfile::TempDir;

use rempart_testkit::{account, alerts};

const EPOCHS: Duration = Duration::from_millis(50);

#[tokio::test]
async fn an_unsigned_head_is_an_alert() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    wait_for_epoch(server.data_dir(), 1).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());

    forge_unsigned_head(server.data_dir());
    assert_eq!(
        alerts(&alice.sync().await.unwrap()),
        [AlertCode::DirectoryHeadSignatureInvalid]
    );
}

#[tokio::test]
async fn two_heads_for_one_epoch_are_equivocation_and_kept_as_evidence() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    wait_for_epoch(server.data_dir(), 1).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
    assert!(alice.directory_evidence().unwrap().is_empty());

    equivocate_latest_head(server.data_dir());
    assert_eq!(
        alerts(&alice.sync().await.unwrap()),
        [AlertCode::DirectoryEquivocation]
    );
    let evidence = alice.directory_evidence().unwrap();
    assert_eq!(evidence.len(), 1);
    let (first, second) = &evidence[0];
    let (a, b) = (
        first.parse_unverified().unwrap(),
        second.parse_unverified().unwrap(),
    );
    assert_eq!(a.epoch, b.epoch);
    assert_ne!(a.root_hash, b.root_hash);
}

#[tokio::test]
async fn a_head_is_given_a_grace_period_for_its_cosignatures_and_no_more() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let witness = SigningKey::from_bytes(&[5; 32]);
    alice
        .set_witnesses(&[PublicKey::new(witness.verifying_key())], None)
        .unwrap();
    wait_for_epoch(server.data_dir(), 1).await;

    // Within the default grace, an uncosigned head is accepted for now...
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
    // ...and once cosigned, it is settled for good.
    cosign_latest_head(&server.url, &witness).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
    alice.set_witness_grace(Duration::ZERO).unwrap();
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());

    // A new epoch the witness never cosigns: accepted within the grace,
    // an alert once the grace is over.
    alice.set_witness_grace(Duration::from_secs(3600)).unwrap();
    let _bob = account(&server, &homes.path().join("bob"), "bob").await;
    wait_for_epoch(server.data_dir(), 2).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
    alice.set_witness_grace(Duration::ZERO).unwrap();
    let events = alice.sync().await.unwrap();
    assert!(
        alerts(&events).contains(&AlertCode::WitnessQuorumMissing),
        "{events:?}"
    );
}
