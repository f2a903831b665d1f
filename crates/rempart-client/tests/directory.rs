//! The directory's heads are checked at every sync: each forged state the
//! server could show is an alert with its exact code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use ed25519_dalek::SigningKey;
use rempart_client::AlertCode;
use rempart_proto::PublicKey;
use rempart_testkit::{
    TestServer, cosign_latest_head, equivocate_latest_head, forge_unsigned_head, latest_head_epoch,
    roll_back_latest_head, wait_for_epoch,
};
use tempfile::TempDir;

use common::{account, alerts};

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
async fn an_older_head_than_one_seen_is_a_rollback() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    wait_for_epoch(server.data_dir(), 1).await;
    let _bob = account(&server, &homes.path().join("bob"), "bob").await;
    wait_for_epoch(server.data_dir(), 2).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());

    roll_back_latest_head(server.data_dir());
    assert_eq!(latest_head_epoch(server.data_dir()), 1);
    assert_eq!(
        alerts(&alice.sync().await.unwrap()),
        [AlertCode::DirectoryRollback]
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
async fn a_head_without_the_witness_quorum_is_an_alert() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    assert_eq!(alice.whoami().witness_quorum, 0);
    let witness = SigningKey::from_bytes(&[5; 32]);
    alice
        .set_witnesses(&[PublicKey::new(witness.verifying_key())], None)
        .unwrap();
    assert_eq!(alice.whoami().witness_quorum, 1);
    wait_for_epoch(server.data_dir(), 1).await;

    // The server forked away from its witness: nobody cosigned.
    assert_eq!(
        alerts(&alice.sync().await.unwrap()),
        [AlertCode::WitnessQuorumMissing]
    );
    // A cosignature by another key does not count.
    cosign_latest_head(&server.url, &SigningKey::from_bytes(&[6; 32])).await;
    assert_eq!(
        alerts(&alice.sync().await.unwrap()),
        [AlertCode::WitnessQuorumMissing]
    );
    cosign_latest_head(&server.url, &witness).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
}
