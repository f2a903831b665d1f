//! The key-transparency directory over real TCP: epochs are published at the
//! configured interval, and every proof the server serves verifies with akd's
//! own client and auditor functions against a head signed by the directory
//! key.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use akd::proto::specs::types as proto;
use akd::{
    AkdLabel, AppendOnlyProof, HistoryParams, HistoryProof, HistoryVerificationParams, LookupProof,
    WhatsAppV1Configuration,
};
use ed25519_dalek::SigningKey;
use protobuf::Message as _;
use rand::rngs::OsRng;
use rempart_proto::SignedDeviceList;
use rempart_proto::api::{self, KnownVersion, error_code};
use rempart_proto::directory::{
    self as kt, AuditResponse, Cosignature, DirectoryHead, DirectoryInfo, HeadWithCosignatures,
    HistoryResponse, LookupResponse, LookupsRequest, LookupsResponse, PostCosignature,
    directory_value,
};
use rempart_server::directory::{DIRECTORY_KEY_FILE, VRF_KEY_FILE};
use reqwest::StatusCode;
use tempfile::TempDir;

use crate::support::{Account, Device, TestServer, ok, refused};

type Config = WhatsAppV1Configuration;

/// A short epoch interval, so tests see epochs quickly.
const EPOCH: Duration = Duration::from_millis(50);
/// How long a test waits for an epoch before failing.
const DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two polls.
const POLL: Duration = Duration::from_millis(10);

async fn start(data_dir: &Path) -> TestServer {
    TestServer::start_in_every(data_dir, EPOCH).await
}

async fn get<T: serde::de::DeserializeOwned>(server: &TestServer, path: &str) -> T {
    ok(server.unsigned("GET", path, Vec::new()).await).await
}

