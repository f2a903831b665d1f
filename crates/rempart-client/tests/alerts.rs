//! Each alert of the membership model, triggered by forging the offending
//! state on the server, asserting the exact code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use rempart_client::AlertCode;
use rempart_testkit::{RawMember, TestServer, inject_ghost_device, substitute_account_key};
use tempfile::TempDir;

use common::{account, alerts, name};

#[tokio::test]
async fn a_ghost_device_in_ones_own_list_is_an_alert_for_owner_and_peers() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice.send_text(&name("bob"), "hi").await.unwrap();
    bob.sync().await.unwrap();
    let before = bob.conversations().unwrap();

    inject_ghost_device(server.data_dir(), "alice");

    let events = alice.sync().await.unwrap();
    assert_eq!(alerts(&events), [AlertCode::UnknownOwnDevice], "{events:?}");
    let events = bob.sync().await.unwrap();
    assert_eq!(
        alerts(&events),
        [AlertCode::DeviceListSignatureInvalid],
        "{events:?}"
    );
    // Nobody added the ghost.
    assert_eq!(bob.conversations().unwrap(), before);
    assert_eq!(
        alice
            .devices()
            .await
            .map_err(|e| e.to_string())
            .unwrap_err(),
        "security alert [unknown_own_device]: the server shows a device list for your account that your account key did not sign (the device list the server gave for alice is not validly signed by an account key: device list signature is invalid)"
    );
    // It stays visible: every sync says it again.
    assert_eq!(
        alerts(&alice.sync().await.unwrap()),
        [AlertCode::UnknownOwnDevice]
    );
}

#[tokio::test]
async fn a_substituted_account_key_is_an_alert() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice.create_group("g", &[name("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    let members = alice.group_members("g").unwrap();

    substitute_account_key(server.data_dir(), "bob");

    let events = alice.sync().await.unwrap();
    assert_eq!(
        alerts(&events),
        [AlertCode::AccountKeyChanged],
        "{events:?}"
    );
    assert_eq!(
        alice.group_members("g").unwrap(),
        members,
        "no device of the new key was added"
    );
    // Nothing new reaches the substituted key either.
    let refused = alice.send_text(&name("bob"), "direct").await;
    assert!(
        matches!(&refused, Err(rempart_client::ClientError::Alert(a)) if a.code == AlertCode::AccountKeyChanged),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_commit_adding_an_unlisted_device_is_refused() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut mallory = RawMember::register(&server.url, "mallory").await;
    alice.create_group("g", &[name("mallory")]).await.unwrap();
    mallory.join().await;
    let members = alice.group_members("g").unwrap();
    let epoch = alice.group_epoch("g").unwrap();

    // Mallory, a member, commits a device of hers that her account never
    // signed: the server accepts it (it cannot tell), Alice must not.
    assert_eq!(mallory.commit_ghost_device().await, 200);
    let events = alice.sync().await.unwrap();
    assert_eq!(
        alerts(&events),
        [AlertCode::UnauthorizedMember],
        "{events:?}"
    );
    assert_eq!(alice.group_members("g").unwrap(), members);
    assert_eq!(
        alice.group_epoch("g").unwrap(),
        epoch,
        "the commit was not merged"
    );
}

#[tokio::test]
async fn safety_numbers_agree_and_a_key_change_blocks_a_verified_conversation() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice.send_text(&name("bob"), "hi").await.unwrap();
    bob.sync().await.unwrap();

    let seen_by_alice = alice.safety_number(&name("bob")).await.unwrap();
    let seen_by_bob = bob.safety_number(&name("alice")).await.unwrap();
    assert_eq!(seen_by_alice.safety_number, seen_by_bob.safety_number);
    assert_eq!(seen_by_alice.safety_number.len(), 60 + 11);
    assert!(!seen_by_alice.verified && !seen_by_alice.key_changed);

    let wrong = alice.confirm_safety_number(&name("bob"), "12345").await;
    assert!(matches!(
        wrong,
        Err(rempart_client::ClientError::SafetyNumberMismatch(_))
    ));
    let confirmed = alice
        .confirm_safety_number(&name("bob"), &seen_by_alice.safety_number.replace(' ', ""))
        .await
        .unwrap();
    assert!(confirmed.verified);

    // The server shows Alice a new account key for Bob.
    substitute_account_key(server.data_dir(), "bob");
    let events = alice.sync().await.unwrap();
    assert_eq!(
        alerts(&events),
        [AlertCode::AccountKeyChanged],
        "{events:?}"
    );
    let changed = alice.safety_number(&name("bob")).await.unwrap();
    assert!(changed.key_changed && !changed.verified);
    assert_ne!(
        changed.safety_number, seen_by_alice.safety_number,
        "the number follows the key"
    );

    // In the verified conversation, sending stops until Alice re-verifies.
    let blocked = alice.send_text(&name("bob"), "are you still you?").await;
    assert!(
        matches!(&blocked, Err(rempart_client::ClientError::Alert(a)) if a.code == AlertCode::AccountKeyChanged),
        "{blocked:?}"
    );
    let accepted = alice
        .confirm_safety_number(&name("bob"), &changed.safety_number)
        .await
        .unwrap();
    assert!(accepted.verified && !accepted.key_changed);
    alice
        .send_text(&name("bob"), "verified again")
        .await
        .unwrap();
    // The accepted key is now the pinned one: no more alerts.
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
}
