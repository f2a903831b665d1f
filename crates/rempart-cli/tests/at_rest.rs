//! A seized device reveals nothing: after a conversation through a real
//! server, the homes of both people hold no message, no user name and no
//! identifier in the clear, and their stores open only with the passphrase.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use rempart_testkit::{ServerProcess, passphrase_file, succeeded};
use serde_json::Value;
use tempfile::TempDir;

/// A `rempart-server` process with these arguments, and its data.
fn server(more: &[&str]) -> (TempDir, ServerProcess) {
    ServerProcess::beside(Path::new(env!("CARGO_BIN_EXE_rempart")), more)
}

fn rempart(home: &Path, passphrase: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rempart"));
    cmd.env_remove("REMPART_HOME")
        .env_remove("RUST_LOG")
        .env("REMPART_PASSPHRASE_FILE", passphrase)
        .arg("--home")
        .arg(home)
        .arg("--json");
    cmd
}

fn run(home: &Path, args: &[&str]) -> Vec<Value> {
    let out = rempart(home, passphrase_file())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            found.push((path, bytes));
        }
    }
    found
}

/// The files under `dir` that hold `needle`.
fn holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(path, _)| path)
        .collect()
}

const SECRET: &str = "the-meeting-moves-to-the-old-mill-8c1f";
const REPLY: &str = "understood-bring-the-maps-41d7";

#[test]
fn a_seized_home_reveals_nothing_and_opens_only_with_its_passphrase() {
    let (_data, server) = server(&[]);
    let url = server.url();
    let homes = TempDir::new().unwrap();
    let (alice, bob) = (homes.path().join("alice"), homes.path().join("bob"));
    let (alice_name, bob_name) = ("alice-of-the-hills", "bob-of-the-valley");
    let mut devices = Vec::new();
    for (home, name) in [(&alice, alice_name), (&bob, bob_name)] {
        let created = run(home, &["init", "--server", &url, "--name", name]);
        devices.push(created[0]["device"].as_str().unwrap().to_owned());
    }
    run(&alice, &["send", "--to", bob_name, SECRET]);
    let received = run(&bob, &["sync"]);
    assert!(received.iter().any(|e| e["text"] == SECRET), "{received:?}");
    run(&bob, &["send", "--to", alice_name, REPLY]);
    let received = run(&alice, &["sync"]);
    assert!(received.iter().any(|e| e["text"] == REPLY), "{received:?}");
    // Both histories hold both messages, for whoever has the passphrase.
    for home in [&alice, &bob] {
        let who = run(home, &["whoami"]);
        assert_eq!(who[0]["store_encrypted"], true);
    }

    // A byte search of each home: no message, no user name, no device id,
    // no server address.
    for home in [&alice, &bob] {
        let mut needles: Vec<Vec<u8>> = vec![
            SECRET.into(),
            REPLY.into(),
            alice_name.into(),
            bob_name.into(),
            url.clone().into(),
        ];
        for device in &devices {
            needles.push(hex::decode(device).unwrap());
            needles.push(device.clone().into());
        }
        for needle in &needles {
            let found = holding(home, needle);
            assert!(
                found.is_empty(),
                "{:?} in {found:?}",
                String::from_utf8_lossy(needle)
            );
        }
        // The sqlite3 command cannot read the store.
        let read = std::process::Command::new("sqlite3")
            .arg(home.join("rempart.db"))
            .arg("SELECT count(*) FROM sqlite_master;")
            .output()
            .expect("the sqlite3 command (apt-get install sqlite3)");
        assert!(!read.status.success(), "sqlite3 read the store: {read:?}");
        assert!(
            String::from_utf8_lossy(&read.stderr).contains("not a database"),
            "{read:?}"
        );
    }

    // The same search finds what a store made with --no-passphrase holds:
    // the search itself can fail.
    let plain = homes.path().join("plain");
    let out = rempart(&plain, passphrase_file())
        .args([
            "init",
            "--server",
            &url,
            "--name",
            "carol-in-clear",
            "--no-passphrase",
        ])
        .output()
        .unwrap();
    succeeded(&out);
    assert!(!holding(&plain, b"carol-in-clear").is_empty());
    let who = run(&plain, &["whoami"]);
    assert_eq!(who[0]["store_encrypted"], false);
    assert!(
        who[0]["store_warning"]
            .as_str()
            .unwrap()
            .contains("not encrypted"),
        "{who:?}"
    );
}

