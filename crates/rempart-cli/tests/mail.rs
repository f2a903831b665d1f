//! `rempart mail key`: an OpenPGP certificate per mail address, made on
//! the device, that GnuPG reads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use assert_cmd::Command;
use rempart_testkit::{MailServers, ServerProcess, failed_saying, gpg, passphrase_file, succeeded};
use serde_json::Value;
use tempfile::TempDir;

fn rempart(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rempart"));
    cmd.env_remove("REMPART_HOME")
        .env_remove("RUST_LOG")
        .env("REMPART_PASSPHRASE_FILE", passphrase_file())
        .arg("--home")
        .arg(home);
    cmd
}

/// A server process, and Alice's account on it in `homes/alice`.
fn alice_on_a_server() -> (TempDir, ServerProcess, TempDir) {
    let (data, server) = ServerProcess::beside(Path::new(env!("CARGO_BIN_EXE_rempart")), &[]);
    let homes = TempDir::new().unwrap();
    rempart(&homes.path().join("alice"))
        .args(["init", "--server", &server.url(), "--name", "alice"])
        .assert()
        .success();
    (data, server, homes)
}

#[test]
fn a_mail_key_is_made_on_the_device_and_gnupg_reads_its_certificate() {
    let (_data, _server, homes) = alice_on_a_server();
    let alice = homes.path().join("alice");

    let out = rempart(&alice)
        .args([
            "--json",
            "mail",
            "key",
            "create",
            "--address",
            "Alice@Example.org",
        ])
        .output()
        .unwrap();
    succeeded(&out);
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["kind"], "mail_key_created");
    assert_eq!(created["address"], "alice@example.org");
    let fingerprint = created["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint.len(), 40, "a v4 fingerprint: {fingerprint}");

    // One key per address.
    let out = rempart(&alice)
        .args(["mail", "key", "create", "--address", "alice@example.org"])
        .output()
        .unwrap();
    failed_saying(&out, "already has a mail key");
    let out = rempart(&alice)
        .args(["mail", "key", "create", "--address", "not an address"])
        .output()
        .unwrap();
    failed_saying(&out, "is not a mail address");

    // GnuPG imports the certificate, with the same fingerprint, an Ed25519
    // primary key and a Curve25519 encryption subkey.
    let out = rempart(&alice)
        .args(["mail", "key", "export"])
        .output()
        .unwrap();
    succeeded(&out);
    let armored = String::from_utf8(out.stdout).unwrap();
    assert!(
        armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{armored}"
    );
    assert!(!armored.contains("PRIVATE"), "{armored}");
    let keyring = TempDir::new().unwrap();
    let certificate = homes.path().join("alice.asc");
    std::fs::write(&certificate, &armored).unwrap();
    let imported = gpg(
        keyring.path(),
        &["--import", certificate.to_str().unwrap()],
        b"",
    );
    assert!(imported.status.success(), "{imported:?}");
    let listed = gpg(keyring.path(), &["--with-colons", "--fingerprint"], b"");
    let listed = String::from_utf8(listed.stdout).unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    let field = |line: &str, n: usize| line.split(':').nth(n).unwrap_or("").to_owned();
    let primary = lines.iter().position(|l| l.starts_with("pub:")).unwrap();
    assert_eq!(field(lines[primary], 16), "ed25519", "{listed}");
    assert_eq!(field(lines[primary + 1], 9), fingerprint, "{listed}");
    let subkey = lines.iter().find(|l| l.starts_with("sub:")).unwrap();
    assert_eq!(field(subkey, 16), "cv25519", "{listed}");
    assert!(
        field(subkey, 11).contains('e'),
        "an encryption subkey: {listed}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("uid:") && l.contains("alice <alice@example.org>")),
        "{listed}"
    );
    // Only the certificate: GnuPG holds no secret key.
    let secrets = gpg(keyring.path(), &["--list-secret-keys"], b"");
    assert!(String::from_utf8_lossy(&secrets.stdout).trim().is_empty());
}

