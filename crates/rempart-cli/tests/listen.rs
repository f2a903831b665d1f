//! `rempart listen`, a real process against a real server: it prints what
//! others send as it arrives, with no `sync`, in the shapes `sync --json`
//! uses, and exits 0 when interrupted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use rempart_testkit::TestServer;
use serde_json::Value;
use tempfile::TempDir;

fn rempart(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rempart"));
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

fn ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn listen_prints_each_message_as_it_arrives_and_exits_0_when_interrupted() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(TestServer::start());
    let homes = TempDir::new().unwrap();
    let (alice, bob) = (homes.path().join("alice"), homes.path().join("bob"));
    for (home, user) in [(&alice, "alice"), (&bob, "bob")] {
        ok(rempart(home).args(["init", "--server", &server.url, "--name", user]));
    }

    for signal in ["-INT", "-TERM"] {
        let mut listener = rempart(&bob)
            .args(["--json", "listen"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(listener.stdout.take().unwrap()).lines();
        for i in 1..=5 {
            ok(rempart(&alice).args(["send", "--to", "bob", &format!("sig{signal} {i}")]));
        }
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let line = lines.next().expect("listen ended early").unwrap();
            let event: Value = serde_json::from_str(&line).unwrap();
            assert_ne!(event["kind"], "alert", "{event}");
            if event["kind"] == "message" {
                assert_eq!(
                    (&event["conversation"], &event["sender"]),
                    (&Value::from("alice"), &Value::from("alice"))
                );
                seen.push(event["text"].as_str().unwrap().to_owned());
            }
        }
        let expected: Vec<String> = (1..=5).map(|i| format!("sig{signal} {i}")).collect();
        assert_eq!(seen, expected);

        let status = Command::new("kill")
            .args([signal, &listener.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = listener.wait().unwrap();
        assert_eq!(exit.code(), Some(0), "{signal}: {exit:?}");
    }
    drop(server);
}