#[test]
fn a_wrong_or_missing_passphrase_is_a_plain_error_and_changes_nothing() {
    let (_data, server) = server(&[]);
    let homes = TempDir::new().unwrap();
    let alice = homes.path().join("alice");
    run(
        &alice,
        &["init", "--server", &server.url(), "--name", "alice"],
    );
    let before = files(&alice);

    let wrong = homes.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    for args in [&["whoami"][..], &["sync"], &["send", "--to", "alice", "hi"]] {
        let out = rempart(&alice, &wrong).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let said = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            said,
            format!(
                "error: the passphrase does not open the store in {}: check it and try again (nothing was changed)\n",
                alice.display()
            )
        );
    }
    // No passphrase, and no terminal to type it on.
    let out = rempart(&alice, &wrong)
        .env_remove("REMPART_PASSPHRASE_FILE")
        .arg("whoami")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("REMPART_PASSPHRASE_FILE"),
        "{out:?}"
    );
    assert_eq!(files(&alice), before, "the store changed");
    // The right one still opens it.
    assert_eq!(run(&alice, &["whoami"])[0]["user"], "alice");

    // A new store needs a passphrase, or an explicit --no-passphrase.
    let bob = homes.path().join("bob");
    let out = rempart(&bob, &wrong)
        .env_remove("REMPART_PASSPHRASE_FILE")
        .args(["init", "--server", &server.url(), "--name", "bob"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--no-passphrase"),
        "{out:?}"
    );
    assert!(!bob.join("rempart.db").exists());
}

/// The texts of `home`'s history with `peer`, opened with `passphrase`.
fn history(home: &Path, passphrase: &Path, peer: &str) -> Vec<String> {
    let out = rempart(home, passphrase)
        .args(["history", peer])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        home.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn passphrase_in(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    path
}

#[test]
fn a_changed_passphrase_opens_the_store_and_the_old_one_no_longer_does() {
    let (_data, server) = server(&[]);
    let homes = TempDir::new().unwrap();
    let (alice, bob) = (homes.path().join("alice"), homes.path().join("bob"));
    run(
        &alice,
        &["init", "--server", &server.url(), "--name", "alice"],
    );
    run(&bob, &["init", "--server", &server.url(), "--name", "bob"]);
    run(&alice, &["send", "--to", "bob", SECRET]);

    let new = passphrase_in(homes.path(), "new", "a much longer passphrase now");
    let changed = run(
        &alice,
        &[
            "passphrase",
            "change",
            "--new-passphrase-file",
            new.to_str().unwrap(),
        ],
    );
    assert_eq!(changed[0]["kind"], "passphrase_changed");
    assert_eq!(changed[0]["was_encrypted"], true);
    let out = rempart(&alice, passphrase_file())
        .arg("whoami")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not open"));
    assert_eq!(history(&alice, &new, "bob"), [SECRET]);
    // Still a working account: it sends and syncs under the new one.
    let out = rempart(&alice, &new)
        .args(["send", "--to", "bob", REPLY])
        .output()
        .unwrap();
    succeeded(&out);
    let received = run(&bob, &["sync"]);
    let texts: Vec<&str> = received.iter().filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(texts, [SECRET, REPLY]);
    let leftovers: Vec<PathBuf> = files(&alice)
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| {
            path.to_string_lossy().contains(".new") || path.to_string_lossy().contains(".rekey")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_plain_store_is_encrypted_in_place_even_when_killed_midway() {
    // A dozen accounts from one address, and their every request.
    let (_data, server) = server(&["--no-rate-limits"]);
    let homes = TempDir::new().unwrap();
    let bob = homes.path().join("bob");
    run(&bob, &["init", "--server", &server.url(), "--name", "bob"]);
    let new = passphrase_in(homes.path(), "new", "the passphrase it gets");

    // Kill the encryption after ever longer delays, from before it starts
    // to after it ends, whatever this machine's speed puts in between;
    // each time, the store opens (plain still, or encrypted under the new
    // passphrase) with everything in it, and the command run again
    // finishes the work.
    for attempt in 0..20u64 {
        let home = homes.path().join(format!("plain-{attempt}"));
        let name = format!("plain-user-{attempt}");
        let out = rempart(&home, passphrase_file())
            .args([
                "init",
                "--server",
                &server.url(),
                "--name",
                &name,
                "--no-passphrase",
            ])
            .output()
            .unwrap();
        succeeded(&out);
        let out = rempart(&home, passphrase_file())
            .args(["send", "--to", "bob", SECRET])
            .output()
            .unwrap();
        succeeded(&out);

        let mut change = std::process::Command::new(env!("CARGO_BIN_EXE_rempart"))
            .env_remove("REMPART_PASSPHRASE_FILE")
            .arg("--home")
            .arg(&home)
            .args(["passphrase", "change", "--new-passphrase-file"])
            .arg(&new)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(attempt * 12));
        let _ = change.kill();
        let _ = change.wait();

        // A staged header cut off before its content (as a kill right
        // after its creation leaves it) is no more than an unfinished
        // change.
        if attempt == 0 {
            std::fs::write(home.join("rempart.db.header.new"), "").unwrap();
        }
        // Whatever the moment, it opens, with its history.
        assert_eq!(history(&home, &new, "bob"), [SECRET], "attempt {attempt}");
        if !rempart_client::at_rest::is_encrypted(&home) {
            let out = rempart(&home, passphrase_file())
                .args([
                    "passphrase",
                    "change",
                    "--new-passphrase-file",
                    new.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(rempart_client::at_rest::is_encrypted(&home));
        assert_eq!(history(&home, &new, "bob"), [SECRET], "attempt {attempt}");
        assert!(
            holding(&home, name.as_bytes()).is_empty(),
            "attempt {attempt}"
        );
        assert!(
            holding(&home, SECRET.as_bytes()).is_empty(),
            "attempt {attempt}"
        );
    }
}
