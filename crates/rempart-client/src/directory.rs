//! Checks of the key-transparency directory.
//!
//! At account creation the client pins the directory's signing key, server
//! id and VRF key. Every head it is then shown (the latest at each sync, and
//! the one every lookup proof comes with) is refused, with an alert, unless:
//! it is signed by the pinned key for the pinned server id
//! (`directory_head_signature_invalid`); its epoch is not older than the
//! newest head already accepted (`directory_rollback`); no other head was
//! accepted for the same epoch (`directory_equivocation`, both heads kept as
//! evidence); and enough of the configured witnesses cosigned it
//! (`witness_quorum_missing`).
//!
//! Witnesses cosign an epoch shortly after it is published (they poll
//! about every second). New key material (a contact seen for the first
//! time, a device-list version not yet trusted, a changed account key, a
//! new device of one's own) is used only under a head that carries the
//! quorum: the client waits for the cosignatures, up to
//! [`DEFAULT_WITNESS_WAIT`] (a setting), and otherwise refuses the material
//! with the alert, having encrypted nothing to it. A head that brings
//! nothing new to encrypt to is accepted without its quorum for a grace
//! period (default [`DEFAULT_WITNESS_GRACE`], counted on this device's
//! clock from when the head was first seen), and checked again at each
//! sync until the quorum is there; past the grace, it is the alert.
//!
//! On each sync the device also verifies its own account's complete key
//! history: every version the directory ever published for the account must
//! be signed by the account key, which only this account's devices hold.
//! Anything else is `unknown_own_device`. [`Client::audit`] checks the
//! append-only proofs of every epoch since the last audit.

use std::time::{Duration, Instant};

use rempart_kt::{CheckedHead, HeadContext, HeadError, UncosignedHead, claimed_epoch};
use rempart_proto::PublicKey;
use rempart_proto::directory::{DirectoryHead, HeadWithCosignatures, SignedHead};
use rempart_proto::limits::MAX_HEADS_PER_REQUEST;
use serde::Serialize;

use crate::Client;
use crate::api::unix_now;
use crate::error::ClientError;
use crate::event::{Alert, AlertCode, Event};

/// How long a head may go without its witness quorum before it is an
/// alert.
pub const DEFAULT_WITNESS_GRACE: Duration = Duration::from_secs(60);

/// How long the client waits for a head's witness quorum before it refuses
/// the new key material that head brings.
pub const DEFAULT_WITNESS_WAIT: Duration = Duration::from_secs(10);

/// How often a head is fetched again while waiting for its cosignatures.
const QUORUM_POLL: Duration = Duration::from_millis(200);

/// A head accepted as the directory's current state.
#[derive(Debug, Clone)]
pub(crate) enum AcceptedHead {
    /// Every check passed, witness quorum included: proofs may be checked
    /// against it.
    Checked(CheckedHead),
    /// Every check but the quorum, within its grace period: the current
    /// state, against which nothing new is proven.
    Uncosigned(UncosignedHead),
}

impl AcceptedHead {
    /// The head.
    pub(crate) fn head(&self) -> &DirectoryHead {
        match self {
            Self::Checked(head) => head.head(),
            Self::Uncosigned(head) => head.head(),
        }
    }

    /// Its epoch.
    pub(crate) fn epoch(&self) -> u64 {
        match self {
            Self::Checked(head) => head.epoch(),
            Self::Uncosigned(head) => head.epoch(),
        }
    }
}

/// The `witness_quorum_missing` alert for `head`.
fn uncosigned_alert(head: &UncosignedHead) -> Alert {
    directory_alert(
        AlertCode::WitnessQuorumMissing,
        format!(
            "directory epoch {} is cosigned by {} of the {} witnesses required: the server may be showing a directory its witnesses never saw",
            head.epoch(),
            head.cosigned(),
            head.quorum()
        ),
    )
}

/// The directory this device pinned at set-up.
#[derive(Debug, Clone)]
pub(crate) struct PinnedDirectory {
    pub server_id: String,
    pub directory_key: PublicKey,
    pub vrf_public_key: Vec<u8>,
}

/// What [`Client::audit`] checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AuditReport {
    /// The epoch the audit started from (the end of the previous audit).
    pub from_epoch: u64,
    /// Every epoch up to this one is proven to extend the one before.
    pub verified_to_epoch: u64,
    /// Heads whose signature was checked in this audit.
    pub heads_checked: u64,
    /// akd append-only proofs verified in this audit.
    pub proofs_checked: u64,
}

