//! Mail identity: this account's OpenPGP certificates, one per mail
//! address, and its correspondents' certificates with where each came from.
//!
//! A certificate is RFC 4880 v4: an Ed25519 primary key that certifies and
//! signs, and a Curve25519 ECDH subkey that encrypts, the form GnuPG 2.2
//! reads. The secret key is kept in the device's store (encrypted at rest
//! with the store) and nowhere else; in memory it is wiped when dropped.
//!
//! An address is published by binding its certificate's fingerprint in the
//! account-signed device list ([`DeviceList::mail`]): only the account key
//! can bind or change it, and the directory publishes the address with the
//! list. A correspondent's certificate is accepted from the server only
//! with the directory's proofs that the address and its holder are both
//! published with the holder's current list, whose account key is the one
//! pinned for the holder, and which binds the address to that very
//! certificate ([`Client::lookup_mail_key`]). A certificate that differs
//! from the one kept for an address never replaces it silently: it is kept
//! aside and raises [`AlertCode::MailKeyChanged`] until the user verifies
//! its fingerprint ([`Client::verify_mail_key`]). This account's devices
//! check their own addresses at every sync ([`AlertCode::UnknownOwnMailKey`]).
//!
//! The component owns its tables ([`SCHEMA`]) and its error type.

pub mod account;
pub mod imap;
pub mod mailbox;
pub mod mime;
pub mod send;

use pgp::composed::{
    ArmorOptions, Deserializable as _, EncryptionCaps, KeyType, SecretKeyParamsBuilder,
    SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::ser::Serialize as _;
use pgp::types::CompressionAlgorithm;
use pgp::types::KeyDetails as _;
use rempart_proto::mail::{Fingerprint, MailBinding, MailLookupResponse};
use rempart_proto::{DeviceList, UserName};
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use rempart_proto::mail::MailAddress;

use crate::Client;
use crate::api::unix_now;
use crate::device_list::VerifiedDeviceList;
use crate::directory::AcceptedHead;
use crate::error::ClientError;
use crate::event::{Alert, AlertCode, Event};

/// The mail component's tables: this account's current key of each
/// address (with its secret), the keys they replaced (kept to read mail
/// sent to them), and the correspondents' certificates.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mail_keys (
    address     TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    certificate BLOB NOT NULL,
    secret      BLOB,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mail_retired_keys (
    fingerprint TEXT PRIMARY KEY,
    address     TEXT NOT NULL,
    certificate BLOB NOT NULL,
    secret      BLOB NOT NULL,
    retired_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mail_contacts (
    address      TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    certificate  BLOB NOT NULL,
    source       TEXT NOT NULL,
    user_name    TEXT,
    list_version INTEGER,
    proven_at    INTEGER,
    updated_at   INTEGER NOT NULL,
    presented_fingerprint TEXT,
    presented_certificate BLOB,
    presented_source      TEXT,
    presented_user        TEXT,
    presented_version     INTEGER,
    presented_epoch       INTEGER
);
";

/// The newest version of this account's device list the directory proved
/// for one of its addresses: it never goes back below it.
const SETTING_OWN_MAIL_PROVEN: &str = "mail_own_proven_version";

/// The newest directory epoch at which this account's addresses' key
/// histories were checked clean.
const SETTING_OWN_MAIL_HISTORY: &str = "mail_own_history_epoch";

/// Why a mail operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Not a mail address.
    #[error("{0:?} is not a mail address: write it as name@example.org")]
    BadAddress(String),
    /// Not a fingerprint.
    #[error("{0:?} is not an OpenPGP fingerprint: write its 40 hex digits")]
    BadFingerprint(String),
    /// This account already has a key for the address.
    #[error(
        "{address} already has a mail key ({fingerprint}); `--replace` makes a new one in its place"
    )]
    KeyExists {
        /// The address.
        address: String,
        /// The key's fingerprint.
        fingerprint: String,
    },
    /// No key for the address, or none at all.
    #[error("no mail key for {0}: make one with `rempart mail key create --address ADDR`")]
    NoKey(String),
    /// This account has several addresses, and none was named.
    #[error("this account has several mail addresses ({0}): name one")]
    WhichAddress(String),
    /// No certificate is known for a correspondent's address.
    #[error(
        "no certificate is known for {0}: look it up with `rempart mail key lookup ADDR` or import one with `rempart mail key import FILE`"
    )]
    Unknown(String),
    /// The server knows no Rempart user holding the address.
    #[error("{address} is not published by any account on this server ({reason})")]
    NotPublished {
        /// The address.
        address: String,
        /// What the server said.
        reason: String,
    },
    /// Another account on the server already holds the address.
    #[error("{0} belongs to another account on this server; nothing was published")]
    AddressTaken(String),
    /// The certificate names no User ID with a mail address.
    #[error("the certificate names no mail address in its User IDs")]
    NoAddressInCertificate,
    /// The fingerprint typed is not the certificate's.
    #[error(
        "the fingerprint given is not the one of {address}'s certificate ({held}): nothing was changed"
    )]
    FingerprintMismatch {
        /// The address.
        address: String,
        /// The fingerprint of the certificate held (or the changed one).
        held: String,
    },
    /// A header value holds a line break.
    #[error("the {0} holds a line break, which a mail header cannot")]
    BadHeader(&'static str),
    /// A recipient's certificate has no key that encrypts.
    #[error("the certificate {0} has no encryption key: nothing was sent")]
    NoEncryptionKey(String),
    /// A message is not one OpenPGP encrypted message in PGP/MIME form.
    #[error("the message is not encrypted (PGP/MIME): its content is not shown")]
    NotEncrypted,
    /// None of this account's keys opens the message.
    #[error("none of your mail keys decrypts this message")]
    NoDecryptionKey,
    /// The message is encrypted to this account but does not decrypt, or
    /// fails its integrity check.
    #[error(
        "the message does not decrypt ({0}): it may have been changed after it was encrypted; its text is not shown"
    )]
    Undecryptable(String),
    /// A message is not well-formed.
    #[error("the message is malformed: {0}")]
    Malformed(&'static str),
    /// A message decrypts to more than the limit.
    #[error("the message decrypts to more than {0} bytes")]
    TooLarge(u64),
    /// Not `HOST:PORT`.
    #[error("{0:?} is not a mail server: write it as HOST:PORT, e.g. mail.example.org:993")]
    BadEndpoint(String),
    /// A plain connection to a server that is not on this machine.
    #[error(
        "{0} is not a loopback address: a connection without TLS is allowed only to this machine; use --tls or --starttls"
    )]
    PlainNotLoopback(String),
    /// No mailbox is kept for the address.
    #[error("no mailbox is set up for {0}: run `rempart mail setup --address {0} ...`")]
    NotSetUp(String),
    /// Recipients without a certificate.
    #[error(
        "no certificate is known for {0}: nothing was sent (look it up with `rempart mail key lookup`, or import one)"
    )]
    NoCertificates(String),
    /// The mail server refused or failed.
    #[error("the mail server: {0}")]
    Smtp(String),
    /// The mail server took some copies and refused the next.
    #[error(
        "the mail server took the message for {sent_to} but not for {missed} ({reason}); the copy kept as {id} in Sent says so"
    )]
    PartlySent {
        /// Who got it.
        sent_to: String,
        /// Who did not.
        missed: String,
        /// What the server said.
        reason: String,
        /// The number of the copy kept in `Sent`.
        id: i64,
    },
    /// The IMAP server refused or failed.
    #[error("the IMAP server: {0}")]
    Imap(String),
    /// No message is kept under the number.
    #[error("no message {0} is kept here: `rempart mail list` shows their numbers")]
    NoMessage(i64),
    /// OpenPGP failed.
    #[error("OpenPGP: {0}")]
    Pgp(String),
}

