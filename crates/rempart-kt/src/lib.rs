//! Verification of Rempart's key-transparency directory.
//!
//! The server publishes every user's device list in an [akd] directory and
//! signs the head of each epoch (see [`rempart_proto::directory`]). This
//! crate checks what it serves, with akd's own verifiers, for the two kinds
//! of party that must not trust it:
//!
//! - clients, which accept a device list only with a lookup proof
//!   ([`verify_lookup`]) and monitor their own account's key history
//!   ([`verify_history`]);
//! - auditors (witnesses, `rempart audit`), which check that each epoch only
//!   added to the one before ([`verify_audit`]).
//!
//! A client proves a device list only against a [`CheckedHead`] (signature,
//! equivocation, rollback and witness quorum checked, [`head`]), and gets a
//! [`ProvenDeviceList`] ([`prove_device_list`]), which only that function
//! makes. The lower-level functions take a head whose signature the caller
//! already checked against the pinned directory key ([`SignedHead::verify`]).
//! Proofs come in akd's protobuf encoding, as the server sends them. Nothing
//! here does I/O.
//!
//! [`SignedHead::verify`]: rempart_proto::directory::SignedHead::verify

pub mod head;

pub use head::{CheckedHead, HeadContext, HeadError, UncosignedHead, claimed_epoch};

use akd::proto::specs::types as proto;
use akd::{AkdLabel, HistoryParams, HistoryVerificationParams, WhatsAppV1Configuration};
use protobuf::Message as _;
use rempart_proto::directory::{DirectoryHead, directory_value};
use rempart_proto::mail::{MailAddress, mail_label};
use rempart_proto::{SignedDeviceList, UserName};

/// The akd configuration the server runs.
type Config = WhatsAppV1Configuration;

/// Why a proof was refused. Each one means the server sent something that
/// does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The proof bytes are not akd's protobuf encoding of that proof.
    #[error("the {0} proof is not a valid akd protobuf message")]
    Malformed(&'static str),
    /// akd's verifier refused the proof.
    #[error("the {kind} proof does not verify: {reason}")]
    Refused {
        /// Which proof.
        kind: &'static str,
        /// akd's reason.
        reason: String,
    },
    /// The proof verifies, but for a value other than the device list
    /// served beside it.
    #[error("the device list served does not match the value the directory commits to")]
    ValueMismatch,
    /// A key history proof covers other versions than the device lists
    /// served beside it.
    #[error("the key history proves {proved} versions but {served} device lists were served")]
    HistoryMismatch {
        /// Versions the proof covers.
        proved: usize,
        /// Device lists served.
        served: usize,
    },
    /// An audit was given heads that are not one per epoch, in order, from
    /// one server.
    #[error("the heads of an audit must be consecutive epochs of one server")]
    HeadsNotConsecutive,
}

/// What a lookup proof established about a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvenVersion {
    /// akd's version number of the user's value (1 for the first).
    pub version: u64,
    /// The epoch at which this version was published.
    pub epoch: u64,
}

/// A device list the directory proves to be its user's current one at a
/// checked head. Made only by [`prove_device_list`]. Its account signature
/// is not checked here: that, and whether the account key is the right
/// one, are the client's to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenDeviceList {
    user: UserName,
    signed: SignedDeviceList,
    epoch: u64,
}

impl ProvenDeviceList {
    /// The user.
    pub fn user(&self) -> &UserName {
        &self.user
    }

    /// The list, as signed and published.
    pub fn signed(&self) -> &SignedDeviceList {
        &self.signed
    }

    /// The epoch of the checked head it was proven at.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The user, the list and the epoch.
    pub fn into_parts(self) -> (UserName, SignedDeviceList, u64) {
        (self.user, self.signed, self.epoch)
    }
}

/// Proves `list` as `user`'s current device list at the checked `head`,
/// with `proof` under the directory's VRF key ([`verify_lookup`]).
pub fn prove_device_list(
    vrf_public_key: &[u8],
    head: &CheckedHead,
    user: UserName,
    proof: &[u8],
    list: SignedDeviceList,
) -> Result<ProvenDeviceList, ProofError> {
    verify_lookup(vrf_public_key, head.head(), &user, proof, &list)?;
    Ok(ProvenDeviceList {
        user,
        signed: list,
        epoch: head.epoch(),
    })
}

/// An address the directory proves, at a checked head, to be published
/// with the same device list as its user's own label: the user's current
/// list, which is to bind the address. Made only by [`prove_mail_binding`].
/// As with [`ProvenDeviceList`], the list's signature and binding are the
/// client's to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenMailBinding {
    address: MailAddress,
    list: ProvenDeviceList,
}

impl ProvenMailBinding {
    /// The address.
    pub fn address(&self) -> &MailAddress {
        &self.address
    }

    /// The holder's device list, proven as the holder's current one.
    pub fn device_list(&self) -> &ProvenDeviceList {
        &self.list
    }

    /// The address and the holder's proven list.
    pub fn into_parts(self) -> (MailAddress, ProvenDeviceList) {
        (self.address, self.list)
    }
}

/// Proves, at the checked `head`, that `address` is published with `list`
/// (`address_proof`) and that `list` is `user`'s current device list
/// (`user_proof`).
pub fn prove_mail_binding(
    vrf_public_key: &[u8],
    head: &CheckedHead,
    address: MailAddress,
    user: UserName,
    address_proof: &[u8],
    user_proof: &[u8],
    list: SignedDeviceList,
) -> Result<ProvenMailBinding, ProofError> {
    verify_label(
        vrf_public_key,
        head.head(),
        &mail_label(&address),
        address_proof,
        &list,
    )?;
    let list = prove_device_list(vrf_public_key, head, user, user_proof, list)?;
    Ok(ProvenMailBinding { address, list })
}

