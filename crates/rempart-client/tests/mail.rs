//! Mail identity: a certificate published by its account, looked up by
//! others only with the directory's proofs, shown as a change when it
//! changes, and carried to a linked device.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rempart_client::mail::mime::{Draft, new_message_id};
use rempart_client::mail::{MailAddress, MailError, MailKeySource};
use rempart_client::{AlertCode, Client, ClientError};
use rempart_testkit::{
    TestServer, account, alerts, autocrypt_header, gpg, gpg_sign_encrypt, name, pgp_mime,
    wait_until_published,
};
use tempfile::TempDir;

const EPOCHS: Duration = Duration::from_millis(50);

fn alert_code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> AlertCode {
    match result {
        Err(ClientError::Alert(alert)) => alert.code,
        other => panic!("expected an alert, got {other:?}"),
    }
}

#[tokio::test]
async fn a_published_mail_key_is_looked_up_with_the_directorys_proofs() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let bob = account(&server, &homes.path().join("bob"), "bob").await;

    let key = alice
        .create_mail_key("Alice@Example.org", false)
        .await
        .unwrap();
    assert_eq!(key.address, "alice@example.org");
    wait_until_published(server.data_dir()).await;

    let found = bob.lookup_mail_key("alice@example.org").await.unwrap();
    assert_eq!(found.fingerprint, key.fingerprint);
    assert_eq!(found.source, MailKeySource::Proven);
    assert_eq!(found.user, Some(name("alice")));
    assert!(found.proven_at.is_some());
    assert_eq!(found.changed_to, None);
    assert_eq!(bob.show_mail_key("alice@example.org").unwrap(), found);

    // The binding is in Alice's signed list: her own check finds it as
    // she made it, and a second key for the address is refused.
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());
    assert!(matches!(
        alice.create_mail_key("alice@example.org", false).await,
        Err(ClientError::Mail(MailError::KeyExists { .. }))
    ));
    let own = alice.show_mail_key("alice@example.org").unwrap();
    assert_eq!(own.source, MailKeySource::Own);

    // Nobody else can take the address, and nothing is left of the try.
    assert!(matches!(
        bob.create_mail_key("alice@example.org", false).await,
        Err(ClientError::Mail(MailError::AddressTaken(_)))
    ));
    assert_eq!(bob.mail_key(None).unwrap(), None);
    // An address nobody published is said so.
    assert!(matches!(
        bob.lookup_mail_key("nobody@example.org").await,
        Err(ClientError::Mail(MailError::NotPublished { .. }))
    ));
}

#[tokio::test]
async fn a_changed_key_is_kept_aside_until_its_fingerprint_is_verified() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let bob = account(&server, &homes.path().join("bob"), "bob").await;
    let first = alice
        .create_mail_key("alice@example.org", false)
        .await
        .unwrap();
    wait_until_published(server.data_dir()).await;
    bob.lookup_mail_key("alice@example.org").await.unwrap();

    let second = alice
        .create_mail_key("alice@example.org", true)
        .await
        .unwrap();
    assert_ne!(second.fingerprint, first.fingerprint);
    wait_until_published(server.data_dir()).await;
    assert!(alerts(&alice.sync().await.unwrap()).is_empty());

    let changed = bob.lookup_mail_key("alice@example.org").await;
    assert_eq!(alert_code(changed), AlertCode::MailKeyChanged);
    let shown = bob.show_mail_key("alice@example.org").unwrap();
    assert_eq!(shown.fingerprint, first.fingerprint, "the old one stays");
    assert_eq!(
        shown.changed_to.as_deref(),
        Some(second.fingerprint.as_str())
    );

    // A wrong fingerprint changes nothing; the right one accepts the change.
    assert!(matches!(
        bob.verify_mail_key("alice@example.org", &"0".repeat(40)),
        Err(ClientError::Mail(MailError::FingerprintMismatch { .. }))
    ));
    let spaced: String = second
        .fingerprint
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap().to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    let verified = bob.verify_mail_key("alice@example.org", &spaced).unwrap();
    assert_eq!(verified.fingerprint, second.fingerprint);
    assert_eq!(verified.source, MailKeySource::Verified);
    assert_eq!(verified.changed_to, None);
    // Proven again later, it stays verified.
    let again = bob.lookup_mail_key("alice@example.org").await.unwrap();
    assert_eq!(again.source, MailKeySource::Verified);
}

