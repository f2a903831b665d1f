//! PGP/MIME messages (RFC 3156): writing one signed and encrypted to its
//! recipients, and reading one back.
//!
//! A message is one OpenPGP message, signed by the sender and encrypted
//! (SEIPD v1 with its modification detection code, the form GnuPG 2.2
//! reads) to every recipient's encryption subkeys and to the sender's own.
//! Inside is a MIME part holding the real headers ("protected headers":
//! subject, from, to, cc, message id) and the text; outside, the subject is
//! a placeholder. Reading accepts only that shape: plaintext comes from the
//! one encrypted root whose integrity check passed, never from parts beside
//! it, and a signature counts only if it verifies under the certificate the
//! caller holds for the `From` address.

use std::io::Read as _;

use base64::Engine as _;
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders as _};
use pgp::composed::{ArmorOptions, Message, MessageBuilder, SignedPublicKey, SignedSecretKey};
use pgp::crypto::aead::{AeadAlgorithm, ChunkSize};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use rand::RngCore as _;
use rand::rngs::OsRng;
use rempart_proto::mail::Fingerprint;

use pgp::ser::Serialize as _;

use super::{MailAddress, MailError, fingerprint_of, pgp_error};

/// The subject shown outside the encryption.
pub const PLACEHOLDER_SUBJECT: &str = "...";

/// The largest decrypted message read, in bytes.
pub const MAX_PLAINTEXT_BYTES: u64 = 16 * 1024 * 1024;

/// A message to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The sender.
    pub from: MailAddress,
    /// The `To` recipients.
    pub to: Vec<MailAddress>,
    /// The `Cc` recipients.
    pub cc: Vec<MailAddress>,
    /// The subject, protected inside the encryption.
    pub subject: String,
    /// The text.
    pub body: String,
    /// The message id, without angle brackets.
    pub message_id: String,
    /// The id of the message this one answers, if any.
    pub in_reply_to: Option<String>,
    /// The ids of the thread before it, oldest first.
    pub references: Vec<String>,
    /// When it was written (Unix time).
    pub date: i64,
}

/// A message read: its protected headers and text, and its security state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    /// The sender, from the protected headers (or the outer ones).
    pub from: Option<MailAddress>,
    /// The subject, from the protected headers.
    pub subject: String,
    /// The text.
    pub body: String,
    /// The message id.
    pub message_id: Option<String>,
    /// The id of the message it answers.
    pub in_reply_to: Option<String>,
    /// The ids of the thread before it.
    pub references: Vec<String>,
    /// The `To` recipients (protected headers, or the outer ones).
    pub to: Vec<MailAddress>,
    /// The `Cc` recipients.
    pub cc: Vec<MailAddress>,
    /// When it says it was written (Unix time), if it says.
    pub date: Option<i64>,
    /// Whether the text came from one encrypted root whose integrity check
    /// passed; `false` for a message sent in the clear.
    pub encrypted: bool,
    /// The certificate whose key signed it, if the signature verifies under
    /// the certificate held for the `From` address (or, when none is held,
    /// under the one of its Autocrypt header).
    pub signed_by: Option<Fingerprint>,
    /// When the signature verified only under the certificate of the
    /// message's own Autocrypt header: that certificate (binary), for the
    /// caller to keep with its lower assurance.
    pub autocrypt: Option<Vec<u8>>,
}

/// A new message id at `domain`: 128 random bits.
pub fn new_message_id(domain: &str) -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    format!("{}@{domain}", hex::encode(bytes))
}

/// A header value on one line: no CR or LF may reach the header block.
fn one_line(what: &'static str, value: &str) -> Result<String, MailError> {
    if value.contains(['\r', '\n']) {
        return Err(MailError::BadHeader(what));
    }
    Ok(value.to_owned())
}