/// Checks that `proof` proves `list` is `user`'s current device list at
/// `head`, under the directory's VRF key.
pub fn verify_lookup(
    vrf_public_key: &[u8],
    head: &DirectoryHead,
    user: &UserName,
    proof: &[u8],
    list: &SignedDeviceList,
) -> Result<ProvenVersion, ProofError> {
    verify_label(vrf_public_key, head, user.as_str(), proof, list)
}

/// Checks that `proof` proves `list` is the current value of `label`.
fn verify_label(
    vrf_public_key: &[u8],
    head: &DirectoryHead,
    label: &str,
    proof: &[u8],
    list: &SignedDeviceList,
) -> Result<ProvenVersion, ProofError> {
    const KIND: &str = "lookup";
    let proof = proto::LookupProof::parse_from_bytes(proof)
        .ok()
        .and_then(|p| akd::LookupProof::try_from(&p).ok())
        .ok_or(ProofError::Malformed(KIND))?;
    let result = akd::client::lookup_verify::<Config>(
        vrf_public_key,
        head.root_hash,
        head.epoch,
        AkdLabel::from(label),
        proof,
    )
    .map_err(|e| refused(KIND, e))?;
    if result.value.0 != directory_value(list) {
        return Err(ProofError::ValueMismatch);
    }
    Ok(ProvenVersion {
        version: result.version,
        epoch: result.epoch,
    })
}

/// Checks that `proof` proves the complete key history of `user` at `head`
/// and that `lists` (oldest first) are exactly the device lists it commits
/// to. Returns each version with its list, oldest first.
pub fn verify_history<'a>(
    vrf_public_key: &[u8],
    head: &DirectoryHead,
    user: &UserName,
    proof: &[u8],
    lists: &'a [SignedDeviceList],
) -> Result<Vec<(ProvenVersion, &'a SignedDeviceList)>, ProofError> {
    verify_label_history(vrf_public_key, head, user.as_str(), proof, lists)
}

/// [`verify_history`] for the label of the mail address `address`: every
/// device list it was ever published with.
pub fn verify_mail_history<'a>(
    vrf_public_key: &[u8],
    head: &DirectoryHead,
    address: &MailAddress,
    proof: &[u8],
    lists: &'a [SignedDeviceList],
) -> Result<Vec<(ProvenVersion, &'a SignedDeviceList)>, ProofError> {
    verify_label_history(vrf_public_key, head, &mail_label(address), proof, lists)
}

fn verify_label_history<'a>(
    vrf_public_key: &[u8],
    head: &DirectoryHead,
    label: &str,
    proof: &[u8],
    lists: &'a [SignedDeviceList],
) -> Result<Vec<(ProvenVersion, &'a SignedDeviceList)>, ProofError> {
    const KIND: &str = "key history";
    let proof = proto::HistoryProof::parse_from_bytes(proof)
        .ok()
        .and_then(|p| akd::HistoryProof::try_from(&p).ok())
        .ok_or(ProofError::Malformed(KIND))?;
    let mut results = akd::client::key_history_verify::<Config>(
        vrf_public_key,
        head.root_hash,
        head.epoch,
        AkdLabel::from(label),
        proof,
        HistoryVerificationParams::Default {
            history_params: HistoryParams::Complete,
        },
    )
    .map_err(|e| refused(KIND, e))?;
    if results.len() != lists.len() {
        return Err(ProofError::HistoryMismatch {
            proved: results.len(),
            served: lists.len(),
        });
    }
    results.sort_by_key(|r| r.version);
    results
        .iter()
        .zip(lists)
        .map(|(result, list)| {
            if result.value.0 == directory_value(list) {
                Ok((
                    ProvenVersion {
                        version: result.version,
                        epoch: result.epoch,
                    },
                    list,
                ))
            } else {
                Err(ProofError::ValueMismatch)
            }
        })
        .collect()
}

/// Checks that `proof` proves the directory only grew from the first of
/// `heads` to the last: `heads` holds the (signature-checked) head of every
/// epoch from the start of the audit to its end, in order.
pub async fn verify_audit(heads: &[DirectoryHead], proof: &[u8]) -> Result<(), ProofError> {
    const KIND: &str = "append-only";
    let consecutive = heads.len() >= 2
        && heads.windows(2).all(|pair| {
            pair[0].server_id == pair[1].server_id
                && pair[0].epoch.checked_add(1) == Some(pair[1].epoch)
        });
    if !consecutive {
        return Err(ProofError::HeadsNotConsecutive);
    }
    let proof = proto::AppendOnlyProof::parse_from_bytes(proof)
        .ok()
        .and_then(|p| akd::AppendOnlyProof::try_from(&p).ok())
        .ok_or(ProofError::Malformed(KIND))?;
    // akd checks each step against `epochs[i] + 1`; the steps must be the
    // epochs of the heads, or a proof for other epochs could pass.
    let epochs_match = proof.epochs.len() + 1 == heads.len()
        && proof
            .epochs
            .iter()
            .zip(heads)
            .all(|(epoch, head)| *epoch == head.epoch);
    if !epochs_match {
        return Err(ProofError::Refused {
            kind: KIND,
            reason: "the proof covers other epochs than the heads".into(),
        });
    }
    let hashes = heads.iter().map(|h| h.root_hash).collect();
    akd::auditor::audit_verify::<Config>(hashes, proof)
        .await
        .map_err(|e| refused(KIND, e))
}

fn refused(kind: &'static str, reason: impl std::fmt::Display) -> ProofError {
    ProofError::Refused {
        kind,
        reason: reason.to_string(),
    }
}
