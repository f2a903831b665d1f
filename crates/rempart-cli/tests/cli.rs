//! Golden tests of the `rempart` command: stdout, stderr and exit status.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use rempart_testkit::{ServerProcess, register_with_foreign_key_package, sibling_binary};
use serde_json::Value;
use tempfile::TempDir;

fn server() -> (TempDir, ServerProcess) {
    ServerProcess::beside(Path::new(env!("CARGO_BIN_EXE_rempart")), &[])
}

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

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn home() -> (TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let home = dir.path().join("home");
    (dir, home)
}

#[test]
fn commands_without_an_account_say_to_run_init() {
    let (_dir, home) = home();
    for args in [&["whoami"][..], &["sync"], &["send", "--to", "bob", "hi"]] {
        let out = rempart(&home).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "error: no account in {}: run `rempart init`\n",
                home.display()
            )
        );
        assert_eq!(stdout(&out), "");
    }
}

#[test]
fn usage_errors_exit_2() {
    let (_dir, home) = home();
    let out = rempart(&home).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unrecognized subcommand 'frobnicate'"));

    let out = rempart(&home)
        .args([
            "init",
            "--server",
            "http://127.0.0.1:1",
            "--name",
            "Bad Name",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid user name \"Bad Name\": expected 3 to 32 characters of a-z, 0-9, '.', '_' or '-'"),
        "{}",
        stderr(&out)
    );

    let out = rempart(&home).args(["send", "hi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--to <TO>"));
}