impl Client {
    /// Sets the witnesses whose cosignatures every head needs, and how many
    /// of them (`None`: all).
    pub fn set_witnesses(
        &self,
        witnesses: &[PublicKey],
        quorum: Option<usize>,
    ) -> Result<(), ClientError> {
        let quorum = quorum.unwrap_or(witnesses.len()).min(witnesses.len());
        self.store.atomic(|| {
            self.store.set_witnesses(witnesses)?;
            self.store
                .set_setting(SETTING_QUORUM, i64::try_from(quorum).unwrap_or(i64::MAX))
        })
    }

    /// The configured witnesses and quorum.
    pub fn witnesses(&self) -> Result<(Vec<PublicKey>, usize), ClientError> {
        let witnesses = self.store.witnesses()?;
        let quorum = self
            .store
            .setting(SETTING_QUORUM)?
            .and_then(|q| usize::try_from(q).ok())
            .unwrap_or(witnesses.len());
        Ok((witnesses, quorum))
    }

    /// Sets how long a head may lack its witness quorum before it is an
    /// alert (zero: at once).
    pub fn set_witness_grace(&self, grace: Duration) -> Result<(), ClientError> {
        let secs = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
        self.store.set_setting(SETTING_GRACE, secs)
    }

    /// Sets how long the client waits for a head's witness quorum before it
    /// refuses the new key material that head brings (zero: no wait).
    pub fn set_witness_wait(&self, wait: Duration) -> Result<(), ClientError> {
        let secs = i64::try_from(wait.as_secs()).unwrap_or(i64::MAX);
        self.store.set_setting(SETTING_WAIT, secs)
    }

    /// How long the client waits for a head's witness quorum.
    pub fn witness_wait(&self) -> Result<Duration, ClientError> {
        Ok(self
            .store
            .setting(SETTING_WAIT)?
            .and_then(|secs| u64::try_from(secs).ok())
            .map_or(DEFAULT_WITNESS_WAIT, Duration::from_secs))
    }

    fn witness_grace_secs(&self) -> Result<i64, ClientError> {
        Ok(self
            .store
            .setting(SETTING_GRACE)?
            .unwrap_or(DEFAULT_WITNESS_GRACE.as_secs() as i64))
    }

    /// Every pair of conflicting signed heads this device has seen: proof
    /// that the directory showed different views, to hand to anyone.
    pub fn directory_evidence(&self) -> Result<Vec<(SignedHead, SignedHead)>, ClientError> {
        self.store.evidence()
    }

    /// Verifies that the directory only grew since the last audit: checks
    /// the signature of every head up to the latest, and the akd
    /// append-only proof over them. A failure is an alert
    /// (`kt_proof_invalid`, or the head alerts), returned as the error.
    pub async fn audit(&self) -> Result<AuditReport, ClientError> {
        let pinned = self.pinned_directory()?;
        let start = self
            .store
            .setting(SETTING_AUDITED)?
            .and_then(|e| u64::try_from(e).ok())
            .unwrap_or(1);
        let mut report = AuditReport {
            from_epoch: start,
            verified_to_epoch: 0,
            heads_checked: 0,
            proofs_checked: 0,
        };
        let Some(latest) = self.api.latest_head().await? else {
            return Ok(report); // Nothing published yet.
        };
        let latest = self.accept_head(&pinned, &latest)?;
        report.heads_checked += 1;
        report.verified_to_epoch = start.min(latest.epoch());
        let mut from = start;
        while from < latest.epoch() {
            let to = latest
                .epoch()
                .min(from.saturating_add(MAX_HEADS_PER_REQUEST - 1));
            let served = self.api.heads(from, to).await?;
            let expected = to - from + 1;
            if served.len() as u64 != expected {
                return Err(kt_alert(format!(
                    "the server served {} heads for epochs {from} to {to}, not {expected}",
                    served.len()
                ))
                .into());
            }
            let mut heads = Vec::with_capacity(served.len());
            for (epoch, head) in (from..=to).zip(&served) {
                let checked = self.check_past_head(&pinned, &head.head)?;
                if checked.epoch != epoch {
                    return Err(kt_alert(format!(
                        "the server served the head of epoch {} as epoch {epoch}",
                        checked.epoch
                    ))
                    .into());
                }
                heads.push(checked);
            }
            report.heads_checked += expected;
            let proof = self.api.audit(from, to).await?;
            rempart_kt::verify_audit(&heads, &proof.proof)
                .await
                .map_err(|e| {
                    kt_alert(format!(
                        "the directory's history from epoch {from} to {to} is not append-only: {e}"
                    ))
                })?;
            report.proofs_checked += 1;
            report.verified_to_epoch = to;
            self.store.atomic(|| {
                for (head, signed) in heads.iter().zip(&served) {
                    self.store.see_head(head.epoch, &signed.head)?;
                }
                self.store
                    .set_setting(SETTING_AUDITED, i64::try_from(to).unwrap_or(i64::MAX))
            })?;
            from = to;
        }
        Ok(report)
    }