/// Runs `rempart --json` with `args` and parses its one line of output.
fn json(home: &Path, args: &[&str]) -> Value {
    let out = rempart(home).arg("--json").args(args).output().unwrap();
    succeeded(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_certificate_is_looked_up_with_proofs_imported_from_gnupg_and_verified() {
    let (_data, server) = ServerProcess::beside(Path::new(env!("CARGO_BIN_EXE_rempart")), &[]);
    let homes = TempDir::new().unwrap();
    let (alice, bob) = (homes.path().join("alice"), homes.path().join("bob"));
    for (home, name) in [(&alice, "alice"), (&bob, "bob")] {
        rempart(home)
            .args(["init", "--server", &server.url(), "--name", name])
            .assert()
            .success();
    }
    let created = json(
        &alice,
        &["mail", "key", "create", "--address", "alice@example.org"],
    );

    // Bob looks Alice's address up: proven by the directory once it is
    // published (at its next epoch).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let found = loop {
        let out = rempart(&bob)
            .args(["--json", "mail", "key", "lookup", "alice@example.org"])
            .output()
            .unwrap();
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).unwrap();
        }
        failed_saying(&out, "is not in the directory");
        assert!(std::time::Instant::now() < deadline, "never published");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(found["kind"], "mail_key");
    assert_eq!(found["fingerprint"], created["fingerprint"]);
    assert_eq!(found["source"], "proven");
    assert_eq!(found["user"], "alice");
    assert!(found["proven_at"].as_u64().is_some(), "{found}");
    assert_eq!(
        json(&bob, &["mail", "key", "show", "alice@example.org"]),
        found
    );

    // Carol uses GnuPG: Bob imports her certificate, then verifies it.
    let keyring = TempDir::new().unwrap();
    let made = gpg(
        keyring.path(),
        &[
            "--quick-gen-key",
            "Carol <carol@example.net>",
            "ed25519",
            "default",
            "never",
        ],
        b"",
    );
    assert!(made.status.success(), "{made:?}");
    let exported = gpg(
        keyring.path(),
        &["--armor", "--export", "carol@example.net"],
        b"",
    );
    let certificate = homes.path().join("carol.asc");
    std::fs::write(&certificate, &exported.stdout).unwrap();
    let imported = json(
        &bob,
        &["mail", "key", "import", certificate.to_str().unwrap()],
    );
    assert_eq!(imported["address"], "carol@example.net");
    assert_eq!(imported["source"], "imported");
    let listed = gpg(keyring.path(), &["--with-colons", "--fingerprint"], b"");
    let listed = String::from_utf8(listed.stdout).unwrap();
    let carols = listed
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .unwrap()
        .to_owned();
    assert_eq!(imported["fingerprint"], carols);

    let out = rempart(&bob)
        .args([
            "mail",
            "key",
            "verify",
            "carol@example.net",
            &"0".repeat(40),
        ])
        .output()
        .unwrap();
    failed_saying(&out, "nothing was changed");
    let verified = json(
        &bob,
        &["mail", "key", "verify", "carol@example.net", &carols],
    );
    assert_eq!(verified["source"], "verified");
}

#[test]
fn mail_setup_keeps_the_mailbox_encrypted_and_allows_plain_connections_only_on_loopback() {
    let (_data, _server, homes) = alice_on_a_server();
    let alice = homes.path().join("alice");
    let password = homes.path().join("password");
    std::fs::write(&password, "correct-horse-battery-staple\n").unwrap();
    let setup = |imap: &str, more: &[&str]| {
        let mut args = vec![
            "mail",
            "setup",
            "--address",
            "alice@example.org",
            "--imap",
            imap,
            "--smtp",
            "127.0.0.1:10587",
            "--login",
            "alice",
            "--password-file",
            password.to_str().unwrap(),
        ];
        args.extend_from_slice(more);
        rempart(&alice).arg("--json").args(args).output().unwrap()
    };

    // Without a key yet, setup makes and publishes one.
    let out = setup("127.0.0.1:10143", &["--plain-on-loopback"]);
    succeeded(&out);
    let kept: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(kept["kind"], "mail_setup");
    assert_eq!(kept["address"], "alice@example.org");
    assert_eq!(kept["imap"], "127.0.0.1:10143");
    assert_eq!(kept["smtp"], "127.0.0.1:10587");
    assert_eq!(kept["security"], "plain_on_loopback");
    assert_eq!(kept["key_created"], true);
    assert_eq!(kept["fingerprint"].as_str().unwrap().len(), 40);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("battery"));

    // Set up again: the same key.
    let out = setup("[::1]:10143", &["--plain-on-loopback"]);
    succeeded(&out);
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["key_created"], false);
    assert_eq!(again["fingerprint"], kept["fingerprint"]);

    // Plain connections go nowhere but this machine.
    let out = setup("mail.example.org:143", &["--plain-on-loopback"]);
    failed_saying(&out, "is not a loopback address");
    let out = setup("mail.example.org", &["--tls"]);
    failed_saying(&out, "is not a mail server: write it as HOST:PORT");
    let out = setup("mail.example.org:993", &["--tls", "--starttls"]);
    assert_eq!(out.status.code(), Some(2), "one security at a time");

    // The password is in the store, which is encrypted: no file of the
    // home holds it in the clear.
    for entry in std::fs::read_dir(&alice).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        assert!(
            !bytes.windows(b"battery".len()).any(|w| w == b"battery"),
            "a file of the home holds the password"
        );
    }
}

