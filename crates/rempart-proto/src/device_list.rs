//! The account-signed device list.
//!
//! An account is an Ed25519 *account key*. It signs the list of the account's
//! devices: each device's id and its Ed25519 signature key (which is also its
//! MLS credential key). A device belongs to an account only if the account key
//! signed a list naming it; the server stores and serves the list but cannot
//! produce one.
//!
//! The signature covers the exact bytes that travel ([`SignedDeviceList::list`]),
//! prefixed with a domain-separation context, so a verifier never has to
//! re-serialize anything to check it.

use std::collections::HashSet;
use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::ids::{DeviceId, UserName};
use crate::limits::{MAX_DEVICES_PER_ACCOUNT, MAX_MAIL_ADDRESSES_PER_ACCOUNT};
use crate::mail::{Fingerprint, MailAddress, MailBinding};

/// Domain-separation context for device-list signatures.
const DEVICE_LIST_CONTEXT: &[u8] = b"rempart/device-list/v1\0";

/// An Ed25519 public key (account key or device signature key), base64 in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = Byte)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Wraps a verifying key.
    pub fn new(key: VerifyingKey) -> Self {
        Self(key)
    }

    /// Parses 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DeviceListError> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| DeviceListError::BadKey)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| DeviceListError::BadKey)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// A human-comparable fingerprint: the first 16 bytes of SHA-256 of the
    /// key, in groups of four hex characters.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        let hex = hex::encode(&digest[..16]);
        hex.as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl TryFrom<String> for PublicKey {
    type Error = DeviceListError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let bytes = crate::b64::decode(&s).map_err(|_| DeviceListError::BadKey)?;
        Self::from_bytes(&bytes)
    }
}

impl std::str::FromStr for PublicKey {
    type Err = DeviceListError;
    /// Parses the base64 form (as in JSON).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl From<PublicKey> for String {
    fn from(key: PublicKey) -> Self {
        crate::b64::encode(key.as_bytes())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", crate::b64::encode(self.as_bytes()))
    }
}

/// One device of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceEntry {
    /// The device's id.
    pub id: DeviceId,
    /// The device's Ed25519 signature key; also its MLS credential key.
    pub signature_key: PublicKey,
}

/// The content an account key signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceList {
    /// The account this list belongs to.
    pub user: UserName,
    /// The account key that signs this list.
    pub account_key: PublicKey,
    /// Starts at 1 and increases with every change.
    pub version: u64,
    /// Unix time (seconds) at which the list was signed.
    pub timestamp: i64,
    /// The account's devices.
    pub devices: Vec<DeviceEntry>,
    /// The mail addresses the account holds, each bound to the fingerprint
    /// of its OpenPGP certificate (absent from the signed bytes when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mail: Vec<MailBinding>,
}

impl DeviceList {
    /// The entry for `device`, if listed.
    pub fn device(&self, device: &DeviceId) -> Option<&DeviceEntry> {
        self.devices.iter().find(|d| &d.id == device)
    }

    /// The fingerprint this list binds `address` to, if any.
    pub fn mail_fingerprint(&self, address: &MailAddress) -> Option<&Fingerprint> {
        self.mail
            .iter()
            .find(|b| &b.address == address)
            .map(|b| &b.fingerprint)
    }

    fn check_shape(&self) -> Result<(), DeviceListError> {
        if self.devices.is_empty() {
            return Err(DeviceListError::Empty);
        }
        if self.devices.len() > MAX_DEVICES_PER_ACCOUNT {
            return Err(DeviceListError::TooManyDevices(self.devices.len()));
        }
        let mut ids = HashSet::new();
        let mut keys = HashSet::new();
        for d in &self.devices {
            if !ids.insert(d.id) || !keys.insert(d.signature_key) {
                return Err(DeviceListError::DuplicateDevice(d.id));
            }
        }
        if self.mail.len() > MAX_MAIL_ADDRESSES_PER_ACCOUNT {
            return Err(DeviceListError::TooManyAddresses(self.mail.len()));
        }
        let mut addresses = HashSet::new();
        for binding in &self.mail {
            if !addresses.insert(&binding.address) {
                return Err(DeviceListError::DuplicateAddress(binding.address.clone()));
            }
        }
        if self.version == 0 {
            return Err(DeviceListError::ZeroVersion);
        }
        Ok(())
    }
}