/// `value` as an RFC 2047 encoded word if it is not plain ASCII.
fn encoded_word(value: &str) -> String {
    if value.is_ascii() {
        value.to_owned()
    } else {
        format!(
            "=?utf-8?b?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

fn addresses(list: &[MailAddress]) -> String {
    list.iter()
        .map(|a| format!("<{a}>"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn message_ids(ids: &[String]) -> Result<String, MailError> {
    let ids = ids
        .iter()
        .map(|id| one_line("References", id).map(|id| format!("<{id}>")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids.join(" "))
}

/// The `Autocrypt` header (Autocrypt Level 1) giving `certificate` for
/// `address`, folded into lines a mail server keeps.
fn autocrypt_header(
    address: &MailAddress,
    certificate: &SignedPublicKey,
) -> Result<String, MailError> {
    let keydata = base64::engine::general_purpose::STANDARD
        .encode(certificate.to_bytes().map_err(pgp_error)?);
    let mut header = format!("Autocrypt: addr={address}; prefer-encrypt=mutual; keydata=\r\n");
    for line in keydata.as_bytes().chunks(76) {
        header.push(' ');
        header.push_str(&String::from_utf8_lossy(line));
        header.push_str("\r\n");
    }
    Ok(header)
}

/// The address and certificate (binary) an `Autocrypt` header value gives,
/// or `None` if it is not a well-formed Level 1 header: `addr` and
/// `keydata` present once, no unknown attribute that is not optional
/// (`_name`).
pub fn parse_autocrypt(value: &str) -> Option<(MailAddress, Vec<u8>)> {
    let (mut address, mut keydata) = (None, None);
    for attribute in value.split(';') {
        let (name, content) = attribute.trim().split_once('=')?;
        match name.trim() {
            "addr" if address.is_none() => address = Some(MailAddress::parse(content.trim())?),
            "keydata" if keydata.is_none() => {
                let compact: String = content.split_ascii_whitespace().collect();
                keydata = Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(compact)
                        .ok()?,
                );
            }
            "prefer-encrypt" => {}
            optional if optional.starts_with('_') => {}
            _ => return None,
        }
    }
    Some((address?, keydata?))
}

/// RFC 5322 date of `unix` seconds, in UTC.
fn rfc5322_date(unix: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0).unsigned_abs());
    httpdate::fmt_http_date(time).replace("GMT", "+0000")
}

/// The header lines both the protected part and the outer message carry.
fn routing_headers(draft: &Draft) -> Result<String, MailError> {
    let mut headers = format!("From: <{}>\r\nTo: {}\r\n", draft.from, addresses(&draft.to));
    if !draft.cc.is_empty() {
        headers.push_str(&format!("Cc: {}\r\n", addresses(&draft.cc)));
    }
    headers.push_str(&format!(
        "Message-ID: <{}>\r\n",
        one_line("Message-ID", &draft.message_id)?
    ));
    if let Some(id) = &draft.in_reply_to {
        headers.push_str(&format!(
            "In-Reply-To: <{}>\r\n",
            one_line("In-Reply-To", id)?
        ));
    }
    if !draft.references.is_empty() {
        headers.push_str(&format!(
            "References: {}\r\n",
            message_ids(&draft.references)?
        ));
    }
    Ok(headers)
}

/// The encryption subkeys of `certificate`: those whose binding says they
/// encrypt communications.
fn encryption_keys(certificate: &SignedPublicKey) -> Vec<&pgp::composed::SignedPublicSubKey> {
    certificate
        .public_subkeys
        .iter()
        .filter(|subkey| {
            subkey
                .signatures
                .iter()
                .any(|sig| sig.key_flags().encrypt_comms())
        })
        .collect()
}

/// Whether `certificate` says its holder reads SEIPD v2 (its Features
/// subpacket, on a User ID binding or a direct signature).
fn reads_seipd_v2(certificate: &SignedPublicKey) -> bool {
    certificate
        .details
        .users
        .iter()
        .flat_map(|user| &user.signatures)
        .chain(&certificate.details.direct_signatures)
        .filter_map(|signature| signature.features())
        .any(|features| features.seipd_v2())
}

/// `builder`'s message signed by `signer`, in ASCII armor.
fn signed_armor<'a, E: pgp::composed::Encryption>(
    mut builder: pgp::composed::MessageBuilder<'a, pgp::composed::DummyReader, E>,
    signer: &'a SignedSecretKey,
) -> Result<String, MailError> {
    builder.sign(&signer.primary_key, "".into(), HashAlgorithm::Sha256);
    builder
        .to_armored_string(OsRng, ArmorOptions::default())
        .map_err(pgp_error)
}

/// Writes `draft` as a PGP/MIME message (RFC 5322 bytes, CRLF line ends)
/// signed with `signer` and encrypted to each of `recipients` and to the
/// signer's own certificate. A recipient certificate without an encryption
/// subkey is refused, and nothing is written.
pub fn seal(
    draft: &Draft,
    signer: &SignedSecretKey,
    recipients: &[&SignedPublicKey],
) -> Result<Vec<u8>, MailError> {
    let own = SignedPublicKey::from(signer.clone());
    let mut targets = Vec::new();
    for certificate in recipients.iter().copied().chain([&own]) {
        let keys = encryption_keys(certificate);
        if keys.is_empty() {
            return Err(MailError::NoEncryptionKey(
                fingerprint_of(certificate)?.to_string(),
            ));
        }
        targets.extend(keys);
    }

    let subject = one_line("Subject", &draft.subject)?;
    let text = base64::engine::general_purpose::STANDARD.encode(draft.body.as_bytes());
    let mut inner = String::from(
        "Content-Type: text/plain; charset=utf-8; protected-headers=\"v1\"\r\n\
         Content-Transfer-Encoding: base64\r\n",
    );
    inner.push_str(&format!("Subject: {}\r\n", encoded_word(&subject)));
    inner.push_str(&routing_headers(draft)?);
    inner.push_str("\r\n");
    for line in text.as_bytes().chunks(76) {
        inner.push_str(&String::from_utf8_lossy(line));
        inner.push_str("\r\n");
    }

    // SEIPD v2 (AEAD) only if every reader's certificate says it reads it;
    // otherwise v1 with its modification detection code, which GnuPG 2.2
    // reads.
    let builder = MessageBuilder::from_bytes("", inner.into_bytes());
    let armored = if recipients.iter().copied().chain([&own]).all(reads_seipd_v2) {
        let mut builder = builder.seipd_v2(
            OsRng,
            SymmetricKeyAlgorithm::AES256,
            AeadAlgorithm::Ocb,
            ChunkSize::default(),
        );
        for key in targets {
            builder.encrypt_to_key(OsRng, key).map_err(pgp_error)?;
        }
        signed_armor(builder, signer)?
    } else {
        let mut builder = builder.seipd_v1(OsRng, SymmetricKeyAlgorithm::AES256);
        for key in targets {
            builder.encrypt_to_key(OsRng, key).map_err(pgp_error)?;
        }
        signed_armor(builder, signer)?
    };

    let mut boundary = [0u8; 12];
    OsRng.fill_bytes(&mut boundary);
    let boundary = format!("rempart-{}", hex::encode(boundary));
    let mut message = routing_headers(draft)?;
    message.push_str(&autocrypt_header(&draft.from, &own)?);
    message.push_str(&format!(
        "Subject: {PLACEHOLDER_SUBJECT}\r\nDate: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n \
         boundary=\"{boundary}\"\r\n\r\n\
         This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
         --{boundary}\r\n\
         Content-Type: application/pgp-encrypted\r\n\
         Content-Description: PGP/MIME version identification\r\n\r\n\
         Version: 1\r\n\r\n\
         --{boundary}\r\n\
         Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
         Content-Description: OpenPGP encrypted message\r\n\
         Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n",
        rfc5322_date(draft.date)
    ));
    message.push_str(&armored.replace("\r\n", "\n").replace('\n', "\r\n"));
    message.push_str(&format!("\r\n--{boundary}--\r\n"));
    Ok(message.into_bytes())
}

/// Writes `draft` in the clear: text/plain with the real subject, for a
/// recipient without a certificate when the sender allowed it for this
/// message. It carries the sender's Autocrypt header, so that a reply can
/// be encrypted.
pub fn plain(draft: &Draft, own: &SignedPublicKey) -> Result<Vec<u8>, MailError> {
    let subject = one_line("Subject", &draft.subject)?;
    let mut message = routing_headers(draft)?;
    message.push_str(&autocrypt_header(&draft.from, own)?);
    message.push_str(&format!(
        "Subject: {}\r\nDate: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
        encoded_word(&subject),
        rfc5322_date(draft.date)
    ));
    let text = base64::engine::general_purpose::STANDARD.encode(draft.body.as_bytes());
    for line in text.as_bytes().chunks(76) {
        message.push_str(&String::from_utf8_lossy(line));
        message.push_str("\r\n");
    }
    Ok(message.into_bytes())
}

fn all_addresses(address: Option<&Address<'_>>) -> Vec<MailAddress> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|a| a.address().and_then(MailAddress::parse))
                .collect()
        })
        .unwrap_or_default()
}

/// The message's one `Autocrypt` header (none if it has several).
fn autocrypt_of(message: &mail_parser::Message<'_>) -> Option<(MailAddress, Vec<u8>)> {
    let mut values = message
        .headers_raw()
        .filter(|(name, _)| name.eq_ignore_ascii_case("Autocrypt"))
        .map(|(_, value)| value);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_autocrypt(value)
}

/// Reads a message sent in the clear: its headers and first text part,
/// marked as not encrypted and signed by nobody. Nothing of it is ever
/// taken as a certificate.
pub fn read_unencrypted(raw: &[u8]) -> Result<Opened, MailError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(MailError::Malformed("not an RFC 5322 message"))?;
    let body = message
        .body_text(0)
        .map(|t| t.into_owned())
        .unwrap_or_default();
    if body.len() as u64 > MAX_PLAINTEXT_BYTES {
        return Err(MailError::TooLarge(MAX_PLAINTEXT_BYTES));
    }
    Ok(Opened {
        from: first_address(message.from()),
        subject: message.subject().unwrap_or_default().to_owned(),
        body,
        message_id: message.message_id().map(str::to_owned),
        in_reply_to: ids(message.in_reply_to()).into_iter().next(),
        references: ids(message.references()),
        to: all_addresses(message.to()),
        cc: all_addresses(message.cc()),
        date: message.date().map(mail_parser::DateTime::to_timestamp),
        encrypted: false,
        signed_by: None,
        autocrypt: None,
    })
}

