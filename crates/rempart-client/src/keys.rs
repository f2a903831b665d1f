//! Account and device keys.
//!
//! Both are Ed25519 keys from `ed25519-dalek`. The account key signs the
//! account's device list; a device key signs the device's requests to the
//! server and is the device's MLS credential key. Secret halves zeroize on
//! drop and never appear in `Debug` output.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::SignatureScheme;
use rand::rngs::OsRng;
use rempart_proto::PublicKey;
use zeroize::Zeroizing;

/// The account key: signs the account's device list.
pub struct AccountKey(SigningKey);

/// A device key: authenticates requests and signs as the MLS credential.
pub struct DeviceKey(SigningKey);

macro_rules! key_common {
    ($name:ident) => {
        impl $name {
            /// A fresh key from the operating system's generator.
            pub fn generate() -> Self {
                Self(SigningKey::generate(&mut OsRng))
            }

            /// Rebuilds the key from its 32 secret bytes.
            pub(crate) fn from_secret(secret: &[u8]) -> Option<Self> {
                let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(secret.try_into().ok()?);
                Some(Self(SigningKey::from_bytes(&bytes)))
            }

            /// The 32 secret bytes, for the local store only.
            pub(crate) fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
                Zeroizing::new(self.0.to_bytes())
            }

            /// The public half.
            pub fn public(&self) -> PublicKey {
                PublicKey::new(self.0.verifying_key())
            }

            /// The signing key, for signing protocol objects.
            pub(crate) fn signing_key(&self) -> &SigningKey {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.public().fingerprint())
            }
        }
    };
}

key_common!(AccountKey);
key_common!(DeviceKey);

impl Signer for DeviceKey {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.sign(payload).to_bytes().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_only_the_public_fingerprint() {
        let key = DeviceKey::generate();
        let secret = hex::encode(*key.secret_bytes());
        let debug = format!("{key:?}");
        assert!(!debug.contains(&secret));
        assert!(debug.contains(&key.public().fingerprint()));
    }

    #[test]
    fn secret_round_trip() {
        let key = AccountKey::generate();
        let back = AccountKey::from_secret(&key.secret_bytes()[..]).unwrap();
        assert_eq!(key.public(), back.public());
        assert!(AccountKey::from_secret(&[1, 2, 3]).is_none());
    }
}
