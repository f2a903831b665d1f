//! Mail through real servers on loopback (Postfix and Dovecot, started by
//! the test kit): what leaves Rempart is encrypted to exactly its readers,
//! and GnuPG reads it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use rempart_client::mail::account::MailAccount;
use rempart_client::mail::account::{Endpoint, MailSetup, Security};
use rempart_client::mail::mailbox::{INBOX, SENT};
use rempart_client::mail::send::Outgoing;
use rempart_client::mail::{MailError, MailKeySource};
use rempart_client::{Client, ClientError};
use rempart_testkit::{
    MailServers, REFUSED, TestServer, account, autocrypt_header, gpg, gpg_sign_encrypt, pgp_mime,
    wait_until_published,
};
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

/// The mailbox of `address` on `mail`, over plain loopback connections.
fn mailbox(mail: &MailServers, address: &str) -> MailSetup {
    MailSetup {
        address: address.into(),
        imap: Endpoint::parse(&format!("127.0.0.1:{}", mail.imap)).unwrap(),
        smtp: Endpoint::parse(&format!("127.0.0.1:{}", mail.smtp)).unwrap(),
        login: address.into(),
        password: Zeroizing::new("secret".into()),
        security: Security::PlainOnLoopback,
    }
}

/// Mail servers with a mailbox for each of `addresses`, a Rempart server,
/// and the homes of its accounts.
struct World {
    mail: MailServers,
    server: TestServer,
    homes: TempDir,
}

impl World {
    async fn start(addresses: &[&str]) -> Self {
        let mail = MailServers::start();
        for address in addresses {
            mail.add_mailbox(address, "secret");
        }
        Self {
            mail,
            server: TestServer::start_with_epochs(EPOCHS).await,
            homes: TempDir::new().unwrap(),
        }
    }

    /// `name`'s account, with the mailbox `name@example.org` set up over
    /// plain loopback (which makes and publishes its key).
    async fn user(&self, name: &str) -> (Client, MailAccount) {
        let client = account(&self.server, &self.homes.path().join(name), name).await;
        let kept = client
            .setup_mail(mailbox(&self.mail, &format!("{name}@example.org")))
            .await
            .unwrap();
        (client, kept)
    }
}

/// Submits `message` over SMTP as `sender`, as another mail program would.
async fn submit(mail: &MailServers, sender: &str, recipient: &str, message: &[u8]) {
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(mail.smtp)
        .credentials(lettre::transport::smtp::authentication::Credentials::new(
            sender.into(),
            "secret".into(),
        ))
        .build();
    let envelope = lettre::address::Envelope::new(
        Some(sender.parse().unwrap()),
        vec![recipient.parse().unwrap()],
    )
    .unwrap();
    transport.send_raw(&envelope, message).await.unwrap();
}

/// `part` signed by Carol and encrypted to Alice by GnuPG, in armor.
fn carol_writes(carol: &std::path::Path, part: &str) -> String {
    gpg_sign_encrypt(
        carol,
        "carol@example.net",
        "alice@example.org",
        part.as_bytes(),
    )
}

fn armored_part(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let begin = text.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = text.find("-----END PGP MESSAGE-----").unwrap() + 25;
    text[begin..end].to_owned()
}