fn first_address(address: Option<&Address<'_>>) -> Option<MailAddress> {
    address
        .and_then(Address::first)
        .and_then(|a| a.address())
        .and_then(MailAddress::parse)
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(id) => vec![id.to_string()],
        HeaderValue::TextList(ids) => ids.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Reads a PGP/MIME message: decrypts it with the first of `keys` that
/// opens it, checks its integrity, and verifies its signature under the
/// certificate `certificate_of` gives for the `From` address. Anything but
/// a `multipart/encrypted` message whose encrypted part is one OpenPGP
/// message is refused ([`MailError::NotEncrypted`]).
pub fn open(
    raw: &[u8],
    keys: &[SignedSecretKey],
    certificate_of: impl Fn(&MailAddress) -> Option<SignedPublicKey>,
) -> Result<Opened, MailError> {
    let outer = MessageParser::default()
        .parse(raw)
        .ok_or(MailError::Malformed("not an RFC 5322 message"))?;
    let root = outer.parts.first().ok_or(MailError::Malformed("no body"))?;
    let encrypted = root.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("encrypted"))
            && ct
                .attribute("protocol")
                .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-encrypted"))
    });
    let parts = root.sub_parts().filter(|_| encrypted);
    let payload = parts
        .filter(|parts| parts.len() == 2)
        .and_then(|parts| outer.parts.get(parts[1] as usize))
        .filter(|part| part.is_content_type("application", "octet-stream"))
        .ok_or(MailError::NotEncrypted)?;

    let (message, _) = Message::from_armor(payload.contents()).map_err(pgp_error)?;
    if !message.is_encrypted() {
        return Err(MailError::NotEncrypted);
    }
    // Decrypting checks the integrity of what it decrypts (the
    // modification detection code of SEIPD v1, the AEAD tags of v2) before
    // any of it is read; a message encrypted to none of `keys` is told
    // apart from one that was changed.
    let no_password = pgp::types::Password::from("");
    let mut message = message
        .decrypt_with_keys(vec![&no_password; keys.len()], keys.iter().collect())
        .map_err(|e| match e {
            pgp::errors::Error::MissingKey => MailError::NoDecryptionKey,
            other => MailError::Undecryptable(other.to_string()),
        })?;
    if message.is_compressed() {
        message = message.decompress().map_err(pgp_error)?;
    }
    let mut data = Vec::new();
    (&mut message)
        .take(MAX_PLAINTEXT_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| MailError::Undecryptable(e.to_string()))?;
    if data.len() as u64 > MAX_PLAINTEXT_BYTES {
        return Err(MailError::TooLarge(MAX_PLAINTEXT_BYTES));
    }

    let inner = MessageParser::default()
        .parse(&data)
        .ok_or(MailError::Malformed(
            "the encrypted part is not a MIME part",
        ))?;
    let from = first_address(inner.from()).or_else(|| first_address(outer.from()));
    let held = from.as_ref().and_then(&certificate_of);
    // With no certificate held for the sender, the one its Autocrypt header
    // gives may sign: only for the outer From address, naming it in a
    // User ID.
    let offered = match (&held, &from, autocrypt_of(&outer)) {
        (None, Some(from), Some((address, keydata)))
            if &address == from && first_address(outer.from()).as_ref() == Some(from) =>
        {
            super::parse_certificate(&keydata)
                .ok()
                .filter(|c| super::addresses_of(c).contains(from))
                .map(|c| (c, keydata))
        }
        _ => None,
    };
    let via_autocrypt = held.is_none();
    let signer = held.or_else(|| offered.as_ref().map(|(c, _)| c.clone()));
    let signed_by = match signer {
        Some(certificate)
            if message.is_signed() && message.verify(&certificate.primary_key).is_ok() =>
        {
            Some(fingerprint_of(&certificate)?)
        }
        _ => None,
    };
    let autocrypt = offered
        .filter(|_| via_autocrypt && signed_by.is_some())
        .map(|(_, keydata)| keydata);
    let subject = inner
        .subject()
        .filter(|_| inner.header("Subject").is_some())
        .unwrap_or_else(|| outer.subject().unwrap_or_default())
        .to_owned();
    let body = inner
        .body_text(0)
        .map(|t| t.into_owned())
        .unwrap_or_default();
    Ok(Opened {
        message_id: inner
            .message_id()
            .or_else(|| outer.message_id())
            .map(str::to_owned),
        in_reply_to: ids(inner.in_reply_to())
            .into_iter()
            .next()
            .or_else(|| ids(outer.in_reply_to()).into_iter().next()),
        references: {
            let inner_refs = ids(inner.references());
            if inner_refs.is_empty() {
                ids(outer.references())
            } else {
                inner_refs
            }
        },
        to: {
            let to = all_addresses(inner.to());
            if to.is_empty() {
                all_addresses(outer.to())
            } else {
                to
            }
        },
        cc: {
            let cc = all_addresses(inner.cc());
            if cc.is_empty() {
                all_addresses(outer.cc())
            } else {
                cc
            }
        },
        date: outer.date().map(mail_parser::DateTime::to_timestamp),
        encrypted: true,
        from,
        subject,
        body,
        signed_by,
        autocrypt,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mail::generate;
    use pgp::composed::{EncryptionCaps, KeyType, SecretKeyParamsBuilder, SubkeyParamsBuilder};
    use pgp::crypto::ecc_curve::ECCCurve;

    fn address(text: &str) -> MailAddress {
        MailAddress::parse(text).unwrap()
    }

    fn draft() -> Draft {
        Draft {
            from: address("alice@example.org"),
            to: vec![address("bob@example.org")],
            cc: vec![],
            subject: "Réunion secrète".into(),
            body: "Bob,\nrendez-vous à midi.\n".into(),
            message_id: new_message_id("example.org"),
            in_reply_to: Some("earlier@example.org".into()),
            references: vec!["first@example.org".into(), "earlier@example.org".into()],
            date: 1_800_000_000,
        }
    }

    #[test]
    fn a_sealed_message_opens_for_its_recipient_signed_by_its_sender() {
        let alice = generate("alice", &address("alice@example.org")).unwrap();
        let bob = generate("bob", &address("bob@example.org")).unwrap();
        let alice_public = SignedPublicKey::from(alice.clone());
        let bob_public = SignedPublicKey::from(bob.clone());
        let draft = draft();
        let sealed = seal(&draft, &alice, &[&bob_public]).unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        assert!(text.contains("Subject: ...\r\n"), "{text}");
        assert!(!text.contains("secr") && !text.contains("midi"), "{text}");

        let certificates =
            |a: &MailAddress| (a.as_str() == "alice@example.org").then(|| alice_public.clone());
        for reader in [&bob, &alice] {
            let opened = open(&sealed, std::slice::from_ref(reader), certificates).unwrap();
            assert_eq!(opened.subject, draft.subject);
            assert_eq!(opened.body, draft.body);
            assert_eq!(opened.from, Some(draft.from.clone()));
            assert_eq!(
                opened.message_id.as_deref(),
                Some(draft.message_id.as_str())
            );
            assert_eq!(opened.in_reply_to, draft.in_reply_to);
            assert_eq!(opened.references, draft.references);
            assert_eq!(
                opened.signed_by,
                Some(fingerprint_of(&alice_public).unwrap())
            );
        }
        // Without the sender's certificate, it is signed under the one its
        // Autocrypt header gives, handed back to be kept.
        let opened = open(&sealed, std::slice::from_ref(&bob), |_| None).unwrap();
        assert_eq!(
            opened.signed_by,
            Some(fingerprint_of(&alice_public).unwrap())
        );
        assert_eq!(opened.autocrypt, Some(alice_public.to_bytes().unwrap()));
        let held = open(&sealed, std::slice::from_ref(&bob), certificates).unwrap();
        assert_eq!(held.autocrypt, None);
        // Without that header it is unsigned as far as the reader can tell;
        // with a header giving another certificate for the address, too.
        let text = String::from_utf8(sealed.clone()).unwrap();
        let start = text.find("Autocrypt: ").unwrap();
        let end = start + text[start..].find("\r\nSubject:").unwrap() + 2;
        let stripped = format!("{}{}", &text[..start], &text[end..]);
        let opened = open(stripped.as_bytes(), std::slice::from_ref(&bob), |_| None).unwrap();
        assert_eq!((opened.signed_by, opened.autocrypt), (None, None));
        let other = SignedPublicKey::from(generate("x", &address("alice@example.org")).unwrap());
        let swapped = format!(
            "{}{}{}",
            &text[..start],
            autocrypt_header(&address("alice@example.org"), &other).unwrap(),
            &text[end..]
        );
        let opened = open(swapped.as_bytes(), std::slice::from_ref(&bob), |_| None).unwrap();
        assert_eq!((opened.signed_by, opened.autocrypt), (None, None));
        // With another key it does not open.
        let carol = generate("carol", &address("carol@example.org")).unwrap();
        assert!(matches!(
            open(&sealed, &[carol], certificates),
            Err(MailError::NoDecryptionKey)
        ));
        // A signature under another certificate for the From address is no
        // signature.
        let impostor = SignedPublicKey::from(generate("x", &address("alice@example.org")).unwrap());
        let opened = open(&sealed, std::slice::from_ref(&bob), |_| {
            Some(impostor.clone())
        })
        .unwrap();
        assert_eq!(opened.signed_by, None);
    }

    /// The SEIPD version of a sealed message's encrypted part.
    fn seipd_version(sealed: &[u8]) -> u8 {
        use pgp::packet::{ProtectedDataConfig, SymEncryptedProtectedDataConfig as Config};
        let text = String::from_utf8_lossy(sealed);
        let begin = text.find("-----BEGIN PGP MESSAGE-----").unwrap();
        let (message, _) = Message::from_armor(text[begin..].as_bytes()).unwrap();
        let Message::Encrypted {
            edata: pgp::composed::Edata::SymEncryptedProtectedData { reader },
            ..
        } = message
        else {
            panic!("not SEIPD");
        };
        match reader.config() {
            ProtectedDataConfig::Seipd(Config::V1) => 1,
            ProtectedDataConfig::Seipd(Config::V2 { .. }) => 2,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn seipd_v2_is_used_only_when_every_reader_says_it_reads_it() {
        let alice = generate("alice", &address("alice@example.org")).unwrap();
        let bob = generate("bob", &address("bob@example.org")).unwrap();
        let bob_public = SignedPublicKey::from(bob.clone());
        assert!(reads_seipd_v2(&bob_public));
        let both = seal(&draft(), &alice, &[&bob_public]).unwrap();
        assert_eq!(seipd_version(&both), 2);
        let opened = open(&both, std::slice::from_ref(&bob), |_| None).unwrap();
        assert_eq!(opened.body, draft().body);

        // A reader whose certificate says only v1 (as GnuPG 2.2's do).
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("carol <carol@example.org>".into())
            .subkeys(vec![
                SubkeyParamsBuilder::default()
                    .key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
                    .can_encrypt(EncryptionCaps::All)
                    .build()
                    .unwrap(),
            ]);
        let carol = params.build().unwrap().generate(OsRng).unwrap();
        let carol_public = SignedPublicKey::from(carol.clone());
        assert!(!reads_seipd_v2(&carol_public));
        let mixed = seal(&draft(), &alice, &[&bob_public, &carol_public]).unwrap();
        assert_eq!(seipd_version(&mixed), 1);
        for reader in [&bob, &carol] {
            let opened = open(&mixed, std::slice::from_ref(reader), |_| None).unwrap();
            assert_eq!(opened.body, draft().body);
        }
    }

    #[test]
    fn autocrypt_headers_parse_only_when_well_formed() {
        let alice = SignedPublicKey::from(generate("a", &address("alice@example.org")).unwrap());
        let header = autocrypt_header(&address("alice@example.org"), &alice).unwrap();
        let value = header.strip_prefix("Autocrypt:").unwrap();
        let (addr, keydata) = parse_autocrypt(value).unwrap();
        assert_eq!(addr, address("alice@example.org"));
        assert_eq!(keydata, alice.to_bytes().unwrap());
        assert!(header.lines().all(|l| l.len() <= 78), "{header}");
        let with_optional = format!("_extra=1; {value}");
        assert!(parse_autocrypt(&with_optional).is_some());
        for bad in [
            "addr=alice@example.org",
            "keydata=AAAA",
            "addr=alice@example.org; keydata=!!!",
            "addr=alice@example.org; critical=1; keydata=AAAA",
            "addr=not an address; keydata=AAAA",
        ] {
            assert!(parse_autocrypt(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn plain_and_tampered_messages_are_refused_and_headers_cannot_be_injected() {
        let alice = generate("alice", &address("alice@example.org")).unwrap();
        let bob = generate("bob", &address("bob@example.org")).unwrap();
        let plain =
            b"From: <alice@example.org>\r\nTo: <bob@example.org>\r\nSubject: hi\r\n\r\nhello\r\n";
        assert!(matches!(
            open(plain, std::slice::from_ref(&bob), |_| None),
            Err(MailError::NotEncrypted)
        ));
        let bob_public = SignedPublicKey::from(bob.clone());
        let sealed = seal(&draft(), &alice, &[&bob_public]).unwrap();
        // One byte of the ciphertext changed: it never opens.
        let text = String::from_utf8(sealed).unwrap();
        let begin = text.find("-----BEGIN PGP MESSAGE-----").unwrap();
        let end = text.find("-----END PGP MESSAGE-----").unwrap();
        let middle = (begin + end) / 2;
        let at = middle
            + text[middle..]
                .find(|c: char| c.is_ascii_alphanumeric())
                .unwrap();
        let mut bytes = text.into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        assert!(open(&bytes, std::slice::from_ref(&bob), |_| None).is_err());

        let mut injected = draft();
        injected.subject = "hi\r\nBcc: <mallory@example.org>".into();
        assert!(matches!(
            seal(&injected, &alice, &[&bob_public]),
            Err(MailError::BadHeader("Subject"))
        ));
    }
}
