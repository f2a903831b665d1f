//! `rempart-witness`: an independent auditor of one Rempart server's
//! key-transparency directory.
//!
//! The server publishes its directory (an [akd] tree mapping user names to
//! their signed device lists) in epochs, and signs the head of each
//! (`server id, epoch, root hash, time`) with its directory key. A witness
//! follows those heads from outside the server. At every [`Witness::step`]
//! it:
//!
//! 1. fetches `GET /v1/directory` and checks that the directory key and
//!    server id are the ones it pinned the first time it saw the server
//!    (trust on first use; the server id must be derived from the key);
//! 2. fetches the latest head and checks its signature and server id;
//! 3. if that head is not newer than the last epoch it verified, checks it
//!    is the very head it verified for that epoch;
//! 4. otherwise fetches the head of every epoch from the last verified one
//!    to the new one, and akd's append-only proof between them, and checks
//!    the proof with akd's own verifier ([`rempart_kt::verify_audit`]);
//! 5. cosigns `(server id, epoch, root hash)` of each newly verified epoch
//!    with its own key, records the cosignatures, and posts them to the
//!    server (a failed post is retried at the next step).
//!
//! Clients that name the witness's key (`rempart init --witness KEY`)
//! accept a head only with its cosignature, so the server cannot show them
//! a directory the witness has not checked.
//!
//! # What a witness guarantees
//!
//! - Every epoch it cosigned is signed by the pinned directory key, and the
//!   directory at that epoch only grew from the one at the epoch before: the
//!   cosigned epochs form one append-only history, checked by akd's
//!   verifier.
//! - It never cosigns two roots for one epoch, nor an epoch older than one
//!   it cosigned: its state file records every cosigned head by epoch and
//!   only appends the epoch after the last.
//! - When the server signs two different heads for one epoch
//!   ([`Misbehavior::Equivocation`]) or goes back to an older epoch
//!   ([`Misbehavior::Rollback`]), it keeps both signed heads as
//!   [`Evidence`] and from then on refuses to cosign anything for that
//!   server ([`WitnessError::Halted`]) until an operator has looked: the
//!   operator keeps the data directory as evidence and starts a new witness
//!   with a new one. Equivocation evidence proves the misbehaviour to anyone
//!   who knows the directory key: both heads carry its signature. Rollback
//!   evidence only records what was served (the older head was validly
//!   signed when it was new).
//!
//! # What a witness does not guarantee
//!
//! - Epoch 1, the first head, is accepted on its signature alone: the server
//!   serves no proof from the empty directory. Like the directory key, it is
//!   trusted on first use.
//! - A witness sees root hashes, not device lists: it cannot tell a device
//!   a user added from one the server added. Each user's client monitors its
//!   own key history for that.
//! - It protects only clients that require its cosignature. A server can
//!   still show a client that does not a directory the witness never saw,
//!   and can withhold new epochs from the witness (clients then see the
//!   quorum missing).
//! - Its promise holds per data directory. Two witnesses with the same key
//!   and different state files, or a state file restored from an old
//!   backup, could cosign two roots for one epoch: never copy `witness.key`
//!   without its `witness.db`.
//!
//! # Secrets
//!
//! The only secret is the witness key ([`WITNESS_KEY_FILE`], mode 0600 in a
//! data directory of mode 0700). It lives in memory in a type that zeroizes
//! on drop and whose `Debug` shows the public key only; it is never logged
//! or put in an error. The state file ([`STATE_FILE`]) holds public heads,
//! cosignatures and evidence only.
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = tempfile::tempdir()?;
//! // The key clients configure: created on first use, then read back.
//! let key = rempart_witness::witness_key(data.path())?;
//! assert_eq!(rempart_witness::witness_key(data.path())?, key);
//! println!("rempart init --witness {}", String::from(key));
//! # Ok(())
//! # }
//! ```
//!
//! Following a server, one step at a time:
//!
//! ```no_run
//! use rempart_witness::{StepOutcome, Witness};
//!
//! # async fn follow() -> Result<(), rempart_witness::WitnessError> {
//! let witness = Witness::open("http://127.0.0.1:7800", "./witness-data".as_ref())?;
//! match witness.step().await? {
//!     StepOutcome::NothingPublished => println!("no epoch yet"),
//!     StepOutcome::UpToDate { epoch } => println!("still at epoch {epoch}"),
//!     StepOutcome::Cosigned { from, to } => println!("cosigned epochs {from} to {to}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [akd]: https://github.com/facebook/akd

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use rempart_kt::ProofError;
use rempart_proto::PublicKey;
use rempart_proto::directory::{
    Cosignature, DirectoryError, DirectoryHead, PostCosignature, SignedHead,
};
use rempart_proto::local::error_chain;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