/// Runs `rempart --json` with `args` and parses each line of its output.
fn json_lines(home: &Path, args: &[&str]) -> Vec<Value> {
    let out = rempart(home).arg("--json").args(args).output().unwrap();
    succeeded(&out);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn mail_goes_between_two_rempart_users_through_real_servers_from_the_command_line() {
    let mail = MailServers::start();
    for address in ["alice@example.org", "bob@example.org", "erin@example.net"] {
        mail.add_mailbox(address, "secret");
    }
    let (_data, server) = ServerProcess::beside(Path::new(env!("CARGO_BIN_EXE_rempart")), &[]);
    let homes = TempDir::new().unwrap();
    let password = homes.path().join("password");
    std::fs::write(&password, "secret\n").unwrap();
    let (alice, bob) = (homes.path().join("alice"), homes.path().join("bob"));
    let (imap, smtp) = (
        format!("127.0.0.1:{}", mail.imap),
        format!("127.0.0.1:{}", mail.smtp),
    );
    for (home, name) in [(&alice, "alice"), (&bob, "bob")] {
        rempart(home)
            .args(["init", "--server", &server.url(), "--name", name])
            .assert()
            .success();
        let address = format!("{name}@example.org");
        json(
            home,
            &[
                "mail",
                "setup",
                "--address",
                &address,
                "--imap",
                &imap,
                "--smtp",
                &smtp,
                "--login",
                &address,
                "--password-file",
                password.to_str().unwrap(),
                "--plain-on-loopback",
            ],
        );
    }
    // Bob's address is published at the directory's next epoch.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !rempart(&alice)
        .args(["mail", "key", "lookup", "bob@example.org"])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(std::time::Instant::now() < deadline, "never published");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Alice writes, the text on standard input.
    let out = rempart(&alice)
        .args([
            "--json",
            "mail",
            "send",
            "--to",
            "bob@example.org",
            "--subject",
            "Lunch?",
            "-",
        ])
        .write_stdin("Noon at the usual place?\n")
        .output()
        .unwrap();
    succeeded(&out);
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["kind"], "mail_sent");
    assert_eq!(sent["encrypted"], true);

    // Bob fetches, lists and reads it: the security state beside it.
    mail.stored_messages("bob@example.org", 1);
    let synced = json(&bob, &["mail", "sync"]);
    assert_eq!(
        (synced["kind"].as_str(), synced["new"].as_u64()),
        (Some("mail_sync"), Some(1))
    );
    let listed = json_lines(&bob, &["mail", "list"]);
    assert_eq!(listed.len(), 1);
    let entry = &listed[0];
    assert_eq!(entry["kind"], "mail");
    assert_eq!(entry["from"], "alice@example.org");
    assert_eq!(entry["subject"], "Lunch?");
    assert_eq!(entry["encrypted"], true);
    assert_eq!(entry["signed_by"].as_str().unwrap().len(), 40);
    assert_eq!(entry["assurance"], "autocrypt");
    assert!(entry.get("body").is_none());
    let id = entry["id"].as_i64().unwrap().to_string();
    let read = json(&bob, &["mail", "read", &id]);
    assert_eq!(read["body"], "Noon at the usual place?\n");
    assert_eq!(read["signed_by"], entry["signed_by"]);
    let out = rempart(&bob).args(["mail", "read", &id]).output().unwrap();
    succeeded(&out);
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(
        shown.starts_with(&format!(
            "[encrypted, signed by {} (autocrypt)]\n",
            entry["signed_by"].as_str().unwrap()
        )),
        "{shown}"
    );

    // Bob answers; Alice's list shows it in the thread of her message.
    let answer = json(&bob, &["mail", "reply", &id, "Yes, noon."]);
    assert_eq!(answer["encrypted"], true);
    mail.stored_messages("alice@example.org", 1);
    json(&alice, &["mail", "sync"]);
    let inbox = json_lines(&alice, &["mail", "list"]);
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["subject"], "Re: Lunch?");
    assert_eq!(inbox[0]["assurance"], "proven");
    assert_eq!(inbox[0]["thread"], sent["message_id"]);
    let outbox = json_lines(&alice, &["mail", "list", "--folder", "Sent"]);
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0]["thread"], sent["message_id"]);

    // Erin has no certificate: refused, with the reason; sent in the clear
    // only when allowed for that message, and the sent copy says so.
    let out = rempart(&alice)
        .args([
            "mail",
            "send",
            "--to",
            "erin@example.net",
            "--subject",
            "Hello",
            "Hi Erin",
        ])
        .output()
        .unwrap();
    failed_saying(
        &out,
        "no certificate is known for erin@example.net: nothing was sent",
    );
    let allowed = json(
        &alice,
        &[
            "mail",
            "send",
            "--to",
            "erin@example.net",
            "--subject",
            "Hello",
            "--allow-unencrypted",
            "Hi Erin",
        ],
    );
    assert_eq!(allowed["encrypted"], false);
    assert_eq!(allowed["sent_in_clear_to"][0], "erin@example.net");
    let outbox = json_lines(&alice, &["mail", "list", "--folder", "Sent"]);
    assert_eq!(outbox.len(), 2);
    let copy = outbox.iter().find(|m| m["id"] == allowed["id"]).unwrap();
    assert_eq!(copy["encrypted"], false);
    assert_eq!(copy["sent_in_clear_to"][0], "erin@example.net");
    let erins = mail.stored_messages("erin@example.net", 1);
    assert_eq!(erins.len(), 1);
}
