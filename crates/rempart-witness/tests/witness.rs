//! The witness against a real server: it cosigns what verifies, and each
//! way the server can misbehave is refused with its exact error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rempart_kt::ProofError;
use rempart_proto::directory::{self as kt, DirectoryInfo, HeadWithCosignatures};
use rempart_proto::{PublicKey, UserName};
use rempart_testkit::{
    RawDevice, TestServer, equivocate_latest_head, forge_unsigned_head, latest_head_epoch,
    wait_for_epoch,
};
use rempart_witness::{
    Evidence, EvidenceKind, Misbehavior, StepOutcome, Witness, WitnessError, WitnessInfo,
};
use tempfile::TempDir;

const EPOCHS: Duration = Duration::from_millis(50);
const WITNESS: &str = env!("CARGO_BIN_EXE_rempart-witness");

/// Registers `user`, which the server publishes as the next epoch, and
/// waits for that epoch.
async fn publish(server: &TestServer, user: &str) -> u64 {
    let next = latest_head_epoch(server.data_dir()) + 1;
    RawDevice::register(&server.url, &user.parse::<UserName>().unwrap()).await;
    wait_for_epoch(server.data_dir(), next).await;
    assert_eq!(latest_head_epoch(server.data_dir()), next);
    next
}

async fn get<T: serde::de::DeserializeOwned>(url: &str) -> T {
    let response = reqwest::get(url).await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

async fn directory_key(server: &TestServer) -> PublicKey {
    let info: DirectoryInfo = get(&format!("{}{}", server.url, kt::DIRECTORY_PATH)).await;
    info.directory_key
}

async fn misbehavior(witness: &Witness) -> Misbehavior {
    match witness.step().await {
        Err(WitnessError::Misbehaved(misbehavior)) => misbehavior,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A witness process, killed if the test fails before stopping it.
struct WitnessProcess(Option<Child>);

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn the_witness_verifies_and_cosigns_successive_epochs() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let data = TempDir::new().unwrap();
    let witness = Witness::open(&server.url, data.path()).unwrap();
    assert_eq!(witness.step().await.unwrap(), StepOutcome::NothingPublished);

    publish(&server, "alice").await;
    assert_eq!(
        witness.step().await.unwrap(),
        StepOutcome::Cosigned { from: 1, to: 1 }
    );
    publish(&server, "bob").await;
    publish(&server, "carol").await;
    // Epochs 2 and 3 are verified with one append-only proof from 1.
    assert_eq!(
        witness.step().await.unwrap(),
        StepOutcome::Cosigned { from: 2, to: 3 }
    );
    assert_eq!(
        witness.step().await.unwrap(),
        StepOutcome::UpToDate { epoch: 3 }
    );

    // The server serves the witness's cosignature beside each head.
    let key = directory_key(&server).await;
    for path in [kt::HEAD_PATH.to_owned(), kt::head_path(2)] {
        let served: HeadWithCosignatures = get(&format!("{}{path}", server.url)).await;
        let head = served.head.verify(&key).unwrap();
        let ours: Vec<_> = served
            .cosignatures
            .iter()
            .filter(|c| c.witness == witness.public_key())
            .collect();
        assert_eq!(ours.len(), 1, "{path}");
        assert_eq!(ours[0].verify(&head), Ok(()));
        assert_eq!(
            Some(ours[0].clone()),
            witness.cosignature(head.epoch).await.unwrap()
        );
    }
    let info = witness.info().await.unwrap();
    assert_eq!(info.verified_epoch, Some(3));
    assert_eq!(info.directory_key, Some(key));
    assert_eq!(info.server_id, Some(rempart_witness::server_id(&key)));
    assert!(witness.evidence().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_client_requiring_the_witness_accepts_only_what_it_cosigned() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let data = TempDir::new().unwrap();
    let homes = TempDir::new().unwrap();
    let witness = Witness::open(&server.url, data.path()).unwrap();
    let mut alice =
        rempart_client::Client::create_account(homes.path(), &server.url, "alice".parse().unwrap())
            .await
            .unwrap();
    alice.set_witnesses(&[witness.public_key()], None).unwrap();
    alice.set_witness_grace(Duration::ZERO).unwrap();
    wait_for_epoch(server.data_dir(), 1).await;
    let codes = |events: Vec<rempart_client::Event>| -> Vec<String> {
        events
            .into_iter()
            .filter_map(|e| match e {
                rempart_client::Event::Alert { code, .. } => Some(code.to_string()),
                _ => None,
            })
            .collect()
    };
    // Not cosigned yet: the client refuses the head.
    assert_eq!(
        codes(alice.sync().await.unwrap()),
        ["witness_quorum_missing"]
    );
    witness.step().await.unwrap();
    assert!(codes(alice.sync().await.unwrap()).is_empty());
}

#[tokio::test]
async fn a_witness_refuses_an_equivocating_server() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let data = TempDir::new().unwrap();
    let witness = Witness::open(&server.url, data.path()).unwrap();
    publish(&server, "alice").await;
    publish(&server, "bob").await;
    assert_eq!(
        witness.step().await.unwrap(),
        StepOutcome::Cosigned { from: 1, to: 2 }
    );
    let honest = witness.cosigned_head(2).await.unwrap().unwrap();

    // The server signs a second head, with another root, for epoch 2.
    equivocate_latest_head(server.data_dir());
    assert_eq!(
        misbehavior(&witness).await,
        Misbehavior::Equivocation { epoch: 2 }
    );

    let key = directory_key(&server).await;
    let evidence = witness.evidence().await.unwrap();
    assert_eq!(evidence.len(), 1);
    let Evidence {
        kind,
        first,
        second,
        ..
    } = &evidence[0];
    assert_eq!(*kind, EvidenceKind::Equivocation);
    assert_eq!(first, &honest);
    let (first, forged) = (first.verify(&key).unwrap(), second.verify(&key).unwrap());
    assert_eq!((first.epoch, forged.epoch), (2, 2));
    assert_ne!(first.root_hash, forged.root_hash);

    // No cosignature of the forged root exists, and the witness signs
    // nothing more for this server, not even a new epoch.
    assert_eq!(
        witness
            .cosignature(2)
            .await
            .unwrap()
            .unwrap()
            .verify(&first),
        Ok(())
    );
    assert!(
        witness
            .cosignature(2)
            .await
            .unwrap()
            .unwrap()
            .verify(&forged)
            .is_err()
    );
    let served: HeadWithCosignatures = get(&format!("{}{}", server.url, kt::HEAD_PATH)).await;
    assert_eq!(served.head.verify(&key).unwrap(), forged);
    assert!(
        served
            .cosignatures
            .iter()
            .all(|c| c.verify(&forged).is_err())
    );
    publish(&server, "carol").await;
    assert!(matches!(
        witness.step().await,
        Err(WitnessError::Halted { evidence: 1 })
    ));
    assert_eq!(witness.cosignature(3).await.unwrap(), None);
    assert_eq!(witness.info().await.unwrap().verified_epoch, Some(2));
}

#[tokio::test]
async fn a_new_head_that_does_not_extend_the_verified_one_is_refused() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let data = TempDir::new().unwrap();
    let witness = Witness::open(&server.url, data.path()).unwrap();
    publish(&server, "alice").await;
    assert_eq!(
        witness.step().await.unwrap(),
        StepOutcome::Cosigned { from: 1, to: 1 }
    );
    publish(&server, "bob").await;

    // A validly signed head for epoch 2 whose root is not what akd's
    // append-only proof from epoch 1 leads to.
    equivocate_latest_head(server.data_dir());
    match misbehavior(&witness).await {
        Misbehavior::Audit {
            from: 1,
            to: 2,
            error: ProofError::Refused { kind, .. },
        } => assert_eq!(kind, "append-only"),
        other => panic!("expected the append-only proof refused, got {other:?}"),
    }
    assert_eq!(witness.cosignature(2).await.unwrap(), None);
    assert_eq!(witness.info().await.unwrap().verified_epoch, Some(1));
}

#[tokio::test]
async fn a_head_going_backwards_is_refused_with_evidence() {
    let mut server = TestServer::start_with_epochs(EPOCHS).await;
    let data = TempDir::new().unwrap();
    let witness = Witness::open(&server.url, data.path()).unwrap();
    publish(&server, "alice").await;
    let backup = server.snapshot();
    publish(&server, "bob").await;
    assert_eq!(
        witness.step().await.unwrap(),
        StepOutcome::Cosigned { from: 1, to: 2 }
    );

    // The operator restores the server from a copy of its data at epoch 1.
    server.restart_from(backup.path()).await;
    let refusal = match witness.step().await {
        Err(WitnessError::Misbehaved(misbehavior)) => misbehavior,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        refusal,
        Misbehavior::Rollback {
            verified: 2,
            served: 1
        }
    );
    let evidence = witness.evidence().await.unwrap();
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].kind, EvidenceKind::Rollback);
    assert_eq!(
        evidence[0].first,
        witness.cosigned_head(2).await.unwrap().unwrap()
    );
    assert_eq!(
        evidence[0].second,
        witness.cosigned_head(1).await.unwrap().unwrap()
    );
    assert!(matches!(
        witness.step().await,
        Err(WitnessError::Halted { evidence: 1 })
    ));
}