mod directory;
mod key;
mod serve;
mod store;

pub use crate::directory::{FetchError, MAX_RESPONSE_BYTES, REQUEST_TIMEOUT};
pub use crate::key::{KeyError, WITNESS_KEY_FILE};
pub use crate::serve::{EVIDENCE_PATH, WITNESS_PATH, WitnessInfo, cosignature_path, router};
pub use crate::store::{STATE_FILE, StoreError};

use crate::directory::DirectoryClient;
use crate::key::WitnessKey;
use crate::store::{Cosigned, Pinned, Store};

/// Most epochs one step verifies and cosigns; a witness further behind
/// catches up over several steps.
pub const MAX_EPOCHS_PER_STEP: u64 = rempart_proto::limits::MAX_HEADS_PER_REQUEST;

/// A witness of one server's directory, with its key and state in one data
/// directory.
#[derive(Debug)]
pub struct Witness {
    directory: DirectoryClient,
    key: WitnessKey,
    store: Store,
    /// Held for the whole of a step, so steps never interleave.
    stepping: tokio::sync::Mutex<()>,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    /// The server has published no epoch yet.
    NothingPublished,
    /// The latest head is the one already verified and cosigned for `epoch`.
    UpToDate {
        /// The last verified epoch.
        epoch: u64,
    },
    /// Epochs `from` to `to` (inclusive) were verified and cosigned.
    Cosigned {
        /// The first newly cosigned epoch.
        from: u64,
        /// The last newly cosigned epoch (the latest, unless the witness
        /// was more than [`MAX_EPOCHS_PER_STEP`] behind).
        to: u64,
    },
}

/// Why a step cosigned nothing.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The server misbehaved; nothing was cosigned.
    #[error("the server misbehaved: {0}")]
    Misbehaved(#[from] Misbehavior),
    /// Evidence of misbehaviour is kept: this witness cosigns nothing more
    /// for this server.
    #[error(
        "{evidence} piece(s) of evidence of misbehaviour are kept in the data directory: this witness cosigns nothing more for this server; keep the data directory as evidence and start a new witness with another one"
    )]
    Halted {
        /// How many pieces of evidence are kept.
        evidence: u64,
    },
    /// The server could not be asked (it may be down).
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The state file failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The witness key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The data directory could not be created.
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The server URL is not an http(s) URL.
    #[error("{0:?} is not a server URL: write it as http://HOST:PORT or https://HOST")]
    BadServerUrl(String),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// How the server misbehaved. Each one is logged at error level, and
