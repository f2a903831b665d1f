//! Mail identity: this account's OpenPGP certificates, one per mail
//! address, made and kept on this device.
//!
//! A certificate is RFC 4880 v4: an Ed25519 primary key that certifies and
//! signs, and a Curve25519 ECDH subkey that encrypts, the form GnuPG 2.2
//! reads. The secret key is kept in the device's store (encrypted at rest
//! with the store) and nowhere else; in memory it is wiped when dropped.
//! The component owns its table ([`SCHEMA`]) and its error type.

use pgp::composed::{
    ArmorOptions, Deserializable as _, EncryptionCaps, KeyType, SecretKeyParamsBuilder,
    SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::ser::Serialize as _;
use pgp::types::KeyDetails as _;
use rusqlite::{OptionalExtension as _, params};
use zeroize::Zeroizing;

use crate::Client;
use crate::error::ClientError;

/// The mail component's table: each address's certificate and, for this
/// account's own addresses, its secret key.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mail_keys (
    address     TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    certificate BLOB NOT NULL,
    secret      BLOB,
    created_at  INTEGER NOT NULL
);
";

/// Why a mail operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Not a mail address.
    #[error("{0:?} is not a mail address: write it as name@example.org")]
    BadAddress(String),
    /// This account already has a key for the address.
    #[error("{address} already has a mail key ({fingerprint})")]
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
    /// OpenPGP failed.
    #[error("OpenPGP: {0}")]
    Pgp(String),
}

/// An address checked for the shape of a mail address, lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailAddress(String);

impl MailAddress {
    /// `text` as an address: one `@` between a local part and a domain
    /// with a dot, no spaces, no angle brackets, at most 254 characters.
    pub fn parse(text: &str) -> Result<Self, MailError> {
        let bad = || MailError::BadAddress(text.to_owned());
        let lower = text.trim().to_ascii_lowercase();
        let (local, domain) = lower.split_once('@').ok_or_else(bad)?;
        let fine = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '@' | '"' | ','))
        };
        if lower.len() > 254 || !fine(local) || !fine(domain) || !domain.contains('.') {
            return Err(bad());
        }
        Ok(Self(lower))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One of this account's mail keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailKey {
    /// Its address.
    pub address: String,
    /// The certificate's fingerprint, uppercase hex.
    pub fingerprint: String,
}

fn pgp_error(error: impl std::fmt::Display) -> MailError {
    MailError::Pgp(error.to_string())
}

/// A new v4 certificate for `user <address>`, with its secret key.
fn generate(user: &str, address: &MailAddress) -> Result<SignedSecretKey, MailError> {
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
        .primary_user_id(format!("{user} <{}>", address.as_str()))
        .subkeys(vec![encryption.build().map_err(pgp_error)?]);
    params
        .build()
        .map_err(pgp_error)?
        .generate(rand::rngs::OsRng)
        .map_err(pgp_error)
}

impl Client {
    /// Makes an OpenPGP certificate for `address` and keeps it, with its
    /// secret key, in this device's store.
    pub fn create_mail_key(&self, address: &str) -> Result<MailKey, ClientError> {
        let address = MailAddress::parse(address)?;
        if let Some(existing) = self.mail_key(Some(address.as_str()))? {
            return Err(MailError::KeyExists {
                address: existing.address,
                fingerprint: existing.fingerprint,
            }
            .into());
        }
        let secret = generate(self.id.user.as_str(), &address)?;
        let fingerprint = format!("{:X}", secret.fingerprint());
        let certificate = SignedPublicKey::from(secret.clone())
            .to_bytes()
            .map_err(pgp_error)?;
        let secret = Zeroizing::new(secret.to_bytes().map_err(pgp_error)?);
        self.store.conn().execute(
            "INSERT INTO mail_keys (address, fingerprint, certificate, secret, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                address.as_str(),
                fingerprint,
                certificate,
                secret.as_slice(),
                crate::api::unix_now()
            ],
        )?;
        Ok(MailKey {
            address: address.as_str().to_owned(),
            fingerprint,
        })
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

    /// Address, fingerprint and certificate of one of this account's keys.
    fn own_mail_key(
        &self,
        address: Option<&str>,
    ) -> Result<Option<(String, String, Vec<u8>)>, ClientError> {
        let conn = self.store.conn();
        let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
        match address {
            Some(address) => {
                let address = MailAddress::parse(address)?;
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_lowercased() {
        assert_eq!(
            MailAddress::parse(" Alice@Example.ORG ").unwrap().as_str(),
            "alice@example.org"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.org",
            "a b@example.org",
            "a@localhost",
            "<a@b.c>",
            "a@b@c.d",
        ] {
            assert!(MailAddress::parse(bad).is_err(), "{bad}");
        }
    }

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
}
