//! Checking a directory head before anything is proven against it.
//!
//! A [`CheckedHead`] is a head that passed every check a client makes:
//! signed by the directory key pinned at set-up, for the pinned server id;
//! the same as the head accepted before for its epoch, if any (else the
//! directory equivocated); not older than the newest head accepted (else it
//! rolled back); and cosigned by the quorum of the witnesses the client
//! requires. Only [`CheckedHead::check`] makes one, and device lists are
//! proven only against one ([`crate::prove_device_list`]).
//!
//! A head that passes every check but the quorum is an [`UncosignedHead`]:
//! a client may accept it for a while as the directory's current state, but
//! nothing can be proven against it.

use rempart_proto::PublicKey;
use rempart_proto::directory::{DirectoryHead, HeadWithCosignatures, SignedHead};

/// What a head is checked against: the pinned directory, what the checker
/// accepted before, and the witnesses it requires.
#[derive(Debug, Clone, Copy)]
pub struct HeadContext<'a> {
    /// The directory key pinned at set-up.
    pub directory_key: &'a PublicKey,
    /// The server id pinned with it.
    pub server_id: &'a str,
    /// The newest epoch whose head was accepted before (0 for none).
    pub newest_epoch: u64,
    /// The head accepted before for the epoch of the head checked, if any
    /// (its epoch comes from [`claimed_epoch`]).
    pub accepted: Option<&'a SignedHead>,
    /// The witnesses whose cosignatures count.
    pub witnesses: &'a [PublicKey],
    /// How many of them must have cosigned (0: none).
    pub quorum: usize,
}

/// Why a head was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HeadError {
    /// Not signed by the pinned directory key, or for another server.
    #[error("the head is not signed by the pinned directory key for the pinned server")]
    BadSignature,
    /// Another head was accepted for the same epoch: the directory shows
    /// different views. Keep both as evidence.
    #[error("the directory signed two different heads for epoch {epoch}")]
    Equivocation {
        /// The epoch.
        epoch: u64,
    },
    /// Older than the newest head accepted.
    #[error("the directory went back from epoch {newest} to epoch {found}")]
    Rollback {
        /// The newest epoch accepted.
        newest: u64,
        /// The epoch of the head shown.
        found: u64,
    },
    /// Every check passed but the witness quorum.
    #[error(
        "epoch {} is cosigned by {} of the {} witnesses required",
        .0.epoch(), .0.cosigned(), .0.quorum()
    )]
    QuorumMissing(Box<UncosignedHead>),
    /// The head accepted before for this epoch no longer verifies under the
    /// pinned key: the checker's own record is damaged.
    #[error("the head accepted before for epoch {epoch} does not verify")]
    AcceptedCorrupt {
        /// The epoch.
        epoch: u64,
    },
}

/// A head that passed every check, witness quorum included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedHead {
    head: DirectoryHead,
    signed: SignedHead,
}

/// A head that passed every check but the witness quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncosignedHead {
    head: DirectoryHead,
    signed: SignedHead,
    cosigned: usize,
    quorum: usize,
}

/// The epoch `signed` claims, before any check: to look up the head
/// accepted before for it ([`HeadContext::accepted`]).
pub fn claimed_epoch(signed: &SignedHead) -> Option<u64> {
    signed.parse_unverified().ok().map(|head| head.epoch)
}

impl CheckedHead {
    /// Checks `shown` against `context`: signature and server id,
    /// equivocation, rollback, then the witness quorum.
    pub fn check(
        shown: &HeadWithCosignatures,
        context: &HeadContext<'_>,
    ) -> Result<Self, HeadError> {
        let head = shown
            .head
            .verify(context.directory_key)
            .ok()
            .filter(|head| head.server_id == context.server_id)
            .ok_or(HeadError::BadSignature)?;
        if let Some(accepted) = context.accepted {
            let before = accepted
                .verify(context.directory_key)
                .map_err(|_| HeadError::AcceptedCorrupt { epoch: head.epoch })?;
            if before.epoch == head.epoch && before.root_hash != head.root_hash {
                return Err(HeadError::Equivocation { epoch: head.epoch });
            }
        }
        if head.epoch < context.newest_epoch {
            return Err(HeadError::Rollback {
                newest: context.newest_epoch,
                found: head.epoch,
            });
        }
        let cosigned = context
            .witnesses
            .iter()
            .filter(|witness| {
                shown
                    .cosignatures
                    .iter()
                    .any(|c| &c.witness == *witness && c.verify(&head).is_ok())
            })
            .count();
        if cosigned < context.quorum {
            return Err(HeadError::QuorumMissing(Box::new(UncosignedHead {
                head,
                signed: shown.head.clone(),
                cosigned,
                quorum: context.quorum,
            })));
        }
        Ok(Self {
            head,
            signed: shown.head.clone(),
        })
    }

