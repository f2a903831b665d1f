//! End to end with real processes: a `rempart-server` process and two people
//! using the `rempart` command, across a graceful restart and a crash.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use rempart_testkit::{ServerProcess, sibling_binary};
use serde_json::Value;
use tempfile::TempDir;

fn server_binary() -> PathBuf {
    sibling_binary(Path::new(env!("CARGO_BIN_EXE_rempart")), "rempart-server")
}

fn rempart(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rempart"));
    cmd.env_remove("REMPART_HOME")
        .env(
            "REMPART_PASSPHRASE_FILE",
            rempart_testkit::passphrase_file(),
        )
        .arg("--home")
        .arg(home)
        .arg("--json");
    cmd
}

fn events(home: &Path) -> Vec<Value> {
    run(home, &["sync"])
}

fn texts(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| {
            (
                e["sender"].as_str().unwrap().to_owned(),
                e["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn send(home: &Path, to: &str, text: &str) {
    rempart(home)
        .args(["send", "--to", to, text])
        .assert()
        .success();
}

const MARKERS: [&str; 5] = [
    "marker-hello-bob-5e1d7c",
    "marker-hi-alice-a93f02",
    "marker-pending-0b44e1",
    "marker-acknowledged-before-crash-77c2aa",
    "marker-after-restart-c0ffee",
];

#[test]
fn two_people_talk_and_nothing_is_lost_across_restarts() {
    let data = TempDir::new().unwrap();
    let homes = TempDir::new().unwrap();
    let (alice, bob) = (homes.path().join("alice"), homes.path().join("bob"));
    let server = ServerProcess::start(&server_binary(), "127.0.0.1:0", data.path());
    let url = server.url();
    let addr = server.addr.to_string();

    for (home, name) in [(&alice, "alice"), (&bob, "bob")] {
        let out = rempart(home)
            .args(["init", "--server", &url, "--name", name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let created: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(created["kind"], "account_created");
        assert_eq!(created["user"], name);
    }

    send(&alice, "bob", MARKERS[0]);
    let got = events(&bob);
    assert!(
        got.iter()
            .any(|e| e["kind"] == "member_added" && e["sender"] == "alice")
    );
    assert_eq!(texts(&got), vec![("alice".into(), MARKERS[0].into())]);
    assert!(got.iter().all(|e| e["conversation"] == "alice"), "{got:?}");

    send(&bob, "alice", MARKERS[1]);
    assert_eq!(
        texts(&events(&alice)),
        vec![("bob".into(), MARKERS[1].into())]
    );

    // A message waiting for Bob survives a graceful restart.
    send(&alice, "bob", MARKERS[2]);
    assert!(server.terminate(), "graceful shutdown should exit 0");
    let server = ServerProcess::start(&server_binary(), &addr, data.path());
    assert_eq!(
        texts(&events(&bob)),
        vec![("alice".into(), MARKERS[2].into())]
    );

    // An acknowledged message survives a crash right after the acknowledgement.
    send(&alice, "bob", MARKERS[3]);
    server.kill();
    let server = ServerProcess::start(&server_binary(), &addr, data.path());
    assert_eq!(
        texts(&events(&bob)),
        vec![("alice".into(), MARKERS[3].into())]
    );

    // The conversation goes on: group state and membership survived.
    send(&bob, "alice", MARKERS[4]);
    assert_eq!(
        texts(&events(&alice)),
        vec![("bob".into(), MARKERS[4].into())]
    );
    assert!(events(&alice).is_empty());
    assert!(server.terminate());

    // The server's data directory, byte by byte, holds none of the texts.
    let mut files = 0;
    for entry in std::fs::read_dir(data.path()).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).unwrap();
        for marker in MARKERS {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "{marker} found in {}",
                path.display()
            );
        }
    }
    assert!(files > 0, "the server stored nothing?");
}

/// Runs `rempart ARGS` (JSON); it must succeed. Its lines.
fn run(home: &Path, args: &[&str]) -> Vec<Value> {
    let output = rempart(home).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `state` of each message of a conversation's history, oldest first.
fn states(home: &Path, conversation: &str) -> Vec<String> {
    run(home, &["history", conversation])
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn messages_written_while_the_server_is_down_are_queued_and_delivered_once_it_returns() {
    let data = TempDir::new().unwrap();
    let homes = TempDir::new().unwrap();
    let home = |name: &str| homes.path().join(name);
    let (alice, bob, carol) = (home("alice"), home("bob"), home("carol"));
    let server = ServerProcess::start(&server_binary(), "127.0.0.1:0", data.path());
    let addr = server.addr.to_string();
    for (home, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        run(home, &["init", "--server", &server.url(), "--name", name]);
    }
    send(&alice, "bob", "before the outage");
    assert_eq!(texts(&events(&bob)).len(), 1);

    assert!(server.terminate());
    // To Bob, in their conversation, and to Carol, whose conversation
    // cannot be opened yet: both kept, and the command succeeds.
    let mut queued = Vec::new();
    for (to, text) in [
        ("bob", "written offline 1"),
        ("bob", "written offline 2"),
        ("carol", "first words to carol"),
    ] {
        let said = run(&alice, &["send", "--to", to, text]);
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!(said[0]["kind"], "queued", "{said:?}");
        assert_eq!(said[0]["state"], "queued", "{said:?}");
        queued.push(said[0]["message_id"].clone());
    }
    assert_eq!(states(&alice, "bob"), ["sent", "queued", "queued"]);
    // Without the server, the next command cannot send them: still queued.
    let offline = rempart(&alice).arg("sync").output().unwrap();
    assert_eq!(offline.status.code(), Some(1));
    assert_eq!(states(&alice, "bob"), ["sent", "queued", "queued"]);

    let server = ServerProcess::start(&server_binary(), &addr, data.path());
    // The next command that reaches the server sends them, in order, and
    // says so.
    let reported = run(&alice, &["sync"]);
    let sent: Vec<&Value> = reported
        .iter()
        .filter(|e| e["kind"] == "message_sent")
        .map(|e| &e["message_id"])
        .collect();
    assert_eq!(sent, queued.iter().collect::<Vec<_>>(), "{reported:?}");
    assert_eq!(states(&alice, "bob"), ["sent", "sent", "sent"]);
    assert_eq!(states(&alice, "carol"), ["sent"]);
    assert!(
        run(&alice, &["sync"])
            .iter()
            .all(|e| e["kind"] != "message_sent"),
        "reported twice"
    );

    // Delivered exactly once.
    let bob_saw = texts(&events(&bob));
    assert_eq!(
        bob_saw,
        [
            ("alice".to_owned(), "written offline 1".to_owned()),
            ("alice".to_owned(), "written offline 2".to_owned())
        ]
    );
    assert_eq!(
        texts(&events(&carol)),
        [("alice".to_owned(), "first words to carol".to_owned())]
    );
    assert!(texts(&events(&bob)).is_empty());
    assert!(server.terminate());
}