#[tokio::test]
async fn an_unsigned_head_is_refused_and_nothing_is_signed() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let data = TempDir::new().unwrap();
    let witness = Witness::open(&server.url, data.path()).unwrap();
    publish(&server, "alice").await;
    assert_eq!(
        witness.step().await.unwrap(),
        StepOutcome::Cosigned { from: 1, to: 1 }
    );
    publish(&server, "bob").await;

    forge_unsigned_head(server.data_dir());
    assert_eq!(
        misbehavior(&witness).await,
        Misbehavior::BadHead {
            epoch: None,
            error: kt::DirectoryError::BadHeadSignature
        }
    );
    assert_eq!(witness.cosignature(2).await.unwrap(), None);
    assert_eq!(witness.info().await.unwrap().verified_epoch, Some(1));
    // Anyone can send an unsigned head: it proves nothing, so no evidence.
    assert!(witness.evidence().await.unwrap().is_empty());
    let served: HeadWithCosignatures = get(&format!("{}{}", server.url, kt::HEAD_PATH)).await;
    assert!(served.cosignatures.is_empty());
}

#[test]
fn key_prints_the_same_key_every_time() {
    let data = TempDir::new().unwrap();
    let home = data.path().join("witness");
    let key = |expected_mode_check: bool| {
        let output = Command::new(WITNESS)
            .args(["key", "--data"])
            .arg(&home)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(String::from_utf8(output.stderr).unwrap(), "");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let line = stdout.strip_suffix('\n').unwrap();
        assert!(!line.contains('\n'), "{stdout:?}");
        if expected_mode_check {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(home.join(rempart_witness::WITNESS_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        line.parse::<PublicKey>().unwrap()
    };
    let first = key(true);
    assert_eq!(key(false), first);
    assert_eq!(rempart_witness::witness_key(&home).unwrap(), first);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_follows_the_server_and_serves_its_state() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let data = TempDir::new().unwrap();
    let mut process = WitnessProcess(None);
    let child = process.0.insert(
        Command::new(WITNESS)
            .args([
                "--server",
                &server.url,
                "--listen",
                "127.0.0.1:0",
                "--poll",
                "20ms",
                "--data",
            ])
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let addr = line
        .strip_prefix("witness listening on ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(!addr.ends_with(":0"), "{addr}");
    let info_url = format!("http://{addr}{}", rempart_witness::WITNESS_PATH);

    publish(&server, "alice").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let info = loop {
        let info: WitnessInfo = get(&info_url).await;
        if info.verified_epoch == Some(1) {
            break info;
        }
        assert!(
            Instant::now() < deadline,
            "epoch 1 never verified: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let key = directory_key(&server).await;
    assert_eq!(info.directory_key, Some(key));
    assert_eq!(
        info.witness_key,
        rempart_witness::witness_key(data.path()).unwrap()
    );
    let cosignature: kt::Cosignature = get(&format!(
        "http://{addr}{}",
        rempart_witness::cosignature_path(1)
    ))
    .await;
    let head: HeadWithCosignatures = get(&format!("{}{}", server.url, kt::head_path(1))).await;
    assert_eq!(cosignature.verify(&head.head.verify(&key).unwrap()), Ok(()));
    let missing = reqwest::get(format!(
        "http://{addr}{}",
        rempart_witness::cosignature_path(2)
    ))
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    let evidence: Vec<Evidence> =
        get(&format!("http://{addr}{}", rempart_witness::EVIDENCE_PATH)).await;
    assert!(evidence.is_empty());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = process.0.take().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// The code of the alert `result` failed with.
fn alert_code<T: std::fmt::Debug>(
    result: Result<T, rempart_client::ClientError>,
) -> rempart_client::AlertCode {
    match result {
        Err(rempart_client::ClientError::Alert(alert)) => alert.code,
        other => panic!("expected an alert, got {other:?}"),
    }
}

/// A new account on `server` that requires `witness`'s cosignatures,
/// waiting for them up to `wait`.
async fn witnessed_account(
    server: &TestServer,
    home: &std::path::Path,
    user: &str,
    witness: PublicKey,
    wait: Duration,
) -> rempart_client::Client {
    let client = rempart_client::Client::create_account(home, &server.url, user.parse().unwrap())
        .await
        .unwrap();
    client.set_witnesses(&[witness], None).unwrap();
    client.set_witness_wait(wait).unwrap();
    client
}

#[tokio::test]
async fn new_keys_are_used_only_under_heads_the_live_witness_cosigned() {
    use rempart_client::AlertCode;
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let data = TempDir::new().unwrap();
    let homes = TempDir::new().unwrap();
    let witness = std::sync::Arc::new(Witness::open(&server.url, data.path()).unwrap());
    let key = witness.public_key();
    let live = {
        let witness = witness.clone();
        tokio::spawn(async move {
            loop {
                let _ = witness.step().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    // An honest server with a live witness: accounts are proven, and a first
    // message to a new contact goes out once the witness cosigned.
    let alice = homes.path().join("alice");
    let mut alice = witnessed_account(&server, &alice, "alice", key, Duration::from_secs(10)).await;
    alice.check_own_account().await.unwrap();
    let bob = homes.path().join("bob");
    let mut bob = witnessed_account(&server, &bob, "bob", key, Duration::from_secs(10)).await;
    bob.check_own_account().await.unwrap();
    alice
        .send_text(&"bob".parse().unwrap(), "hi")
        .await
        .unwrap();
    let events = bob.sync().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, rempart_client::Event::Message { text, .. } if text == "hi")),
        "{events:?}"
    );
    assert!(
        !events.iter().any(rempart_client::Event::is_alert),
        "{events:?}"
    );

    // A second server on a copy of the first one's data, which the witness
    // never sees: a new account on it is refused, and cannot send.
    let fork = TestServer::start_from(server.snapshot().path()).await;
    let carol = homes.path().join("carol");
    let mut carol = witnessed_account(&fork, &carol, "carol", key, Duration::from_secs(1)).await;
    assert_eq!(
        alert_code(carol.check_own_account().await),
        AlertCode::WitnessQuorumMissing
    );
    assert_eq!(
        alert_code(carol.send_text(&"alice".parse().unwrap(), "hi").await),
        AlertCode::WitnessQuorumMissing
    );

    // The first server, once its witness is gone: an existing account's
    // message to a new contact is refused, and nothing reaches the contact.
    live.abort();
    alice.set_witness_wait(Duration::from_secs(1)).unwrap();
    let dave = homes.path().join("dave");
    let mut dave =
        rempart_client::Client::create_account(&dave, &server.url, "dave".parse().unwrap())
            .await
            .unwrap();
    assert_eq!(
        alert_code(alice.send_text(&"dave".parse().unwrap(), "hi").await),
        AlertCode::WitnessQuorumMissing
    );
    assert!(dave.sync().await.unwrap().is_empty());
    assert!(dave.conversations().unwrap().is_empty());
}