#[tokio::test]
async fn an_imported_certificate_is_shown_as_imported() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let alice = account(&server, &homes.path().join("alice"), "alice").await;
    let bob = account(&server, &homes.path().join("bob"), "bob").await;
    let key = alice
        .create_mail_key("alice@example.org", false)
        .await
        .unwrap();
    let armored = alice.export_mail_key(None).unwrap();

    let imported = bob.import_mail_key(armored.as_bytes()).unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].address, "alice@example.org");
    assert_eq!(imported[0].fingerprint, key.fingerprint);
    assert_eq!(imported[0].source, MailKeySource::Imported);
    assert!(bob.import_mail_key(b"not a certificate").is_err());
    assert!(matches!(
        bob.show_mail_key("carol@example.org"),
        Err(ClientError::Mail(MailError::Unknown(_)))
    ));
}

#[tokio::test]
async fn linking_a_device_carries_the_mail_key() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let mut phone = account(&server, &homes.path().join("phone"), "alice").await;
    let key = phone
        .create_mail_key("alice@example.org", false)
        .await
        .unwrap();

    let pending = phone.start_link().await.unwrap();
    let code = pending.code().to_owned();
    let laptop_home = homes.path().join("laptop");
    let (linked, laptop) = tokio::join!(
        phone.finish_link(pending, Duration::from_millis(20)),
        Client::link_device(&laptop_home, &server.url, &code, Duration::from_millis(20)),
    );
    linked.unwrap();
    let mut laptop = laptop.unwrap();
    assert_eq!(laptop.mail_key(None).unwrap(), Some(key));
    assert_eq!(
        laptop.export_mail_key(None).unwrap(),
        phone.export_mail_key(None).unwrap()
    );
    // The binding survived the device-list change that added the laptop.
    wait_until_published(server.data_dir()).await;
    assert!(alerts(&laptop.sync().await.unwrap()).is_empty());
    assert!(alerts(&phone.sync().await.unwrap()).is_empty());
}

/// The armored OpenPGP message inside a PGP/MIME message, as a mail
/// program hands it to GnuPG.
fn armored_part(message: &str) -> &str {
    let begin = message.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = message.find("-----END PGP MESSAGE-----").unwrap();
    &message[begin..end + "-----END PGP MESSAGE-----".len()]
}

#[tokio::test]
async fn gnupg_reads_what_rempart_seals_and_rempart_reads_what_gnupg_sends() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let alice = account(&server, &homes.path().join("alice"), "alice").await;
    let alices = alice
        .create_mail_key("alice@example.org", false)
        .await
        .unwrap();

    // Carol uses GnuPG, and she and Alice exchanged certificates.
    let carol = TempDir::new().unwrap();
    let made = gpg(
        carol.path(),
        &[
            // Ed25519 and Curve25519: GnuPG's own choice for a new key.
            "--quick-gen-key",
            "Carol <carol@example.net>",
            "future-default",
            "default",
            "never",
        ],
        b"",
    );
    assert!(made.status.success(), "{made:?}");
    let exported = gpg(
        carol.path(),
        &["--armor", "--export", "carol@example.net"],
        b"",
    );
    let carols = alice.import_mail_key(&exported.stdout).unwrap().remove(0);
    let imported = gpg(
        carol.path(),
        &["--import"],
        alice.export_mail_key(None).unwrap().as_bytes(),
    );
    assert!(imported.status.success(), "{imported:?}");

    // Alice writes to Carol: the message as stored holds neither the
    // subject nor the text; GnuPG decrypts it and reports Alice's good
    // signature.
    let draft = Draft {
        from: MailAddress::parse("alice@example.org").unwrap(),
        to: vec![MailAddress::parse("carol@example.net").unwrap()],
        cc: vec![],
        subject: "The plan".into(),
        body: "Meet at noon by the river.\n".into(),
        message_id: new_message_id("example.org"),
        in_reply_to: None,
        references: vec![],
        date: 1_800_000_000,
    };
    let sealed = String::from_utf8(alice.seal_mail(&draft).unwrap()).unwrap();
    assert!(
        !sealed.contains("The plan") && !sealed.contains("noon"),
        "{sealed}"
    );
    let read = gpg(
        carol.path(),
        &["--status-fd", "2", "--trust-model", "always", "--decrypt"],
        armored_part(&sealed).as_bytes(),
    );
    let status = String::from_utf8_lossy(&read.stderr);
    assert!(read.status.success(), "{status}");
    assert!(
        status.contains(&format!("[GNUPG:] VALIDSIG {}", alices.fingerprint)),
        "{status}"
    );
    let inner = String::from_utf8_lossy(&read.stdout);
    assert!(inner.contains("Subject: The plan\r\n"), "{inner}");
    assert!(inner.contains("protected-headers=\"v1\""), "{inner}");

    // Carol answers from GnuPG, as her mail program would: a MIME part,
    // signed and encrypted to Alice, in a PGP/MIME envelope.
    let part =
        "Content-Type: text/plain; charset=utf-8\r\nSubject: Re: The plan\r\n\r\nNoon is fine.\r\n";
    let encrypted = gpg_sign_encrypt(
        carol.path(),
        "carol@example.net",
        "alice@example.org",
        part.as_bytes(),
    );
    let envelope = pgp_mime(
        "Carol <carol@example.net>",
        "<alice@example.org>",
        &format!(
            "Message-ID: <answer@example.net>\r\nIn-Reply-To: <{}>\r\n",
            draft.message_id
        ),
        &encrypted,
    );
    let opened = alice.open_mail(envelope.as_bytes()).unwrap();
    assert_eq!(opened.subject, "Re: The plan");
    assert_eq!(opened.body.trim_end(), "Noon is fine.");
    assert_eq!(
        opened.signed_by.map(|f| f.to_string()),
        Some(carols.fingerprint.clone())
    );
    assert_eq!(
        opened.in_reply_to.as_deref(),
        Some(draft.message_id.as_str())
    );

    // The same answer claiming to come from someone else is not signed by
    // them: only the certificate kept for the From address counts.
    let forged = envelope.replace(
        "From: Carol <carol@example.net>",
        "From: <dave@example.net>",
    );
    assert_eq!(alice.open_mail(forged.as_bytes()).unwrap().signed_by, None);
    // A recipient without a certificate is refused, and nothing is written.
    let mut unknown = draft.clone();
    unknown
        .to
        .push(MailAddress::parse("erin@example.net").unwrap());
    assert!(matches!(
        alice.seal_mail(&unknown),
        Err(ClientError::Mail(MailError::Unknown(_)))
    ));
}

