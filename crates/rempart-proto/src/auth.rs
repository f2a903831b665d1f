//! The signed-request scheme.
//!
//! Every HTTP request from a device carries four headers: the device id, a
//! Unix timestamp, a fresh random nonce and an Ed25519 signature by the
//! device key over
//!
//! ```text
//! "rempart/request/v1\0" METHOD "\n" PATH_AND_QUERY "\n" hex(SHA-256(body)) "\n"
//! DEVICE_ID "\n" TIMESTAMP "\n" NONCE
//! ```
//!
//! The server checks the signature against the device's registered key, that
//! the timestamp is within [`MAX_CLOCK_SKEW_SECS`] of its clock, and that the
//! nonce was never used by that device. There are no passwords and no bearer
//! tokens.
//!
//! ```
//! use ed25519_dalek::SigningKey;
//! use rempart_proto::{DeviceId, auth::RequestAuth};
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let device = DeviceId::random();
//! let auth = RequestAuth::sign(&key, device, "POST", "/v1/keypackages", b"{}", 1_700_000_000);
//! let headers = auth.headers();
//! let parsed = RequestAuth::from_headers(|name| {
//!     headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
//! })
//! .unwrap();
//! assert!(parsed.verify(&key.verifying_key(), "POST", "/v1/keypackages", b"{}").is_ok());
//! assert!(parsed.verify(&key.verifying_key(), "POST", "/v1/keypackages", b"{ }").is_err());
//! ```

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::RngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use crate::ids::DeviceId;
use crate::limits::MAX_CLOCK_SKEW_SECS;

/// Header naming the signing device.
pub const HEADER_DEVICE: &str = "rempart-device";
/// Header carrying the Unix timestamp in seconds.
pub const HEADER_TIMESTAMP: &str = "rempart-timestamp";
/// Header carrying the nonce: 32 lowercase hex characters.
pub const HEADER_NONCE: &str = "rempart-nonce";
/// Header carrying the base64 Ed25519 signature.
pub const HEADER_SIGNATURE: &str = "rempart-signature";

const REQUEST_CONTEXT: &[u8] = b"rempart/request/v1\0";
const NONCE_BYTES: usize = 16;

/// The authentication part of one signed request.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestAuth {
    /// The device that signed.
    pub device: DeviceId,
    /// Unix time (seconds) at signing.
    pub timestamp: i64,
    /// A fresh random nonce, 32 lowercase hex characters.
    pub nonce: String,
    signature: [u8; 64],
}

impl RequestAuth {
    /// Signs a request with a fresh nonce.
    pub fn sign(
        key: &SigningKey,
        device: DeviceId,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: i64,
    ) -> Self {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let nonce = hex::encode(nonce);
        let payload = signed_payload(method, path_and_query, body, &device, timestamp, &nonce);
        let signature = key.sign(&payload).to_bytes();
        Self {
            device,
            timestamp,
            nonce,
            signature,
        }
    }

    /// The four headers to attach to the request.
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            (HEADER_DEVICE, self.device.to_string()),
            (HEADER_TIMESTAMP, self.timestamp.to_string()),
            (HEADER_NONCE, self.nonce.clone()),
            (HEADER_SIGNATURE, crate::b64::encode(&self.signature)),
        ]
    }

    /// Reads the four headers; `get` returns a header's value by name.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, AuthError> {
        let header = |name: &'static str| get(name).ok_or(AuthError::MissingHeader(name));
        let device = header(HEADER_DEVICE)?
            .parse()
            .map_err(|_| AuthError::MalformedHeader(HEADER_DEVICE))?;
        let timestamp = header(HEADER_TIMESTAMP)?
            .parse()
            .map_err(|_| AuthError::MalformedHeader(HEADER_TIMESTAMP))?;
        let nonce = header(HEADER_NONCE)?;
        if nonce.len() != 2 * NONCE_BYTES
            || !nonce
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(AuthError::MalformedHeader(HEADER_NONCE));
        }
        let signature: [u8; 64] = crate::b64::decode(header(HEADER_SIGNATURE)?)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or(AuthError::MalformedHeader(HEADER_SIGNATURE))?;
        Ok(Self {
            device,
            timestamp,
            nonce: nonce.to_owned(),
            signature,
        })
    }

    /// Checks the signature over this request with the device's key.
    pub fn verify(
        &self,
        key: &VerifyingKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(), AuthError> {
        let payload = signed_payload(
            method,
            path_and_query,
            body,
            &self.device,
            self.timestamp,
            &self.nonce,
        );
        key.verify_strict(&payload, &Signature::from_bytes(&self.signature))
            .map_err(|_| AuthError::BadSignature)
    }

    /// Checks the timestamp against `now` (Unix seconds).
    pub fn check_skew(&self, now: i64) -> Result<(), AuthError> {
        let skew = self.timestamp.saturating_sub(now).saturating_abs();
        if skew > MAX_CLOCK_SKEW_SECS {
            return Err(AuthError::ClockSkew { skew_secs: skew });
        }
        Ok(())
    }
}

