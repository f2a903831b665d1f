//! The compelled-server suite: each attack of [`rempart_attacks::ATTACKS`]
//! is performed by the server against unmodified clients, and must be
//! detected with its exact alert, nothing decrypted by or encrypted to the
//! attacker, and honest state left intact. Prints
//! `attacks: N performed, N detected`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use libtest_mimic::{Arguments, Trial};
use rempart_attacks::ATTACKS;
use rempart_client::mail::{MailAddress, throwaway_certificate};
use rempart_client::{AlertCode, Client, ClientError, Event};
use rempart_proto::api::{Appended, EntryKind, ErrorBody, LinkState, LogPage, error_code};
use rempart_proto::directory::{self as kt, HeadWithCosignatures};
use rempart_proto::mail::{MAIL_LOOKUP_PATH, MailLookupResponse};
use rempart_proto::{DeviceId, PublicKey};
use rempart_testkit::{
    Cosigner, Proxy, RawMember, TestServer, account, alerts, cosign_latest_head,
    inject_ghost_device, inject_log_entry, latest_head_epoch, name,
    register_with_foreign_key_package, serve_unpublished_device_list, sign_head, stored_log_page,
    substitute_account_key, t, texts, wait_for_epoch,
};
use rempart_testkit::{
    forge_device_list, give_mail_address, give_mail_address_back, stored_device_list,
    wait_until_published,
};
use tempfile::TempDir;

const EPOCHS: Duration = Duration::from_millis(50);

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        attack("ghost_device", ghost_device),
        attack("account_key_substitution", account_key_substitution),
        attack(
            "key_substitution_in_a_verified_conversation",
            key_substitution_in_a_verified_conversation,
        ),
        attack("unproven_device_list", unproven_device_list),
        attack("split_view", split_view),
        attack("hidden_epoch", hidden_epoch),
        attack("rollback", rollback),
        attack("witness_quorum_missing", witness_quorum_missing),
        attack("ghost_member", ghost_member),
        attack("key_package_substitution", key_package_substitution),
        attack("dropped_message", dropped_message),
        attack("replayed_message", replayed_message),
        attack("withheld_removal", withheld_removal),
        attack("delivery_to_a_removed_member", delivery_to_a_removed_member),
        attack("ciphersuite_downgrade", ciphersuite_downgrade),
        attack("forced_last_resort", forced_last_resort),
        attack("forked_conversation", forked_conversation),
        attack("replayed_commit", replayed_commit),
        attack("external_join", external_join),
        attack("silent_eviction", silent_eviction),
        attack(
            "removal_hidden_from_the_removed_member",
            removal_hidden_from_the_removed_member,
        ),
        attack("public_message_commit", public_message_commit),
        attack("truncated_commit", truncated_commit),
        attack("injected_commit", injected_commit),
        attack(
            "ghost_device_during_the_quorum_wait",
            ghost_device_during_the_quorum_wait,
        ),
        attack("replayed_device_list", replayed_device_list),
        attack("endless_log_page", endless_log_page),
        attack("tampered_link_request", tampered_link_request),
        attack(
            "mail_address_given_to_another_account",
            mail_address_given_to_another_account,
        ),
        attack("older_mail_key", older_mail_key),
        attack(
            "mail_address_given_away_and_back",
            mail_address_given_away_and_back,
        ),
    ];
    assert_eq!(
        trials.len(),
        ATTACKS.len(),
        "every attack of the catalogue is performed"
    );
    let conclusion = libtest_mimic::run(&args, trials);
    println!(
        "attacks: {} performed, {} detected",
        conclusion.num_passed + conclusion.num_failed,
        conclusion.num_passed
    );
    conclusion.exit();
}

/// The trial of the catalogue's attack named `test`: a fresh runtime runs
/// it; a panic is an attack that went undetected.
fn attack<F>(test: &'static str, run: fn() -> F) -> Trial
where
    F: Future<Output = ()> + 'static,
{
    let entry = ATTACKS
        .iter()
        .find(|a| a.test == test)
        .unwrap_or_else(|| panic!("{test} is not in the catalogue"));
    Trial::test(format!("{:02}_{test}", entry.number), move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run());
        Ok(())
    })
}

/// A real server, a malicious proxy in front of it, and the place where
/// the people of one attack keep their devices.
struct Scene {
    server: TestServer,
    view: Proxy,
    homes: TempDir,
}

impl Scene {
    async fn start() -> Self {
        let server = TestServer::start().await;
        let view = Proxy::start(&server.url).await;
        Self {
            server,
            view,
            homes: TempDir::new().unwrap(),
        }
    }

    /// A user who talks to the real server.
    async fn direct(&self, user: &str) -> Client {
        account(&self.server, &self.homes.path().join(user), user).await
    }

    /// A user who is shown what the proxy lets through.
    async fn watched(&self, user: &str) -> Client {
        Client::create_account(&self.homes.path().join(user), &self.view.url, name(user))
            .await
            .unwrap()
    }
}

/// Whether `events` hold an alert `code` about `conversation`.
fn alert_about(events: &[Event], code: AlertCode, conversation: &str) -> bool {
    events.iter().any(|e| {
        matches!(e, Event::Alert { code: c, conversation: Some(name), .. } if *c == code && name == conversation)
    })
}

fn alert_code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> AlertCode {
    match result {
        Err(ClientError::Alert(alert)) => alert.code,
        other => panic!("expected an alert, got {other:?}"),
    }
}