#[test]
fn an_unreachable_server_is_explained_and_leaves_nothing_behind() {
    let (_dir, home) = home();
    let out = rempart(&home)
        .args(["init", "--server", "http://127.0.0.1:9", "--name", "alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: cannot reach the server at http://127.0.0.1:9: "),
        "{err}"
    );
    assert!(
        err.ends_with("is the server running, and is the URL right?\n"),
        "{err}"
    );
    assert!(!home.join(rempart_client::STORE_FILE).exists());

    let out = rempart(&home)
        .args(["init", "--server", "ftp://example", "--name", "alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("the URL must start with http:// or https://"));
}

#[test]
fn init_whoami_send_sync_outputs() {
    let (_data, server) = server();
    let url = server.url();
    let dir = TempDir::new().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));

    let out = rempart(&alice)
        .args(["init", "--server", &url, "--name", "alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0], format!("created account alice on {url}"));
    assert!(lines[1].starts_with("device ") && lines[1].len() == "device ".len() + 16);
    assert!(lines[2].starts_with("account key fingerprint: "));
    assert_eq!(stderr(&out), "");

    let out = rempart(&alice)
        .args(["init", "--server", &url, "--name", "alice"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {} already holds an account: use another --home\n",
            alice.display()
        )
    );

    let out = rempart(&alice).arg("whoami").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.starts_with("user: alice\ndevice: "), "{text}");
    assert!(text.contains(&format!("\nserver: {url}\naccount key fingerprint: ")));
    assert!(text.contains("\ndevice key fingerprint: "));

    let out = rempart(&alice).args(["--json", "whoami"]).output().unwrap();
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(who["kind"], "whoami");
    assert_eq!(who["user"], "alice");
    assert_eq!(who["server"], url.as_str());
    assert_eq!(who["device"].as_str().unwrap().len(), 16);

    let out = rempart(&alice)
        .args(["send", "--to", "zed", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: no user named zed on this server\n");

    let out = rempart(&alice)
        .args(["send", "--to", "alice", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: you cannot open a conversation with yourself\n"
    );

    rempart(&bob)
        .args(["init", "--server", &url, "--name", "bob"])
        .assert()
        .success();
    let out = rempart(&alice)
        .args(["send", "--to", "bob", "hello"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "sent to bob\n");
    let out = rempart(&alice)
        .args(["--json", "send", "--to", "bob", "again"])
        .output()
        .unwrap();
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["kind"], "sent");
    assert_eq!(sent["conversation"], "bob");
    assert_eq!(sent["message_id"].as_str().unwrap().len(), 32);

    let out = rempart(&bob).arg("sync").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("[alice] alice added bob (device "),
        "{text}"
    );
    assert_eq!(
        &lines[1..],
        ["[alice] alice: hello", "[alice] alice: again"]
    );

    let out = rempart(&bob).arg("sync").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_security_alert_exits_3() {
    let (_data, server) = server();
    let url = server.url();
    register_with_foreign_key_package(&url, "mallory").await;
    let (_dir, home) = home();
    rempart(&home)
        .args(["init", "--server", &url, "--name", "alice"])
        .assert()
        .success();

    let out = rempart(&home)
        .args(["--json", "send", "--to", "mallory", "secret"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let alert: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(alert["kind"], "alert");
    assert_eq!(alert["code"], "unauthorized_member");
    assert_eq!(alert["sender"], "mallory");

    let out = rempart(&home)
        .args(["send", "--to", "mallory", "secret"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).starts_with("SECURITY ALERT [unauthorized_member]: "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn group_and_device_errors_say_what_to_do() {
    let (_data, server) = server();
    let url = server.url();
    let (_dir, home) = home();

    let both = rempart(&home)
        .args([
            "init", "--server", &url, "--name", "alice", "--link", "0000",
        ])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
    let neither = rempart(&home).args(["send", "hi"]).output().unwrap();
    assert_eq!(neither.status.code(), Some(2));

    let bad_code = rempart(&home)
        .args(["init", "--server", &url, "--link", "not-a-code"])
        .output()
        .unwrap();
    assert_eq!(bad_code.status.code(), Some(1));
    assert_eq!(
        stderr(&bad_code),
        "error: that linking code is not valid: copy it exactly as `rempart device link` shows it\n"
    );
    assert!(!home.join(rempart_client::STORE_FILE).exists());

    rempart(&home)
        .args(["init", "--server", &url, "--name", "alice"])
        .assert()
        .success();
    let cases: [(&[&str], &str); 6] = [
        (
            &["group", "add", "nope", "bob"],
            "error: no conversation named \"nope\" here: see `rempart group list`\n",
        ),
        (
            &["send", "--group", "nope", "hi"],
            "error: no conversation named \"nope\" here: see `rempart group list`\n",
        ),
        (
            &["group", "create", "team", "--members", "zed"],
            "error: no user named zed on this server\n",
        ),
        (
            &["device", "remove", "0011223344556677"],
            "error: no device 0011223344556677 in your account: see `rempart device list`\n",
        ),
        (
            &["group", "create", "", "--members", "alice"],
            "error: invalid group name \"\": use 1 to 64 printable characters\n",
        ),
        (
            &["group", "remove", "nope", "alice"],
            "error: to remove yourself, use `rempart group leave`\n",
        ),
    ];
    for (args, expected) in cases {
        let out = rempart(&home).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), expected, "{args:?}");
    }

    let out = rempart(&home).args(["group", "list"]).output().unwrap();
    assert_eq!(stdout(&out), "");
    let out = rempart(&home).arg("update-policy").output().unwrap();
    assert_eq!(
        stdout(&out),
        "self-update every 86400 s or after 100 sent messages, checked at each sync\n"
    );
    let out = rempart(&home)
        .args([
            "--json",
            "update-policy",
            "--interval",
            "3600",
            "--after",
            "20",
        ])
        .output()
        .unwrap();
    let policy: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            policy["interval_secs"].as_i64(),
            policy["after_messages"].as_u64()
        ),
        (Some(3600), Some(20))
    );
    let out = rempart(&home).arg("update-policy").output().unwrap();
    assert_eq!(
        stdout(&out),
        "self-update every 3600 s or after 20 sent messages, checked at each sync\n"
    );
    let out = rempart(&home)
        .args(["--json", "device", "list"])
        .output()
        .unwrap();
    let device: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(device["kind"], "device");
    assert_eq!(device["this_device"], true);
}

#[test]
fn verify_shows_the_same_number_on_both_sides_and_confirms_it() {
    let (_data, server) = server();
    let url = server.url();
    let dir = TempDir::new().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    for (home, name) in [(&alice, "alice"), (&bob, "bob")] {
        rempart(home)
            .args(["init", "--server", &url, "--name", name])
            .assert()
            .success();
    }
    let number = |home: &Path, user: &str| -> Value {
        let out = rempart(home)
            .args(["--json", "verify", user])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let seen_by_alice = number(&alice, "bob");
    let seen_by_bob = number(&bob, "alice");
    assert_eq!(seen_by_alice["safety_number"], seen_by_bob["safety_number"]);
    assert_eq!(seen_by_alice["verified"], false);
    let digits = seen_by_alice["safety_number"].as_str().unwrap().to_owned();
    assert_eq!(digits.len(), 71, "60 digits in 12 groups of 5: {digits}");

    let out = rempart(&alice).args(["verify", "bob"]).output().unwrap();
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!(
            "safety number with bob:\n{digits}\nverified: no\n"
        )),
        "{text}"
    );

    let wrong = rempart(&alice)
        .args(["verify", "bob", "--confirm", "00000 00000"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(
        stderr(&wrong),
        "error: the safety number does not match: compare it again with bob, on a channel you trust\n"
    );
    let out = rempart(&alice)
        .args(["--json", "verify", "bob", "--confirm", &digits])
        .output()
        .unwrap();
    let confirmed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(confirmed["verified"], true);
    assert_eq!(number(&alice, "bob")["verified"], true);
}

#[test]
fn audit_reports_how_far_the_directory_is_verified() {
    let (_data, server) = server();
    let url = server.url();
    let dir = TempDir::new().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    let audit = |home: &Path| -> Value {
        let out = rempart(home).args(["--json", "audit"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // Polls until the directory has published `epoch`.
    let audit_to = |home: &Path, epoch: u64| -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let report = audit(home);
            if report["verified_to_epoch"].as_u64().unwrap() >= epoch {
                return report;
            }
            assert!(std::time::Instant::now() < deadline, "{report}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    rempart(&alice)
        .args(["init", "--server", &url, "--name", "alice"])
        .assert()
        .success();
    let first = audit_to(&alice, 1);
    assert_eq!(first["kind"], "audit");
    assert_eq!(first["from_epoch"], 1);
    assert_eq!(first["proofs_checked"], 0);

    rempart(&bob)
        .args(["init", "--server", &url, "--name", "bob"])
        .assert()
        .success();
    let second = audit_to(&alice, 2);
    assert_eq!(second["from_epoch"], 1);
    assert_eq!(second["proofs_checked"], 1);

    let out = rempart(&alice).arg("audit").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        format!(
            "directory verified to epoch {0}: nothing new to audit since epoch {0}\n",
            second["verified_to_epoch"]
        )
    );
}

#[test]
fn a_head_its_witness_never_cosigned_exits_3() {
    let (_data, server) = server();
    let url = server.url();
    let (_dir, home) = home();
    // A witness that never cosigns anything (the Ed25519 base point).
    let witness = "WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=";
    let init = rempart(&home)
        .args([
            "--json",
            "init",
            "--server",
            &url,
            "--name",
            "alice",
            "--witness",
            witness,
        ])
        .args(["--witness-grace", "0", "--witness-wait", "1"])
        .output()
        .unwrap();
    // This device is new key material: `init` waits for the witness, and
    // refuses when the quorum does not come.
    assert_eq!(init.status.code(), Some(3), "{}", stderr(&init));
    let alert: Value = serde_json::from_slice(&init.stdout).unwrap();
    assert_eq!(alert["code"], "witness_quorum_missing");
    // With the grace of heads that bring nothing new, the same: the wait
    // for a head bringing a new device has no grace.
    let other = TempDir::new().unwrap();
    let init = rempart(other.path())
        .args(["--json", "init", "--server", &url, "--name", "bob"])
        .args(["--witness", witness, "--witness-wait", "1"])
        .output()
        .unwrap();
    assert_eq!(init.status.code(), Some(3), "{}", stderr(&init));
    let alert: Value = serde_json::from_slice(&init.stdout).unwrap();
    assert_eq!(alert["code"], "witness_quorum_missing");
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("this device's own account"),
        "{alert}"
    );
    let who = rempart(&home).args(["--json", "whoami"]).output().unwrap();
    let who: Value = serde_json::from_slice(&who.stdout).unwrap();
    assert_eq!(who["witness_quorum"], 1);
    // Once the first epoch is out, every sync says its head lacks the quorum.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        let out = rempart(&home).args(["--json", "sync"]).output().unwrap();
        if out.status.code() != Some(0) || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let alert: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(alert["code"], "witness_quorum_missing");
}

#[test]
fn a_closed_server_registers_only_with_an_invitation_each_used_once() {
    let binary = sibling_binary(Path::new(env!("CARGO_BIN_EXE_rempart")), "rempart-server");
    let data = TempDir::new().unwrap();
    let codes = data.path().join("invitations");
    std::fs::write(&codes, "# for the team\nk7vq-2mxp-9rtc\n\n").unwrap();
    let server = ServerProcess::start_with(
        &binary,
        "127.0.0.1:0",
        &data.path().join("data"),
        None,
        &["--invitations", codes.to_str().unwrap()],
    );
    let url = server.url();
    let init = |home: &Path, name: &str, code: Option<&str>| {
        let mut cmd = rempart(home);
        cmd.args(["init", "--server", &url, "--name", name]);
        if let Some(code) = code {
            cmd.args(["--invitation", code]);
        }
        cmd.output().unwrap()
    };
    let (_a, alice) = home();
    let (_b, bob) = home();

    let out = init(&alice, "alice", None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invitation only") && stderr(&out).contains("--invitation CODE"),
        "{}",
        stderr(&out)
    );
    let out = init(&alice, "alice", Some("wrong-code"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not one of this server's"),
        "{}",
        stderr(&out)
    );

    let out = init(&alice, "alice", Some("k7vq-2mxp-9rtc"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Spent: it admits nobody else.
    let out = init(&bob, "bob", Some("k7vq-2mxp-9rtc"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("used already"), "{}", stderr(&out));
    // A code added to the file works at once.
    std::fs::write(&codes, "k7vq-2mxp-9rtc\nbob-4f2a\n").unwrap();
    let out = init(&bob, "bob", Some("bob-4f2a"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The database keeps the codes' hashes, never the codes.
    let db = std::fs::read(data.path().join("data").join("rempart.sqlite3")).unwrap();
    let wal =
        std::fs::read(data.path().join("data").join("rempart.sqlite3-wal")).unwrap_or_default();
    for file in [db, wal] {
        assert!(
            !file.windows(8).any(|w| w == b"bob-4f2a"),
            "a code is stored in the clear"
        );
    }
}
