//! Checks of the key-transparency directory's heads.
//!
//! At account creation the client pins the directory's signing key and
//! server id. At every sync it fetches the latest head and refuses it, with
//! an alert, unless: it is signed by the pinned key for the pinned server
//! id (`directory_head_signature_invalid`); its epoch is not older than the
//! newest head already seen (`directory_rollback`); no other head was seen
//! for the same epoch (`directory_equivocation`, both heads kept as
//! evidence); and enough of the configured witnesses cosigned it
//! (`witness_quorum_missing`). Verifying device lists against lookup proofs
//! is built on these heads.

use rempart_proto::PublicKey;
use rempart_proto::directory::{HeadWithCosignatures, SignedHead};

use crate::Client;
use crate::error::ClientError;
use crate::event::{Alert, AlertCode, Event};

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

    /// Every pair of conflicting signed heads this device has seen: proof
    /// that the directory showed different views, to hand to anyone.
    pub fn directory_evidence(&self) -> Result<Vec<(SignedHead, SignedHead)>, ClientError> {
        self.store.evidence()
    }

    /// Fetches and pins the directory's key and server id.
    pub(crate) async fn pin_directory(&self) -> Result<(), ClientError> {
        let info = self.api.directory_info().await?;
        self.store
            .pin_directory(&info.server_id, &info.directory_key)
    }

    /// Fetches the latest head and checks it; alerts go to `events`.
    pub(crate) async fn check_head(&self, events: &mut Vec<Event>) -> Result<(), ClientError> {
        let Some((server_id, directory_key)) = self.store.pinned_directory()? else {
            return Ok(()); // Created before the directory existed: nothing pinned.
        };
        let Some(latest) = self.api.latest_head().await? else {
            return Ok(()); // No epoch published yet.
        };
        if let Err(alert) = self.judge_head(&server_id, &directory_key, &latest) {
            events.push(alert.into());
        }
        Ok(())
    }

    fn judge_head(
        &self,
        server_id: &str,
        directory_key: &PublicKey,
        latest: &HeadWithCosignatures,
    ) -> Result<(), Alert> {
        let alert = |code, message: String| Alert {
            code,
            conversation: None,
            user: None,
            message,
        };
        let head = latest
            .head
            .verify(directory_key)
            .ok()
            .filter(|h| h.server_id == server_id)
            .ok_or_else(|| {
                alert(
                    AlertCode::DirectoryHeadSignatureInvalid,
                    "the directory head the server sent is not signed by the directory key pinned at set-up".into(),
                )
            })?;
        let store = |e: ClientError| {
            alert(
                AlertCode::DirectoryHeadSignatureInvalid,
                format!("cannot check the head: {e}"),
            )
        };
        if let Some(seen) = self.store.seen_head(head.epoch).map_err(store)? {
            let seen_head = seen
                .verify(directory_key)
                .map_err(|e| store(ClientError::Corrupt(e.to_string())))?;
            if seen_head.root_hash != head.root_hash {
                self.store
                    .keep_evidence(head.epoch, &seen, &latest.head)
                    .map_err(store)?;
                return Err(alert(
                    AlertCode::DirectoryEquivocation,
                    format!(
                        "the directory signed two different heads for epoch {}: proof that it shows different people different directories (both kept as evidence)",
                        head.epoch
                    ),
                ));
            }
        }
        let newest = self.store.newest_head_epoch().map_err(store)?;
        if head.epoch < newest {
            return Err(alert(
                AlertCode::DirectoryRollback,
                format!(
                    "the directory went back from epoch {newest} to epoch {}: the server restarted from older data or shows an old view",
                    head.epoch
                ),
            ));
        }
        let (witnesses, quorum) = self.witnesses().map_err(store)?;
        let cosigned = witnesses
            .iter()
            .filter(|w| {
                latest
                    .cosignatures
                    .iter()
                    .any(|c| &c.witness == *w && c.verify(&head).is_ok())
            })
            .count();
        if cosigned < quorum {
            return Err(alert(
                AlertCode::WitnessQuorumMissing,
                format!(
                    "directory epoch {} is cosigned by {cosigned} of the {quorum} witnesses required: the server may be showing a directory its witnesses never saw",
                    head.epoch
                ),
            ));
        }
        self.store
            .see_head(head.epoch, &latest.head)
            .map_err(store)?;
        Ok(())
    }
}

const SETTING_QUORUM: &str = "witness_quorum";
