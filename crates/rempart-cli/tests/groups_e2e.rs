//! Groups and linked devices from the `rempart` command, in real processes
//! against a real server: three people, one of them with two devices; then
//! the same people on a server of two nodes sharing one PostgreSQL
//! database, one of which is killed while they talk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command as StdCommand, Stdio};

use assert_cmd::Command;
use rempart_testkit::postgres::TestSchema;
use rempart_testkit::{ServerProcess, copy_keys, sibling_binary};
use serde_json::Value;
use tempfile::TempDir;

fn rempart_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rempart"))
}

fn rempart(home: &Path) -> Command {
    let mut cmd = Command::new(rempart_binary());
    cmd.env_remove("REMPART_HOME")
        .env_remove("RUST_LOG")
        .env(
            "REMPART_PASSPHRASE_FILE",
            rempart_testkit::passphrase_file(),
        )
        .arg("--home")
        .arg(home);
    cmd
}

/// Runs a command with --json and returns its JSON lines; it must succeed.
fn json(home: &Path, args: &[&str]) -> Vec<Value> {
    let out = rempart(home).arg("--json").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs a command and returns its plain stdout; it must succeed.
fn text(home: &Path, args: &[&str]) -> String {
    let out = rempart(home).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn has(events: &[Value], kind: &str, sender: &str, user: &str) -> bool {
    events.iter().any(|e| {
        e["kind"] == kind
            && e["sender"] == sender
            && e["user"] == user
            && e["conversation"] == "team"
    })
}

fn messages(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| {
            (
                e["sender"].as_str().unwrap().into(),
                e["text"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn m(sender: &str, text: &str) -> (String, String) {
    (sender.into(), text.into())
}

#[test]
fn three_people_one_with_two_devices() {
    let data = TempDir::new().unwrap();
    let server = ServerProcess::start(
        &sibling_binary(&rempart_binary(), "rempart-server"),
        "127.0.0.1:0",
        data.path(),
    );
    let url = server.url();
    let homes = TempDir::new().unwrap();
    let phone = homes.path().join("alice-phone");
    let laptop = homes.path().join("alice-laptop");
    let bob = homes.path().join("bob");
    let carol = homes.path().join("carol");
    for (home, name) in [(&phone, "alice"), (&bob, "bob"), (&carol, "carol")] {
        json(home, &["init", "--server", &url, "--name", name]);
    }

    // Group chat.
    assert_eq!(
        text(&phone, &["group", "create", "team", "--members", "bob"]),
        "created group team with bob\n"
    );
    assert!(has(&json(&bob, &["sync"]), "member_added", "alice", "bob"));
    json(&phone, &["send", "--group", "team", "hello team"]);
    assert_eq!(messages(&json(&bob, &["sync"])), [m("alice", "hello team")]);

    // Add.
    assert_eq!(
        text(&bob, &["group", "add", "team", "carol"]),
        "added carol to team\n"
    );
    assert!(has(
        &json(&phone, &["sync"]),
        "member_added",
        "bob",
        "carol"
    ));
    assert!(has(
        &json(&carol, &["sync"]),
        "member_added",
        "bob",
        "carol"
    ));
    json(&carol, &["send", "--group", "team", "carol here"]);
    assert_eq!(
        messages(&json(&phone, &["sync"])),
        [m("carol", "carol here")]
    );
    assert_eq!(messages(&json(&bob, &["sync"])), [m("carol", "carol here")]);

    // Link Alice's laptop: the phone shows a code and waits.
    let (mut link, mut lines, code) = start_link(&phone);
    let joined = json(&laptop, &["init", "--server", &url, "--link", &code]);
    assert_eq!(joined[0]["user"], "alice");
    let laptop_device = joined[0]["device"].as_str().unwrap().to_owned();
    let last: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(last["kind"], "device_linked");
    assert_eq!(last["device"], laptop_device.as_str());
    assert!(link.wait().unwrap().success());
    // The code worked once.
    let again = rempart(&homes.path().join("intruder"))
        .args(["init", "--server", &url, "--link", &code])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&again.stderr),
        "error: that linking code expired or was already used: run `rempart device link` again\n"
    );

    // Bob's next sync adds the laptop; everyone sees it.
    json(&bob, &["sync"]);
    let seen = json(&carol, &["sync"]);
    assert!(
        seen.iter().any(|e| e["kind"] == "device_added"
            && e["user"] == "alice"
            && e["device"] == laptop_device.as_str()),
        "{seen:?}"
    );
    assert!(has(
        &json(&laptop, &["sync"]),
        "member_added",
        "bob",
        "alice"
    ));
    json(
        &bob,
        &["send", "--group", "team", "to both of alice's devices"],
    );
    assert_eq!(
        messages(&json(&laptop, &["sync"])),
        [m("bob", "to both of alice's devices")]
    );
    json(&laptop, &["send", "--group", "team", "typed on the laptop"]);
    let on_phone = json(&phone, &["sync"]);
    assert_eq!(
        messages(&on_phone),
        [
            m("bob", "to both of alice's devices"),
            m("alice", "typed on the laptop")
        ]
    );
    assert_eq!(
        messages(&json(&carol, &["sync"])),
        [
            m("bob", "to both of alice's devices"),
            m("alice", "typed on the laptop")
        ]
    );

    let members = text(&phone, &["group", "members", "team"]);
    let users: Vec<&str> = members
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(users, ["alice", "alice", "bob", "carol"], "{members}");
    assert!(
        members.lines().all(|l| l.split(' ').count() == 2 + 8),
        "user, device, 8 fingerprint groups: {members}"
    );

    // Remove.
    json(&laptop, &["sync"]);
    assert_eq!(
        text(&bob, &["group", "remove", "team", "carol"]),
        // Bob catches up before judging the roster, and sees what he missed.
        "removed carol from team\n[team] alice: typed on the laptop\n"
    );
    assert!(has(
        &json(&laptop, &["sync"]),
        "member_removed",
        "bob",
        "carol"
    ));
    json(&phone, &["send", "--group", "team", "carol is gone"]);
    let seen = json(&carol, &["sync"]);
    assert!(messages(&seen).is_empty());
    assert!(has(&seen, "member_removed", "bob", "carol"), "{seen:?}");
    assert_eq!(
        text(&carol, &["group", "list"]),
        "team (group): alice, bob [ended: removed by bob] (2 unread)\n"
    );
    let refused = rempart(&carol)
        .args(["send", "--group", "team", "let me in"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "error: you were removed from \"team\" by bob: it is kept as ended history and cannot be written to\n"
    );
    let listed = json(&carol, &["group", "list"]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            &listed[0]["name"],
            &listed[0]["ended"],
            &listed[0]["ended_by"]
        ),
        (
            &Value::from("team"),
            &Value::from(true),
            &Value::from("bob")
        ),
    );
    // Alice and Bob keep talking; Carol reads none of it, and her syncs
    // stay quiet.
    json(&bob, &["send", "--group", "team", "just us now"]);
    assert_eq!(
        messages(&json(&phone, &["sync"])),
        [m("bob", "just us now")]
    );
    assert!(json(&carol, &["sync"]).is_empty());

    // Leave.
    json(&bob, &["sync"]);
    assert_eq!(text(&bob, &["group", "leave", "team"]), "left team\n");
    json(&phone, &["sync"]);
    let seen = json(&laptop, &["sync"]);
    assert!(has(&seen, "member_removed", "bob", "bob"), "{seen:?}");
    assert_eq!(
        text(&phone, &["group", "list"]),
        "team (group): alice (3 unread)\n"
    );
    // Reading the history marks it read.
    let history = json(&phone, &["history", "team", "--limit", "3"]);
    assert_eq!(history.len(), 3, "{history:?}");
    let states: Vec<&str> = history
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    // The laptop's message and the phone's are this account's: sent.
    assert_eq!(states, ["sent", "sent", "received"], "{history:?}");
    assert_eq!(text(&phone, &["group", "list"]), "team (group): alice\n");

    // Device removal: the laptop leaves the account and every conversation.
    let devices = text(&phone, &["device", "list"]);
    assert_eq!(devices.lines().count(), 2, "{devices}");
    assert!(devices.lines().any(|l| l.ends_with(" (this device)")));
    let removed = json(&phone, &["device", "remove", &laptop_device]);
    assert_eq!(removed[0]["kind"], "device_removed");
    assert_eq!(text(&phone, &["device", "list"]).lines().count(), 1);
    let gone = rempart(&laptop).arg("sync").output().unwrap();
    assert_eq!(
        gone.status.code(),
        Some(1),
        "a removed device can no longer use the account"
    );
    assert_eq!(json(&phone, &["group", "members", "team"]).len(), 1);
}

/// Starts `rempart device link` on `home` and returns it with the code it shows.
fn start_link(home: &Path) -> (Child, Lines<BufReader<ChildStdout>>, String) {
    let mut link = StdCommand::new(rempart_binary())
        .env_remove("REMPART_HOME")
        .env(
            "REMPART_PASSPHRASE_FILE",
            rempart_testkit::passphrase_file(),
        )
        .args(["--json", "--home"])
        .arg(home)
        .args(["device", "link"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(link.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let code = first["code"].as_str().unwrap().to_owned();
    (link, lines, code)
}

#[test]
fn two_nodes_on_postgres_and_one_dies() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(schema) = runtime.block_on(TestSchema::create("two_nodes_on_postgres_and_one_dies"))
    else {
        return;
    };
    let database = schema.url();
    let server = sibling_binary(&rempart_binary(), "rempart-server");
    let (data_a, data_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    // The witness's key first: every node takes its cosignatures.
    let witness_home = TempDir::new().unwrap();
    let key = StdCommand::new(sibling_binary(&rempart_binary(), "rempart-witness"))
        .args(["key", "--data"])
        .arg(witness_home.path())
        .output()
        .unwrap();
    assert!(key.status.success(), "{key:?}");
    let key = String::from_utf8(key.stdout).unwrap();
    let witness_flag = ["--witness", key.trim()];
    let node_a = ServerProcess::start_with(
        &server,
        "127.0.0.1:0",
        data_a.path(),
        Some(&database),
        &witness_flag,
    );
    // Every node signs with the same directory keys.
    copy_keys(data_a.path(), data_b.path());
    let node_b = ServerProcess::start_with(
        &server,
        "127.0.0.1:0",
        data_b.path(),
        Some(&database),
        &witness_flag,
    );
    // A witness follows the directory through node B, which outlives A.
    let mut witness = StdCommand::new(sibling_binary(&rempart_binary(), "rempart-witness"))
        .args([
            "--server",
            &node_b.url(),
            "--listen",
            "127.0.0.1:0",
            "--poll",
            "50ms",
        ])
        .arg("--data")
        .arg(witness_home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let witness_url = {
        let mut line = String::new();
        BufReader::new(witness.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        format!(
            "http://{}",
            line.trim().strip_prefix("witness listening on ").unwrap()
        )
    };
    // Each person prefers one node and fails over to the other.
    let a_first = format!("{},{}", node_a.url(), node_b.url());
    let b_first = format!("{},{}", node_b.url(), node_a.url());

    let homes = TempDir::new().unwrap();
    let phone = homes.path().join("alice-phone");
    let laptop = homes.path().join("alice-laptop");
    let bob = homes.path().join("bob");
    let carol = homes.path().join("carol");
    for (home, name, server) in [
        (&phone, "alice", &a_first),
        (&bob, "bob", &b_first),
        (&carol, "carol", &a_first),
    ] {
        json(home, &["init", "--server", server, "--name", name]);
    }

    // A group across the nodes: Alice and Carol on A, Bob on B.
    text(
        &phone,
        &["group", "create", "team", "--members", "bob,carol"],
    );
    assert!(has(&json(&bob, &["sync"]), "member_added", "alice", "bob"));
    assert!(has(
        &json(&carol, &["sync"]),
        "member_added",
        "alice",
        "carol"
    ));
    json(&phone, &["send", "--group", "team", "sent through A"]);
    assert_eq!(
        messages(&json(&bob, &["sync"])),
        [m("alice", "sent through A")]
    );
    json(&bob, &["send", "--group", "team", "sent through B"]);
    let seen = messages(&json(&carol, &["sync"]));
    assert_eq!(
        seen,
        [m("alice", "sent through A"), m("bob", "sent through B")]
    );
    assert_eq!(
        messages(&json(&phone, &["sync"])),
        [m("bob", "sent through B")]
    );

    // Alice links her laptop through node B while her phone waits on A.
    let (mut link, mut lines, code) = start_link(&phone);
    let joined = json(&laptop, &["init", "--server", &b_first, "--link", &code]);
    let linked: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(linked["kind"], "device_linked");
    assert_eq!(linked["device"], joined[0]["device"]);
    assert!(link.wait().unwrap().success());
    let bob_saw = json(&bob, &["sync"]);
    let laptop_saw = json(&laptop, &["sync"]);
    assert!(
        has(&laptop_saw, "member_added", "bob", "alice"),
        "bob: {bob_saw:?}\nlaptop: {laptop_saw:?}"
    );

    // Carol keeps sending while node A, hers, is killed: every message
    // acknowledged before or after the kill reaches the others.
    let (acked_tx, acked_rx) = std::sync::mpsc::channel();
    let sender = {
        let carol = carol.clone();
        std::thread::spawn(move || {
            for i in 0..12 {
                let body = format!("carol {i}");
                let out = rempart(&carol)
                    .args(["send", "--group", "team", &body])
                    .output()
                    .unwrap();
                if out.status.success() {
                    acked_tx.send(body).unwrap();
                }
            }
        })
    };
    let before_kill: Vec<String> = acked_rx.iter().take(4).collect();
    node_a.kill();
    sender.join().unwrap();
    let mut acked = before_kill;
    acked.extend(acked_rx.try_iter());
    assert!(acked.len() >= 4 + 6, "sends fail over to node B: {acked:?}");
    for home in [&bob, &phone, &laptop] {
        let received: Vec<String> = messages(&json(home, &["sync"]))
            .into_iter()
            .filter(|(sender, _)| sender == "carol")
            .map(|(_, text)| text)
            .collect();
        for body in &acked {
            assert!(received.contains(body), "{body:?} lost: {received:?}");
        }
    }

    // Node B took over publishing the directory: a new person's keys are
    // proven and she can be added.
    let dave = homes.path().join("dave");
    json(&dave, &["init", "--server", &a_first, "--name", "dave"]);
    assert_eq!(
        text(&phone, &["group", "add", "team", "dave"]),
        "added dave to team\n"
    );
    assert!(has(
        &json(&dave, &["sync"]),
        "member_added",
        "alice",
        "dave"
    ));
    json(&dave, &["send", "--group", "team", "dave via B"]);
    assert_eq!(
        messages(&json(&carol, &["sync"])),
        [m("dave", "dave via B")]
    );

    // The directory stayed append-only across the takeover: Bob's audit of
    // every epoch checks, and the witness verified each one without finding
    // any misbehaviour.
    let audit = json(&bob, &["audit"]);
    let latest = audit[0]["verified_to_epoch"].as_u64().unwrap();
    assert!(latest >= 3, "{audit:?}");
    let get = |path: &str| -> Value {
        let url = format!("{witness_url}{path}");
        runtime.block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
    };
    let mut verified = Value::Null;
    for _ in 0..600 {
        verified = get("/v1/witness")["verified_epoch"].clone();
        if verified.as_u64().is_some_and(|epoch| epoch >= latest) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        verified.as_u64().is_some_and(|epoch| epoch >= latest),
        "the witness verified {verified} of {latest} epochs"
    );
    assert_eq!(get("/v1/evidence"), Value::Array(Vec::new()));
    witness.kill().unwrap();
    witness.wait().unwrap();
    assert!(node_b.terminate());
}
