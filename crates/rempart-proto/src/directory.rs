//! The key-transparency directory: signed epoch heads, witness cosignatures,
//! the value a user's device list is committed under, and the bodies of the
//! directory's HTTP endpoints.
//!
//! The server runs an [akd](https://github.com/facebook/akd) directory whose
//! label is a user name and whose value is [`directory_value`] of the user's
//! signed device list. Every published epoch has a head (server id, epoch,
//! root hash, time) that the server signs with its directory key
//! ([`SignedHead`]); witnesses that checked the append-only proof up to that
//! epoch countersign `(server id, epoch, root hash)` ([`Cosignature`]).
//! Proofs travel in akd's own protobuf encoding, so any akd verifier can
//! check them.
//!
//! Like device lists, heads are signed over the exact bytes that travel,
//! prefixed with a domain-separation context.
//!
//! ```
//! use ed25519_dalek::SigningKey;
//! use rempart_proto::PublicKey;
//! use rempart_proto::directory::{Cosignature, DirectoryHead, SignedHead};
//!
//! let server = SigningKey::from_bytes(&[7; 32]);
//! let head = DirectoryHead { server_id: "demo".into(), epoch: 3, root_hash: [1; 32], time: 0 };
//! let signed = SignedHead::sign(&head, &server);
//! let checked = signed.verify(&PublicKey::new(server.verifying_key())).unwrap();
//! assert_eq!(checked, head);
//!
//! let witness = SigningKey::from_bytes(&[9; 32]);
//! let cosignature = Cosignature::sign(&witness, &head.server_id, head.epoch, &head.root_hash);
//! assert!(cosignature.verify(&checked).is_ok());
//! ```

use ed25519_dalek::{Signature, Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::{IntoParams, ToSchema};

use crate::api::KnownVersion;
use crate::device_list::{PublicKey, SignedDeviceList};
use crate::ids::UserName;

/// Domain-separation context of head signatures.
const HEAD_CONTEXT: &[u8] = b"rempart/directory-head/v1\0";
/// Domain-separation context of witness cosignatures.
const COSIGNATURE_CONTEXT: &[u8] = b"rempart/cosignature/v1\0";
/// Domain-separation context of directory values.
const VALUE_CONTEXT: &[u8] = b"rempart/kt-value/v1\0";

/// `GET`: the directory's server id and public keys ([`DirectoryInfo`]).
pub const DIRECTORY_PATH: &str = "/v1/directory";
/// `GET`: the latest signed head with its cosignatures ([`HeadWithCosignatures`]).
pub const HEAD_PATH: &str = "/v1/directory/head";
/// `GET ?from=A&to=B`: the append-only proof between two epochs ([`AuditResponse`]).
pub const AUDIT_PATH: &str = "/v1/directory/audit";
/// `GET ?from=A&to=B`: a range of signed heads ([`heads_path`]).
pub const HEADS_PATH: &str = "/v1/directory/heads";
/// `POST`: a witness posts its cosignature of an epoch ([`PostCosignature`]).
pub const COSIGNATURES_PATH: &str = "/v1/directory/cosignatures";
/// `POST`: the lookup proofs of several users at one epoch
/// ([`LookupsRequest`] → [`LookupsResponse`]).
pub const LOOKUPS_PATH: &str = "/v1/directory/lookups";

/// `GET`: the signed head of `epoch` with its cosignatures.
pub fn head_path(epoch: u64) -> String {
    format!("/v1/directory/heads/{epoch}")
}

/// `GET ?from=A&to=B`: the signed heads of epochs A to B with their
/// cosignatures, oldest first (`Vec<`[`HeadWithCosignatures`]`>`, at most
/// [`MAX_HEADS_PER_REQUEST`](crate::limits::MAX_HEADS_PER_REQUEST)).
pub fn heads_path(from: u64, to: u64) -> String {
    format!("{HEADS_PATH}?from={from}&to={to}")
}

/// `GET`: the lookup proof for `user` at the latest epoch ([`LookupResponse`]).
pub fn lookup_path(user: &UserName) -> String {
    format!("/v1/directory/lookup/{user}")
}

/// `GET`: the key history proof for `user` ([`HistoryResponse`]).
pub fn history_path(user: &UserName) -> String {
    format!("/v1/directory/history/{user}")
}

/// `GET`: the append-only proof from epoch `from` to epoch `to`.
pub fn audit_path(from: u64, to: u64) -> String {
    format!("{AUDIT_PATH}?from={from}&to={to}")
}

/// What the server commits to at one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DirectoryHead {
    /// The server's id: hex of the first 16 bytes of SHA-256 of its
    /// directory key.
    pub server_id: String,
    /// The epoch.
    pub epoch: u64,
    /// akd's root hash at this epoch, base64.
    #[serde(with = "digest_b64")]
    #[schema(value_type = String, format = Byte)]
    pub root_hash: [u8; 32],
    /// Unix time (seconds) at which the server signed the head.
    pub time: i64,
}