/// nothing is cosigned in the step that found it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misbehavior {
    /// The server announces a server id that is not derived from its
    /// directory key.
    #[error("the server id {announced} is not the one derived from the directory key ({derived})")]
    ServerIdMismatch {
        /// What the server announces.
        announced: String,
        /// Hex of the first 16 bytes of SHA-256 of its directory key.
        derived: String,
    },
    /// The directory key differs from the one pinned on first contact.
    #[error(
        "the directory key changed: pinned for server id {pinned}, the server now announces server id {found}"
    )]
    DirectoryKeyChanged {
        /// The pinned server id.
        pinned: String,
        /// The server id of the key now announced.
        found: String,
    },
    /// A head is not a head signed by the pinned directory key.
    #[error("the head of {} is refused: {error}", epoch_name(*.epoch))]
    BadHead {
        /// The epoch asked for (`None`: the latest head).
        epoch: Option<u64>,
        /// What is wrong with it.
        error: DirectoryError,
    },
    /// A head names another server.
    #[error("the head of epoch {epoch} names server id {found}, not the pinned {pinned}")]
    WrongServer {
        /// The epoch of the head.
        epoch: u64,
        /// The pinned server id.
        pinned: String,
        /// The server id in the head.
        found: String,
    },
    /// The server answered the head of another epoch than the one asked for.
    #[error("asked for the head of epoch {requested}, the server sent the head of epoch {found}")]
    WrongEpoch {
        /// The epoch asked for.
        requested: u64,
        /// The epoch of the head sent.
        found: u64,
    },
    /// The server signed two different root hashes for one epoch (both kept
    /// as evidence).
    #[error("the server signed two different heads for epoch {epoch} (both kept as evidence)")]
    Equivocation {
        /// The epoch.
        epoch: u64,
    },
    /// The latest head is older than an epoch already verified (both kept as
    /// evidence).
    #[error(
        "the server went back from epoch {verified} to epoch {served} (both heads kept as evidence)"
    )]
    Rollback {
        /// The last verified epoch.
        verified: u64,
        /// The epoch of the latest head served.
        served: u64,
    },
    /// akd's append-only proof between two epochs does not verify.
    #[error("the append-only proof from epoch {from} to epoch {to} is refused: {error}")]
    Audit {
        /// The last verified epoch.
        from: u64,
        /// The new epoch.
        to: u64,
        /// Why akd's verifier refused it.
        error: ProofError,
    },
}

fn epoch_name(epoch: Option<u64>) -> String {
    epoch.map_or_else(|| "the latest epoch".to_owned(), |e| format!("epoch {e}"))
}

/// Two signed heads that should not both exist: what a witness keeps when
/// it catches the server misbehaving. Both verify under the directory key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// What the pair shows.
    pub kind: EvidenceKind,
    /// The head the witness saw first (for a rollback: the newest it had
    /// verified).
    pub first: SignedHead,
    /// The conflicting head the server sent after it.
    pub second: SignedHead,
    /// Unix time (seconds) at which the witness found it.
    pub found_at: i64,
}

/// What a piece of [`Evidence`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// Two different root hashes for one epoch.
    Equivocation,
    /// A latest head older than one the witness had verified.
    Rollback,
}

impl EvidenceKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Equivocation => "equivocation",
            Self::Rollback => "rollback",
        }
    }

    fn from_str(text: &str) -> Option<Self> {
        match text {
            "equivocation" => Some(Self::Equivocation),
            "rollback" => Some(Self::Rollback),
            _ => None,
        }
    }
}

/// The witness key of the data directory `data_dir`, created (with the
/// directory) if there is none.
pub fn witness_key(data_dir: &Path) -> Result<PublicKey, WitnessError> {
    create_data_dir(data_dir)?;
    Ok(WitnessKey::load_or_create(data_dir)?.public_key())
}

/// The server id a directory key stands for: hex of the first 16 bytes of
/// SHA-256 of the key.
pub fn server_id(directory_key: &PublicKey) -> String {
    let digest = Sha256::digest(directory_key.as_bytes());
    hex::encode(&digest[..16])
}

/// A head whose signature by the pinned directory key, server id and (when
/// asked for one) epoch were checked: authentic, not yet judged against the
/// witness's history (unlike a client's `rempart_kt::CheckedHead`).
#[derive(Debug, Clone)]
struct AuthenticHead {
    signed: SignedHead,
    head: DirectoryHead,
}

impl AuthenticHead {
    /// Checks `signed` against the pinned directory; `epoch` is the epoch
    /// asked for (`None`: the latest).
    fn check(signed: SignedHead, pinned: &Pinned, epoch: Option<u64>) -> Result<Self, Misbehavior> {
        let head = signed
            .verify(&pinned.directory_key)
            .map_err(|error| Misbehavior::BadHead { epoch, error })?;
        if head.server_id != pinned.server_id {
            return Err(Misbehavior::WrongServer {
                epoch: head.epoch,
                pinned: pinned.server_id.clone(),
                found: head.server_id,
            });
        }
        if let Some(requested) = epoch.filter(|requested| *requested != head.epoch) {
            return Err(Misbehavior::WrongEpoch {
                requested,
                found: head.epoch,
            });
        }
        Ok(Self { signed, head })
    }
}