/// A device list with the account key's signature over its exact bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignedDeviceList {
    /// The JSON encoding of a [`DeviceList`], base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub list: Vec<u8>,
    /// Ed25519 signature by the list's account key, base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub signature: Vec<u8>,
}

impl SignedDeviceList {
    /// Signs `list` with the account key. The list's `account_key` must be the
    /// key's public half.
    pub fn sign(list: &DeviceList, account_key: &SigningKey) -> Result<Self, DeviceListError> {
        if list.account_key.verifying_key() != &account_key.verifying_key() {
            return Err(DeviceListError::WrongSigner);
        }
        list.check_shape()?;
        let bytes = serde_json::to_vec(list).map_err(|_| DeviceListError::Malformed)?;
        let signature = account_key.sign(&signed_payload(&bytes));
        Ok(Self {
            list: bytes,
            signature: signature.to_bytes().to_vec(),
        })
    }

    /// Parses the list and checks its signature against the account key it
    /// names, and its shape (non-empty, no duplicates, within limits).
    ///
    /// This proves only that the holder of `account_key` signed the list; the
    /// caller must still decide whether that account key is the right one for
    /// the user (pinning, key transparency).
    pub fn verify(&self) -> Result<DeviceList, DeviceListError> {
        let list: DeviceList =
            serde_json::from_slice(&self.list).map_err(|_| DeviceListError::Malformed)?;
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| DeviceListError::BadSignature)?;
        list.account_key
            .verifying_key()
            .verify_strict(&signed_payload(&self.list), &signature)
            .map_err(|_| DeviceListError::BadSignature)?;
        list.check_shape()?;
        Ok(list)
    }

    /// [`Self::verify`], and check that the list belongs to `user`.
    pub fn verify_for(&self, user: &UserName) -> Result<DeviceList, DeviceListError> {
        let list = self.verify()?;
        if &list.user != user {
            return Err(DeviceListError::WrongUser {
                expected: user.clone(),
                found: list.user,
            });
        }
        Ok(list)
    }
}

/// A device list whose signature by the account key it names, shape and
/// user were checked: what that account key signed for that user, and no
/// more. Whether the account key is the right one for the user is for its
/// reader to decide (a client: pinning and key transparency; the server:
/// the account's current key). Made only by
/// [`AccountSignedDeviceList::verify`]; the server stores and serves these,
/// and the client builds its trusted lists on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSignedDeviceList {
    list: DeviceList,
    signed: SignedDeviceList,
}

impl AccountSignedDeviceList {
    /// Checks `signed` as a device list of `user` ([`SignedDeviceList::verify_for`]).
    pub fn verify(signed: SignedDeviceList, user: &UserName) -> Result<Self, DeviceListError> {
        let list = signed.verify_for(user)?;
        Ok(Self { list, signed })
    }

    /// The checked content.
    pub fn list(&self) -> &DeviceList {
        &self.list
    }

    /// The bytes and signature, as signed.
    pub fn signed(&self) -> &SignedDeviceList {
        &self.signed
    }
}

impl fmt::Debug for SignedDeviceList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedDeviceList")
            .field("list_bytes", &self.list.len())
            .finish_non_exhaustive()
    }
}

fn signed_payload(list: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(DEVICE_LIST_CONTEXT.len() + list.len());
    payload.extend_from_slice(DEVICE_LIST_CONTEXT);
    payload.extend_from_slice(list);
    payload
}