/// One of this account's mail keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailKey {
    /// Its address.
    pub address: String,
    /// The certificate's fingerprint, uppercase hex.
    pub fingerprint: String,
}

/// Where a certificate came from, and so how sure it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailKeySource {
    /// This account's own key, made on one of its devices.
    Own,
    /// A Rempart user's, proven by the key-transparency directory.
    Proven,
    /// Imported by hand from a file.
    Imported,
    /// Its fingerprint was checked by the user.
    Verified,
    /// From the Autocrypt header of a received message that its key
    /// signed: nobody vouched for it, the lowest assurance.
    Autocrypt,
}

impl MailKeySource {
    /// The name used in the store and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Own => "own",
            Self::Proven => "proven",
            Self::Imported => "imported",
            Self::Verified => "verified",
            Self::Autocrypt => "autocrypt",
        }
    }

    /// How sure a certificate from this source is: a by-hand check of
    /// its fingerprint above the directory's proof, above an import by
    /// hand, above an Autocrypt header.
    fn assurance(self) -> u8 {
        match self {
            Self::Autocrypt => 0,
            Self::Imported => 1,
            Self::Proven => 2,
            Self::Verified | Self::Own => 3,
        }
    }

    fn parse(text: &str) -> Result<Self, ClientError> {
        match text {
            "own" => Ok(Self::Own),
            "proven" => Ok(Self::Proven),
            "imported" => Ok(Self::Imported),
            "verified" => Ok(Self::Verified),
            "autocrypt" => Ok(Self::Autocrypt),
            other => Err(ClientError::Corrupt(format!(
                "unknown mail key source {other:?}"
            ))),
        }
    }
}

/// A certificate kept for an address, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailKeyInfo {
    /// The address.
    pub address: String,
    /// The certificate's fingerprint.
    pub fingerprint: String,
    /// Where it came from.
    pub source: MailKeySource,
    /// The Rempart user holding the address, when the directory proved it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserName>,
    /// The directory epoch it was last proven at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proven_at: Option<u64>,
    /// A different certificate seen for the address and not used: its
    /// fingerprint, until the user verifies it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_to: Option<String>,
}

fn pgp_error(error: impl std::fmt::Display) -> MailError {
    MailError::Pgp(error.to_string())
}

fn parse_address(text: &str) -> Result<MailAddress, MailError> {
    MailAddress::parse(text).ok_or_else(|| MailError::BadAddress(text.to_owned()))
}

/// A new v4 certificate for `name <address>`, with its secret key.
fn generate(name: &str, address: &MailAddress) -> Result<SignedSecretKey, MailError> {
    let mut encryption = SubkeyParamsBuilder::default();
    encryption
        .key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
        .can_sign(false)
        .can_encrypt(EncryptionCaps::All)
        .can_authenticate(false);
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .can_encrypt(EncryptionCaps::None)
        .primary_user_id(format!("{name} <{}>", address.as_str()))
        // Said on the certificate, so that other implementations sign and
        // encrypt to it with these (GnuPG falls back to SHA-1 without).
        .preferred_symmetric_algorithms(
            vec![SymmetricKeyAlgorithm::AES256, SymmetricKeyAlgorithm::AES128].into(),
        )
        .preferred_hash_algorithms(vec![HashAlgorithm::Sha256, HashAlgorithm::Sha512].into())
        .preferred_compression_algorithms(vec![CompressionAlgorithm::Uncompressed].into())
        // Reads SEIPD v2 (AEAD) as well as v1: a sender whose every reader
        // says so may use it.
        .feature_seipd_v2(true)
        .subkeys(vec![encryption.build().map_err(pgp_error)?]);
    params
        .build()
        .map_err(pgp_error)?
        .generate(rand::rngs::OsRng)
        .map_err(pgp_error)
}

/// A new certificate for `name <address>`, its secret key thrown away:
/// its fingerprint and binary form. For tests that need a certificate
/// nobody holds.
pub fn throwaway_certificate(
    name: &str,
    address: &MailAddress,
) -> Result<(Fingerprint, Vec<u8>), MailError> {
    let public = SignedPublicKey::from(generate(name, address)?);
    Ok((
        fingerprint_of(&public)?,
        public.to_bytes().map_err(pgp_error)?,
    ))
}