async fn ghost_device() {
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

async fn account_key_substitution() {
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

async fn key_substitution_in_a_verified_conversation() {
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

async fn unproven_device_list() {
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

/// The server shows Bob (through his own connection) another head than
/// Alice's for a new epoch, signed with its directory key. Bob's own
/// monitoring sees the fork; Alice, shown the real directory, learns of it
/// from the head Bob's next message carries.
async fn split_view() {
    let scene = Scene::start().await;
    let (server, bobs_view) = (&scene.server, &scene.view);
    let mut alice = scene.direct("alice").await;
    let mut bob = scene.watched("bob").await;
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
    let _carol = scene.direct("carol").await;
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
async fn hidden_epoch() {
    let scene = Scene::start().await;
    let (server, alices_view) = (&scene.server, &scene.view);
    let mut alice = scene.watched("alice").await;
    let mut bob = scene.direct("bob").await;
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
    let _carol = scene.direct("carol").await;
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

async fn rollback() {
    let mut server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    wait_for_epoch(server.data_dir(), 1).await;
    let backup = server.snapshot();
    let _bob = account(&server, &homes.path().join("bob"), "bob").await;
    wait_for_epoch(server.data_dir(), 2).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());

    server.restart_from(backup.path()).await;
    assert_eq!(latest_head_epoch(server.data_dir()), 1);
    assert_eq!(
        alerts(&alice.sync().await.unwrap()),
        [AlertCode::DirectoryRollback]
    );
}

async fn witness_quorum_missing() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    assert_eq!(alice.whoami().witness_quorum, 0);
    let witness = SigningKey::from_bytes(&[5; 32]);
    alice
        .set_witnesses(&[PublicKey::new(witness.verifying_key())], None)
        .unwrap();
    assert_eq!(alice.whoami().witness_quorum, 1);
    // No grace: a head must be cosigned when it is first seen.
    alice.set_witness_grace(Duration::ZERO).unwrap();
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

async fn ghost_member() {
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

async fn key_package_substitution() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    register_with_foreign_key_package(&server.url, "mallory").await;

    let err = alice
        .send_text(&name("mallory"), "secret")
        .await
        .unwrap_err();
    match err {
        ClientError::Alert(alert) => assert_eq!(alert.code, AlertCode::UnauthorizedMember),
        other => panic!("expected an alert, got {other:?}"),
    }
    // No conversation was created: a later send tries again and refuses again.
    let err = alice
        .send_text(&name("mallory"), "secret")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Alert(a) if a.code == AlertCode::UnauthorizedMember));
}

/// Rewrites the group-log pages a proxy passes on with `edit`.
fn edit_log_pages(proxy: &Proxy, edit: impl Fn(&mut LogPage) + Send + Sync + 'static) {
    proxy.rewrite(move |exchange| {
        if exchange.path.contains("/log?") && exchange.status == 200 {
            let mut page: LogPage = serde_json::from_slice(&exchange.body).unwrap();
            edit(&mut page);
            exchange.body = serde_json::to_vec(&page).unwrap();
        }
    });
}

async fn dropped_message() {
    let scene = Scene::start().await;
    let bobs_view = &scene.view;
    let mut alice = scene.direct("alice").await;
    let mut bob = scene.watched("bob").await;
    alice.send_text(&name("bob"), "one").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        [t("alice", "alice", "one")]
    );

    // The server drops "two" from what Bob is shown, and numbers the log
    // around the hole so that nothing looks missing.
    edit_log_pages(bobs_view, |page| {
        let Some(hidden) = page
            .entries
            .iter()
            .position(|e| e.kind == EntryKind::Application)
        else {
            return;
        };
        page.entries.remove(hidden);
        for entry in &mut page.entries[hidden..] {
            entry.seq -= 1;
        }
        page.last_seq -= 1;
    });
    alice.send_text(&name("bob"), "two").await.unwrap();
    alice.send_text(&name("bob"), "three").await.unwrap();
    let events = bob.sync().await.unwrap();
    assert_eq!(texts(&events), [t("alice", "alice", "three")]);
    assert_eq!(alerts(&events), [AlertCode::MessageGap], "{events:?}");
    assert!(
        alert_about(&events, AlertCode::MessageGap, "alice"),
        "the alert names the conversation: {events:?}"
    );
}

async fn replayed_message() {
    let scene = Scene::start().await;
    let bobs_view = &scene.view;
    let mut alice = scene.direct("alice").await;
    let mut bob = scene.watched("bob").await;
    alice.send_text(&name("bob"), "one").await.unwrap();

    // Every entry is served twice under its own number, and the last one
    // again under the next number, as if it were new.
    edit_log_pages(bobs_view, |page| {
        let mut doubled = Vec::new();
        for entry in page.entries.drain(..) {
            doubled.push(entry.clone());
            doubled.push(entry);
        }
        if let Some(last) = doubled.last().cloned() {
            let mut replay = last;
            replay.seq += 1;
            page.last_seq = replay.seq;
            doubled.push(replay);
        }
        page.entries = doubled;
    });
    let events = bob.sync().await.unwrap();
    assert_eq!(texts(&events), [t("alice", "alice", "one")], "shown once");
    assert!(alerts(&events).is_empty(), "{events:?}");

    // The replay took the number of Alice's next message: Bob's log cursor
    // skips it. Her message after that shows what was withheld.
    bobs_view.honest();
    alice.send_text(&name("bob"), "two").await.unwrap();
    alice.send_text(&name("bob"), "three").await.unwrap();
    let events = bob.sync().await.unwrap();
    assert_eq!(texts(&events), [t("alice", "alice", "three")]);
    assert_eq!(alerts(&events), [AlertCode::MessageGap], "{events:?}");
    // The conversation still works both ways.
    bob.send_text(&name("alice"), "still here").await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [t("bob", "bob", "still here")]
    );
}

async fn withheld_removal() {
    let scene = Scene::start().await;
    let bobs_view = &scene.view;
    let mut alice = scene.direct("alice").await;
    let mut bob = scene.watched("bob").await;
    let mut carol = scene.direct("carol").await;
    alice
        .create_group("team", &[name("bob"), name("carol")])
        .await
        .unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();

    // The server hides Carol's removal from Bob, numbering the log around
    // it, and passes on what follows.
    edit_log_pages(bobs_view, |page| {
        if let Some(hidden) = page
            .entries
            .iter()
            .position(|e| e.kind == EntryKind::Commit)
        {
            page.entries.remove(hidden);
            for entry in &mut page.entries[hidden..] {
                entry.seq -= 1;
            }
            page.last_seq -= 1;
        }
    });
    alice.remove_member("team", &name("carol")).await.unwrap();
    alice.send_to_group("team", "carol is gone").await.unwrap();
    let events = bob.sync().await.unwrap();
    assert!(texts(&events).is_empty(), "{events:?}");
    assert_eq!(alerts(&events), [AlertCode::MessageGap], "{events:?}");
    // Carol, removed, reads nothing new either.
    assert!(texts(&carol.sync().await.unwrap()).is_empty());
}

async fn delivery_to_a_removed_member() {
    let scene = Scene::start().await;
    let (server, carols_view) = (&scene.server, &scene.view);
    let (mut alice, mut bob, mut carol) = team_with_carol_watched(&scene).await;

    // The server keeps serving Carol the whole log after her removal.
    let data_dir = server.data_dir().to_owned();
    carols_view.rewrite(move |exchange| {
        let Some(rest) = exchange.path.strip_prefix("/v1/groups/") else {
            return;
        };
        let Some((group, query)) = rest.split_once("/log?after=") else {
            return;
        };
        let after: u64 = query.split('&').next().unwrap().parse().unwrap();
        let page = rempart_testkit::stored_log_page(&data_dir, &group.parse().unwrap(), after);
        exchange.status = 200;
        exchange.body = serde_json::to_vec(&page).unwrap();
    });
    alice.remove_member("team", &name("carol")).await.unwrap();
    alice
        .send_to_group("team", "after carol left")
        .await
        .unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        [t("team", "alice", "after carol left")]
    );
    let events = carol.sync().await.unwrap();
    assert!(
        texts(&events).is_empty(),
        "nothing after her removal: {events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e,
            Event::MemberRemoved { user, .. } if user.as_str() == "carol")),
        "Carol sees her removal: {events:?}"
    );
}