/// `armored` decoded and armored again without its checksum, with one
/// byte of its last packet (the encrypted data) changed if `flip`.
fn rearmored(armored: &str, flip: bool) -> String {
    let body: String = armored
        .lines()
        .skip_while(|l| !l.is_empty())
        .take_while(|l| !l.starts_with('=') && !l.starts_with("-----"))
        .collect();
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    if flip {
        let at = bytes.len() - 40;
        bytes[at] ^= 0x01;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PGP MESSAGE-----\r\n\r\n{}\r\n-----END PGP MESSAGE-----",
        lines.join("\r\n")
    )
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

#[tokio::test]
async fn rempart_users_write_a_thread_through_the_servers() {
    let world = World::start(&["alice@example.org", "bob@example.org"]).await;
    let mail = &world.mail;
    let (alice, alices) = world.user("alice").await;
    let (bob, bobs) = world.user("bob").await;
    wait_until_published(world.server.data_dir()).await;

    // Alice writes to Bob, whose certificate she never saw: the directory
    // proves it before anything is sent.
    let first = alice
        .send_mail(Outgoing {
            to: vec!["bob@example.org".into()],
            subject: "Lunch?".into(),
            body: "Noon at the usual place?\n".into(),
            ..Outgoing::default()
        })
        .await
        .unwrap();
    assert!(first.encrypted);
    assert_eq!(
        alice.show_mail_key("bob@example.org").unwrap().source,
        MailKeySource::Proven
    );

    // Bob fetches it over IMAP. Receiving asks the Rempart server nothing,
    // so the signature counts under the certificate of the message's own
    // Autocrypt header, shown as such.
    mail.stored_messages("bob@example.org", 1);
    let synced = bob.sync_mail(None, INBOX).await.unwrap();
    assert_eq!((synced.new, synced.more), (1, false));
    assert_eq!(bob.sync_mail(None, INBOX).await.unwrap().new, 0);
    let inbox = bob.mail_list(INBOX).unwrap();
    assert_eq!(inbox.len(), 1);
    let received = bob.mail_read(inbox[0].id).unwrap();
    assert!(received.summary.encrypted);
    assert_eq!(received.summary.subject, "Lunch?");
    assert_eq!(received.body.as_deref(), Some("Noon at the usual place?\n"));
    assert_eq!(
        received.summary.signed_by.as_deref(),
        Some(alices.fingerprint.as_str())
    );
    assert_eq!(received.summary.assurance, Some(MailKeySource::Autocrypt));

    // Bob answers: Alice's address is looked up first, and the same
    // certificate, now proven, takes the Autocrypt one's place.
    let answer = bob
        .reply_mail(inbox[0].id, "Yes, noon.\n".into(), false)
        .await
        .unwrap();
    assert!(answer.encrypted);
    assert_eq!(
        bob.show_mail_key("alice@example.org").unwrap().source,
        MailKeySource::Proven
    );

    mail.stored_messages("alice@example.org", 1);
    alice.sync_mail(None, INBOX).await.unwrap();
    let inbox = alice.mail_list(INBOX).unwrap();
    assert_eq!(inbox.len(), 1);
    let read = alice.mail_read(inbox[0].id).unwrap();
    assert_eq!(read.summary.subject, "Re: Lunch?");
    assert_eq!(read.body.as_deref(), Some("Yes, noon.\n"));
    assert_eq!(read.in_reply_to.as_deref(), Some(first.message_id.as_str()));
    assert_eq!(
        read.summary.signed_by.as_deref(),
        Some(bobs.fingerprint.as_str())
    );
    assert_eq!(read.summary.assurance, Some(MailKeySource::Proven));
    // One thread, named by its first message, in Alice's sent copy too.
    assert_eq!(read.summary.thread, first.message_id);
    let sent = alice.mail_list(SENT).unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].thread, first.message_id);
    assert!(sent[0].encrypted && sent[0].sent_in_clear_to.is_empty());

    // Alice answers the answer: it names the whole thread.
    alice
        .reply_mail(inbox[0].id, "See you.\n".into(), false)
        .await
        .unwrap();
    mail.stored_messages("bob@example.org", 2);
    assert_eq!(bob.sync_mail(None, INBOX).await.unwrap().new, 1);
    let inbox = bob.mail_list(INBOX).unwrap();
    assert_eq!(inbox.len(), 2);
    assert!(inbox.iter().all(|m| m.thread == first.message_id));
    let last = bob.mail_read(inbox[1].id).unwrap();
    assert_eq!(last.summary.subject, "Re: Lunch?");
    assert_eq!(
        last.references,
        vec![first.message_id.clone(), answer.message_id.clone()]
    );
    assert_eq!(last.summary.assurance, Some(MailKeySource::Proven));
}