impl fmt::Debug for RequestAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestAuth")
            .field("device", &self.device)
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

fn signed_payload(
    method: &str,
    path_and_query: &str,
    body: &[u8],
    device: &DeviceId,
    timestamp: i64,
    nonce: &str,
) -> Vec<u8> {
    let body_digest = hex::encode(Sha256::digest(body));
    let mut payload = REQUEST_CONTEXT.to_vec();
    payload.extend_from_slice(
        format!("{method}\n{path_and_query}\n{body_digest}\n{device}\n{timestamp}\n{nonce}")
            .as_bytes(),
    );
    payload
}

/// Why a request's authentication was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header is present but malformed.
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    /// The signature does not verify under the device's key.
    #[error("request signature is invalid")]
    BadSignature,
    /// The timestamp is too far from the server's clock.
    #[error(
        "request timestamp is {skew_secs} s away from the server clock (limit {MAX_CLOCK_SKEW_SECS} s)"
    )]
    ClockSkew {
        /// How far off the timestamp was, in seconds.
        skew_secs: i64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(auth: &RequestAuth) -> RequestAuth {
        let headers = auth.headers();
        RequestAuth::from_headers(|n| {
            headers
                .iter()
                .find(|(h, _)| *h == n)
                .map(|(_, v)| v.as_str())
        })
        .unwrap()
    }

    #[test]
    fn every_signed_field_is_covered() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let vk = key.verifying_key();
        let auth = parse(&RequestAuth::sign(
            &key,
            DeviceId::random(),
            "PUT",
            "/v1/x?a=1",
            b"body",
            100,
        ));
        assert!(auth.verify(&vk, "PUT", "/v1/x?a=1", b"body").is_ok());
        assert_eq!(
            auth.verify(&vk, "GET", "/v1/x?a=1", b"body"),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            auth.verify(&vk, "PUT", "/v1/x?a=2", b"body"),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            auth.verify(&vk, "PUT", "/v1/x?a=1", b"bodY"),
            Err(AuthError::BadSignature)
        );
        let mut other = auth.clone();
        other.timestamp += 1;
        assert_eq!(
            other.verify(&vk, "PUT", "/v1/x?a=1", b"body"),
            Err(AuthError::BadSignature)
        );
        let mut other = auth.clone();
        other.nonce = "0".repeat(32);
        assert_eq!(
            other.verify(&vk, "PUT", "/v1/x?a=1", b"body"),
            Err(AuthError::BadSignature)
        );
        let mut other = auth.clone();
        other.device = DeviceId::random();
        assert_eq!(
            other.verify(&vk, "PUT", "/v1/x?a=1", b"body"),
            Err(AuthError::BadSignature)
        );
        let stranger = SigningKey::from_bytes(&[2; 32]).verifying_key();
        assert_eq!(
            auth.verify(&stranger, "PUT", "/v1/x?a=1", b"body"),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn skew_limit() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let auth = RequestAuth::sign(&key, DeviceId::random(), "GET", "/", b"", 1000);
        assert!(auth.check_skew(1000 + MAX_CLOCK_SKEW_SECS).is_ok());
        assert!(auth.check_skew(1000 - MAX_CLOCK_SKEW_SECS).is_ok());
        assert!(auth.check_skew(1001 + MAX_CLOCK_SKEW_SECS).is_err());
        assert!(auth.check_skew(999 - MAX_CLOCK_SKEW_SECS).is_err());
    }

    #[test]
    fn malformed_headers_are_refused() {
        let none = RequestAuth::from_headers(|_| None);
        assert_eq!(none, Err(AuthError::MissingHeader(HEADER_DEVICE)));
        let bad_nonce = RequestAuth::from_headers(|n| match n {
            HEADER_DEVICE => Some("0011223344556677"),
            HEADER_TIMESTAMP => Some("5"),
            HEADER_NONCE => Some("xyz"),
            _ => Some("AAAA"),
        });
        assert_eq!(bad_nonce, Err(AuthError::MalformedHeader(HEADER_NONCE)));
    }
}