async fn ciphersuite_downgrade() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    // Mallory's only KeyPackage is signed by her listed device key, in a
    // ciphersuite other than Rempart's.
    let weaker = openmls::prelude::Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;
    RawMember::register_in(&server.url, "mallory", weaker).await;

    let refused = alice.send_text(&name("mallory"), "secret").await;
    assert_eq!(alert_code(refused), AlertCode::CiphersuiteDowngrade);
    // Nothing was encrypted to her: no conversation, no Welcome.
    assert!(alice.conversations().unwrap().is_empty());
    let welcomes: i64 =
        rusqlite::Connection::open(rempart_testkit::server_database(server.data_dir()))
            .unwrap()
            .query_row("SELECT COUNT(*) FROM inbox", [], |r| r.get(0))
            .unwrap();
    assert_eq!(welcomes, 0);
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
}

async fn forced_last_resort() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    rempart_testkit::withhold_one_time_key_packages(server.data_dir(), "bob");

    // It works...
    alice.send_text(&name("bob"), "hello").await.unwrap();
    let events = bob.sync().await.unwrap();
    assert_eq!(texts(&events), [t("alice", "alice", "hello")]);
    // ...and Bob is told.
    assert_eq!(alerts(&events), [AlertCode::LastResortUsed], "{events:?}");
    assert!(
        alert_about(&events, AlertCode::LastResortUsed, "alice"),
        "{events:?}"
    );
    // Gone without claims: the server is named as the one that withheld
    // them, and Bob is not told that anyone drained them.
    assert!(
        events.iter().any(|e| matches!(e,
            Event::Alert { code: AlertCode::LastResortUsed, message, .. }
                if message.contains("only 0 were claimed: the server withheld the rest"))),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::KeyPackagesDrained { .. })),
        "{events:?}"
    );
    bob.send_text(&name("alice"), "hi").await.unwrap();
    assert_eq!(texts(&alice.sync().await.unwrap()), [t("bob", "bob", "hi")]);
}