#[tokio::test]
async fn a_gnupg_user_writes_to_alice_and_a_stranger_gets_mail_only_if_allowed() {
    let world = World::start(&["alice@example.org", "carol@example.net", "erin@example.net"]).await;
    let mail = &world.mail;
    let (alice, alices) = world.user("alice").await;
    let (carol, _) = gnupg_user("Carol <carol@example.net>", "carol@example.net");
    assert!(
        gpg(
            carol.path(),
            &["--import"],
            alice.export_mail_key(None).unwrap().as_bytes()
        )
        .status
        .success()
    );

    // Carol's mail program: a MIME part signed and encrypted to Alice by
    // GnuPG, in a PGP/MIME envelope with her Autocrypt header.
    let encrypted = carol_writes(
        carol.path(),
        "Content-Type: text/plain; charset=utf-8\r\nSubject: Hello from GnuPG\r\n\r\nCarol here.\r\n",
    );
    let binary = gpg(carol.path(), &["--export", "carol@example.net"], b"").stdout;
    let envelope = pgp_mime(
        "Carol <carol@example.net>",
        "<alice@example.org>",
        &format!(
            "Message-ID: <hello@example.net>\r\n{}",
            autocrypt_header("carol@example.net", &binary)
        ),
        &encrypted,
    );
    submit(
        mail,
        "carol@example.net",
        "alice@example.org",
        envelope.as_bytes(),
    )
    .await;
    // Erin writes in the clear.
    submit(
        mail,
        "erin@example.net",
        "alice@example.org",
        b"From: <erin@example.net>\r\nTo: <alice@example.org>\r\nSubject: Hi\r\n\
          Message-ID: <hi@example.net>\r\n\r\nNo keys here.\r\n",
    )
    .await;
    mail.stored_messages("alice@example.org", 2);

    assert_eq!(alice.sync_mail(None, INBOX).await.unwrap().new, 2);
    let inbox = alice.mail_list(INBOX).unwrap();
    let from = |who: &str| {
        inbox
            .iter()
            .find(|m| m.from.as_deref() == Some(who))
            .unwrap()
            .clone()
    };
    let carols_mail = from("carol@example.net");
    assert!(carols_mail.encrypted);
    assert_eq!(carols_mail.subject, "Hello from GnuPG");
    assert_eq!(carols_mail.assurance, Some(MailKeySource::Autocrypt));
    let carols_key = alice.show_mail_key("carol@example.net").unwrap();
    assert_eq!(carols_key.source, MailKeySource::Autocrypt);
    assert_eq!(carols_mail.signed_by, Some(carols_key.fingerprint.clone()));
    assert_eq!(
        alice
            .mail_read(carols_mail.id)
            .unwrap()
            .body
            .as_deref()
            .map(str::trim_end),
        Some("Carol here.")
    );
    let erins_mail = from("erin@example.net");
    assert!(!erins_mail.encrypted);
    assert_eq!(erins_mail.signed_by, None);
    assert_eq!(
        alice
            .mail_read(erins_mail.id)
            .unwrap()
            .body
            .as_deref()
            .map(str::trim_end),
        Some("No keys here.")
    );

    // Alice answers Carol, encrypted to the Autocrypt certificate (the
    // directory publishes no key for her): GnuPG reads it, signed by Alice.
    let answer = alice
        .reply_mail(carols_mail.id, "Hello Carol.\n".into(), false)
        .await
        .unwrap();
    assert!(answer.encrypted);
    let stored = mail.stored_messages("carol@example.net", 1);
    for secret in ["Hello Carol", "Hello from GnuPG"] {
        assert!(!contains(&stored[0], secret), "{secret} in the clear");
    }
    let read = gpg(
        carol.path(),
        &["--status-fd", "2", "--trust-model", "always", "--decrypt"],
        armored_part(&stored[0]).as_bytes(),
    );
    let status = String::from_utf8_lossy(&read.stderr);
    assert!(read.status.success(), "{status}");
    assert!(
        status.contains(&format!("[GNUPG:] VALIDSIG {}", alices.fingerprint)),
        "{status}"
    );

    // Erin has no certificate: the answer is refused, unless allowed for
    // that one message; then it goes in the clear, and the sent copy says
    // so. Erin's mailbox receives only the allowed one.
    let refused = alice
        .reply_mail(erins_mail.id, "Refused.\n".into(), false)
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Mail(MailError::NoCertificates(who))) if who == "erin@example.net"),
        "{refused:?}"
    );
    let allowed = alice
        .reply_mail(erins_mail.id, "Allowed.\n".into(), true)
        .await
        .unwrap();
    assert!(!allowed.encrypted);
    assert_eq!(
        allowed.sent_in_clear_to,
        vec!["erin@example.net".to_owned()]
    );
    let sent = alice.mail_list(SENT).unwrap();
    let copy = sent.iter().find(|m| m.id == allowed.id).unwrap();
    assert!(!copy.encrypted);
    assert_eq!(copy.sent_in_clear_to, vec!["erin@example.net".to_owned()]);
    let erins = mail.stored_messages("erin@example.net", 1);
    assert_eq!(erins.len(), 1);
    let text = String::from_utf8_lossy(&erins[0]);
    assert!(text.contains("Subject: Re: Hi"), "{text}");
    assert!(text.contains("Autocrypt: addr=alice@example.org"), "{text}");
    assert!(!text.contains("multipart/encrypted"), "{text}");
    // The text, in base64: "Allowed.\n".
    assert!(text.contains("QWxsb3dlZC4K"), "{text}");
}

