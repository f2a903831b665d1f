//! The `rempart` process killed with SIGKILL in the middle of a send, of
//! the delivery of queued messages and of a group change, at each of its
//! network steps, then the same command run again: it completes, nothing
//! is sent twice, nothing is lost, and the members agree on the group.
//!
//! Alice's commands go through a proxy that holds their `n`-th request,
//! before it reaches the server or after the server answered; once it is
//! held, the process is killed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rempart_testkit::{Proxy, StallAt, TestServer};
use serde_json::Value;
use tempfile::TempDir;

fn rempart(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rempart"));
    cmd.env_remove("REMPART_HOME")
        .env_remove("RUST_LOG")
        .env(
            "REMPART_PASSPHRASE_FILE",
            rempart_testkit::passphrase_file(),
        )
        .arg("--home")
        .arg(home)
        .arg("--json")
        .args(args);
    cmd
}

/// Runs a command to completion; it must succeed. Its JSON lines.
fn run(home: &Path, args: &[&str]) -> Vec<Value> {
    let out = rempart(home, args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The texts of the messages among `events`.
fn texts(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["text"].as_str().unwrap().to_owned())
        .collect()
}

/// The server, Alice's proxy, and how many requests the proxy has held.
struct Scene {
    runtime: tokio::runtime::Runtime,
    _server: TestServer,
    server_url: String,
    proxy: Arc<Proxy>,
    held: Arc<AtomicUsize>,
    homes: TempDir,
}

impl Scene {
    fn start() -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (server, proxy) = runtime.block_on(async {
            let server = TestServer::start().await;
            let proxy = Proxy::start(&server.url).await;
            (server, Arc::new(proxy))
        });
        let held = Arc::new(AtomicUsize::new(0));
        {
            let (proxy, held) = (proxy.clone(), held.clone());
            runtime.spawn(async move {
                loop {
                    proxy.stalled().await;
                    held.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        Self {
            server_url: server.url.clone(),
            _server: server,
            runtime,
            proxy,
            held,
            homes: TempDir::new().unwrap(),
        }
    }

    fn home(&self, user: &str, through_proxy: bool) -> std::path::PathBuf {
        let home = self.homes.path().join(user);
        let server = if through_proxy {
            self.proxy.url.clone()
        } else {
            self.server_url.clone()
        };
        run(&home, &["init", "--server", &server, "--name", user]);
        home
    }

    /// Runs Alice's command until the proxy holds its `n`-th request at
    /// `at`, and kills it there with SIGKILL. `true` if it finished first.
    fn kill_at(&self, home: &Path, args: &[&str], n: usize, at: StallAt) -> bool {
        let before = self.held.load(Ordering::SeqCst);
        self.proxy.stall(n, at);
        let mut child = rempart(home, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let finished = loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{args:?} failed before step {n}");
                break true;
            }
            if self.held.load(Ordering::SeqCst) > before {
                child.kill().unwrap();
                child.wait().unwrap();
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.proxy.release();
        finished
    }
}

#[test]
fn a_killed_send_is_delivered_exactly_once_before_the_next() {
    let scene = Scene::start();
    let alice = scene.home("alice", true);
    let bob = scene.home("bob", false);
    run(&alice, &["send", "--to", "bob", "hello"]);
    assert_eq!(texts(&run(&bob, &["sync"])), ["hello"]);
    for at in [StallAt::BeforeServer, StallAt::AfterServer] {
        for n in 1.. {
            let killed = format!("killed {at:?} {n}");
            let finished = scene.kill_at(&alice, &["send", "--to", "bob", &killed], n, at);
            let next = format!("next {at:?} {n}");
            run(&alice, &["send", "--to", "bob", &next]);
            // The killed message was in the outbox before anything went on
            // the network: the next send delivers it first.
            assert_eq!(texts(&run(&bob, &["sync"])), [killed, next], "{at:?} {n}");
            run(&alice, &["sync"]);
            if finished {
                break;
            }
        }
    }
    drop(scene.runtime);
}

/// The `state` of each message of a conversation's history, oldest first.
fn states(home: &Path, conversation: &str) -> Vec<String> {
    run(home, &["history", conversation])
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_client_killed_while_messages_are_queued_sends_each_exactly_once() {
    let scene = Scene::start();
    let alice = scene.home("alice", true);
    let bob = scene.home("bob", false);
    run(&alice, &["send", "--to", "bob", "hello"]);
    assert_eq!(texts(&run(&bob, &["sync"])), ["hello"]);

    // Three sends, each killed at its first request, before the server
    // has anything: the outbox goes oldest first, so that request is
    // always the first message's upload, and all three stay queued.
    let queued = ["one", "two", "three"];
    for text in queued {
        let finished = scene.kill_at(
            &alice,
            &["send", "--to", "bob", text],
            1,
            StallAt::BeforeServer,
        );
        assert!(!finished, "{text} went out");
    }
    assert_eq!(
        states(&alice, "bob"),
        ["sent", "queued", "queued", "queued"]
    );

    // Then syncs, each killed after the server took its `n`-th request:
    // every upload the server stored is sent again by the next run, and
    // taken as the same message.
    for n in 1.. {
        if scene.kill_at(&alice, &["sync"], n, StallAt::AfterServer) {
            break;
        }
    }
    assert_eq!(texts(&run(&bob, &["sync"])), queued);
    assert_eq!(states(&alice, "bob"), ["sent"; 4]);
    assert!(texts(&run(&bob, &["sync"])).is_empty());
    drop(scene.runtime);
}

#[test]
fn a_killed_group_change_is_settled_by_the_next_command() {
    let scene = Scene::start();
    let alice = scene.home("alice", true);
    let bob = scene.home("bob", false);
    let carol = scene.home("carol", false);
    run(&alice, &["group", "create", "team", "--members", "bob"]);
    run(&bob, &["sync"]);
    let members = |home: &Path| -> Vec<String> {
        let mut users: Vec<String> = run(home, &["group", "members", "team"])
            .iter()
            .map(|m| m["user"].as_str().unwrap().to_owned())
            .collect();
        users.dedup();
        users
    };
    for at in [StallAt::BeforeServer, StallAt::AfterServer] {
        for n in 1.. {
            let finished = scene.kill_at(&alice, &["group", "add", "team", "carol"], n, at);
            let again = rempart(&alice, &["group", "add", "team", "carol"])
                .output()
                .unwrap();
            if finished {
                assert_eq!(again.status.code(), Some(1), "added twice");
                assert!(stderr(&again).contains("already"), "{}", stderr(&again));
            } else if !again.status.success() {
                assert!(stderr(&again).contains("already"), "{}", stderr(&again));
            }
            run(&bob, &["sync"]);
            run(&carol, &["sync"]);
            for home in [&alice, &bob, &carol] {
                assert_eq!(members(home), ["alice", "bob", "carol"], "{at:?} {n}");
            }
            let text = format!("all three {at:?} {n}");
            run(&alice, &["send", "--group", "team", &text]);
            assert_eq!(texts(&run(&carol, &["sync"])), std::slice::from_ref(&text));
            assert_eq!(texts(&run(&bob, &["sync"])), [text]);
            // Carol out again, for the next round.
            run(&alice, &["group", "remove", "team", "carol"]);
            run(&bob, &["sync"]);
            run(&carol, &["sync"]);
            if finished {
                break;
            }
        }
    }
    drop(scene.runtime);
}