/// Polls the lookup of `account` until it serves `expected`, within the deadline.
async fn published(
    server: &TestServer,
    account: &Account,
    expected: &SignedDeviceList,
) -> LookupResponse {
    let path = kt::lookup_path(&account.user);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = server.unsigned("GET", &path, Vec::new()).await;
        if response.status() == StatusCode::OK {
            let lookup: LookupResponse = response.json().await.unwrap();
            if &lookup.device_list == expected {
                return lookup;
            }
        } else {
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
        }
        assert!(
            Instant::now() < deadline,
            "{} was not published in time",
            account.user
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Checks a lookup: the head's signature, the akd proof against the head's
/// root hash, and that the proven value is the served device list's.
fn verify_lookup(
    info: &DirectoryInfo,
    account: &Account,
    lookup: &LookupResponse,
) -> DirectoryHead {
    let head = lookup.head.head.verify(&info.directory_key).unwrap();
    assert_eq!(head.server_id, info.server_id);
    let proof = proto::LookupProof::parse_from_bytes(&lookup.proof).unwrap();
    let proof = LookupProof::try_from(&proof).unwrap();
    let verified = akd::client::lookup_verify::<Config>(
        &info.vrf_public_key,
        head.root_hash,
        head.epoch,
        AkdLabel::from(account.user.as_str()),
        proof,
    )
    .unwrap();
    assert_eq!(verified.value.0, directory_value(&lookup.device_list));
    assert_eq!(
        lookup.device_list.verify_for(&account.user).unwrap().user,
        account.user
    );
    head
}

/// Fetches and checks an audit proof from `from` to `to`, with the signed
/// heads of every epoch in between.
async fn verify_audit(server: &TestServer, info: &DirectoryInfo, from: u64, to: u64) {
    let audit: AuditResponse = get(server, &kt::audit_path(from, to)).await;
    let mut roots = Vec::new();
    for epoch in from..=to {
        let head: HeadWithCosignatures = get(server, &kt::head_path(epoch)).await;
        let head = head.head.verify(&info.directory_key).unwrap();
        assert_eq!(head.epoch, epoch);
        roots.push(head.root_hash);
    }
    assert_eq!(audit.start.verify(&info.directory_key).unwrap().epoch, from);
    assert_eq!(audit.end.verify(&info.directory_key).unwrap().epoch, to);
    let proof = proto::AppendOnlyProof::parse_from_bytes(&audit.proof).unwrap();
    let proof = AppendOnlyProof::try_from(&proof).unwrap();
    akd::auditor::audit_verify::<Config>(roots.clone(), proof.clone())
        .await
        .unwrap();
    // The same proof does not link other roots.
    roots.reverse();
    assert!(
        akd::auditor::audit_verify::<Config>(roots, proof)
            .await
            .is_err()
    );
}

async fn change_devices(
    server: &TestServer,
    account: &mut Account,
    version: u64,
) -> SignedDeviceList {
    account.devices.push(Device::new());
    let list = account.signed_list(version);
    let path = api::devices_path(&account.user);
    ok::<serde_json::Value>(
        server
            .call_json(&account.devices[0], "PUT", &path, &list)
            .await,
    )
    .await;
    list
}

#[tokio::test]
async fn lookups_histories_and_audits_verify() {
    let data = TempDir::new().unwrap();
    let server = start(&data.path().join("data")).await;
    refused(
        server.unsigned("GET", kt::HEAD_PATH, Vec::new()).await,
        404,
        error_code::NOT_FOUND,
    )
    .await;
    let info: DirectoryInfo = get(&server, kt::DIRECTORY_PATH).await;

    let mut alice = Account::new("alice", 1);
    let bob = Account::new("bob", 2);
    server.register(&alice).await;
    server.register(&bob).await;
    let alice_v1 = alice.signed_list(1);
    let first = verify_lookup(&info, &alice, &published(&server, &alice, &alice_v1).await);
    verify_lookup(
        &info,
        &bob,
        &published(&server, &bob, &bob.signed_list(1)).await,
    );

    // The latest head verifies with the directory key.
    let latest: HeadWithCosignatures = get(&server, kt::HEAD_PATH).await;
    let latest = latest.head.verify(&info.directory_key).unwrap();
    assert!(latest.epoch >= first.epoch);

    let alice_v2 = change_devices(&server, &mut alice, 2).await;
    let second = verify_lookup(&info, &alice, &published(&server, &alice, &alice_v2).await);
    assert!(second.epoch > first.epoch);

    // Alice's key history proves both her lists, oldest first.
    let history: HistoryResponse = get(&server, &kt::history_path(&alice.user)).await;
    let head = history.head.head.verify(&info.directory_key).unwrap();
    let proof = proto::HistoryProof::parse_from_bytes(&history.proof).unwrap();
    let proof = HistoryProof::try_from(&proof).unwrap();
    let mut versions = akd::client::key_history_verify::<Config>(
        &info.vrf_public_key,
        head.root_hash,
        head.epoch,
        AkdLabel::from(alice.user.as_str()),
        proof,
        HistoryVerificationParams::Default {
            history_params: HistoryParams::Complete,
        },
    )
    .unwrap();
    versions.sort_by_key(|version| version.version);
    assert_eq!(history.device_lists, [alice_v1, alice_v2]);
    let proven: Vec<_> = versions.iter().map(|v| v.value.0.clone()).collect();
    let served: Vec<_> = history
        .device_lists
        .iter()
        .map(|list| directory_value(list).to_vec())
        .collect();
    assert_eq!(proven, served);

    verify_audit(&server, &info, first.epoch, second.epoch).await;

    // Refusals.
    let nobody = Account::new("nobody", 1);
    refused(
        server
            .unsigned("GET", &kt::lookup_path(&nobody.user), Vec::new())
            .await,
        404,
        error_code::NOT_FOUND,
    )
    .await;
    refused(
        server
            .unsigned("GET", &kt::history_path(&nobody.user), Vec::new())
            .await,
        404,
        error_code::NOT_FOUND,
    )
    .await;
    for (from, to) in [
        (second.epoch, first.epoch),
        (first.epoch, first.epoch),
        (0, 1),
        (first.epoch, 1_000_000),
    ] {
        refused(
            server
                .unsigned("GET", &kt::audit_path(from, to), Vec::new())
                .await,
            400,
            error_code::BAD_REQUEST,
        )
        .await;
    }
    refused(
        server
            .unsigned("GET", "/v1/directory/audit?from=x", Vec::new())
            .await,
        400,
        error_code::BAD_REQUEST,
    )
    .await;
    refused(
        server
            .unsigned("GET", &kt::head_path(1_000_000), Vec::new())
            .await,
        404,
        error_code::NOT_FOUND,
    )
    .await;

    // The key files are private to the server's user.
    for file in [DIRECTORY_KEY_FILE, VRF_KEY_FILE] {
        let mode = std::fs::metadata(server.data_dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    server.stop().await;
}

#[tokio::test]
async fn nothing_changed_means_no_epoch() {
    let data = TempDir::new().unwrap();
    let server = start(&data.path().join("data")).await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    published(&server, &alice, &alice.signed_list(1)).await;
    // The publish that served alice drained the queue.
    let pending: i64 = server
        .database()
        .query_row("SELECT count(*) FROM directory_pending", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(pending, 0);
    let before: HeadWithCosignatures = get(&server, kt::HEAD_PATH).await;
    // Not a timing assertion: only that ten intervals publish nothing.
    tokio::time::sleep(10 * EPOCH).await;
    let after: HeadWithCosignatures = get(&server, kt::HEAD_PATH).await;
    assert_eq!(before.head, after.head);
    server.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_keys_and_heads_and_publishing_goes_on() {
    let data = TempDir::new().unwrap();
    let dir = data.path().join("data");
    let server = start(&dir).await;
    let info: DirectoryInfo = get(&server, kt::DIRECTORY_PATH).await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let before = verify_lookup(
        &info,
        &alice,
        &published(&server, &alice, &alice.signed_list(1)).await,
    );
    server.stop().await;

    let server = start(&dir).await;
    let again: DirectoryInfo = get(&server, kt::DIRECTORY_PATH).await;
    assert_eq!(again.server_id, info.server_id);
    assert_eq!(again.directory_key, info.directory_key);
    assert_eq!(again.vrf_public_key, info.vrf_public_key);
    let kept: HeadWithCosignatures = get(&server, &kt::head_path(before.epoch)).await;
    assert_eq!(kept.head.verify(&info.directory_key).unwrap(), before);

    let bob = Account::new("bob", 1);
    server.register(&bob).await;
    let after = verify_lookup(
        &info,
        &bob,
        &published(&server, &bob, &bob.signed_list(1)).await,
    );
    assert!(after.epoch > before.epoch);
    verify_lookup(
        &info,
        &alice,
        &published(&server, &alice, &alice.signed_list(1)).await,
    );
    verify_audit(&server, &info, before.epoch, after.epoch).await;
    server.stop().await;
}

#[tokio::test]
async fn witness_cosignatures_are_checked_stored_and_served() {
    let data = TempDir::new().unwrap();
    let server = start(&data.path().join("data")).await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    published(&server, &alice, &alice.signed_list(1)).await;
    let info: DirectoryInfo = get(&server, kt::DIRECTORY_PATH).await;
    let latest: HeadWithCosignatures = get(&server, kt::HEAD_PATH).await;
    let head = latest.head.verify(&info.directory_key).unwrap();

    let witness = SigningKey::generate(&mut OsRng);
    let post = |cosignature: Cosignature, epoch: u64| {
        serde_json::to_vec(&PostCosignature { epoch, cosignature }).unwrap()
    };
    let valid = Cosignature::sign(&witness, &head.server_id, head.epoch, &head.root_hash);
    for _ in 0..2 {
        // Idempotent: posting twice keeps one.
        let response = server
            .unsigned(
                "POST",
                kt::COSIGNATURES_PATH,
                post(valid.clone(), head.epoch),
            )
            .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    let served: HeadWithCosignatures = get(&server, &kt::head_path(head.epoch)).await;
    assert_eq!(served.cosignatures, std::slice::from_ref(&valid));
    assert!(served.cosignatures[0].verify(&head).is_ok());
    let latest: HeadWithCosignatures = get(&server, kt::HEAD_PATH).await;
    assert_eq!(latest.cosignatures, std::slice::from_ref(&valid));

    // A cosignature of another root, another server, or posted for another
    // epoch is refused, and nothing of it is stored.
    let other = SigningKey::generate(&mut OsRng);
    let wrong_root = Cosignature::sign(&other, &head.server_id, head.epoch, &[0; 32]);
    let wrong_server = Cosignature::sign(&other, "another server", head.epoch, &head.root_hash);
    for (cosignature, epoch) in [
        (wrong_root, head.epoch),
        (wrong_server, head.epoch),
        (
            Cosignature::sign(&other, &head.server_id, head.epoch, &head.root_hash),
            head.epoch + 1_000,
        ),
    ] {
        refused(
            server
                .unsigned("POST", kt::COSIGNATURES_PATH, post(cosignature, epoch))
                .await,
            400,
            error_code::BAD_REQUEST,
        )
        .await;
    }
    refused(
        server
            .unsigned("POST", kt::COSIGNATURES_PATH, b"{}".to_vec())
            .await,
        400,
        error_code::BAD_REQUEST,
    )
    .await;
    let served: HeadWithCosignatures = get(&server, &kt::head_path(head.epoch)).await;
    assert_eq!(served.cosignatures, [valid]);
    server.stop().await;
}

/// A server on `dir` that takes only `witness`'s cosignatures.
async fn listing(dir: &Path, witness: &SigningKey) -> TestServer {
    let mut config = rempart_server::ServerConfig::new("127.0.0.1:0".parse().unwrap(), dir.into());
    config.epoch_interval = EPOCH;
    config.witnesses = rempart_server::WitnessPolicy::Only(vec![rempart_proto::PublicKey::new(
        witness.verifying_key(),
    )]);
    TestServer::start_with(config).await
}

/// Registers Alice and waits for her epoch: its head, verified.
async fn alice_published(server: &TestServer) -> DirectoryHead {
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    published(server, &alice, &alice.signed_list(1)).await;
    let info: DirectoryInfo = get(server, kt::DIRECTORY_PATH).await;
    let latest: HeadWithCosignatures = get(server, kt::HEAD_PATH).await;
    latest.head.verify(&info.directory_key).unwrap()
}

/// `key`'s cosignature of `head`, as posted.
fn cosigned(key: &SigningKey, head: &DirectoryHead) -> (Cosignature, Vec<u8>) {
    let cosignature = Cosignature::sign(key, &head.server_id, head.epoch, &head.root_hash);
    let body = serde_json::to_vec(&PostCosignature {
        epoch: head.epoch,
        cosignature: cosignature.clone(),
    })
    .unwrap();
    (cosignature, body)
}

/// With witnesses configured, only their cosignatures are accepted and
/// served: anyone else's, however valid, is refused and stores nothing.
#[tokio::test]
async fn only_the_configured_witnesses_cosignatures_are_accepted() {
    let data = TempDir::new().unwrap();
    let witness = SigningKey::generate(&mut OsRng);
    let server = listing(&data.path().join("data"), &witness).await;
    let head = alice_published(&server).await;

    let (unlisted, post) = cosigned(&SigningKey::generate(&mut OsRng), &head);
    assert!(unlisted.verify(&head).is_ok(), "valid, but not a witness");
    refused(
        server.unsigned("POST", kt::COSIGNATURES_PATH, post).await,
        400,
        error_code::BAD_REQUEST,
    )
    .await;
    let (listed, post) = cosigned(&witness, &head);
    let response = server.unsigned("POST", kt::COSIGNATURES_PATH, post).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let served: HeadWithCosignatures = get(&server, &kt::head_path(head.epoch)).await;
    assert_eq!(served.cosignatures, [listed]);
    server.stop().await;
}

/// A flood of valid cosignatures by strangers stores and serves nothing,
/// and one stored before the operator listed its witnesses is served no
/// more.
#[tokio::test]
async fn strangers_cosignatures_are_neither_kept_nor_served() {
    let data = TempDir::new().unwrap();
    let dir = data.path().join("data");
    // First without an allow-list (as a test server runs): a stranger's
    // cosignature is kept.
    let server = TestServer::start_in(&dir).await;
    let head = alice_published(&server).await;
    let stranger = || cosigned(&SigningKey::generate(&mut OsRng), &head).1;
    let response = server
        .unsigned("POST", kt::COSIGNATURES_PATH, stranger())
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    server.stop().await;

    // Then with its witness listed.
    let server = listing(&dir, &SigningKey::generate(&mut OsRng)).await;
    let served: HeadWithCosignatures = get(&server, &kt::head_path(head.epoch)).await;
    assert!(served.cosignatures.is_empty(), "{served:?}");
    let size = serde_json::to_vec(&served).unwrap().len();
    for _ in 0..1000 {
        refused(
            server
                .unsigned("POST", kt::COSIGNATURES_PATH, stranger())
                .await,
            400,
            error_code::BAD_REQUEST,
        )
        .await;
    }
    for path in [kt::HEAD_PATH.to_owned(), kt::head_path(head.epoch)] {
        let served: HeadWithCosignatures = get(&server, &path).await;
        assert!(served.cosignatures.is_empty(), "{served:?}");
        assert_eq!(serde_json::to_vec(&served).unwrap().len(), size);
    }
    let kept: i64 = server
        .database()
        .query_row("SELECT count(*) FROM directory_cosignatures", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(kept, 1, "only the one taken before the allow-list");
    server.stop().await;
}

#[tokio::test]
async fn a_head_lost_in_a_crash_is_signed_at_the_next_start() {
    let data = TempDir::new().unwrap();
    let dir = data.path().join("data");
    let server = start(&dir).await;
    let info: DirectoryInfo = get(&server, kt::DIRECTORY_PATH).await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let published_head = verify_lookup(
        &info,
        &alice,
        &published(&server, &alice, &alice.signed_list(1)).await,
    );
    server.stop().await;

    // As if the server stopped after akd committed the epoch but before the
    // head was stored and the queue cleared.
    let value = directory_value(&alice.signed_list(1)).to_vec();
    {
        let conn = rusqlite::Connection::open(dir.join(rempart_server::DATABASE_FILE)).unwrap();
        conn.execute(
            "DELETE FROM directory_heads WHERE epoch = ?1",
            [published_head.epoch as i64],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO directory_pending (user_name, value) VALUES ('alice', ?1)",
            [value],
        )
        .unwrap();
    }

    let server = start(&dir).await;
    let restored: HeadWithCosignatures = get(&server, &kt::head_path(published_head.epoch)).await;
    let restored = restored.head.verify(&info.directory_key).unwrap();
    assert_eq!(restored.root_hash, published_head.root_hash);
    // The queued value akd already holds is dropped, not published again.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let pending: i64 = server
            .database()
            .query_row("SELECT count(*) FROM directory_pending", [], |row| {
                row.get(0)
            })
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the queue was not drained");
        tokio::time::sleep(POLL).await;
    }
    let latest: HeadWithCosignatures = get(&server, kt::HEAD_PATH).await;
    assert_eq!(
        latest.head.verify(&info.directory_key).unwrap().epoch,
        published_head.epoch
    );
    verify_lookup(
        &info,
        &alice,
        &published(&server, &alice, &alice.signed_list(1)).await,
    );
    server.stop().await;
}

/// The body of a lookups request for `asked` users and known versions.
fn lookups_body(asked: &[(&Account, u64)]) -> Vec<u8> {
    let request = LookupsRequest {
        users: asked
            .iter()
            .map(|(account, version)| KnownVersion {
                user: account.user.clone(),
                version: *version,
            })
            .collect(),
    };
    serde_json::to_vec(&request).unwrap()
}

async fn lookups(server: &TestServer, asked: &[(&Account, u64)]) -> LookupsResponse {
    // No authentication: the directory is public.
    ok(server
        .unsigned("POST", kt::LOOKUPS_PATH, lookups_body(asked))
        .await)
    .await
}

#[tokio::test]
async fn batch_lookups_prove_newer_lists_and_name_pending_and_unknown_users() {
    let data = TempDir::new().unwrap();
    let dir = data.path().join("data");
    // An interval long enough that nothing is published while we look.
    let server = TestServer::start_in_every(&dir, Duration::from_secs(3600)).await;
    let info: DirectoryInfo = get(&server, kt::DIRECTORY_PATH).await;
    let mut alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let nobody = Account::new("nobody", 1);
    server.register(&alice).await;
    server.register(&bob).await;
    let answer = lookups(&server, &[(&alice, 0), (&bob, 0), (&nobody, 0)]).await;
    assert!(answer.head.is_none() && answer.lookups.is_empty());
    assert_eq!(answer.pending, [alice.user.clone(), bob.user.clone()]);
    assert_eq!(answer.unknown, std::slice::from_ref(&nobody.user));
    // Stopping publishes what is queued.
    server.stop().await;

    let server = start(&dir).await;
    let answer = lookups(&server, &[(&bob, 0), (&alice, 0), (&alice, 5)]).await;
    assert!(answer.pending.is_empty() && answer.unknown.is_empty());
    let head = answer
        .head
        .unwrap()
        .head
        .verify(&info.directory_key)
        .unwrap();
    let users: Vec<_> = answer.lookups.iter().map(|l| l.user.clone()).collect();
    assert_eq!(users, [alice.user.clone(), bob.user.clone()]);
    for lookup in &answer.lookups {
        let account = if lookup.user == alice.user {
            &alice
        } else {
            &bob
        };
        assert_eq!(lookup.device_list, account.signed_list(1));
        let single = LookupResponse {
            head: HeadWithCosignatures {
                head: answer_head(&server, head.epoch).await,
                cosignatures: Vec::new(),
            },
            proof: lookup.proof.clone(),
            device_list: lookup.device_list.clone(),
        };
        assert_eq!(verify_lookup(&info, account, &single), head);
    }
    // Nothing newer than what the caller holds: no proof to send.
    let answer = lookups(&server, &[(&alice, 1), (&bob, 1)]).await;
    assert!(answer.lookups.is_empty());

    // A change is proven once published.
    let list = change_devices(&server, &mut alice, 2).await;
    published(&server, &alice, &list).await;
    let answer = lookups(&server, &[(&alice, 1)]).await;
    assert_eq!(answer.lookups.len(), 1);
    assert_eq!(answer.lookups[0].device_list, list);

    // Too many users in one request.
    let many = vec![(&bob, 0); rempart_proto::limits::MAX_LOOKUPS_PER_REQUEST + 1];
    let body = lookups_body(&many);
    refused(
        server.unsigned("POST", kt::LOOKUPS_PATH, body).await,
        400,
        error_code::BAD_REQUEST,
    )
    .await;
    server.stop().await;
}

async fn answer_head(server: &TestServer, epoch: u64) -> kt::SignedHead {
    let head: HeadWithCosignatures = get(server, &kt::head_path(epoch)).await;
    head.head
}

#[tokio::test]
async fn a_range_of_heads_is_served_in_order() {
    let data = TempDir::new().unwrap();
    let server = start(&data.path().join("data")).await;
    let info: DirectoryInfo = get(&server, kt::DIRECTORY_PATH).await;
    for name in ["alice", "bob", "carol"] {
        let account = Account::new(name, 1);
        server.register(&account).await;
        published(&server, &account, &account.signed_list(1)).await;
    }
    let latest: HeadWithCosignatures = get(&server, kt::HEAD_PATH).await;
    let latest = latest.head.verify(&info.directory_key).unwrap().epoch;
    assert!(latest >= 3);
    let heads: Vec<HeadWithCosignatures> = get(&server, &kt::heads_path(1, latest)).await;
    let epochs: Vec<u64> = heads
        .iter()
        .map(|h| h.head.verify(&info.directory_key).unwrap().epoch)
        .collect();
    assert_eq!(epochs, (1..=latest).collect::<Vec<_>>());
    for (from, to) in [(0, 1), (2, 1), (1, latest + 1)] {
        refused(
            server
                .unsigned("GET", &kt::heads_path(from, to), Vec::new())
                .await,
            400,
            error_code::BAD_REQUEST,
        )
        .await;
    }
    server.stop().await;
}
