//! Key transparency from the client's side: device lists are used only
//! with a lookup proof, each device monitors its own account's key history,
//! and audits check that the directory's past was never rewritten. Each
//! attack is performed on the server's state and answered by its exact
//! alert.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use rempart_client::{AlertCode, Client, ClientError, Event};
use rempart_proto::directory::{self as kt, HeadWithCosignatures};
use rempart_testkit::{
    Proxy, TestServer, equivocate_head, forge_device_list, inject_ghost_device, latest_head_epoch,
    serve_unpublished_device_list, sign_head, stored_device_list, wait_for_epoch,
};
use tempfile::TempDir;

use common::{account, alerts, name, t, texts};

const EPOCHS: Duration = Duration::from_millis(50);

fn alert_code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> AlertCode {
    match result {
        Err(ClientError::Alert(alert)) => alert.code,
        other => panic!("expected an alert, got {other:?}"),
    }
}

#[tokio::test]
async fn a_device_list_the_directory_does_not_prove_is_refused() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;

    // The server shows Alice, beside Bob's valid proof, a list under an
    // account key it made up and never published.
    serve_unpublished_device_list(server.data_dir(), "bob");
    let refused = alice.send_text(&name("bob"), "hi").await;
    assert_eq!(alert_code(refused), AlertCode::KtProofInvalid);
    // Nothing was encrypted to anyone.
    assert!(texts(&bob.sync().await.unwrap()).is_empty());
    assert!(alice.conversations().unwrap().is_empty());
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

/// The server shows Bob (through his own connection) another head than
/// Alice's for a new epoch, signed with its directory key. Bob's own
/// monitoring sees the fork; Alice, shown the real directory, learns of it
/// from the head Bob's next message carries.
#[tokio::test]
async fn a_split_view_is_caught_by_the_members_comparing_heads() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let bobs_view = Proxy::start(&server.url).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = Client::create_account(&homes.path().join("bob"), &bobs_view.url, name("bob"))
        .await
        .unwrap();
    alice.send_text(&name("bob"), "hi").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        [t("alice", "alice", "hi")]
    );
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());

    // From the next epoch on, Bob's latest head is a forgery.
    let forked_from = latest_head_epoch(server.data_dir()) + 1;
    let data_dir = server.data_dir().to_owned();
    bobs_view.rewrite(move |exchange| {
        if exchange.path == kt::HEAD_PATH && exchange.status == 200 {
            let mut served: HeadWithCosignatures = serde_json::from_slice(&exchange.body).unwrap();
            let mut head = served.head.parse_unverified().unwrap();
            if head.epoch >= forked_from {
                head.root_hash = [0x5a; 32];
                served.head = sign_head(&data_dir, &head);
                exchange.body = serde_json::to_vec(&served).unwrap();
            }
        }
    });
    let _carol = account(&server, &homes.path().join("carol"), "carol").await;
    wait_for_epoch(server.data_dir(), forked_from).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
    let events = bob.sync().await.unwrap();
    assert!(
        alerts(&events).contains(&AlertCode::DirectoryEquivocation),
        "Bob's own key history is proven against the real head: {events:?}"
    );

    bob.send_text(&name("alice"), "which directory do you see?")
        .await
        .unwrap();
    let events = alice.sync().await.unwrap();
    assert_eq!(
        alerts(&events),
        [AlertCode::DirectoryEquivocation],
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Alert { conversation: Some(c), .. } if c == "bob")),
        "the alert names the conversation: {events:?}"
    );
    let evidence = alice.directory_evidence().unwrap();
    assert_eq!(evidence.len(), 1);
    let (first, second) = &evidence[0];
    let (first, second) = (
        first.parse_unverified().unwrap(),
        second.parse_unverified().unwrap(),
    );
    assert_eq!((first.epoch, second.epoch), (forked_from, forked_from));
    assert_ne!(first.root_hash, second.root_hash);
}

/// The server keeps Alice on an old epoch (it hides the newer heads from
/// her); the head Bob's message carries shows her the directory moved on.
#[tokio::test]
async fn a_hidden_epoch_is_caught_by_a_members_head() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let alices_view = Proxy::start(&server.url).await;
    let homes = TempDir::new().unwrap();
    let mut alice =
        Client::create_account(&homes.path().join("alice"), &alices_view.url, name("alice"))
            .await
            .unwrap();
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    bob.send_text(&name("alice"), "hi").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), [t("bob", "bob", "hi")]);
    let frozen = latest_head_epoch(server.data_dir());

    // Alice is kept at `frozen`: the latest head and every later one are
    // withheld from her.
    let data_dir = server.data_dir().to_owned();
    alices_view.rewrite(move |exchange| {
        let newer = |path: &str| {
            path.strip_prefix(kt::HEADS_PATH)
                .and_then(|q| q.strip_prefix("?from="))
                .and_then(|q| q.split('&').next())
                .and_then(|from| from.parse::<u64>().ok())
                .is_some_and(|from| from > frozen)
        };
        if exchange.path == kt::HEAD_PATH {
            let old = rempart_testkit::stored_head(&data_dir, frozen);
            exchange.body = serde_json::to_vec(&old).unwrap();
        } else if newer(&exchange.path) {
            exchange.status = 400;
            exchange.body = br#"{"error":"bad_request","message":"not published"}"#.to_vec();
        }
    });
    let _carol = account(&server, &homes.path().join("carol"), "carol").await;
    wait_for_epoch(server.data_dir(), frozen + 1).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());

    bob.sync().await.unwrap();
    bob.send_text(&name("alice"), "we are at a newer epoch")
        .await
        .unwrap();
    let events = alice.sync().await.unwrap();
    assert_eq!(
        alerts(&events),
        [AlertCode::DirectoryRollback],
        "{events:?}"
    );
}