#[tokio::test]
async fn text_that_fails_its_integrity_check_or_sits_beside_the_encryption_is_never_shown() {
    let world = World::start(&["alice@example.org", "carol@example.net"]).await;
    let mail = &world.mail;
    let (alice, _) = world.user("alice").await;
    let (carol, carols) = gnupg_user("Carol <carol@example.net>", "carol@example.net");
    alice.import_mail_key(&carols).unwrap();
    assert!(
        gpg(
            carol.path(),
            &["--import"],
            alice.export_mail_key(None).unwrap().as_bytes()
        )
        .status
        .success()
    );
    let secret = "Content-Type: text/plain\r\n\r\nThe secret meeting is at noon.\r\n";
    let envelope = |id: &str, armored: &str| {
        pgp_mime(
            "<carol@example.net>",
            "<alice@example.org>",
            &format!("Message-ID: <{id}@example.net>\r\n"),
            armored,
        )
    };

    // One byte of the ciphertext changed in transit, the armor written
    // anew around it (so that only OpenPGP's integrity check can tell); the
    // same message re-armored unchanged reads.
    let armored = carol_writes(carol.path(), secret);
    for (id, flip) in [("tampered", true), ("rearmored", false)] {
        let message = envelope(id, &rearmored(&armored, flip));
        submit(
            mail,
            "carol@example.net",
            "alice@example.org",
            message.as_bytes(),
        )
        .await;
    }

    // A message whose root is not the encryption: a clear part beside a
    // genuine encrypted one, as in EFAIL's attacks.
    let genuine = envelope("genuine", &carol_writes(carol.path(), secret));
    let inner_start = genuine.find("Content-Type: multipart/encrypted").unwrap();
    let mixed = format!(
        "From: <carol@example.net>\r\nTo: <alice@example.org>\r\nSubject: Invoice\r\n\
         Message-ID: <mixed@example.net>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
         --m\r\nContent-Type: text/plain\r\n\r\nPay the bearer.\r\n\
         --m\r\n{}\r\n--m--\r\n",
        &genuine[inner_start..]
    );
    submit(
        mail,
        "carol@example.net",
        "alice@example.org",
        mixed.as_bytes(),
    )
    .await;
    mail.stored_messages("alice@example.org", 3);

    assert_eq!(alice.sync_mail(None, INBOX).await.unwrap().new, 3);
    let inbox = alice.mail_list(INBOX).unwrap();
    let by_id = |id: &str| {
        let summary = inbox
            .iter()
            .find(|m| m.message_id.as_deref() == Some(id))
            .unwrap();
        alice.mail_read(summary.id).unwrap()
    };
    let tampered = by_id("tampered@example.net");
    assert!(tampered.summary.encrypted);
    let problem = tampered.summary.problem.as_deref().unwrap();
    assert!(
        problem.starts_with("the message does not decrypt"),
        "{problem}"
    );
    assert_eq!((tampered.body, tampered.summary.signed_by), (None, None));
    let control = by_id("rearmored@example.net");
    assert_eq!(control.summary.problem, None);
    assert!(control.body.unwrap().contains("secret meeting"));

    let mixed = by_id("mixed@example.net");
    assert!(!mixed.summary.encrypted, "{mixed:?}");
    assert_eq!(mixed.summary.signed_by, None);
    let body = mixed.body.unwrap();
    assert!(!body.contains("secret meeting"), "{body}");
}