async fn forked_conversation() {
    let scene = Scene::start().await;
    let bobs_view = &scene.view;
    let mut alice = scene.direct("alice").await;
    let mut bob = scene.watched("bob").await;
    let _carol = scene.direct("carol").await;
    let _dave = scene.direct("dave").await;
    alice.create_group("team", &[name("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    let epoch = bob.group_epoch("team").unwrap();

    // Alice's commit takes the next epoch. The server hides it from Bob and
    // pretends to accept Bob's own commit for the same epoch: each of them
    // now holds a different next epoch.
    alice.add_member("team", &name("carol")).await.unwrap();
    bobs_view.rewrite(|exchange| {
        if exchange.path.contains("/log?") && exchange.status == 200 {
            let mut page: LogPage = serde_json::from_slice(&exchange.body).unwrap();
            page.entries.clear();
            exchange.body = serde_json::to_vec(&page).unwrap();
        } else if exchange.method == "POST" && exchange.path.ends_with("/commits") {
            exchange.status = 200;
            exchange.body = serde_json::to_vec(&Appended { seq: 99, epoch: 99 }).unwrap();
        }
    });
    bob.add_member("team", &name("dave")).await.unwrap();
    assert_eq!(bob.group_epoch("team").unwrap(), epoch + 1);

    // As soon as Bob is shown Alice's commit, the fork is out.
    bobs_view.honest();
    let events = bob.sync().await.unwrap();
    assert!(
        alerts(&events).contains(&AlertCode::ConversationFork),
        "{events:?}"
    );
}

async fn replayed_commit() {
    let scene = Scene::start().await;
    let bobs_view = &scene.view;
    let mut alice = scene.direct("alice").await;
    let mut bob = scene.watched("bob").await;
    let _carol = scene.direct("carol").await;
    alice.create_group("team", &[name("bob")]).await.unwrap();
    bob.sync().await.unwrap();

    // Every commit Bob is shown is shown again right after, as a new entry.
    edit_log_pages(bobs_view, |page| {
        let mut replayed = Vec::new();
        for entry in page.entries.drain(..) {
            replayed.push(entry.clone());
            if entry.kind == EntryKind::Commit {
                let mut again = entry;
                again.seq += 1;
                replayed.push(again);
            }
        }
        let mut seq = replayed.first().map_or(0, |e| e.seq);
        for entry in &mut replayed {
            entry.seq = seq;
            seq += 1;
        }
        page.last_seq = seq.saturating_sub(1);
        page.entries = replayed;
    });
    alice.add_member("team", &name("carol")).await.unwrap();
    let events = bob.sync().await.unwrap();
    assert!(alerts(&events).is_empty(), "{events:?}");
    // The replay changed nothing: same epoch and roster as Alice's.
    assert_eq!(
        bob.group_epoch("team").unwrap(),
        alice.group_epoch("team").unwrap()
    );
    assert_eq!(
        bob.group_members("team").unwrap(),
        alice.group_members("team").unwrap()
    );
    bobs_view.honest();
    bob.send_to_group("team", "still one group").await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [t("team", "bob", "still one group")]
    );
}

async fn external_join() {
    let scene = Scene::start().await;
    let (server, alices_view) = (&scene.server, &scene.view);
    let mut alice = scene.watched("alice").await;
    let mut mallory = RawMember::register(&server.url, "mallory").await;
    alice
        .create_group("team", &[name("mallory")])
        .await
        .unwrap();
    mallory.join().await;
    let members = alice.group_members("team").unwrap();
    let epoch = alice.group_epoch("team").unwrap();

    // The operator's own device joins by an external commit, from a
    // GroupInfo a member leaked, and the server puts the commit in Alice's
    // log.
    let mut operator = RawMember::register(&server.url, "operator").await;
    let commit = operator.external_commit(&mallory.leak_group_info());
    let sender = operator.device.device;
    edit_log_pages(alices_view, move |page| {
        page.last_seq += 1;
        page.entries.push(rempart_proto::api::LogEntry {
            seq: page.last_seq,
            kind: EntryKind::Commit,
            epoch,
            sender,
            message_id: rempart_proto::MessageId::random(),
            data: commit.clone(),
        });
    });
    let events = alice.sync().await.unwrap();
    assert_eq!(
        alerts(&events),
        [AlertCode::UnauthorizedMember],
        "{events:?}"
    );
    assert_eq!(alice.group_members("team").unwrap(), members);
    assert_eq!(alice.group_epoch("team").unwrap(), epoch, "not merged");
}

/// Answers every group-log read through `proxy` as if the device were not a
/// member: `403 forbidden`, with no commit that removed it.
fn refuse_log(proxy: &Proxy) {
    proxy.rewrite(|exchange| {
        if exchange.path.contains("/log?") {
            exchange.status = 403;
            exchange.body = serde_json::to_vec(&ErrorBody {
                error: error_code::FORBIDDEN.to_owned(),
                message: "not a member of this group".to_owned(),
                current_epoch: None,
                retry_after_secs: None,
            })
            .unwrap();
        }
    });
}

/// The users and device count of `name`'s roster as `client` holds it.
fn roster(client: &Client, name: &str) -> (Vec<String>, usize) {
    let members = client.group_members(name).unwrap();
    let mut users: Vec<String> = members.iter().map(|m| m.user.to_string()).collect();
    users.dedup();
    (users, members.len())
}

/// A group of Alice, Bob and Carol, where only Carol is shown what the
/// proxy lets through; everyone has caught up.
async fn team_with_carol_watched(scene: &Scene) -> (Client, Client, Client) {
    let mut alice = scene.direct("alice").await;
    let mut bob = scene.direct("bob").await;
    let mut carol = scene.watched("carol").await;
    alice
        .create_group("team", &[name("bob"), name("carol")])
        .await
        .unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    alice.send_to_group("team", "before").await.unwrap();
    assert_eq!(
        texts(&carol.sync().await.unwrap()),
        [t("team", "alice", "before")]
    );
    bob.sync().await.unwrap();
    (alice, bob, carol)
}

async fn silent_eviction() {
    let scene = Scene::start().await;
    let carols_view = &scene.view;
    let (mut alice, mut bob, mut carol) = team_with_carol_watched(&scene).await;

    // The server stops serving Carol the log, with no commit removing her,
    // while Alice and Bob go on writing to the group.
    refuse_log(carols_view);
    alice
        .send_to_group("team", "while carol is cut off")
        .await
        .unwrap();
    let events = carol.sync().await.unwrap();
    assert!(texts(&events).is_empty(), "{events:?}");
    assert_eq!(
        alerts(&events),
        [AlertCode::ConversationWithheld],
        "{events:?}"
    );
    assert!(alert_about(
        &events,
        AlertCode::ConversationWithheld,
        "team"
    ));
    // Said once while it lasts, not at every sync; the conversation stays.
    let again = carol.sync().await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    let listed = carol.conversations().unwrap();
    assert!(
        listed.iter().any(|c| c.name == "team" && !c.ended),
        "{listed:?}"
    );
    // The server gained no way in: the roster is still the three of them,
    // one device each, for every member.
    let three = (
        vec!["alice".to_owned(), "bob".to_owned(), "carol".to_owned()],
        3,
    );
    assert_eq!(roster(&alice, "team"), three);
    bob.sync().await.unwrap();
    assert_eq!(roster(&bob, "team"), three);
    assert_eq!(roster(&carol, "team"), three);

    // Served again, Carol reads what she missed, and a new refusal is a new
    // alert.
    carols_view.honest();
    let events = carol.sync().await.unwrap();
    assert_eq!(
        texts(&events),
        [t("team", "alice", "while carol is cut off")]
    );
    assert!(alerts(&events).is_empty(), "{events:?}");
    refuse_log(carols_view);
    let events = carol.sync().await.unwrap();
    assert_eq!(
        alerts(&events),
        [AlertCode::ConversationWithheld],
        "{events:?}"
    );
}

async fn removal_hidden_from_the_removed_member() {
    let scene = Scene::start().await;
    let carols_view = &scene.view;
    let (mut alice, mut bob, mut carol) = team_with_carol_watched(&scene).await;

    // Alice removes Carol; the server keeps the removing commit from her,
    // refusing her the log as if she had never been a member.
    refuse_log(carols_view);
    alice.remove_member("team", &name("carol")).await.unwrap();
    alice.send_to_group("team", "carol is gone").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        [t("team", "alice", "carol is gone")]
    );
    let events = carol.sync().await.unwrap();
    assert!(texts(&events).is_empty(), "{events:?}");
    assert_eq!(
        alerts(&events),
        [AlertCode::ConversationWithheld],
        "{events:?}"
    );
    assert!(alert_about(
        &events,
        AlertCode::ConversationWithheld,
        "team"
    ));
    assert!(carol.sync().await.unwrap().is_empty(), "one alert only");

    // Once the commit is served, she sees her removal, by Alice, and still
    // reads nothing sent after it.
    carols_view.honest();
    let events = carol.sync().await.unwrap();
    assert!(texts(&events).is_empty(), "{events:?}");
    assert!(alerts(&events).is_empty(), "{events:?}");
    assert!(
        events.iter().any(|e| matches!(e,
            Event::MemberRemoved { user, sender, .. }
                if user.as_str() == "carol" && sender.as_str() == "alice")),
        "{events:?}"
    );
    let listed = carol.conversations().unwrap();
    assert!(
        listed.iter().any(|c| c.name == "team" && c.ended),
        "{listed:?}"
    );
}

/// Alice and Bob on Rempart, and Mallory, a member built directly on
/// openmls, in "team"; everyone has caught up.
async fn team_with_mallory(server: &TestServer, homes: &TempDir) -> (Client, Client, RawMember) {
    let mut alice = account(server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(server, &homes.path().join("bob"), "bob").await;
    let mut mallory = RawMember::register(&server.url, "mallory").await;
    alice
        .create_group("team", &[name("bob"), name("mallory")])
        .await
        .unwrap();
    mallory.join().await;
    bob.sync().await.unwrap();
    alice.send_to_group("team", "hello").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        [t("team", "alice", "hello")]
    );
    (alice, bob, mallory)
}

/// After a log entry the members cannot process as a commit, from device
/// `sender` (and `valid_commits` valid ones after it): each member gets
/// exactly `invalid_commit` naming the conversation and that device, all
/// stay on one epoch, and then they send, receive, add, remove and
/// self-update as before.
async fn the_conversation_goes_on(
    server: &TestServer,
    homes: &TempDir,
    (mut alice, mut bob): (Client, Client),
    sender: DeviceId,
    valid_commits: u64,
) {
    let epoch = alice.group_epoch("team").unwrap() + valid_commits;
    for member in [&mut alice, &mut bob] {
        let events = member.sync().await.unwrap();
        assert_eq!(alerts(&events), [AlertCode::InvalidCommit], "{events:?}");
        assert!(
            events.iter().any(|e| matches!(e,
                Event::Alert { code: AlertCode::InvalidCommit, conversation: Some(c), message, .. }
                    if c == "team" && message.contains(&sender.to_string()))),
            "the alert names the conversation and the sender device: {events:?}"
        );
        assert_eq!(member.group_epoch("team").unwrap(), epoch, "not merged");
        let again = member.sync().await.unwrap();
        assert!(again.is_empty(), "said once: {again:?}");
    }

    // Messages both ways.
    alice.send_to_group("team", "still here").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        [t("team", "alice", "still here")]
    );
    bob.send_to_group("team", "me too").await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [t("team", "bob", "me too")]
    );

    // An add: the newcomer is not told about history from before it.
    let mut dave = account(server, &homes.path().join("dave"), "dave").await;
    alice.add_member("team", &name("dave")).await.unwrap();
    let events = dave.sync().await.unwrap();
    assert!(alerts(&events).is_empty(), "{events:?}");
    let events = bob.sync().await.unwrap();
    assert!(alerts(&events).is_empty(), "{events:?}");

    // A removal, and a self-update.
    bob.remove_member("team", &name("mallory")).await.unwrap();
    dave.update_group_keys("team").await.unwrap();
    dave.send_to_group("team", "dave here").await.unwrap();
    for member in [&mut alice, &mut bob] {
        let events = member.sync().await.unwrap();
        assert!(alerts(&events).is_empty(), "{events:?}");
        assert_eq!(texts(&events), [t("team", "dave", "dave here")]);
    }
    let epoch = dave.group_epoch("team").unwrap();
    assert_eq!(alice.group_epoch("team").unwrap(), epoch);
    assert_eq!(bob.group_epoch("team").unwrap(), epoch);
    let roster: Vec<String> = alice
        .group_members("team")
        .unwrap()
        .iter()
        .map(|m| m.user.to_string())
        .collect();
    assert_eq!(roster, ["alice", "bob", "dave"]);
}