fn fingerprint_of(key: &SignedPublicKey) -> Result<Fingerprint, MailError> {
    let hex = format!("{:X}", key.fingerprint());
    Fingerprint::parse(&hex).ok_or(MailError::BadFingerprint(hex))
}

/// A certificate in binary or ASCII armor, with its bindings checked.
fn parse_certificate(bytes: &[u8]) -> Result<SignedPublicKey, MailError> {
    let trimmed = bytes.trim_ascii_start();
    let key = if trimmed.starts_with(b"-----BEGIN") {
        SignedPublicKey::from_armor_single(trimmed)
            .map_err(pgp_error)?
            .0
    } else {
        SignedPublicKey::from_bytes(bytes).map_err(pgp_error)?
    };
    key.verify_bindings().map_err(pgp_error)?;
    Ok(key)
}

/// The mail addresses in a certificate's User IDs (`Name <addr>` or a bare
/// address), lowercase, each once.
fn addresses_of(key: &SignedPublicKey) -> Vec<MailAddress> {
    let mut found: Vec<MailAddress> = Vec::new();
    for user in &key.details.users {
        let Ok(id) = std::str::from_utf8(user.id.id()) else {
            continue;
        };
        let inner = match (id.rfind('<'), id.rfind('>')) {
            (Some(open), Some(close)) if open < close => &id[open + 1..close],
            _ => id,
        };
        if let Some(address) = MailAddress::parse(inner)
            && !found.contains(&address)
        {
            found.push(address);
        }
    }
    found
}

/// An alert returned as the error of the operation that met it.
fn alert(code: AlertCode, user: Option<UserName>, message: String) -> ClientError {
    Alert {
        code,
        conversation: None,
        user,
        message,
    }
    .into()
}

/// A correspondent's certificate as a source gives it.
struct Offered {
    address: MailAddress,
    fingerprint: Fingerprint,
    certificate: Vec<u8>,
    source: MailKeySource,
    user: Option<UserName>,
    list_version: Option<u64>,
    proven_at: Option<u64>,
}