    /// Fetches and pins the directory's key, server id and VRF key.
    pub(crate) async fn pin_directory(&self) -> Result<(), ClientError> {
        let info = self.api.directory_info().await?;
        self.store.pin_directory(&PinnedDirectory {
            server_id: info.server_id,
            directory_key: info.directory_key,
            vrf_public_key: info.vrf_public_key,
        })
    }

    pub(crate) fn pinned_directory(&self) -> Result<PinnedDirectory, ClientError> {
        self.store.pinned_directory()?.ok_or_else(|| {
            ClientError::Corrupt("no key-transparency directory is pinned for this account".into())
        })
    }

    /// Fetches the latest head and checks it, then checks again the heads
    /// accepted without their witness quorum; alerts go to `events`.
    pub(crate) async fn check_head(&self, events: &mut Vec<Event>) -> Result<(), ClientError> {
        let pinned = self.pinned_directory()?;
        if let Some(latest) = self.api.latest_head().await? {
            alert_to_event(self.accept_head(&pinned, &latest), events)?;
        }
        self.recheck_uncosigned(&pinned, events).await
    }

    /// Checks `latest`, a head the server presents as current, and records
    /// it as seen: a [`CheckedHead`], or one whose only flaw is its missing
    /// witness quorum, accepted for the grace period (nothing can be proven
    /// against it). Alerts are returned as [`ClientError::Alert`].
    pub(crate) fn accept_head(
        &self,
        pinned: &PinnedDirectory,
        latest: &HeadWithCosignatures,
    ) -> Result<AcceptedHead, ClientError> {
        let (witnesses, quorum) = self.witnesses()?;
        let before = match claimed_epoch(&latest.head) {
            Some(epoch) => self.store.seen_head(epoch)?,
            None => None,
        };
        let context = HeadContext {
            directory_key: &pinned.directory_key,
            server_id: &pinned.server_id,
            newest_epoch: self.store.newest_head_epoch()?,
            accepted: before.as_ref(),
            witnesses: &witnesses,
            quorum,
        };
        let accepted = match CheckedHead::check(latest, &context) {
            Ok(head) => AcceptedHead::Checked(head),
            Err(HeadError::QuorumMissing(head)) => {
                if self.witness_grace_secs()? == 0 {
                    return Err(uncosigned_alert(&head).into());
                }
                self.store.note_uncosigned(head.epoch(), unix_now())?;
                AcceptedHead::Uncosigned(*head)
            }
            Err(refused) => return Err(self.head_refused(refused, latest, before.as_ref())),
        };
        self.store.see_head(accepted.epoch(), &latest.head)?;
        Ok(accepted)
    }

    /// The error for a head refused for `refused` (all but the quorum):
    /// an alert, with the conflicting heads kept as evidence.
    fn head_refused(
        &self,
        refused: HeadError,
        shown: &HeadWithCosignatures,
        before: Option<&SignedHead>,
    ) -> ClientError {
        match refused {
            HeadError::BadSignature => directory_alert(
                AlertCode::DirectoryHeadSignatureInvalid,
                "a directory head the server sent is not signed by the directory key pinned at set-up".into(),
            )
            .into(),
            HeadError::Equivocation { epoch } => {
                if let Some(before) = before
                    && let Err(e) = self.store.keep_evidence(epoch, before, &shown.head)
                {
                    return e;
                }
                directory_alert(
                    AlertCode::DirectoryEquivocation,
                    format!(
                        "the directory signed two different heads for epoch {epoch}: proof that it shows different people different directories (both kept as evidence)"
                    ),
                )
                .into()
            }
            HeadError::Rollback { newest, found } => directory_alert(
                AlertCode::DirectoryRollback,
                format!(
                    "the directory went back from epoch {newest} to epoch {found}: the server restarted from older data or shows an old view"
                ),
            )
            .into(),
            HeadError::QuorumMissing(head) => uncosigned_alert(&head).into(),
            HeadError::AcceptedCorrupt { epoch } => ClientError::Corrupt(format!(
                "the directory head kept for epoch {epoch} no longer verifies"
            )),
        }
    }