/// Consecutive checked heads: the last verified one (or epoch 1 on the
/// first step) and those after it.
#[derive(Debug)]
struct Chain {
    base: AuthenticHead,
    later: Vec<AuthenticHead>,
}

impl Chain {
    fn last(&self) -> &AuthenticHead {
        self.later.last().unwrap_or(&self.base)
    }
}

impl Witness {
    /// Opens the witness of the server at `server_url` whose key and state
    /// live in `data_dir` (created with mode 0700, with a new key, if
    /// missing). Contacts nothing: the directory is pinned at the first
    /// [`step`](Self::step).
    pub fn open(server_url: &str, data_dir: &Path) -> Result<Self, WitnessError> {
        let url = reqwest::Url::parse(server_url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| WitnessError::BadServerUrl(server_url.to_owned()))?;
        create_data_dir(data_dir)?;
        Ok(Self {
            directory: DirectoryClient::new(url.as_str()).map_err(WitnessError::Http)?,
            key: WitnessKey::load_or_create(data_dir)?,
            store: Store::open(data_dir)?,
            stepping: tokio::sync::Mutex::new(()),
        })
    }

    /// The witness's public key.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The witness's cosignature of `epoch`, if it verified that epoch.
    pub async fn cosignature(&self, epoch: u64) -> Result<Option<Cosignature>, WitnessError> {
        Ok(self.store.cosignature(epoch).await?)
    }

    /// The head the witness verified and cosigned for `epoch`.
    pub async fn cosigned_head(&self, epoch: u64) -> Result<Option<SignedHead>, WitnessError> {
        Ok(self.store.head(epoch).await?)
    }

    /// Its key, the directory it pinned and the last epoch it verified.
    pub async fn info(&self) -> Result<WitnessInfo, WitnessError> {
        let pinned = self.store.pinned().await?;
        Ok(WitnessInfo {
            witness_key: self.public_key(),
            server_id: pinned.as_ref().map(|p| p.server_id.clone()),
            directory_key: pinned.map(|p| p.directory_key),
            verified_epoch: self.store.verified_epoch().await?,
        })
    }

    /// Every piece of evidence of misbehaviour kept, oldest first.
    pub async fn evidence(&self) -> Result<Vec<Evidence>, WitnessError> {
        Ok(self.store.evidence().await?)
    }

    /// One round: verify what the server published since the last step,
    /// cosign it and post the cosignatures. Refusals are logged at error
    /// level.
    pub async fn step(&self) -> Result<StepOutcome, WitnessError> {
        let _stepping = self.stepping.lock().await;
        let result = self.step_locked().await;
        if let Err(WitnessError::Misbehaved(misbehavior)) = &result {
            tracing::error!(
                server = self.directory.base(),
                %misbehavior,
                "refused to cosign: the server misbehaved"
            );
        }
        result
    }

    async fn step_locked(&self) -> Result<StepOutcome, WitnessError> {
        let evidence = self.store.evidence_count().await?;
        if evidence > 0 {
            return Err(WitnessError::Halted { evidence });
        }
        let pinned = self.pin().await?;
        let Some(latest) = self.directory.latest_head().await? else {
            return Ok(StepOutcome::NothingPublished);
        };
        let latest = AuthenticHead::check(latest, &pinned, None)?;
        let outcome = match self.store.verified_epoch().await? {
            Some(verified) if latest.head.epoch <= verified => {
                self.judge_known(&latest, verified).await?;
                StepOutcome::UpToDate { epoch: verified }
            }
            // akd's epoch 0 is the empty directory, which has no head.
            None if latest.head.epoch == 0 => return Ok(StepOutcome::NothingPublished),
            verified => self.advance(&pinned, verified, &latest).await?,
        };
        self.post_pending().await;
        Ok(outcome)
    }

