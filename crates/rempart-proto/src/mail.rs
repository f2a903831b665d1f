//! Mail identity on the wire: which OpenPGP certificate an account binds to
//! each of its mail addresses, and how the directory proves it.
//!
//! An account binds an address to a certificate's fingerprint in its
//! account-signed device list ([`DeviceList::mail`](crate::DeviceList::mail)),
//! so only the account key can make or change a binding. The directory
//! publishes each bound address under its own label ([`mail_label`]) with
//! the same value as the holder's device list: a lookup proves, at one
//! head, that the address belongs to that user and that the user's current
//! list binds it. The server cannot move an address to another account
//! without publishing that for everyone to see, the owner included, whose
//! devices check their own addresses at every sync.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::directory::HeadWithCosignatures;
use crate::ids::UserName;
use crate::limits::MAX_MAIL_CERTIFICATE_BYTES;

/// `POST`: a device uploads a certificate of its account
/// ([`MailCertificateUpload`]).
pub const MAIL_CERTIFICATES_PATH: &str = "/v1/mail/certificates";
/// `POST`: who holds an address, with proofs ([`MailLookupRequest`] →
/// [`MailLookupResponse`]).
pub const MAIL_LOOKUP_PATH: &str = "/v1/mail/lookup";
/// `POST`: the complete key history of an address's label
/// ([`MailLookupRequest`] → [`HistoryResponse`](crate::directory::HistoryResponse)).
pub const MAIL_HISTORY_PATH: &str = "/v1/mail/history";

/// A mail address in the shape Rempart accepts, lowercase: one `@` between
/// a local part and a domain with a dot, printable ASCII without spaces,
/// angle brackets, quotes or commas, at most 254 characters.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "alice@example.org")]
pub struct MailAddress(String);

impl MailAddress {
    /// `text` as an address (trimmed and lowercased), if it has the shape.
    pub fn parse(text: &str) -> Option<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let (local, domain) = lower.split_once('@')?;
        let fine = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '@' | '"' | ','))
        };
        (lower.len() <= 254 && fine(local) && fine(domain) && domain.contains('.'))
            .then_some(Self(lower))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MailAddress {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        // Only the exact (already lowercase) form is accepted on the wire,
        // so that one address has one encoding in signed data.
        match Self::parse(&text) {
            Some(address) if address.0 == text => Ok(address),
            _ => Err(format!("{:?} is not a mail address", truncate(&text))),
        }
    }
}

impl From<MailAddress> for String {
    fn from(address: MailAddress) -> Self {
        address.0
    }
}

impl fmt::Display for MailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MailAddress({})", self.0)
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// An OpenPGP v4 fingerprint: 40 uppercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "0123456789ABCDEF0123456789ABCDEF01234567")]
pub struct Fingerprint(String);

impl Fingerprint {
    /// `text` as a fingerprint: 40 hex digits, any case, spaces ignored.
    pub fn parse(text: &str) -> Option<Self> {
        let hex: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        (hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| Self(hex.to_ascii_uppercase()))
    }

    /// The 40 uppercase hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        match Self::parse(&text) {
            Some(fingerprint) if fingerprint.0 == text => Ok(fingerprint),
            _ => Err(format!(
                "{:?} is not an OpenPGP fingerprint",
                truncate(&text)
            )),
        }
    }
}

impl From<Fingerprint> for String {
    fn from(fingerprint: Fingerprint) -> Self {
        fingerprint.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.0)
    }
}

/// One address an account binds to one of its certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MailBinding {
    /// The address.
    pub address: MailAddress,
    /// The fingerprint of the certificate that holds the address.
    pub fingerprint: Fingerprint,
}

/// The directory label an address is published under. User names hold no
/// `:` or `@`, so no address label is ever a user's label.
pub fn mail_label(address: &MailAddress) -> String {
    format!("mail:{address}")
}

/// `POST /v1/mail/certificates`: one of the account's certificates, which
/// the server serves to whoever looks up an address bound to it.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct MailCertificateUpload {
    /// The certificate's fingerprint, as the account's device list binds it.
    pub fingerprint: Fingerprint,
    /// The certificate (OpenPGP transferable public key, binary), base64,
    /// at most [`MAX_MAIL_CERTIFICATE_BYTES`].
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub certificate: Vec<u8>,
}

impl fmt::Debug for MailCertificateUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailCertificateUpload")
            .field("fingerprint", &self.fingerprint)
            .field("certificate_bytes", &self.certificate.len())
            .finish()
    }
}

/// `POST /v1/mail/lookup`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MailLookupRequest {
    /// The address.
    pub address: MailAddress,
}

/// `POST /v1/mail/lookup` response: the user who holds the address, the
/// user's current device list, and two lookup proofs at one head, one for
/// the address's label and one for the user's: the client accepts the
/// address only if both prove this same list, and the list binds the
/// address to the certificate served.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct MailLookupResponse {
    /// The head of the epoch both proofs are for.
    pub head: HeadWithCosignatures,
    /// The user who holds the address.
    pub user: UserName,
    /// akd `LookupProof` of the address's label ([`mail_label`]), base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub address_proof: Vec<u8>,
    /// akd `LookupProof` of the user's label, base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub user_proof: Vec<u8>,
    /// The device list both proofs commit to.
    pub device_list: crate::SignedDeviceList,
    /// The certificate whose fingerprint the list binds to the address
    /// (binary OpenPGP), base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub certificate: Vec<u8>,
}

impl fmt::Debug for MailLookupResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailLookupResponse")
            .field("user", &self.user)
            .field("certificate_bytes", &self.certificate.len())
            .finish_non_exhaustive()
    }
}

/// Whether `certificate` fits [`MAX_MAIL_CERTIFICATE_BYTES`].
pub fn certificate_fits(certificate: &[u8]) -> bool {
    !certificate.is_empty() && certificate.len() <= MAX_MAIL_CERTIFICATE_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_have_one_form_on_the_wire() {
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
            assert!(MailAddress::parse(bad).is_none(), "{bad}");
        }
        assert!(serde_json::from_str::<MailAddress>("\"Alice@example.org\"").is_err());
        assert!(serde_json::from_str::<MailAddress>("\"alice@example.org\"").is_ok());
        assert!(
            mail_label(&MailAddress::parse("a@b.c").unwrap())
                .parse::<UserName>()
                .is_err()
        );
    }

    #[test]
    fn fingerprints_are_forty_hex_digits() {
        let spaced = "0123 4567 89ab cdef 0123  4567 89AB CDEF 0123 4567";
        assert_eq!(
            Fingerprint::parse(spaced).unwrap().as_str(),
            "0123456789ABCDEF0123456789ABCDEF01234567"
        );
        assert!(Fingerprint::parse("0123").is_none());
        assert!(Fingerprint::parse(&"G".repeat(40)).is_none());
        assert!(serde_json::from_str::<Fingerprint>(&format!("\"{}\"", "a".repeat(40))).is_err());
    }
}