    /// Checks a head's signature and server id, and that it is the head
    /// already accepted for its epoch, if any (else both are kept as
    /// evidence of equivocation).
    fn check_past_head(
        &self,
        pinned: &PinnedDirectory,
        signed: &SignedHead,
    ) -> Result<DirectoryHead, ClientError> {
        let head = signed
            .verify(&pinned.directory_key)
            .ok()
            .filter(|h| h.server_id == pinned.server_id)
            .ok_or_else(|| {
                directory_alert(
                    AlertCode::DirectoryHeadSignatureInvalid,
                    "a directory head the server sent is not signed by the directory key pinned at set-up".into(),
                )
            })?;
        if let Some(seen) = self.store.seen_head(head.epoch)? {
            let seen_head = seen
                .verify(&pinned.directory_key)
                .map_err(|e| ClientError::Corrupt(e.to_string()))?;
            if seen_head.root_hash != head.root_hash {
                self.store.keep_evidence(head.epoch, &seen, signed)?;
                return Err(directory_alert(
                    AlertCode::DirectoryEquivocation,
                    format!(
                        "the directory signed two different heads for epoch {}: proof that it shows different people different directories (both kept as evidence)",
                        head.epoch
                    ),
                )
                .into());
            }
        }
        Ok(head)
    }

    fn has_quorum(
        &self,
        head: &DirectoryHead,
        signed: &HeadWithCosignatures,
    ) -> Result<bool, ClientError> {
        let (_, quorum) = self.witnesses()?;
        Ok(self.cosigned(head, signed)? >= quorum)
    }

    fn cosigned(
        &self,
        head: &DirectoryHead,
        signed: &HeadWithCosignatures,
    ) -> Result<usize, ClientError> {
        let (witnesses, _) = self.witnesses()?;
        Ok(witnesses
            .iter()
            .filter(|w| {
                signed
                    .cosignatures
                    .iter()
                    .any(|c| &c.witness == *w && c.verify(head).is_ok())
            })
            .count())
    }

    fn quorum_alert(
        &self,
        head: &DirectoryHead,
        signed: &HeadWithCosignatures,
    ) -> Result<Alert, ClientError> {
        let (_, quorum) = self.witnesses()?;
        let cosigned = self.cosigned(head, signed)?;
        Ok(directory_alert(
            AlertCode::WitnessQuorumMissing,
            format!(
                "directory epoch {} is cosigned by {cosigned} of the {quorum} witnesses required: the server may be showing a directory its witnesses never saw",
                head.epoch
            ),
        ))
    }