    /// Checks the directory key and server id against the pinned ones,
    /// pinning them on first contact.
    async fn pin(&self) -> Result<Pinned, WitnessError> {
        let info = self.directory.info().await?;
        let derived = server_id(&info.directory_key);
        if info.server_id != derived {
            return Err(Misbehavior::ServerIdMismatch {
                announced: info.server_id,
                derived,
            }
            .into());
        }
        let announced = Pinned {
            server_id: derived,
            directory_key: info.directory_key,
        };
        match self.store.pinned().await? {
            Some(pinned) if pinned == announced => Ok(pinned),
            Some(pinned) => Err(Misbehavior::DirectoryKeyChanged {
                pinned: pinned.server_id,
                found: announced.server_id,
            }
            .into()),
            None => {
                self.store.pin(&announced).await?;
                tracing::info!(
                    server = self.directory.base(),
                    server_id = %announced.server_id,
                    "pinned the directory key (trust on first use)"
                );
                Ok(announced)
            }
        }
    }

    /// Checks a latest head no newer than the last verified epoch: it must
    /// be the head verified for its epoch, and not older than the last.
    async fn judge_known(&self, latest: &AuthenticHead, verified: u64) -> Result<(), WitnessError> {
        let epoch = latest.head.epoch;
        let held = self.held(epoch).await?;
        if let Some(held) = held.filter(|held| held.head.root_hash != latest.head.root_hash) {
            return Err(self
                .refuse(
                    EvidenceKind::Equivocation,
                    &held.signed,
                    &latest.signed,
                    Misbehavior::Equivocation { epoch },
                )
                .await);
        }
        if epoch < verified {
            let newest = self.held(verified).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("no head for verified epoch {verified}"))
            })?;
            return Err(self
                .refuse(
                    EvidenceKind::Rollback,
                    &newest.signed,
                    &latest.signed,
                    Misbehavior::Rollback {
                        verified,
                        served: epoch,
                    },
                )
                .await);
        }
        Ok(())
    }

    /// Verifies the epochs after `verified` up to `latest` (at most
    /// [`MAX_EPOCHS_PER_STEP`] of them) and cosigns them.
    async fn advance(
        &self,
        pinned: &Pinned,
        verified: Option<u64>,
        latest: &AuthenticHead,
    ) -> Result<StepOutcome, WitnessError> {
        let base = match verified {
            Some(verified) => self.held(verified).await?.ok_or_else(|| {
                StoreError::Corrupt(format!("no head for verified epoch {verified}"))
            })?,
            None => self.fetch_head(pinned, 1).await?,
        };
        let target = latest
            .head
            .epoch
            .min(base.head.epoch.saturating_add(MAX_EPOCHS_PER_STEP));
        let mut chain = Chain {
            later: Vec::new(),
            base,
        };
        let first = chain.base.head.epoch.saturating_add(1);
        if first <= target {
            let served = self.directory.heads(first, target).await?;
            let mut epochs = first..=target;
            for signed in served {
                // A head the server sent beyond the range is refused as the
                // wrong epoch; a missing one as the epoch after the last.
                let epoch = epochs.next().unwrap_or(target.saturating_add(1));
                chain
                    .later
                    .push(AuthenticHead::check(signed, pinned, Some(epoch))?);
            }
            if let Some(missing) = epochs.next() {
                return Err(FetchError::Missing(missing).into());
            }
        }
        let last = chain.last();
        if last.head.epoch == latest.head.epoch {
            self.same_head(last, latest).await?;
        }
        if !chain.later.is_empty() {
            self.audit(pinned, &chain).await?;
        }
        let newly: Vec<&AuthenticHead> = match verified {
            Some(_) => chain.later.iter().collect(),
            None => std::iter::once(&chain.base).chain(&chain.later).collect(),
        };
        let from = newly.first().map_or(target, |head| head.head.epoch);
        let cosigned = newly
            .into_iter()
            .map(|checked| Cosigned {
                epoch: checked.head.epoch,
                head: checked.signed.clone(),
                cosignature: self.key.cosign(&checked.head),
            })
            .collect();
        self.store.record(cosigned).await?;
        tracing::info!(
            server = self.directory.base(),
            from,
            to = target,
            "verified and cosigned"
        );
        Ok(StepOutcome::Cosigned { from, to: target })
    }

    /// Fetches akd's append-only proof over `chain` and checks it.
    async fn audit(&self, pinned: &Pinned, chain: &Chain) -> Result<(), WitnessError> {
        let (first, last) = (&chain.base, chain.last());
        let (from, to) = (first.head.epoch, last.head.epoch);
        let audit = self.directory.audit(from, to).await?;
        // The proof's own copies of the end heads must be the ones checked.
        for (ours, served) in [(first, audit.start), (last, audit.end)] {
            let served = AuthenticHead::check(served, pinned, Some(ours.head.epoch))?;
            self.same_head(ours, &served).await?;
        }
        let heads: Vec<DirectoryHead> = std::iter::once(&chain.base)
            .chain(&chain.later)
            .map(|checked| checked.head.clone())
            .collect();
        rempart_kt::verify_audit(&heads, &audit.proof)
            .await
            .map_err(|error| Misbehavior::Audit { from, to, error })?;
        Ok(())
    }

    /// Two checked heads of one epoch must have the same root.
    async fn same_head(
        &self,
        first: &AuthenticHead,
        second: &AuthenticHead,
    ) -> Result<(), WitnessError> {
        if first.head.root_hash == second.head.root_hash {
            return Ok(());
        }
        Err(self
            .refuse(
                EvidenceKind::Equivocation,
                &first.signed,
                &second.signed,
                Misbehavior::Equivocation {
                    epoch: first.head.epoch,
                },
            )
            .await)
    }

    /// Fetches and checks the head of `epoch`.
    async fn fetch_head(&self, pinned: &Pinned, epoch: u64) -> Result<AuthenticHead, WitnessError> {
        let signed = self.directory.head(epoch).await?;
        Ok(AuthenticHead::check(signed, pinned, Some(epoch))?)
    }

    /// The head verified for `epoch`, read back from the state file.
    async fn held(&self, epoch: u64) -> Result<Option<AuthenticHead>, WitnessError> {
        let Some(signed) = self.store.head(epoch).await? else {
            return Ok(None);
        };
        // Checked when it was recorded; the state file is the witness's own.
        let head = signed
            .parse_unverified()
            .map_err(|_| StoreError::Corrupt(format!("head of epoch {epoch}")))?;
        Ok(Some(AuthenticHead { signed, head }))
    }

    /// Keeps `first` and `second` as evidence and returns `misbehavior` as
    /// the error.
    async fn refuse(
        &self,
        kind: EvidenceKind,
        first: &SignedHead,
        second: &SignedHead,
        misbehavior: Misbehavior,
    ) -> WitnessError {
        let evidence = Evidence {
            kind,
            first: first.clone(),
            second: second.clone(),
            found_at: unix_now(),
        };
        if let Err(error) = self.store.keep_evidence(evidence).await {
            // Still a refusal: the next step sees the same heads again.
            tracing::error!(%misbehavior, error = %error_chain(&error), "cannot keep the evidence");
        }
        misbehavior.into()
    }

    /// Posts every cosignature the server has not taken yet; stops at the
    /// first failure and leaves the rest for the next step.
    async fn post_pending(&self) {
        let unposted = match self.store.unposted().await {
            Ok(unposted) => unposted,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "cannot list the cosignatures to post");
                return;
            }
        };
        for (epoch, cosignature) in unposted {
            let post = PostCosignature { epoch, cosignature };
            let posted = match self.directory.post_cosignature(&post).await {
                Ok(()) => self
                    .store
                    .mark_posted(epoch)
                    .await
                    .map_err(WitnessError::from),
                Err(error) => Err(error.into()),
            };
            if let Err(error) = posted {
                tracing::warn!(
                    epoch,
                    error = %error_chain(&error),
                    "cannot post the cosignature; retrying at the next step"
                );
                return;
            }
        }
    }
}

fn create_data_dir(data_dir: &Path) -> Result<(), WitnessError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|source| WitnessError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}