#[tokio::test]
async fn a_mail_server_that_no_public_root_vouches_for_is_refused_before_the_login() {
    let world = World::start(&["alice@example.org"]).await;
    let mail = &world.mail;
    let (alice, _) = world.user("alice").await;
    // Dovecot's certificate is self-signed: over TLS from the first byte,
    // and over STARTTLS, the connection ends at the handshake.
    for (security, port) in [(Security::Tls, mail.imaps), (Security::Starttls, mail.imap)] {
        let mut setup = mailbox(mail, "alice@example.org");
        setup.security = security;
        setup.imap = Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap();
        alice.setup_mail(setup).await.unwrap();
        let refused = alice.sync_mail(None, INBOX).await;
        assert!(
            matches!(&refused, Err(ClientError::Mail(MailError::Imap(why))) if why.starts_with("TLS: ") && why.contains("certificate")),
            "{security:?}: {refused:?}"
        );
    }
    assert_eq!(mail.imap_logins("alice@example.org"), 0);
    // The same mailbox over plain loopback logs in: the count above could
    // have seen one.
    alice
        .setup_mail(mailbox(mail, "alice@example.org"))
        .await
        .unwrap();
    alice.sync_mail(None, INBOX).await.unwrap();
    assert_eq!(mail.imap_logins("alice@example.org"), 1);
}

#[tokio::test]
async fn a_send_the_server_refuses_partway_is_kept_saying_who_did_not_get_it() {
    let world = World::start(&["alice@example.org", "carol@example.net"]).await;
    let mail = &world.mail;
    let (alice, _) = world.user("alice").await;
    let (_carol, carols) = gnupg_user("Carol <carol@example.net>", "carol@example.net");
    alice.import_mail_key(&carols).unwrap();

    // Carol's copy goes; the Bcc copy (in the clear, allowed) is refused by
    // the server.
    let partly = alice
        .send_mail(Outgoing {
            to: vec!["carol@example.net".into()],
            bcc: vec![REFUSED.into()],
            subject: "Partly".into(),
            body: "Half of it.\n".into(),
            allow_unencrypted: true,
            ..Outgoing::default()
        })
        .await;
    let Err(ClientError::Mail(MailError::PartlySent {
        sent_to,
        missed,
        id,
        ..
    })) = partly
    else {
        panic!("{partly:?}");
    };
    assert_eq!(
        (sent_to.as_str(), missed.as_str()),
        ("carol@example.net", REFUSED)
    );
    assert_eq!(mail.stored_messages("carol@example.net", 1).len(), 1);
    let kept = alice.mail_read(id).unwrap();
    assert_eq!(kept.summary.folder, SENT);
    assert_eq!(kept.summary.bcc, vec![REFUSED.to_owned()]);
    let problem = kept.summary.problem.unwrap();
    assert!(
        problem.starts_with(&format!("not sent to {REFUSED}: ")),
        "{problem}"
    );

    // Refused from the first copy on: nothing went, nothing is kept.
    let refused = alice
        .send_mail(Outgoing {
            to: vec![REFUSED.into()],
            subject: "Never".into(),
            body: "Never.\n".into(),
            allow_unencrypted: true,
            ..Outgoing::default()
        })
        .await;
    assert!(
        matches!(&refused, Err(ClientError::Mail(MailError::Smtp(_)))),
        "{refused:?}"
    );
    assert_eq!(alice.mail_list(SENT).unwrap().len(), 1);
}