    /// Waits until the accepted but uncosigned `head` carries its witness
    /// quorum, fetching it again, for at most the witness wait: new key
    /// material is used only under such a head. Past the wait, the alert
    /// `witness_quorum_missing` naming `brings` (what the head would have
    /// brought) is returned as the error.
    pub(crate) async fn await_quorum(
        &self,
        pinned: &PinnedDirectory,
        head: &UncosignedHead,
        brings: &str,
    ) -> Result<CheckedHead, ClientError> {
        let (witnesses, quorum) = self.witnesses()?;
        let context = HeadContext {
            directory_key: &pinned.directory_key,
            server_id: &pinned.server_id,
            // The same epoch again: only its cosignatures may have changed.
            newest_epoch: 0,
            accepted: Some(head.signed()),
            witnesses: &witnesses,
            quorum,
        };
        let epoch = head.epoch();
        let wait = self.witness_wait()?;
        let deadline = Instant::now() + wait;
        let mut cosigned = head.cosigned();
        while Instant::now() < deadline {
            tokio::time::sleep(QUORUM_POLL.min(deadline.saturating_duration_since(Instant::now())))
                .await;
            let Some(fresh) = self.api.heads(epoch, epoch).await?.into_iter().next() else {
                continue;
            };
            match CheckedHead::check(&fresh, &context) {
                Ok(checked) if checked.epoch() == epoch => {
                    self.store.forget_uncosigned(epoch)?;
                    return Ok(checked);
                }
                Ok(_) => {}
                Err(HeadError::QuorumMissing(again)) => cosigned = again.cosigned(),
                Err(refused) => {
                    return Err(self.head_refused(refused, &fresh, Some(head.signed())));
                }
            }
        }
        // Said now: not again when the grace of this head is over.
        self.store.forget_uncosigned(epoch)?;
        Err(directory_alert(
            AlertCode::WitnessQuorumMissing,
            format!(
                "directory epoch {epoch} brings {brings}, but after {} s it is cosigned by {cosigned} of the {quorum} witnesses required: the server may be showing a directory its witnesses never saw. Nothing was encrypted to it",
                wait.as_secs()
            ),
        )
        .into())
    }

    /// Fetches again each head accepted without its quorum: drops it once
    /// cosigned, alerts once its grace is over.
    async fn recheck_uncosigned(
        &self,
        pinned: &PinnedDirectory,
        events: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        let grace = self.witness_grace_secs()?;
        for (epoch, first_seen) in self.store.uncosigned()? {
            let signed = self.api.heads(epoch, epoch).await?;
            let Some(signed) = signed.first() else {
                // The server no longer serves a head it served: a rollback,
                // which the latest head's check reports.
                self.store.forget_uncosigned(epoch)?;
                continue;
            };
            let head = match self.check_past_head(pinned, &signed.head) {
                Ok(head) => head,
                Err(e) => {
                    self.store.forget_uncosigned(epoch)?;
                    alert_to_event::<()>(Err(e), events)?;
                    continue;
                }
            };
            if self.has_quorum(&head, signed)? {
                self.store.forget_uncosigned(epoch)?;
            } else if unix_now().saturating_sub(first_seen) >= grace {
                self.store.forget_uncosigned(epoch)?;
                events.push(self.quorum_alert(&head, signed)?.into());
            }
        }
        Ok(())
    }

    /// Judges a head a member of `conversation` gossiped in a message: a
    /// different head than the one accepted here for its epoch is
    /// equivocation (both kept as evidence); a head for an epoch not seen
    /// here is kept to compare with the server's at the end of the sync. A
    /// head the directory key did not sign proves nothing and is ignored.
    pub(crate) fn judge_gossip(
        &self,
        conversation: &str,
        gossiped: &SignedHead,
        events: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        let pinned = self.pinned_directory()?;
        let Some(head) = gossiped
            .verify(&pinned.directory_key)
            .ok()
            .filter(|h| h.server_id == pinned.server_id)
        else {
            tracing::warn!(
                conversation,
                "a member gossiped a head the directory did not sign"
            );
            return Ok(());
        };
        match self.store.seen_head(head.epoch)? {
            Some(seen) => {
                let seen_head = seen
                    .verify(&pinned.directory_key)
                    .map_err(|e| ClientError::Corrupt(e.to_string()))?;
                if seen_head.root_hash != head.root_hash {
                    self.store.keep_evidence(head.epoch, &seen, gossiped)?;
                    events.push(split_view_alert(conversation, head.epoch).into());
                }
                Ok(())
            }
            None => self.store.note_gossip(head.epoch, gossiped, conversation),
        }
    }