async fn public_message_commit() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let (alice, bob, mut mallory) = team_with_mallory(&server, &homes).await;
    // Mallory commits as a PublicMessage, against the group's policy; the
    // server accepts it (it cannot tell) and moves its epoch counter.
    assert_eq!(mallory.commit_update_as_public_message().await, 200);
    // She then follows the policy, as an independent MLS implementation
    // would: her next commit is encrypted, built on the group's epoch, and
    // sent for the server's epoch counter, one ahead.
    let server_epoch = alice.group_epoch("team").unwrap() + 1;
    assert_eq!(mallory.commit_update_at(server_epoch).await, 200);
    let sender = mallory.device.device;
    the_conversation_goes_on(&server, &homes, (alice, bob), sender, 1).await;
}

async fn truncated_commit() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let (alice, bob, mut mallory) = team_with_mallory(&server, &homes).await;
    assert_eq!(mallory.commit_truncated().await, 200);
    let sender = mallory.device.device;
    the_conversation_goes_on(&server, &homes, (alice, bob), sender, 0).await;
}

async fn injected_commit() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let (alice, bob, mallory) = team_with_mallory(&server, &homes).await;
    // The server appends a "commit" of its own, from a device of no
    // member: Alice's last message, replayed as a commit.
    let group = mallory.group_id();
    let page = stored_log_page(server.data_dir(), &group, 0);
    let replayed = page
        .entries
        .iter()
        .rev()
        .find(|e| e.kind == EntryKind::Application)
        .unwrap();
    let sender = DeviceId::random();
    inject_log_entry(
        server.data_dir(),
        &group,
        EntryKind::Commit,
        sender,
        &replayed.data,
    );
    the_conversation_goes_on(&server, &homes, (alice, bob), sender, 0).await;
}

