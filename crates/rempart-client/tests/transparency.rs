//! Key transparency from the client's side: device lists are used only
//! with a lookup proof, each device monitors its own account's key history,
//! and audits check that the directory's past was never rewritten. Each
//! attack is performed on the server's state and answered by its exact
//! alert.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rempart_client::{AlertCode, ClientError};
use rempart_testkit::{
    TestServer, equivocate_head, forge_device_list, inject_ghost_device, latest_head_epoch,
    stored_device_list, wait_for_epoch,
};
use tempfile::TempDir;

use rempart_testkit::{account, alerts};

const EPOCHS: Duration = Duration::from_millis(50);

fn alert_code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> AlertCode {
    match result {
        Err(ClientError::Alert(alert)) => alert.code,
        other => panic!("expected an alert, got {other:?}"),
    }
}

#[tokio::test]
async fn a_version_published_behind_the_accounts_back_is_seen_by_its_owner() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    wait_for_epoch(server.data_dir(), 1).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());

    // The server publishes a ghost device for Alice, then puts her genuine
    // list back: her current list looks untouched, her history does not.
    let (genuine, version) = stored_device_list(server.data_dir(), "alice");
    inject_ghost_device(server.data_dir(), "alice");
    wait_for_epoch(server.data_dir(), 2).await;
    forge_device_list(server.data_dir(), "alice", &genuine, version);
    wait_for_epoch(server.data_dir(), 3).await;

    let events = alice.sync().await.unwrap();
    assert_eq!(alerts(&events), [AlertCode::UnknownOwnDevice], "{events:?}");
    // It stays visible at every sync.
    assert_eq!(
        alerts(&alice.sync().await.unwrap()),
        [AlertCode::UnknownOwnDevice]
    );
}

#[tokio::test]
async fn an_audit_checks_every_epoch_once_and_catches_a_rewritten_past() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut epoch = 0;
    for user in ["bob", "carol"] {
        epoch += 1;
        wait_for_epoch(server.data_dir(), epoch).await;
        let _ = account(&server, &homes.path().join(user), user).await;
    }
    wait_for_epoch(server.data_dir(), 3).await;
    let latest = latest_head_epoch(server.data_dir());

    let report = alice.audit().await.unwrap();
    assert_eq!(report.from_epoch, 1);
    assert_eq!(report.verified_to_epoch, latest);
    assert_eq!(report.proofs_checked, 1);
    assert_eq!(report.heads_checked, latest + 1);
    // Nothing new: nothing to prove.
    let again = alice.audit().await.unwrap();
    assert_eq!(
        (again.from_epoch, again.verified_to_epoch),
        (latest, latest)
    );
    assert_eq!(again.proofs_checked, 0);

    // Two more epochs; the server then rewrites the first of them.
    for user in ["dave", "erin"] {
        let next = latest_head_epoch(server.data_dir()) + 1;
        let _ = account(&server, &homes.path().join(user), user).await;
        wait_for_epoch(server.data_dir(), next).await;
    }
    let newest = latest_head_epoch(server.data_dir());
    assert!(newest >= latest + 2);
    equivocate_head(server.data_dir(), latest + 1);
    assert_eq!(alert_code(alice.audit().await), AlertCode::KtProofInvalid);
    // The audit did not move past the rewritten epoch.
    let report = alice.audit().await;
    assert_eq!(alert_code(report), AlertCode::KtProofInvalid);
}