#[tokio::test]
async fn an_autocrypt_key_gives_way_to_the_directorys_and_never_displaces_a_key_held() {
    let server = TestServer::start_with_epochs(EPOCHS).await;
    let homes = TempDir::new().unwrap();
    let alice = account(&server, &homes.path().join("alice"), "alice").await;
    let bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice
        .create_mail_key("alice@example.org", false)
        .await
        .unwrap();

    // Mallory, with GnuPG, writes to Alice as bob@example.org, with an
    // Autocrypt header giving a key of her own for that address.
    let mallory = TempDir::new().unwrap();
    let made = gpg(
        mallory.path(),
        &[
            "--quick-gen-key",
            "Bob <bob@example.org>",
            "future-default",
            "default",
            "never",
        ],
        b"",
    );
    assert!(made.status.success(), "{made:?}");
    assert!(
        gpg(
            mallory.path(),
            &["--import"],
            alice.export_mail_key(None).unwrap().as_bytes()
        )
        .status
        .success()
    );
    let forged_key = gpg(mallory.path(), &["--export", "bob@example.org"], b"").stdout;
    let forged = pgp_mime(
        "<bob@example.org>",
        "<alice@example.org>",
        &format!(
            "Message-ID: <forged@example.org>\r\n{}",
            autocrypt_header("bob@example.org", &forged_key)
        ),
        &gpg_sign_encrypt(
            mallory.path(),
            "bob@example.org",
            "alice@example.org",
            b"Content-Type: text/plain\r\n\r\nSend the files here.\r\n",
        ),
    );
    // With no key held for the address, it counts, at the lowest assurance.
    let opened = alice.open_mail(forged.as_bytes()).unwrap();
    let kept = alice.show_mail_key("bob@example.org").unwrap();
    assert_eq!(kept.source, MailKeySource::Autocrypt);
    assert_eq!(
        opened.signed_by.map(|f| f.to_string()),
        Some(kept.fingerprint)
    );

    // Bob publishes his own: the lookup that sending makes first takes the
    // Autocrypt key's place, without an alert, the directory being surer.
    let bobs = bob.create_mail_key("bob@example.org", false).await.unwrap();
    wait_until_published(server.data_dir()).await;
    let proven = alice.lookup_mail_key("bob@example.org").await.unwrap();
    assert_eq!(proven.source, MailKeySource::Proven);
    assert_eq!(proven.fingerprint, bobs.fingerprint);
    assert_eq!(proven.changed_to, None);

    // Mallory's message again: its header no longer counts, and the proven
    // key stays.
    let opened = alice.open_mail(forged.as_bytes()).unwrap();
    assert_eq!(opened.signed_by, None);
    let kept = alice.show_mail_key("bob@example.org").unwrap();
    assert_eq!(
        (kept.source, kept.fingerprint, kept.changed_to),
        (MailKeySource::Proven, bobs.fingerprint, None)
    );
}