/// A [`DirectoryHead`] signed by the server's directory key, over its exact
/// JSON bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignedHead {
    /// The JSON encoding of a [`DirectoryHead`], base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub head: Vec<u8>,
    /// Ed25519 signature by the directory key, base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub signature: Vec<u8>,
}

impl SignedHead {
    /// Signs `head` with the directory key.
    pub fn sign(head: &DirectoryHead, key: &SigningKey) -> Self {
        // A struct of strings and integers always serializes.
        let bytes = serde_json::to_vec(head).unwrap_or_default();
        let signature = key.sign(&with_context(HEAD_CONTEXT, &bytes));
        Self {
            head: bytes,
            signature: signature.to_bytes().to_vec(),
        }
    }

    /// Checks the signature against the server's directory key and parses
    /// the head.
    pub fn verify(&self, directory_key: &PublicKey) -> Result<DirectoryHead, DirectoryError> {
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| DirectoryError::BadHeadSignature)?;
        directory_key
            .verifying_key()
            .verify_strict(&with_context(HEAD_CONTEXT, &self.head), &signature)
            .map_err(|_| DirectoryError::BadHeadSignature)?;
        self.parse_unverified()
    }

    /// Parses the head without checking the signature (for a server reading
    /// back heads it signed itself).
    pub fn parse_unverified(&self) -> Result<DirectoryHead, DirectoryError> {
        serde_json::from_slice(&self.head).map_err(|_| DirectoryError::MalformedHead)
    }
}

/// A witness's signature over `(server id, epoch, root hash)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Cosignature {
    /// The witness's Ed25519 key.
    pub witness: PublicKey,
    /// Signature over [`cosignature_payload`], base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub signature: Vec<u8>,
}

impl Cosignature {
    /// Cosigns `(server_id, epoch, root_hash)` with the witness key.
    pub fn sign(key: &SigningKey, server_id: &str, epoch: u64, root_hash: &[u8; 32]) -> Self {
        let signature = key.sign(&cosignature_payload(server_id, epoch, root_hash));
        Self {
            witness: PublicKey::new(key.verifying_key()),
            signature: signature.to_bytes().to_vec(),
        }
    }

    /// Checks that this cosignature covers `head`'s server id, epoch and
    /// root hash.
    pub fn verify(&self, head: &DirectoryHead) -> Result<(), DirectoryError> {
        let signature =
            Signature::from_slice(&self.signature).map_err(|_| DirectoryError::BadCosignature)?;
        let payload = cosignature_payload(&head.server_id, head.epoch, &head.root_hash);
        self.witness
            .verifying_key()
            .verify_strict(&payload, &signature)
            .map_err(|_| DirectoryError::BadCosignature)
    }
}

/// The bytes a witness signs: the context, the server id (u64 big-endian
/// length, then its bytes), the epoch (u64 big-endian) and the root hash.
pub fn cosignature_payload(server_id: &str, epoch: u64, root_hash: &[u8; 32]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(COSIGNATURE_CONTEXT.len() + 48 + server_id.len());
    payload.extend_from_slice(COSIGNATURE_CONTEXT);
    push_prefixed(&mut payload, server_id.as_bytes());
    payload.extend_from_slice(&epoch.to_be_bytes());
    payload.extend_from_slice(root_hash);
    payload
}

/// The akd value a signed device list is committed under: SHA-256 over a
/// context, the account key the list names (32 zero bytes if the list does
/// not parse), then the length-prefixed list bytes and signature bytes.
pub fn directory_value(list: &SignedDeviceList) -> [u8; 32] {
    let account_key = serde_json::from_slice::<crate::DeviceList>(&list.list)
        .map(|parsed| *parsed.account_key.as_bytes())
        .unwrap_or([0; 32]);
    let mut hash = Sha256::new();
    hash.update(VALUE_CONTEXT);
    hash.update(account_key);
    hash.update((list.list.len() as u64).to_be_bytes());
    hash.update(&list.list);
    hash.update((list.signature.len() as u64).to_be_bytes());
    hash.update(&list.signature);
    hash.finalize().into()
}