async fn ghost_device_during_the_quorum_wait() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let witness = SigningKey::from_bytes(&[7; 32]);
    let cosigner = Cosigner::start(&server.url, witness.clone());
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    for person in [&alice, &bob] {
        person
            .set_witnesses(&[PublicKey::new(witness.verifying_key())], None)
            .unwrap();
        person.set_witness_wait(Duration::from_secs(1)).unwrap();
    }
    // With the witness cosigning, a new contact is waited for and trusted.
    alice.create_group("team", &[name("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    let members = alice.group_members("team").unwrap();

    // The server forks away from its witness and shows a ghost device of
    // Bob's under heads nobody cosigned.
    drop(cosigner);
    let epoch = latest_head_epoch(server.data_dir());
    inject_ghost_device(server.data_dir(), "bob");
    wait_for_epoch(server.data_dir(), epoch + 1).await;
    let events = alice.sync().await.unwrap();
    assert_eq!(
        alerts(&events),
        [AlertCode::WitnessQuorumMissing],
        "{events:?}"
    );
    // Nothing is encrypted to the ghost: the roster is what it was, and
    // what Alice sends goes to it alone.
    assert_eq!(alice.group_members("team").unwrap(), members);
    alice.send_to_group("team", "just us").await.unwrap();
    assert_eq!(alice.group_members("team").unwrap(), members);
}

/// The version of `user`'s device list in a lookups response body, if it
/// holds one.
fn looked_up_version(body: &[u8], user: &str) -> Option<u64> {
    let response: kt::LookupsResponse = serde_json::from_slice(body).ok()?;
    let lookup = response.lookups.iter().find(|l| l.user.as_str() == user)?;
    let list: rempart_proto::DeviceList = serde_json::from_slice(&lookup.device_list.list).ok()?;
    Some(list.version)
}

async fn replayed_device_list() {
    let scene = Scene::start().await;
    let alices_view = &scene.view;
    let mut alice = scene.watched("alice").await;
    let mut bob = scene.direct("bob").await;
    // The server keeps every answer that showed Alice a list of Bob's.
    let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, Vec<u8>)>::new()));
    {
        let kept = kept.clone();
        alices_view.rewrite(move |exchange| {
            if exchange.path == kt::LOOKUPS_PATH
                && exchange.status == 200
                && let Some(version) = looked_up_version(&exchange.body, "bob")
            {
                kept.lock().unwrap().push((version, exchange.body.clone()));
            }
        });
    }
    alice.create_group("team", &[name("bob")]).await.unwrap();
    bob.sync().await.unwrap();

    // Bob links a laptop (his list's version 2), Alice adds it; then he
    // removes it, lost (version 3), and Alice takes it out.
    let pending = bob.start_link().await.unwrap();
    let code = pending.code().to_owned();
    let laptop_home = scene.homes.path().join("bob-laptop");
    let (linked, laptop) = tokio::join!(
        bob.finish_link(pending, Duration::from_millis(20)),
        Client::link_device(
            &laptop_home,
            &scene.server.url,
            &code,
            Duration::from_millis(20)
        ),
    );
    let laptop_device = linked.unwrap();
    drop(laptop.unwrap());
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
    let with_laptop = alice.group_members("team").unwrap();
    assert_eq!(with_laptop.len(), 3, "{with_laptop:?}");
    bob.remove_device(laptop_device).await.unwrap();
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
    let without_laptop = alice.group_members("team").unwrap();
    assert_eq!(without_laptop.len(), 2, "{without_laptop:?}");

    // The server answers Alice's next lookup with the older list, validly
    // signed by Bob's account key and proven at its own epoch, that still
    // holds the laptop.
    let older = kept
        .lock()
        .unwrap()
        .iter()
        .find(|(version, _)| *version == 2)
        .map(|(_, body)| body.clone())
        .expect("Alice was shown version 2");
    alices_view.rewrite(move |exchange| {
        if exchange.path == kt::LOOKUPS_PATH && exchange.status == 200 {
            exchange.body = older.clone();
        }
    });
    let events = alice.sync().await.unwrap();
    assert_eq!(
        alerts(&events),
        [AlertCode::DirectoryRollback],
        "{events:?}"
    );
    // The lost laptop does not come back.
    assert_eq!(alice.group_members("team").unwrap(), without_laptop);
    assert!(
        !alice
            .group_members("team")
            .unwrap()
            .iter()
            .any(|m| m.device == laptop_device)
    );
}