/// Why a device list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceListError {
    /// The list bytes are not a valid JSON device list.
    #[error("device list is malformed")]
    Malformed,
    /// The signature does not verify under the list's account key.
    #[error("device list signature is invalid")]
    BadSignature,
    /// A key is not a valid Ed25519 public key.
    #[error("not a valid Ed25519 public key")]
    BadKey,
    /// The signing key is not the account key named in the list.
    #[error("the signing key is not the list's account key")]
    WrongSigner,
    /// The list names no device.
    #[error("device list names no device")]
    Empty,
    /// The list names more devices than allowed.
    #[error("device list names {0} devices, more than the limit of {max}", max = MAX_DEVICES_PER_ACCOUNT)]
    TooManyDevices(usize),
    /// A device id or key appears twice.
    #[error("device {0} or its key appears twice in the device list")]
    DuplicateDevice(DeviceId),
    /// The list binds more mail addresses than allowed.
    #[error("device list binds {0} mail addresses, more than the limit of {max}", max = MAX_MAIL_ADDRESSES_PER_ACCOUNT)]
    TooManyAddresses(usize),
    /// A mail address is bound twice.
    #[error("mail address {0} is bound twice in the device list")]
    DuplicateAddress(MailAddress),
    /// Version 0 is not a valid version.
    #[error("device list version must start at 1")]
    ZeroVersion,
    /// The list belongs to another user.
    #[error("device list is for {found}, expected {expected}")]
    WrongUser {
        /// The user asked for.
        expected: UserName,
        /// The user the list names.
        found: UserName,
    },
}

#[cfg(test)]
mod tests {
    use rand::rngs::OsRng;

    use super::*;

    fn list_for(account: &SigningKey, devices: Vec<DeviceEntry>) -> DeviceList {
        DeviceList {
            user: "alice".parse().unwrap(),
            account_key: PublicKey::new(account.verifying_key()),
            version: 1,
            timestamp: 1_700_000_000,
            devices,
            mail: Vec::new(),
        }
    }

    fn entry() -> DeviceEntry {
        DeviceEntry {
            id: DeviceId::random(),
            signature_key: PublicKey::new(SigningKey::generate(&mut OsRng).verifying_key()),
        }
    }

    #[test]
    fn signed_list_verifies_and_round_trips_json() {
        let account = SigningKey::generate(&mut OsRng);
        let list = list_for(&account, vec![entry(), entry()]);
        let signed = SignedDeviceList::sign(&list, &account).unwrap();
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedDeviceList = serde_json::from_str(&json).unwrap();
        assert_eq!(back.verify_for(&list.user).unwrap(), list);
    }

    #[test]
    fn tampered_list_is_refused() {
        let account = SigningKey::generate(&mut OsRng);
        let list = list_for(&account, vec![entry()]);
        let mut signed = SignedDeviceList::sign(&list, &account).unwrap();
        // A ghost device added by someone without the account key.
        let mut ghost = list.clone();
        ghost.devices.push(entry());
        signed.list = serde_json::to_vec(&ghost).unwrap();
        assert_eq!(signed.verify(), Err(DeviceListError::BadSignature));
    }

    #[test]
    fn list_signed_by_another_key_is_refused() {
        let account = SigningKey::generate(&mut OsRng);
        let other = SigningKey::generate(&mut OsRng);
        let list = list_for(&account, vec![entry()]);
        assert_eq!(
            SignedDeviceList::sign(&list, &other),
            Err(DeviceListError::WrongSigner)
        );
        // Re-sign honestly with `other` but keep `account` as the named key.
        let bytes = serde_json::to_vec(&list).unwrap();
        let forged = SignedDeviceList {
            signature: other.sign(&signed_payload(&bytes)).to_bytes().to_vec(),
            list: bytes,
        };
        assert_eq!(forged.verify(), Err(DeviceListError::BadSignature));
    }

    #[test]
    fn wrong_user_and_bad_shapes_are_refused() {
        let account = SigningKey::generate(&mut OsRng);
        let list = list_for(&account, vec![entry()]);
        let signed = SignedDeviceList::sign(&list, &account).unwrap();
        assert!(matches!(
            signed.verify_for(&"bob".parse().unwrap()),
            Err(DeviceListError::WrongUser { .. })
        ));
        assert_eq!(
            SignedDeviceList::sign(&list_for(&account, vec![]), &account),
            Err(DeviceListError::Empty)
        );
        let e = entry();
        assert!(matches!(
            SignedDeviceList::sign(&list_for(&account, vec![e.clone(), e]), &account),
            Err(DeviceListError::DuplicateDevice(_))
        ));
    }
}
