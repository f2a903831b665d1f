//! Mail through real servers on loopback (Postfix and Dovecot, started by
//! the test kit): what leaves Rempart is encrypted to exactly its readers,
//! and GnuPG reads it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rempart_client::ClientError;
use rempart_client::mail::MailError;
use rempart_client::mail::account::{Endpoint, MailSetup, Security};
use rempart_client::mail::send::Outgoing;
use rempart_testkit::{MailServers, TestServer, account, gpg};
use tempfile::TempDir;
use zeroize::Zeroizing;

const EPOCHS: Duration = Duration::from_millis(50);

/// A GnuPG user's keyring with a new Ed25519/Curve25519 key for `uid`,
/// and the key's certificate in armor.
fn gnupg_user(uid: &str, address: &str) -> (TempDir, Vec<u8>) {
    let home = TempDir::new().unwrap();
    let made = gpg(
        home.path(),
        &["--quick-gen-key", uid, "future-default", "default", "never"],
        b"",
    );
    assert!(made.status.success(), "{made:?}");
    let exported = gpg(home.path(), &["--armor", "--export", address], b"");
    (home, exported.stdout)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn mail_reaches_each_reader_encrypted_and_gnupg_reads_it() {
    let mail = MailServers::start();
    for address in ["alice@example.org", "carol@example.net", "dave@example.net"] {
        mail.add_mailbox(address, "secret");
    }
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let alice = account(&server, &homes.path().join("alice"), "alice").await;
    let kept = alice
        .setup_mail(MailSetup {
            address: "alice@example.org".into(),
            imap: Endpoint::parse(&format!("127.0.0.1:{}", mail.imap)).unwrap(),
            smtp: Endpoint::parse(&format!("127.0.0.1:{}", mail.smtp)).unwrap(),
            login: "alice@example.org".into(),
            password: Zeroizing::new("secret".into()),
            security: Security::PlainOnLoopback,
        })
        .await
        .unwrap();
    assert!(kept.key_created);

    let (carol, carols) = gnupg_user("Carol <carol@example.net>", "carol@example.net");
    let (dave, daves) = gnupg_user("Dave <dave@example.net>", "dave@example.net");
    alice.import_mail_key(&carols).unwrap();
    alice.import_mail_key(&daves).unwrap();
    let alices = alice.export_mail_key(None).unwrap();
    for keyring in [&carol, &dave] {
        assert!(
            gpg(keyring.path(), &["--import"], alices.as_bytes())
                .status
                .success()
        );
    }

    // A recipient without a certificate: refused, and nothing is sent.
    let refused = alice
        .send_mail(Outgoing {
            from: "alice@example.org".into(),
            to: vec!["carol@example.net".into(), "erin@example.net".into()],
            subject: "never".into(),
            body: "never".into(),
            ..Outgoing::default()
        })
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Mail(MailError::NoCertificates(who))) if who == "erin@example.net"),
        "{refused:?}"
    );

    let sent = alice
        .send_mail(Outgoing {
            from: "alice@example.org".into(),
            to: vec!["carol@example.net".into()],
            bcc: vec!["dave@example.net".into()],
            subject: "The plan".into(),
            body: "Meet at noon by the river.\n".into(),
            ..Outgoing::default()
        })
        .await
        .unwrap();
    assert_eq!((sent.recipients, sent.copies), (2, 2));

    // Carol's mailbox holds one message (not the refused one), with
    // neither subject nor text in the clear, and not naming Dave.
    let stored = mail.stored_messages("carol@example.net", 1);
    assert_eq!(stored.len(), 1);
    let message = &stored[0];
    for secret in ["The plan", "noon", "dave@"] {
        assert!(!contains(message, secret), "{secret} in Carol's copy");
    }
    let text = String::from_utf8_lossy(message);
    let begin = text.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = text.find("-----END PGP MESSAGE-----").unwrap() + 25;
    let read = gpg(
        carol.path(),
        &["--status-fd", "2", "--trust-model", "always", "--decrypt"],
        text[begin..end].as_bytes(),
    );
    let status = String::from_utf8_lossy(&read.stderr);
    assert!(read.status.success(), "{status}");
    assert!(
        status.contains(&format!("[GNUPG:] VALIDSIG {}", kept.fingerprint)),
        "{status}"
    );
    assert!(String::from_utf8_lossy(&read.stdout).contains("Subject: The plan\r\n"));

    // Dave's copy is his own: Carol's key cannot open it, his can.
    let daves_copy = mail.stored_messages("dave@example.net", 1);
    assert_eq!(daves_copy.len(), 1);
    let text = String::from_utf8_lossy(&daves_copy[0]);
    let begin = text.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = text.find("-----END PGP MESSAGE-----").unwrap() + 25;
    let armored = text[begin..end].as_bytes();
    assert!(!gpg(carol.path(), &["--decrypt"], armored).status.success());
    assert!(
        gpg(
            dave.path(),
            &["--trust-model", "always", "--decrypt"],
            armored
        )
        .status
        .success()
    );
}