async fn endless_log_page() {
    let scene = Scene::start().await;
    let bobs_view = &scene.view;
    let mut alice = scene.direct("alice").await;
    let mut bob = scene.watched("bob").await;
    alice.send_text(&name("bob"), "one").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        [t("alice", "alice", "one")]
    );

    // Every page Bob asks for is full of entries he already has (the log's
    // first entry, over and over), and says there is more: a client that
    // kept asking would never stop.
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    alice.send_text(&name("bob"), "two").await.unwrap();
    {
        let served = served.clone();
        bobs_view.rewrite(move |exchange| {
            if exchange.path.contains("/log?") && exchange.status == 200 {
                served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut page: LogPage = serde_json::from_slice(&exchange.body).unwrap();
                let stale = rempart_proto::api::LogEntry {
                    seq: 1,
                    ..page
                        .entries
                        .first()
                        .cloned()
                        .unwrap_or_else(|| panic!("{page:?}"))
                };
                page.entries = vec![stale; rempart_proto::limits::MAX_PAGE as usize];
                page.last_seq += 1_000_000;
                exchange.body = serde_json::to_vec(&page).unwrap();
            }
        });
    }
    let result = bob.sync().await;
    assert!(
        matches!(result, Err(ClientError::BadLog { ref conversation, .. }) if conversation == "alice"),
        "{result:?}"
    );
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one page without progress ends it"
    );
    // Served honestly again, the conversation goes on where it was.
    bobs_view.honest();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        [t("alice", "alice", "two")]
    );
}

/// Links a new device of `phone`'s account, through `scene`, with `home`.
async fn link_laptop(scene: &Scene, phone: &mut Client, home: &str) -> rempart_proto::DeviceId {
    let pending = phone.start_link().await.unwrap();
    let code = pending.code().to_owned();
    let laptop_home = scene.homes.path().join(home);
    let (linked, laptop) = tokio::join!(
        phone.finish_link(pending, Duration::from_millis(20)),
        Client::link_device(
            &laptop_home,
            &scene.server.url,
            &code,
            Duration::from_millis(20)
        ),
    );
    drop(laptop.unwrap());
    linked.unwrap()
}

async fn tampered_link_request() {
    let scene = Scene::start().await;
    let phones_view = &scene.view;
    let mut phone = scene.watched("alice").await;
    // The server keeps the sealed request of an honest link.
    let kept = std::sync::Arc::new(std::sync::Mutex::new(None::<Vec<u8>>));
    {
        let kept = kept.clone();
        phones_view.rewrite(move |exchange| {
            if exchange.method == "GET"
                && exchange.path.starts_with("/v1/links/")
                && !exchange.path.ends_with("/response")
                && exchange.status == 200
                && let Ok(state) = serde_json::from_slice::<LinkState>(&exchange.body)
                && let Some(sealed) = state.sealed
            {
                *kept.lock().unwrap() = Some(sealed);
            }
        });
    }
    link_laptop(&scene, &mut phone, "alice-laptop").await;
    let replayed = kept
        .lock()
        .unwrap()
        .clone()
        .expect("the honest request was seen");
    let devices = phone.devices().await.unwrap();
    assert_eq!(devices.len(), 2);

    // At the next link, the server answers the phone's wait with a sealed
    // request of its own: the one of the earlier link (a replay), then that
    // one with a byte changed (a substitution). No new device posted one.
    let mut substituted = replayed.clone();
    substituted[0] ^= 1;
    for sealed in [replayed, substituted] {
        phones_view.rewrite(move |exchange| {
            if exchange.method == "GET"
                && exchange.path.starts_with("/v1/links/")
                && !exchange.path.ends_with("/response")
            {
                exchange.status = 200;
                exchange.body = serde_json::to_vec(&LinkState {
                    sealed: Some(sealed.clone()),
                })
                .unwrap();
            }
        });
        let pending = phone.start_link().await.unwrap();
        let refused = phone.finish_link(pending, Duration::from_millis(20)).await;
        assert!(
            matches!(refused, Err(ClientError::LinkTampered)),
            "{refused:?}"
        );
        // No device was added: the account's list is what it was.
        phones_view.honest();
        assert_eq!(phone.devices().await.unwrap(), devices);
        assert!(alerts(&phone.sync().await.unwrap()).is_empty());
    }
}