    /// The head.
    pub fn head(&self) -> &DirectoryHead {
        &self.head
    }

    /// Its epoch.
    pub fn epoch(&self) -> u64 {
        self.head.epoch
    }

    /// The head as signed.
    pub fn signed(&self) -> &SignedHead {
        &self.signed
    }
}

impl UncosignedHead {
    /// The head.
    pub fn head(&self) -> &DirectoryHead {
        &self.head
    }

    /// Its epoch.
    pub fn epoch(&self) -> u64 {
        self.head.epoch
    }

    /// The head as signed.
    pub fn signed(&self) -> &SignedHead {
        &self.signed
    }

    /// How many of the required witnesses cosigned it.
    pub fn cosigned(&self) -> usize {
        self.cosigned
    }

    /// How many must.
    pub fn quorum(&self) -> usize {
        self.quorum
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use ed25519_dalek::SigningKey;
    use rempart_proto::directory::Cosignature;

    use super::*;

    const SERVER: &str = "server";

    fn shown(
        key: &SigningKey,
        epoch: u64,
        root: u8,
        cosigners: &[&SigningKey],
    ) -> HeadWithCosignatures {
        let head = DirectoryHead {
            server_id: SERVER.to_owned(),
            epoch,
            root_hash: [root; 32],
            time: 0,
        };
        HeadWithCosignatures {
            head: SignedHead::sign(&head, key),
            cosignatures: cosigners
                .iter()
                .map(|w| Cosignature::sign(w, SERVER, epoch, &head.root_hash))
                .collect(),
        }
    }

    #[test]
    fn each_check_refuses_with_its_own_error() {
        let directory = SigningKey::from_bytes(&[1; 32]);
        let directory_key = PublicKey::new(directory.verifying_key());
        let witness = SigningKey::from_bytes(&[2; 32]);
        let witnesses = [PublicKey::new(witness.verifying_key())];
        let accepted = shown(&directory, 5, 7, &[]).head;
        let context = HeadContext {
            directory_key: &directory_key,
            server_id: SERVER,
            newest_epoch: 5,
            accepted: None,
            witnesses: &witnesses,
            quorum: 1,
        };

        let good = shown(&directory, 6, 8, &[&witness]);
        let checked = CheckedHead::check(&good, &context).unwrap();
        assert_eq!((checked.epoch(), checked.signed()), (6, &good.head));

        let forged = shown(&SigningKey::from_bytes(&[9; 32]), 6, 8, &[&witness]);
        assert!(matches!(
            CheckedHead::check(&forged, &context),
            Err(HeadError::BadSignature)
        ));

        let other_epoch_five = shown(&directory, 5, 9, &[&witness]);
        let with_accepted = HeadContext {
            accepted: Some(&accepted),
            ..context
        };
        assert!(matches!(
            CheckedHead::check(&other_epoch_five, &with_accepted),
            Err(HeadError::Equivocation { epoch: 5 })
        ));
        let same_epoch_five = shown(&directory, 5, 7, &[&witness]);
        CheckedHead::check(&same_epoch_five, &with_accepted).unwrap();

        let older = shown(&directory, 4, 8, &[&witness]);
        assert!(matches!(
            CheckedHead::check(&older, &context),
            Err(HeadError::Rollback {
                newest: 5,
                found: 4
            })
        ));

        // A cosignature by a key that is not required does not count.
        let uncosigned = shown(&directory, 6, 8, &[&SigningKey::from_bytes(&[3; 32])]);
        match CheckedHead::check(&uncosigned, &context) {
            Err(HeadError::QuorumMissing(head)) => {
                assert_eq!((head.epoch(), head.cosigned(), head.quorum()), (6, 0, 1));
            }
            other => panic!("expected the missing quorum, got {other:?}"),
        }
        // With no witness required, no quorum is missing.
        let unwitnessed = HeadContext {
            witnesses: &[],
            quorum: 0,
            ..context
        };
        CheckedHead::check(&uncosigned, &unwitnessed).unwrap();
        assert_eq!(claimed_epoch(&uncosigned.head), Some(6));
    }
}