impl Client {
    /// Makes an OpenPGP certificate for `address`, keeps it with its secret
    /// key in this device's store, and publishes it: the certificate to
    /// the server, and its fingerprint bound to the address in a new
    /// account-signed device list, which the directory publishes at its
    /// next epoch. With `replace`, the new key takes the place of the
    /// address's current one, which is kept to read mail sent to it.
    ///
    /// A key made here whose publishing was interrupted is published by
    /// the next call, without `replace`.
    pub async fn create_mail_key(
        &self,
        address: &str,
        replace: bool,
    ) -> Result<MailKey, ClientError> {
        let address = parse_address(address)?;
        let own = self.own_list()?;
        let seen = self.own_mail_key(Some(address.as_str()))?;
        let seen_fingerprint = seen.as_ref().map(|(_, f, _)| f.clone());
        if let Some((_, fingerprint, certificate)) = seen {
            let bound = own
                .list()
                .mail_fingerprint(&address)
                .map(Fingerprint::as_str);
            if !replace && bound != Some(fingerprint.as_str()) {
                // Made here, never published: publish it now.
                self.publish_mail_key(&address, &fingerprint, certificate)
                    .await?;
                return Ok(MailKey {
                    address: address.to_string(),
                    fingerprint,
                });
            }
            if !replace {
                return Err(MailError::KeyExists {
                    address: address.to_string(),
                    fingerprint,
                }
                .into());
            }
        }
        let secret = generate(self.id.user.as_str(), &address)?;
        let public = SignedPublicKey::from(secret.clone());
        let fingerprint = fingerprint_of(&public)?.to_string();
        let certificate = public.to_bytes().map_err(pgp_error)?;
        let secret = Zeroizing::new(secret.to_bytes().map_err(pgp_error)?);
        let conn = self.store.conn();
        self.store.atomic(|| {
            // Another `create` may have run since the key was read: then
            // this one takes nothing's place.
            let current = self
                .own_mail_key(Some(address.as_str()))?
                .map(|(_, f, _)| f);
            if current != seen_fingerprint {
                return Err(MailError::KeyExists {
                    address: address.to_string(),
                    fingerprint: current.unwrap_or_default(),
                }
                .into());
            }
            conn.execute(
                "INSERT INTO mail_retired_keys (fingerprint, address, certificate, secret, retired_at)
                 SELECT fingerprint, address, certificate, secret, ?2 FROM mail_keys
                 WHERE address = ?1 AND secret IS NOT NULL",
                params![address.as_str(), unix_now()],
            )?;
            conn.execute(
                "INSERT OR REPLACE INTO mail_keys (address, fingerprint, certificate, secret, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    address.as_str(),
                    fingerprint,
                    certificate,
                    secret.as_slice(),
                    unix_now()
                ],
            )?;
            Ok(())
        })?;
        match self
            .publish_mail_key(&address, &fingerprint, certificate)
            .await
        {
            Ok(()) => {}
            Err(ClientError::Mail(MailError::AddressTaken(taken))) => {
                // Never published, never usable: nothing to keep.
                conn.execute(
                    "DELETE FROM mail_keys WHERE fingerprint = ?1",
                    [fingerprint.as_str()],
                )?;
                return Err(MailError::AddressTaken(taken).into());
            }
            Err(e) => return Err(e),
        }
        Ok(MailKey {
            address: address.to_string(),
            fingerprint,
        })
    }

    /// Uploads `certificate` and binds its fingerprint to `address` in a
    /// new device list, signed and published.
    async fn publish_mail_key(
        &self,
        address: &MailAddress,
        fingerprint: &str,
        certificate: Vec<u8>,
    ) -> Result<(), ClientError> {
        let fingerprint = Fingerprint::parse(fingerprint)
            .ok_or_else(|| MailError::BadFingerprint(fingerprint.to_owned()))?;
        let upload = rempart_proto::mail::MailCertificateUpload {
            fingerprint: fingerprint.clone(),
            certificate,
        };
        self.api
            .put_mail_certificate(self.signer(), &upload)
            .await
            .map_err(|e| taken(e, address))?;
        // Start from the newest list, which another device may have changed.
        let fetched = self.device_lists([&self.id.user]).await?;
        if let Some(alert) = fetched.alerts.into_iter().next() {
            return Err(alert.into());
        }
        let mut list = self.own_list()?.list().clone();
        list.version += 1;
        list.timestamp = unix_now();
        list.mail.retain(|b| &b.address != address);
        list.mail.push(MailBinding {
            address: address.clone(),
            fingerprint,
        });
        self.publish_own_list(&list)
            .await
            .map_err(|e| taken(e, address))?;
        Ok(())
    }

    /// This account's key for `address`, or its only one if `None`.
    pub fn mail_key(&self, address: Option<&str>) -> Result<Option<MailKey>, ClientError> {
        Ok(self
            .own_mail_key(address)?
            .map(|(address, fingerprint, _)| MailKey {
                address,
                fingerprint,
            }))
    }

    /// The certificate of this account's key for `address` (its only one
    /// if `None`), in ASCII armor, as GnuPG imports it.
    pub fn export_mail_key(&self, address: Option<&str>) -> Result<String, ClientError> {
        let named = address.unwrap_or("this account").to_owned();
        let (_, _, certificate) = self.own_mail_key(address)?.ok_or(MailError::NoKey(named))?;
        let certificate = SignedPublicKey::from_bytes(certificate.as_slice()).map_err(pgp_error)?;
        Ok(certificate
            .to_armored_string(ArmorOptions::default())
            .map_err(pgp_error)?)
    }

    /// This account's addresses with a key on this device.
    pub(crate) fn own_addresses(&self) -> Result<Vec<String>, ClientError> {
        let conn = self.store.conn();
        let mut query = conn
            .prepare("SELECT address FROM mail_keys WHERE secret IS NOT NULL ORDER BY address")?;
        let addresses = query
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(addresses)
    }

    /// Address, fingerprint and certificate of one of this account's keys.
    fn own_mail_key(
        &self,
        address: Option<&str>,
    ) -> Result<Option<(String, String, Vec<u8>)>, ClientError> {
        let conn = self.store.conn();
        let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
        match address {
            Some(address) => {
                let address = parse_address(address)?;
                Ok(conn
                    .query_row(
                        "SELECT address, fingerprint, certificate FROM mail_keys
                         WHERE address = ?1 AND secret IS NOT NULL",
                        [address.as_str()],
                        row,
                    )
                    .optional()?)
            }
            None => {
                let mut all: Vec<(String, String, Vec<u8>)> = conn
                    .prepare(
                        "SELECT address, fingerprint, certificate FROM mail_keys
                         WHERE secret IS NOT NULL ORDER BY address",
                    )?
                    .query_map([], row)?
                    .collect::<Result<_, _>>()?;
                if all.len() > 1 {
                    let names: Vec<&str> = all.iter().map(|(a, _, _)| a.as_str()).collect();
                    return Err(MailError::WhichAddress(names.join(", ")).into());
                }
                Ok(all.pop())
            }
        }
    }

    /// Looks `address` up on the server and accepts its certificate only
    /// as proven: both directory proofs at one checked head, the holder's
    /// list signed under the account key pinned for the holder and no
    /// older than one seen before, the address bound in it to the
    /// certificate served. A certificate other than the one kept for the
    /// address is kept aside and returned as [`AlertCode::MailKeyChanged`].
    pub async fn lookup_mail_key(&self, address: &str) -> Result<MailKeyInfo, ClientError> {
        let address = parse_address(address)?;
        if self.own_mail_key(Some(address.as_str()))?.is_some() {
            self.check_own_address(&address).await?;
            return self.show_mail_key(address.as_str());
        }
        let (list, certificate, epoch) = self.proven_mail_key(&address).await?;
        let user = list.user().clone();
        let fingerprint = fingerprint_of(&certificate)?;
        let held = self.contact(&address)?;
        if let Some(held) = &held
            && held.list_version.is_some_and(|v| list.version() < v)
            && held.user.as_ref() == Some(&user)
        {
            return Err(alert(
                AlertCode::DirectoryRollback,
                Some(user),
                format!(
                    "the directory shows {address} bound by an older device list (version {}) than one seen before (version {}): the server is showing an older certificate",
                    list.version(),
                    held.list_version.unwrap_or_default()
                ),
            ));
        }
        self.keep_contact(Offered {
            address: address.clone(),
            fingerprint,
            certificate: certificate.to_bytes().map_err(pgp_error)?,
            source: MailKeySource::Proven,
            user: Some(user),
            list_version: Some(list.version()),
            proven_at: Some(epoch),
        })?;
        self.show_mail_key(address.as_str())
    }

    /// The directory's answer for `address`, every check passed: the
    /// holder's verified list, the certificate, and the epoch.
    async fn proven_mail_key(
        &self,
        address: &MailAddress,
    ) -> Result<(VerifiedDeviceList, SignedPublicKey, u64), ClientError> {
        let response = match self.api.mail_lookup(address).await {
            Ok(response) => response,
            Err(ClientError::Server {
                status: 404,
                message,
                ..
            }) => {
                return Err(MailError::NotPublished {
                    address: address.to_string(),
                    reason: message,
                }
                .into());
            }
            Err(e) => return Err(e),
        };
        let MailLookupResponse {
            head,
            user,
            address_proof,
            user_proof,
            device_list,
            certificate,
        } = response;
        let pinned = self.pinned_directory()?;
        let head = match self.accept_head(&pinned, &head)? {
            AcceptedHead::Checked(head) => head,
            AcceptedHead::Uncosigned(uncosigned) => {
                let brings = format!("the mail key of {address}");
                self.await_quorum(&pinned, &uncosigned, &brings).await?
            }
        };
        let proven = rempart_kt::prove_mail_binding(
            &pinned.vrf_public_key,
            &head,
            address.clone(),
            user.clone(),
            &address_proof,
            &user_proof,
            device_list,
        )
        .map_err(|e| {
            alert(
                AlertCode::KtProofInvalid,
                Some(user.clone()),
                format!(
                    "the server's key-transparency proofs for {address} do not verify ({e}): it may be showing a binding it did not publish for everyone"
                ),
            )
        })?;
        let (_, proven_list) = proven.into_parts();
        let epoch = proven_list.epoch();
        let list = VerifiedDeviceList::from_proven(&self.store, proven_list)?;
        if user != self.id.user {
            let cached = self
                .store
                .cached_device_list(&user)?
                .and_then(|(signed, _)| serde_json::from_slice::<DeviceList>(&signed.list).ok())
                .map_or(0, |l| l.version);
            if list.version() > cached {
                self.store
                    .cache_device_list(&user, list.version(), list.signed(), epoch)?;
            }
        }
        let Some(bound) = list.list().mail_fingerprint(address) else {
            return Err(alert(
                AlertCode::KtProofInvalid,
                Some(user.clone()),
                format!("{user}'s proven device list does not bind {address}"),
            ));
        };
        let served = parse_certificate(&certificate)
            .and_then(|key| Ok((fingerprint_of(&key)?, key)))
            .ok()
            .filter(|(fingerprint, key)| {
                fingerprint == bound && addresses_of(key).contains(address)
            });
        let Some((_, certificate)) = served else {
            return Err(alert(
                AlertCode::KtProofInvalid,
                Some(user.clone()),
                format!(
                    "the server served a certificate for {address} other than the one {user}'s account binds ({bound}): refused"
                ),
            ));
        };
        Ok((list, certificate, epoch))
    }

    /// Checks that the server shows `address`, one of this account's, as
    /// this account binds it; anything else is
    /// [`AlertCode::UnknownOwnMailKey`]. An address not published yet is
    /// not checked.
    async fn check_own_address(&self, address: &MailAddress) -> Result<(), ClientError> {
        let own = self.own_list()?;
        let (list, certificate, _) = match self.proven_mail_key(address).await {
            Ok(proven) => proven,
            Err(ClientError::Mail(MailError::NotPublished { .. })) => return Ok(()),
            Err(ClientError::Alert(mut alert)) => {
                if alert.code != AlertCode::DirectoryRollback
                    && alert.code != AlertCode::WitnessQuorumMissing
                    && alert.code != AlertCode::DirectoryEquivocation
                {
                    alert.code = AlertCode::UnknownOwnMailKey;
                    alert.user = None;
                    alert.message = format!(
                        "the server shows your address {address} other than you bound it: {}",
                        alert.message
                    );
                }
                return Err(alert.into());
            }
            Err(e) => return Err(e),
        };
        let fingerprint = fingerprint_of(&certificate)?;
        if list.user() != &self.id.user {
            return Err(alert(
                AlertCode::UnknownOwnMailKey,
                None,
                format!(
                    "the directory publishes your address {address} as {}'s, with the certificate {fingerprint}: senders may encrypt to them",
                    list.user()
                ),
            ));
        }
        // A list this account signed: ours, but perhaps an older one. One
        // older than a version proven here before is the directory going
        // back to a certificate this account replaced; one older than the
        // list this device holds, and newer than any proven before, is a
        // change not published yet.
        let seen = self
            .store
            .setting(SETTING_OWN_MAIL_PROVEN)?
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
        if list.version() < seen {
            return Err(alert(
                AlertCode::UnknownOwnMailKey,
                None,
                format!(
                    "the directory went back to version {} of your device list, older than version {seen} it proved before, binding your address {address} to {fingerprint}: senders may encrypt to a key you replaced",
                    list.version()
                ),
            ));
        }
        if list.version() < own.version() {
            return Ok(());
        }
        if own.list().mail_fingerprint(address) != Some(&fingerprint) {
            return Err(alert(
                AlertCode::UnknownOwnMailKey,
                None,
                format!(
                    "the directory binds your address {address} to the certificate {fingerprint}, which this account did not bind"
                ),
            ));
        }
        self.store.set_setting(
            SETTING_OWN_MAIL_PROVEN,
            i64::try_from(list.version()).unwrap_or(i64::MAX),
        )?;
        Ok(())
    }

    /// Checks every address this account binds, as
    /// [`Self::check_own_address`], and, once per directory epoch, each
    /// one's complete key history ([`Self::check_own_address_history`]);
    /// what a sync does.
    pub(crate) async fn check_own_mail(&self, events: &mut Vec<Event>) -> Result<(), ClientError> {
        let own = self.own_list()?;
        if own.list().mail.is_empty() {
            return Ok(());
        }
        // An address whose current binding is already an alert is not
        // said twice by its history.
        let mut alerted = Vec::new();
        for binding in &own.list().mail {
            match self.check_own_address(&binding.address).await {
                Ok(()) => {}
                Err(ClientError::Alert(alert)) => {
                    alerted.push(&binding.address);
                    events.push(alert.into());
                }
                Err(e) => return Err(e),
            }
        }
        let newest = self.store.newest_head_epoch()?;
        let monitored = self
            .store
            .setting(SETTING_OWN_MAIL_HISTORY)?
            .and_then(|e| u64::try_from(e).ok());
        if monitored == Some(newest) {
            return Ok(());
        }
        let mut clean = alerted.is_empty();
        for binding in &own.list().mail {
            if alerted.contains(&&binding.address) {
                continue;
            }
            match self.check_own_address_history(&binding.address).await {
                Ok(()) => {}
                Err(ClientError::Alert(alert)) => {
                    clean = false;
                    events.push(alert.into());
                }
                Err(e) => return Err(e),
            }
        }
        if clean {
            self.store.set_setting(
                SETTING_OWN_MAIL_HISTORY,
                i64::try_from(newest).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }

    /// Checks every device list the directory ever published `address`
    /// with: each must be this account's, signed by its account key, and
    /// none older than one before it. A binding made and undone between
    /// two syncs is seen here; any other is
    /// [`AlertCode::UnknownOwnMailKey`].
    async fn check_own_address_history(&self, address: &MailAddress) -> Result<(), ClientError> {
        let history = match self.api.mail_history(address).await {
            Ok(history) => history,
            // Not published yet: nothing to check.
            Err(ClientError::Server { status: 404, .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let pinned = self.pinned_directory()?;
        let head = self.accept_head(&pinned, &history.head)?;
        let verified = rempart_kt::verify_mail_history(
            &pinned.vrf_public_key,
            head.head(),
            address,
            &history.proof,
            &history.device_lists,
        )
        .map_err(|e| {
            alert(
                AlertCode::UnknownOwnMailKey,
                None,
                format!(
                    "the directory's history of your address {address} does not verify ({e}): it may be hiding a binding it made"
                ),
            )
        })?;
        let account_key = self.id.account_key.public();
        let mut newest = 0;
        for (proven, signed) in verified {
            let list = signed
                .verify_for(&self.id.user)
                .ok()
                .filter(|list| list.account_key == account_key);
            let Some(list) = list else {
                let holder = serde_json::from_slice::<DeviceList>(&signed.list)
                    .map_or_else(|_| "an unreadable list".to_owned(), |l| l.user.to_string());
                return Err(alert(
                    AlertCode::UnknownOwnMailKey,
                    None,
                    format!(
                        "the directory published your address {address}, at epoch {}, with a device list your account did not sign (held by {holder}): senders may have encrypted to someone else",
                        proven.epoch
                    ),
                ));
            };
            if list.version < newest {
                return Err(alert(
                    AlertCode::UnknownOwnMailKey,
                    None,
                    format!(
                        "the directory published your address {address}, at epoch {}, with version {} of your device list after version {newest}: it went back to a certificate you replaced",
                        proven.epoch, list.version
                    ),
                ));
            }
            newest = list.version;
        }
        Ok(())
    }

    /// Imports a correspondent's certificate (binary or ASCII armor) for
    /// each mail address its User IDs name. A certificate other than the
    /// one kept for an address is kept aside, and returned as
    /// [`AlertCode::MailKeyChanged`].
    pub fn import_mail_key(&self, bytes: &[u8]) -> Result<Vec<MailKeyInfo>, ClientError> {
        let key = parse_certificate(bytes)?;
        let fingerprint = fingerprint_of(&key)?;
        let certificate = key.to_bytes().map_err(pgp_error)?;
        let addresses = addresses_of(&key);
        if addresses.is_empty() {
            return Err(MailError::NoAddressInCertificate.into());
        }
        let mut imported = Vec::with_capacity(addresses.len());
        for address in addresses {
            self.keep_contact(Offered {
                address: address.clone(),
                fingerprint: fingerprint.clone(),
                certificate: certificate.clone(),
                source: MailKeySource::Imported,
                user: None,
                list_version: None,
                proven_at: None,
            })?;
            imported.push(self.show_mail_key(address.as_str())?);
        }
        Ok(imported)
    }

    /// The certificate kept for `address`: this account's own, or a
    /// correspondent's with where it came from.
    pub fn show_mail_key(&self, address: &str) -> Result<MailKeyInfo, ClientError> {
        let address = parse_address(address)?;
        if let Some((_, fingerprint, _)) = self.own_mail_key(Some(address.as_str()))? {
            return Ok(MailKeyInfo {
                address: address.to_string(),
                fingerprint,
                source: MailKeySource::Own,
                user: Some(self.id.user.clone()),
                proven_at: None,
                changed_to: None,
            });
        }
        let held = self
            .contact(&address)?
            .ok_or_else(|| MailError::Unknown(address.to_string()))?;
        Ok(MailKeyInfo {
            address: address.to_string(),
            fingerprint: held.fingerprint,
            source: held.source,
            user: held.user,
            proven_at: held.proven_at,
            changed_to: held.presented,
        })
    }

    /// Marks the certificate of `address` whose fingerprint is
    /// `fingerprint` as verified by the user: the one kept, or a changed one
    /// kept aside, which then takes its place.
    pub fn verify_mail_key(
        &self,
        address: &str,
        fingerprint: &str,
    ) -> Result<MailKeyInfo, ClientError> {
        let address = parse_address(address)?;
        let typed = Fingerprint::parse(fingerprint)
            .ok_or_else(|| MailError::BadFingerprint(fingerprint.to_owned()))?;
        let held = self
            .contact(&address)?
            .ok_or_else(|| MailError::Unknown(address.to_string()))?;
        let conn = self.store.conn();
        if held.fingerprint == typed.as_str() {
            conn.execute(
                "UPDATE mail_contacts SET source = 'verified', updated_at = ?2 WHERE address = ?1",
                params![address.as_str(), unix_now()],
            )?;
        } else if held.presented.as_deref() == Some(typed.as_str()) {
            conn.execute(
                "UPDATE mail_contacts SET
                     fingerprint = presented_fingerprint, certificate = presented_certificate,
                     source = 'verified', user_name = presented_user,
                     list_version = presented_version, proven_at = presented_epoch,
                     updated_at = ?2,
                     presented_fingerprint = NULL, presented_certificate = NULL,
                     presented_source = NULL, presented_user = NULL,
                     presented_version = NULL, presented_epoch = NULL
                 WHERE address = ?1",
                params![address.as_str(), unix_now()],
            )?;
        } else {
            return Err(MailError::FingerprintMismatch {
                address: address.to_string(),
                held: held.presented.unwrap_or(held.fingerprint),
            }
            .into());
        }
        self.show_mail_key(address.as_str())
    }

    /// What is kept for a correspondent's `address`.
    fn contact(&self, address: &MailAddress) -> Result<Option<Contact>, ClientError> {
        let row = self
            .store
            .conn()
            .query_row(
                "SELECT fingerprint, source, user_name, list_version, proven_at,
                        presented_fingerprint
                 FROM mail_contacts WHERE address = ?1",
                [address.as_str()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((fingerprint, source, user, version, epoch, presented)) = row else {
            return Ok(None);
        };
        Ok(Some(Contact {
            fingerprint,
            source: MailKeySource::parse(&source)?,
            user: user.and_then(|u| u.parse().ok()),
            list_version: version.and_then(|v| u64::try_from(v).ok()),
            proven_at: epoch.and_then(|e| u64::try_from(e).ok()),
            presented,
        }))
    }

    /// Keeps `offered` for its address: the first certificate seen is kept;
    /// the same one again refreshes it (a proof never lowers a verified
    /// one); another one is kept aside and is [`AlertCode::MailKeyChanged`].
    fn keep_contact(&self, offered: Offered) -> Result<(), ClientError> {
        // What is held is read and replaced in one transaction; a changed
        // certificate is kept aside before it is said.
        match self.store.atomic(|| self.keep_contact_inner(offered))? {
            Some(changed) => Err(changed),
            None => Ok(()),
        }
    }

    /// [`Self::keep_contact`]'s writes; returns the alert of a change.
    fn keep_contact_inner(&self, offered: Offered) -> Result<Option<ClientError>, ClientError> {
        let conn = self.store.conn();
        let held = self.contact(&offered.address)?;
        let version = offered.list_version.and_then(|v| i64::try_from(v).ok());
        let epoch = offered.proven_at.and_then(|e| i64::try_from(e).ok());
        let user = offered.user.as_ref().map(UserName::as_str);
        match held {
            None => {
                conn.execute(
                    "INSERT INTO mail_contacts (address, fingerprint, certificate, source,
                         user_name, list_version, proven_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        offered.address.as_str(),
                        offered.fingerprint.as_str(),
                        offered.certificate,
                        offered.source.as_str(),
                        user,
                        version,
                        epoch,
                        unix_now()
                    ],
                )?;
                Ok(None)
            }
            // An Autocrypt header never displaces a certificate held.
            Some(held)
                if offered.source == MailKeySource::Autocrypt
                    && held.fingerprint != offered.fingerprint.as_str() =>
            {
                Ok(None)
            }
            // A certificate from a surer source takes the place of one
            // that came from an Autocrypt header alone.
            Some(held)
                if held.fingerprint == offered.fingerprint.as_str()
                    || (held.source == MailKeySource::Autocrypt
                        && offered.source.assurance() > held.source.assurance()) =>
            {
                let source = if held.fingerprint == offered.fingerprint.as_str()
                    && held.source.assurance() > offered.source.assurance()
                {
                    held.source
                } else {
                    offered.source
                };
                conn.execute(
                    "UPDATE mail_contacts SET certificate = ?2, source = ?3, fingerprint = ?8,
                         user_name = coalesce(?4, user_name),
                         list_version = coalesce(?5, list_version),
                         proven_at = coalesce(?6, proven_at), updated_at = ?7,
                         presented_fingerprint = NULL, presented_certificate = NULL,
                         presented_source = NULL, presented_user = NULL,
                         presented_version = NULL, presented_epoch = NULL
                     WHERE address = ?1",
                    params![
                        offered.address.as_str(),
                        offered.certificate,
                        source.as_str(),
                        user,
                        version,
                        epoch,
                        unix_now(),
                        offered.fingerprint.as_str()
                    ],
                )?;
                Ok(None)
            }
            Some(held) => {
                conn.execute(
                    "UPDATE mail_contacts SET presented_fingerprint = ?2,
                         presented_certificate = ?3, presented_source = ?4,
                         presented_user = ?5, presented_version = ?6, presented_epoch = ?7
                     WHERE address = ?1",
                    params![
                        offered.address.as_str(),
                        offered.fingerprint.as_str(),
                        offered.certificate,
                        offered.source.as_str(),
                        user,
                        version,
                        epoch
                    ],
                )?;
                Ok(Some(alert(
                    AlertCode::MailKeyChanged,
                    offered.user,
                    format!(
                        "{} now shows the certificate {} where you had {}: the new one is not used until you verify it (`rempart mail key verify {} FINGERPRINT`)",
                        offered.address, offered.fingerprint, held.fingerprint, offered.address
                    ),
                )))
            }
        }
    }

    /// Writes `draft` as a PGP/MIME message signed with this account's key
    /// for `draft.from` and encrypted to it and to every `To` and `Cc`
    /// recipient's certificate as kept here (never one kept aside as
    /// changed). A recipient without one is refused, and nothing is
    /// written.
    pub fn seal_mail(&self, draft: &mime::Draft) -> Result<Vec<u8>, ClientError> {
        let readers: Vec<&MailAddress> = draft.to.iter().chain(&draft.cc).collect();
        self.seal_mail_for(draft, &readers)
    }

    /// [`Self::seal_mail`], encrypted to `readers` (and the sender) only.
    pub(crate) fn seal_mail_for(
        &self,
        draft: &mime::Draft,
        readers: &[&MailAddress],
    ) -> Result<Vec<u8>, ClientError> {
        let signer = self
            .own_secret_keys(Some(&draft.from))?
            .into_iter()
            .next()
            .ok_or_else(|| MailError::NoKey(draft.from.to_string()))?;
        let mut recipients = Vec::new();
        for address in readers.iter().copied() {
            let certificate = self
                .usable_certificate(address)?
                .ok_or_else(|| MailError::Unknown(address.to_string()))?;
            recipients.push(certificate);
        }
        let recipients: Vec<&SignedPublicKey> = recipients.iter().collect();
        Ok(mime::seal(draft, &signer, &recipients)?)
    }

    /// Reads a PGP/MIME message with this account's keys (the current ones
    /// and those they replaced); its signature counts only under the
    /// certificate kept here for its `From` address.
    pub fn open_mail(&self, raw: &[u8]) -> Result<mime::Opened, ClientError> {
        let keys = self.own_secret_keys(None)?;
        // Whatever From address the message claims, only the certificate
        // kept here for it can make its signature count.
        // A store that cannot be read is an error, never an unsigned
        // message.
        let failure = std::cell::RefCell::new(None);
        let opened = mime::open(raw, &keys, |address| {
            self.usable_certificate(address).unwrap_or_else(|e| {
                failure.borrow_mut().get_or_insert(e);
                None
            })
        });
        if let Some(error) = failure.into_inner() {
            return Err(error);
        }
        let opened = opened?;
        // A certificate its Autocrypt header gave, under which the message
        // verified, is kept for an address with none, at the lowest
        // assurance.
        if let (Some(keydata), Some(from), Some(fingerprint)) =
            (&opened.autocrypt, &opened.from, &opened.signed_by)
        {
            self.keep_contact(Offered {
                address: from.clone(),
                fingerprint: fingerprint.clone(),
                certificate: keydata.clone(),
                source: MailKeySource::Autocrypt,
                user: None,
                list_version: None,
                proven_at: None,
            })?;
        }
        Ok(opened)
    }

    /// The certificate to use for `address`: this account's own, or the
    /// one kept for a correspondent (not a changed one kept aside).
    pub(crate) fn usable_certificate(
        &self,
        address: &MailAddress,
    ) -> Result<Option<SignedPublicKey>, ClientError> {
        let conn = self.store.conn();
        let own: Option<Vec<u8>> = conn
            .query_row(
                "SELECT certificate FROM mail_keys WHERE address = ?1 AND secret IS NOT NULL",
                [address.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        let bytes = match own {
            Some(bytes) => Some(bytes),
            None => conn
                .query_row(
                    "SELECT certificate FROM mail_contacts WHERE address = ?1",
                    [address.as_str()],
                    |r| r.get(0),
                )
                .optional()?,
        };
        bytes.map(|b| Ok(parse_certificate(&b)?)).transpose()
    }

    /// This account's secret keys: the current one of `address` (all
    /// addresses if `None`), then the ones they replaced.
    fn own_secret_keys(
        &self,
        address: Option<&MailAddress>,
    ) -> Result<Vec<SignedSecretKey>, ClientError> {
        let conn = self.store.conn();
        let mut query = conn.prepare(
            "SELECT secret FROM mail_keys WHERE secret IS NOT NULL AND (?1 IS NULL OR address = ?1)
             UNION ALL
             SELECT secret FROM mail_retired_keys WHERE ?1 IS NULL",
        )?;
        let secrets: Vec<Zeroizing<Vec<u8>>> = query
            .query_map([address.map(MailAddress::as_str)], |r| {
                r.get::<_, Vec<u8>>(0).map(Zeroizing::new)
            })?
            .collect::<Result<_, _>>()?;
        secrets
            .iter()
            .map(|secret| {
                SignedSecretKey::from_bytes(secret.as_slice())
                    .map_err(|e| ClientError::Corrupt(format!("a stored mail key: {e}")))
            })
            .collect()
    }

    /// This account's current keys, secrets included, for a new device.
    pub(crate) fn own_mail_keys_for_link(&self) -> Result<Vec<LinkedMailKey>, ClientError> {
        let conn = self.store.conn();
        let mut query = conn.prepare(
            "SELECT address, fingerprint, certificate, secret FROM mail_keys
             WHERE secret IS NOT NULL ORDER BY address",
        )?;
        let keys = query
            .query_map([], |r| {
                Ok(LinkedMailKey {
                    address: r.get(0)?,
                    fingerprint: r.get(1)?,
                    certificate: r.get(2)?,
                    secret: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(keys)
    }
}

/// Keeps the keys an existing device handed over while linking.
pub(crate) fn keep_linked_keys(
    store: &crate::store::Store,
    keys: &[LinkedMailKey],
) -> Result<(), ClientError> {
    for key in keys {
        let address = parse_address(&key.address)?;
        let certificate = parse_certificate(&key.certificate)?;
        if fingerprint_of(&certificate)?.as_str() != key.fingerprint {
            return Err(ClientError::LinkTampered);
        }
        store.conn().execute(
            "INSERT OR REPLACE INTO mail_keys (address, fingerprint, certificate, secret, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                address.as_str(),
                key.fingerprint,
                key.certificate,
                key.secret.as_slice(),
                unix_now()
            ],
        )?;
    }
    Ok(())
}

/// One of this account's mail keys as the sealed link channel carries it.
#[derive(Serialize, Deserialize)]
pub(crate) struct LinkedMailKey {
    address: String,
    fingerprint: String,
    #[serde(with = "rempart_proto::b64")]
    certificate: Vec<u8>,
    #[serde(with = "rempart_proto::b64")]
    secret: Vec<u8>,
}

impl Drop for LinkedMailKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

/// A correspondent's entry, as kept.
struct Contact {
    fingerprint: String,
    source: MailKeySource,
    user: Option<UserName>,
    list_version: Option<u64>,
    proven_at: Option<u64>,
    presented: Option<String>,
}

/// A refusal of the server's because another account holds the address.
fn taken(error: ClientError, address: &MailAddress) -> ClientError {
    match error {
        ClientError::Server { status: 409, .. } => {
            MailError::AddressTaken(address.to_string()).into()
        }
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_v4_ed25519_with_a_curve25519_subkey() {
        let key = generate("alice", &MailAddress::parse("alice@example.org").unwrap()).unwrap();
        let public = SignedPublicKey::from(key);
        assert_eq!(public.primary_key.version(), pgp::types::KeyVersion::V4);
        assert_eq!(
            public.primary_key.algorithm(),
            pgp::crypto::public_key::PublicKeyAlgorithm::EdDSALegacy
        );
        assert_eq!(public.public_subkeys.len(), 1);
        assert_eq!(
            public.public_subkeys[0].key.algorithm(),
            pgp::crypto::public_key::PublicKeyAlgorithm::ECDH
        );
        public.verify_bindings().unwrap();
    }

    #[test]
    fn a_certificate_parses_from_armor_and_binary_and_names_its_address() {
        let address = MailAddress::parse("alice@example.org").unwrap();
        let public = SignedPublicKey::from(generate("alice", &address).unwrap());
        let binary = public.to_bytes().unwrap();
        let armored = public.to_armored_string(ArmorOptions::default()).unwrap();
        for bytes in [binary.as_slice(), armored.as_bytes()] {
            let parsed = parse_certificate(bytes).unwrap();
            assert_eq!(
                fingerprint_of(&parsed).unwrap(),
                fingerprint_of(&public).unwrap()
            );
            assert_eq!(addresses_of(&parsed), std::slice::from_ref(&address));
        }
        assert!(parse_certificate(b"not a certificate").is_err());
        assert!(parse_certificate(&binary[..binary.len() / 2]).is_err());
    }
}