const ALICES_ADDRESS: &str = "alice@example.org";

async fn mail_address_given_to_another_account() {
    let scene = Scene::start().await;
    let data = scene.server.data_dir();
    let mut alice = scene.direct("alice").await;
    let bob = scene.direct("bob").await;
    let carol = scene.watched("carol").await;
    let genuine = alice.create_mail_key(ALICES_ADDRESS, false).await.unwrap();
    wait_until_published(data).await;
    bob.lookup_mail_key(ALICES_ADDRESS).await.unwrap();
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());

    // A certificate of the operator's for Alice's address.
    let address = MailAddress::parse(ALICES_ADDRESS).unwrap();
    let (forged, certificate) = throwaway_certificate("alice", &address).unwrap();

    // Carol is shown it beside the genuine proofs.
    {
        let certificate = certificate.clone();
        scene.view.rewrite(move |exchange| {
            if exchange.path == MAIL_LOOKUP_PATH && exchange.status == 200 {
                let mut answer: MailLookupResponse =
                    serde_json::from_slice(&exchange.body).unwrap();
                answer.certificate = certificate.clone();
                exchange.body = serde_json::to_vec(&answer).unwrap();
            }
        });
    }
    assert_eq!(
        alert_code(carol.lookup_mail_key(ALICES_ADDRESS).await),
        AlertCode::KtProofInvalid
    );
    assert!(
        carol.show_mail_key(ALICES_ADDRESS).is_err(),
        "nothing was kept"
    );

    // Then the operator publishes the address under an account it made.
    give_mail_address(
        data,
        ALICES_ADDRESS,
        "mallory",
        forged.as_str(),
        &certificate,
    );
    wait_until_published(data).await;
    assert_eq!(
        alert_code(bob.lookup_mail_key(ALICES_ADDRESS).await),
        AlertCode::MailKeyChanged
    );
    let kept = bob.show_mail_key(ALICES_ADDRESS).unwrap();
    assert_eq!(
        kept.fingerprint, genuine.fingerprint,
        "the genuine one stays"
    );
    assert_eq!(kept.changed_to.as_deref(), Some(forged.as_str()));
    // Alice sees it, and sees it again at every sync.
    for _ in 0..2 {
        let events = alice.sync().await.unwrap();
        assert_eq!(
            alerts(&events),
            [AlertCode::UnknownOwnMailKey],
            "{events:?}"
        );
    }
}

async fn older_mail_key() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let data = server.data_dir();
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice.create_mail_key(ALICES_ADDRESS, false).await.unwrap();
    wait_until_published(data).await;
    let (older, _) = stored_device_list(data, "alice");
    bob.lookup_mail_key(ALICES_ADDRESS).await.unwrap();
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());

    // Alice replaces her key; Bob checks the new one with her.
    let newer = alice.create_mail_key(ALICES_ADDRESS, true).await.unwrap();
    wait_until_published(data).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
    assert_eq!(
        alert_code(bob.lookup_mail_key(ALICES_ADDRESS).await),
        AlertCode::MailKeyChanged
    );
    bob.verify_mail_key(ALICES_ADDRESS, &newer.fingerprint)
        .unwrap();

    // The operator publishes Alice's older list, signed by her, again.
    let (_, version) = stored_device_list(data, "alice");
    forge_device_list(data, "alice", &older, version + 1);
    wait_until_published(data).await;
    assert_eq!(
        alert_code(bob.lookup_mail_key(ALICES_ADDRESS).await),
        AlertCode::DirectoryRollback
    );
    assert_eq!(
        bob.show_mail_key(ALICES_ADDRESS).unwrap().fingerprint,
        newer.fingerprint,
        "the newer certificate stays"
    );
    let events = alice.sync().await.unwrap();
    assert_eq!(
        alerts(&events),
        [AlertCode::UnknownOwnMailKey],
        "{events:?}"
    );
}

async fn mail_address_given_away_and_back() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let data = server.data_dir();
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let genuine = alice.create_mail_key(ALICES_ADDRESS, false).await.unwrap();
    wait_until_published(data).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());

    // Between two of Alice's syncs, the address is the operator's for an
    // epoch, then hers again.
    let address = MailAddress::parse(ALICES_ADDRESS).unwrap();
    let (forged, certificate) = throwaway_certificate("alice", &address).unwrap();
    give_mail_address(
        data,
        ALICES_ADDRESS,
        "mallory",
        forged.as_str(),
        &certificate,
    );
    wait_until_published(data).await;
    give_mail_address_back(data, ALICES_ADDRESS, "alice");
    wait_until_published(data).await;

    // The address looks genuine again to anyone who asks now...
    let homes_of_others = TempDir::new().unwrap();
    let bob = account(&server, &homes_of_others.path().join("bob"), "bob").await;
    let now = bob.lookup_mail_key(ALICES_ADDRESS).await.unwrap();
    assert_eq!(now.fingerprint, genuine.fingerprint);
    // ...but Alice's devices read its whole history, at every sync.
    for _ in 0..2 {
        let events = alice.sync().await.unwrap();
        assert_eq!(
            alerts(&events),
            [AlertCode::UnknownOwnMailKey],
            "{events:?}"
        );
    }
}