/// `GET /v1/directory`: who the directory is and how to check it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DirectoryInfo {
    /// The server id heads and cosignatures name.
    pub server_id: String,
    /// The Ed25519 key that signs heads.
    pub directory_key: PublicKey,
    /// akd's VRF public key, which lookup and history proofs verify
    /// against, base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub vrf_public_key: Vec<u8>,
}

/// A signed head and the witness cosignatures the server holds for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeadWithCosignatures {
    /// The signed head.
    pub head: SignedHead,
    /// One cosignature per witness that posted one.
    pub cosignatures: Vec<Cosignature>,
}

/// `GET /v1/directory/lookup/{user}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LookupResponse {
    /// The head of the epoch the proof is for.
    pub head: HeadWithCosignatures,
    /// akd `LookupProof` in akd's protobuf encoding, base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub proof: Vec<u8>,
    /// The device list whose [`directory_value`] the proof proves.
    pub device_list: SignedDeviceList,
}

/// `POST /v1/directory/lookups`: the current device lists of several users,
/// each with its lookup proof, skipping those the caller already holds.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LookupsRequest {
    /// The users, each with the device-list version the caller already
    /// verified (0 for none). At most
    /// [`MAX_LOOKUPS_PER_REQUEST`](crate::limits::MAX_LOOKUPS_PER_REQUEST).
    pub users: Vec<KnownVersion>,
}

/// `POST /v1/directory/lookups` response. Every proof is for the one epoch
/// of `head`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LookupsResponse {
    /// The head of the epoch every proof is for (absent before the first
    /// epoch, when nothing can be proven).
    pub head: Option<HeadWithCosignatures>,
    /// The users whose published device list is newer than the version the
    /// caller holds, in the order asked.
    pub lookups: Vec<UserLookup>,
    /// Users with a device-list change not published yet: a newer list is
    /// proven after the next epoch.
    pub pending: Vec<UserName>,
    /// Users asked for that have no account.
    pub unknown: Vec<UserName>,
}

/// One user's published device list and its lookup proof.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserLookup {
    /// The user.
    pub user: UserName,
    /// akd `LookupProof` in akd's protobuf encoding, base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub proof: Vec<u8>,
    /// The device list whose [`directory_value`] the proof proves.
    pub device_list: SignedDeviceList,
}

/// `GET /v1/directory/history/{user}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryResponse {
    /// The head of the epoch the proof is for.
    pub head: HeadWithCosignatures,
    /// akd `HistoryProof` in akd's protobuf encoding, base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub proof: Vec<u8>,
    /// The device list of every version the proof covers, oldest first.
    pub device_lists: Vec<SignedDeviceList>,
}

/// `GET /v1/directory/audit?from=A&to=B`.
///
/// akd's audit verification also needs the root hash of every epoch in
/// between; fetch those heads with `GET /v1/directory/heads/{epoch}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditResponse {
    /// akd `AppendOnlyProof` in akd's protobuf encoding, base64.
    #[serde(with = "crate::b64")]
    #[schema(value_type = String, format = Byte)]
    pub proof: Vec<u8>,
    /// The head of epoch `from`.
    pub start: SignedHead,
    /// The head of epoch `to`.
    pub end: SignedHead,
}

/// Query of `GET /v1/directory/heads`: epochs `from` to `to`, both
/// included.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, IntoParams)]
pub struct HeadsQuery {
    /// The first epoch.
    pub from: u64,
    /// The last epoch.
    pub to: u64,
}

/// Query of `GET /v1/directory/audit`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, IntoParams)]
pub struct AuditQuery {
    /// The earlier epoch.
    pub from: u64,
    /// The later epoch.
    pub to: u64,
}

/// `POST /v1/directory/cosignatures`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PostCosignature {
    /// The epoch cosigned.
    pub epoch: u64,
    /// The witness's cosignature of that epoch's head.
    pub cosignature: Cosignature,
}

/// Why a head or cosignature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The head's signature does not verify under the directory key.
    #[error("the directory head signature does not verify under the directory key")]
    BadHeadSignature,
    /// The signed head bytes are not a JSON directory head.
    #[error("the signed directory head is not a valid head")]
    MalformedHead,
    /// The cosignature does not verify for this server id, epoch and root.
    #[error("the cosignature does not cover this server id, epoch and root hash")]
    BadCosignature,
}