    /// Compares each gossiped head of an epoch not seen here with the head
    /// the server serves for that epoch.
    pub(crate) async fn check_gossip(&self, events: &mut Vec<Event>) -> Result<(), ClientError> {
        let gossip = self.store.gossip()?;
        if gossip.is_empty() {
            return Ok(());
        }
        let pinned = self.pinned_directory()?;
        for (epoch, gossiped, conversation) in gossip {
            let served = match self.api.heads(epoch, epoch).await {
                Ok(served) => served.into_iter().next(),
                Err(ClientError::Server { status: 400, .. }) => None,
                Err(e) => return Err(e),
            };
            self.store.forget_gossip(epoch)?;
            let Some(served) = served else {
                events.push(
                    Alert {
                        code: AlertCode::DirectoryRollback,
                        conversation: Some(conversation),
                        user: None,
                        message: format!(
                            "a member was shown directory epoch {epoch}, which the server does not show you: it shows you an older directory"
                        ),
                    }
                    .into(),
                );
                continue;
            };
            let head = match self.check_past_head(&pinned, &served.head) {
                Ok(head) => head,
                Err(e) => {
                    alert_to_event::<()>(Err(e), events)?;
                    continue;
                }
            };
            let gossiped_root = gossiped.parse_unverified().map(|h| h.root_hash).ok();
            if gossiped_root == Some(head.root_hash) {
                self.store.see_head(epoch, &served.head)?;
            } else {
                self.store.keep_evidence(epoch, &served.head, &gossiped)?;
                events.push(split_view_alert(&conversation, epoch).into());
            }
        }
        Ok(())
    }

    /// Verifies this account's complete key history at the latest epoch
    /// (once per epoch): each version must be signed by this account's key.
    pub(crate) async fn monitor_own_history(
        &self,
        events: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        let newest = self.store.newest_head_epoch()?;
        let monitored = self
            .store
            .setting(SETTING_MONITORED)?
            .and_then(|e| u64::try_from(e).ok());
        if newest == 0 || monitored == Some(newest) {
            return Ok(());
        }
        let pinned = self.pinned_directory()?;
        let user = &self.id.user;
        let history = match self.api.history(user).await {
            Ok(history) => history,
            // Not published yet: there is nothing to monitor.
            Err(ClientError::Server { status: 404, .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let head = match self.accept_head(&pinned, &history.head) {
            Ok(head) => head,
            Err(e) => return alert_to_event::<()>(Err(e), events),
        };
        let verified = match rempart_kt::verify_history(
            &pinned.vrf_public_key,
            head.head(),
            user,
            &history.proof,
            &history.device_lists,
        ) {
            Ok(verified) => verified,
            Err(e) => {
                events.push(
                    Alert {
                        code: AlertCode::KtProofInvalid,
                        conversation: None,
                        user: Some(user.clone()),
                        message: format!(
                            "the key history the server proves for your account does not verify: {e}"
                        ),
                    }
                    .into(),
                );
                return Ok(());
            }
        };
        let account_key = self.id.account_key.public();
        let mut clean = true;
        for (proven, signed) in verified {
            let ours = signed
                .verify_for(user)
                .is_ok_and(|list| list.account_key == account_key);
            if !ours {
                clean = false;
                events.push(
                    Alert {
                        code: AlertCode::UnknownOwnDevice,
                        conversation: None,
                        user: Some(user.clone()),
                        message: format!(
                            "the directory published, at epoch {}, a version of your device list that your account key did not sign: someone else's device or key was announced as yours",
                            proven.epoch
                        ),
                    }
                    .into(),
                );
            }
        }
        if clean {
            self.store.set_setting(
                SETTING_MONITORED,
                i64::try_from(head.epoch()).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }
}

/// Moves an alert from `result` into `events`; other errors stay errors.
fn alert_to_event<T>(
    result: Result<T, ClientError>,
    events: &mut Vec<Event>,
) -> Result<(), ClientError> {
    match result {
        Ok(_) => Ok(()),
        Err(ClientError::Alert(alert)) => {
            events.push(alert.into());
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn directory_alert(code: AlertCode, message: String) -> Alert {
    Alert {
        code,
        conversation: None,
        user: None,
        message,
    }
}

fn split_view_alert(conversation: &str, epoch: u64) -> Alert {
    Alert {
        code: AlertCode::DirectoryEquivocation,
        conversation: Some(conversation.to_owned()),
        user: None,
        message: format!(
            "a member of {conversation} was shown another directory head for epoch {epoch} than you: the server shows different people different directories (both heads kept as evidence)"
        ),
    }
}

fn kt_alert(message: String) -> Alert {
    directory_alert(AlertCode::KtProofInvalid, message)
}

const SETTING_QUORUM: &str = "witness_quorum";
const SETTING_GRACE: &str = "witness_grace_secs";
const SETTING_WAIT: &str = "witness_wait_secs";
const SETTING_AUDITED: &str = "audited_epoch";
const SETTING_MONITORED: &str = "own_history_epoch";