fn with_context(context: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(context.len() + bytes.len());
    payload.extend_from_slice(context);
    payload.extend_from_slice(bytes);
    payload
}

fn push_prefixed(payload: &mut Vec<u8>, bytes: &[u8]) {
    payload.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    payload.extend_from_slice(bytes);
}

/// Serde for a 32-byte digest as base64.
mod digest_b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        bytes: &[u8; 32],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::b64::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = crate::b64::decode(&text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("expected a 32-byte digest"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand::rngs::OsRng;

    use super::*;
    use crate::device_list::{DeviceEntry, DeviceList};
    use crate::ids::DeviceId;

    fn head() -> DirectoryHead {
        DirectoryHead {
            server_id: "0011223344556677".into(),
            epoch: 42,
            root_hash: [5; 32],
            time: 1_700_000_000,
        }
    }

    #[test]
    fn signed_head_round_trips_and_verifies() {
        let key = SigningKey::generate(&mut OsRng);
        let signed = SignedHead::sign(&head(), &key);
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedHead = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.verify(&PublicKey::new(key.verifying_key())).unwrap(),
            head()
        );
    }

    #[test]
    fn tampered_or_foreign_heads_are_refused() {
        let key = SigningKey::generate(&mut OsRng);
        let public = PublicKey::new(key.verifying_key());
        let signed = SignedHead::sign(&head(), &key);
        let mut other = head();
        other.root_hash = [6; 32];
        let tampered = SignedHead {
            head: serde_json::to_vec(&other).unwrap(),
            signature: signed.signature.clone(),
        };
        assert_eq!(
            tampered.verify(&public),
            Err(DirectoryError::BadHeadSignature)
        );
        let stranger = PublicKey::new(SigningKey::generate(&mut OsRng).verifying_key());
        assert_eq!(
            signed.verify(&stranger),
            Err(DirectoryError::BadHeadSignature)
        );
        // A device-list signature over the same bytes is not a head signature.
        let without_context = SignedHead {
            head: signed.head.clone(),
            signature: key.sign(&signed.head).to_bytes().to_vec(),
        };
        assert_eq!(
            without_context.verify(&public),
            Err(DirectoryError::BadHeadSignature)
        );
    }

    #[test]
    fn cosignature_is_bound_to_server_epoch_and_root() {
        let witness = SigningKey::generate(&mut OsRng);
        let head = head();
        let cosignature = Cosignature::sign(&witness, &head.server_id, head.epoch, &head.root_hash);
        assert_eq!(cosignature.verify(&head), Ok(()));
        let json = serde_json::to_string(&cosignature).unwrap();
        let back: Cosignature = serde_json::from_str(&json).unwrap();
        assert_eq!(back.verify(&head), Ok(()));

        let mut other_server = head.clone();
        other_server.server_id = "ffeeddccbbaa9988".into();
        let mut other_epoch = head.clone();
        other_epoch.epoch += 1;
        let mut other_root = head.clone();
        other_root.root_hash[0] ^= 1;
        for other in [other_server, other_epoch, other_root] {
            assert_eq!(
                cosignature.verify(&other),
                Err(DirectoryError::BadCosignature)
            );
        }
        // The time is not part of what a witness signs.
        let mut later = head.clone();
        later.time += 10;
        assert_eq!(cosignature.verify(&later), Ok(()));
    }

    #[test]
    fn directory_value_commits_to_key_list_and_signature() {
        let account = SigningKey::generate(&mut OsRng);
        let list = DeviceList {
            user: "alice".parse().unwrap(),
            account_key: PublicKey::new(account.verifying_key()),
            version: 1,
            timestamp: 1_700_000_000,
            devices: vec![DeviceEntry {
                id: DeviceId::random(),
                signature_key: PublicKey::new(SigningKey::generate(&mut OsRng).verifying_key()),
            }],
            mail: Vec::new(),
        };
        let signed = SignedDeviceList::sign(&list, &account).unwrap();
        let value = directory_value(&signed);
        assert_eq!(value, directory_value(&signed.clone()));
        let mut other_signature = signed.clone();
        other_signature.signature[0] ^= 1;
        assert_ne!(directory_value(&other_signature), value);
        // Moving bytes between the list and the signature changes the value.
        let mut shifted = signed.clone();
        let byte = shifted.list.pop().unwrap();
        shifted.signature.insert(0, byte);
        assert_ne!(directory_value(&shifted), value);
    }
}
