//! The directory service: publishes epochs and answers proofs.
//!
//! One [`DirectoryService`] per process owns the akd [`Directory`]. Its
//! publisher runs every epoch interval: it reads the durable queue
//! ([`queue`](super::queue)), keeps the latest value per user, publishes
//! them in one akd epoch if there is anything new, signs the epoch's head
//! with the directory key and, in one write, stores the head and removes the
//! published rows from the queue. Nothing pending means no epoch.
//!
//! Publishing and the proofs share one lock: the publisher holds it for
//! writing from the akd publish until the head is stored, and every proof
//! holds it for reading, so a proof is always for an epoch whose signed head
//! is stored. If the process stops between akd's commit and the head's, the
//! next start (or the next publisher tick) signs and stores the missing
//! head; the queue rows of that epoch are then still there, and are dropped
//! unpublished because akd already holds their values.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use akd::append_only_zks::AzksParallelismConfig;
use akd::errors::{AkdError, StorageError};
use akd::proto::specs::types as proto;
use akd::storage::types::ValueStateRetrievalFlag;
use akd::storage::{Database as _, StorageManager};
use akd::{AkdLabel, AkdValue, Directory, EpochHash, HistoryParams, WhatsAppV1Configuration};
use protobuf::Message as _;
use rempart_proto::api::KnownVersion;
use rempart_proto::directory::{
    AuditResponse, DirectoryHead, DirectoryInfo, HeadWithCosignatures, HistoryResponse,
    LookupResponse, LookupsResponse, PostCosignature, SignedHead, UserLookup,
};
use rempart_proto::limits::MAX_HEADS_PER_REQUEST;
use rempart_proto::local::error_chain;
use rempart_proto::{DeviceList, SignedDeviceList, UserName};
use tokio::sync::{RwLock, oneshot};
use tokio::time::MissedTickBehavior;

use super::DirectoryDb;
use super::DirectoryStorage;
use super::heads;
use super::keys::{DirectoryKeys, FileVrf, KeyError};
use super::queue;
use crate::store::{SharedDatabase, StoreError};

/// How long akd's storage manager keeps a tree node or value read from the
/// database. This process is the directory's only writer, and akd writes
/// through the same manager, so the cache never holds a stale node; the
/// lifetime only bounds memory held by rarely used parts of the tree.
pub const CACHE_ITEM_LIFETIME: Duration = Duration::from_secs(600);
/// The most memory akd's cache may hold (enforced at akd's cleaning
/// interval, 15 s).
pub const CACHE_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// The akd directory as Rempart runs it.
type Akd = Directory<WhatsAppV1Configuration, DirectoryStorage, FileVrf>;

/// The key-transparency directory of one server.
pub(crate) struct DirectoryService {
    akd: Akd,
    storage: DirectoryStorage,
    db: SharedDatabase,
    keys: DirectoryKeys,
    server_id: String,
    vrf_public_key: Vec<u8>,
    /// Held for writing while an epoch is published, for reading by proofs.
    epochs: RwLock<()>,
}

impl std::fmt::Debug for DirectoryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryService")
            .field("server_id", &self.server_id)
            .finish_non_exhaustive()
    }
}

/// Why the directory could not start, publish or answer.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryServiceError {
    /// A directory key could not be loaded or created.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// akd failed.
    #[error("the akd directory failed")]
    Akd(#[from] AkdError),
    /// akd's storage failed.
    #[error("the directory storage failed: {0:?}")]
    Storage(StorageError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A proof could not be encoded as protobuf.
    #[error("cannot encode a proof")]
    Encode(#[from] protobuf::Error),
    /// Stored state contradicts itself (e.g. a proven value whose device
    /// list is not archived, or an akd epoch without a head).
    #[error("inconsistent directory state: {0}")]
    Inconsistent(String),
}

/// What a request to the directory found.
pub(crate) enum Answer<T> {
    /// The answer.
    Found(T),
    /// Nothing there (unknown user, unpublished epoch).
    Missing(String),
    /// The request cannot be answered as asked.
    Refused(String),
}

impl DirectoryService {
    /// Loads (or creates) the keys in `data_dir`, opens the akd directory in
    /// `store`'s database and stores the head of an epoch akd committed but
    /// whose head was not stored.
    pub(crate) async fn open(
        db: DirectoryDb,
        data_dir: &std::path::Path,
    ) -> Result<Self, DirectoryServiceError> {
        let DirectoryDb::Sqlite(shared) = db else {
            return Err(DirectoryServiceError::Inconsistent(
                "the directory does not run on PostgreSQL yet".into(),
            ));
        };
        let keys = {
            let data_dir = data_dir.to_path_buf();
            tokio::task::spawn_blocking(move || DirectoryKeys::load_or_create(&data_dir))
                .await
                .map_err(|e| StoreError::Backend(Box::new(e)))??
        };
        let storage = DirectoryStorage::from_shared(shared.clone());
        let akd = Directory::new(
            StorageManager::new(
                storage.clone(),
                Some(CACHE_ITEM_LIFETIME),
                Some(CACHE_LIMIT_BYTES),
                None,
            ),
            keys.vrf.clone(),
            AzksParallelismConfig::default(),
        )
        .await?;
        let vrf_public_key = akd.get_public_key().await?.as_bytes().to_vec();
        let service = Self {
            akd,
            storage,
            db: shared,
            server_id: keys.server_id(),
            keys,
            vrf_public_key,
            epochs: RwLock::new(()),
        };
        {
            let _publishing = service.epochs.write().await;
            service.store_missing_head().await?;
        }
        tracing::info!(server_id = %service.server_id, "key-transparency directory ready");
        Ok(service)
    }

    /// Publishes the pending updates every `interval` until `stop` fires,
    /// then once more, and returns.
    pub(crate) async fn run_publisher(
        self: Arc<Self>,
        interval: Duration,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = ticks.tick() => self.publish_logged().await,
            }
        }
        self.publish_logged().await;
    }

    async fn publish_logged(&self) {
        match self.publish_pending().await {
            Ok(Some(epoch)) => tracing::debug!(epoch, "directory epoch published"),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(error = %error_chain(&error), "directory publish failed; the updates stay queued");
            }
        }
    }

    /// Publishes what is pending as one epoch, if anything is new. Returns
    /// the new epoch.
    pub(crate) async fn publish_pending(&self) -> Result<Option<u64>, DirectoryServiceError> {
        let _publishing = self.epochs.write().await;
        self.store_missing_head().await?;
        let pending = self.db.read(queue::pending).await?;
        if pending.updates.is_empty() {
            return Ok(None);
        }
        let up_to = pending.up_to;
        let labels: Vec<AkdLabel> = pending
            .updates
            .keys()
            .map(|user| AkdLabel::from(user.as_str()))
            .collect();
        let current = self
            .storage
            .get_user_state_versions(&labels, ValueStateRetrievalFlag::MaxEpoch)
            .await
            .map_err(DirectoryServiceError::Storage)?;
        // Values akd already holds were published before a crash stopped
        // the queue from being cleared.
        let updates: Vec<(AkdLabel, AkdValue)> = pending
            .updates
            .into_iter()
            .map(|(user, value)| (AkdLabel::from(user.as_str()), AkdValue(value.to_vec())))
            .filter(|(label, value)| current.get(label).is_none_or(|(_, held)| held != value))
            .collect();
        if updates.is_empty() {
            self.db
                .write(move |conn| queue::remove_published(conn, up_to))
                .await?;
            return Ok(None);
        }
        let EpochHash(epoch, root_hash) = self.akd.publish(updates).await?;
        let signed = self.sign_head(epoch, root_hash);
        self.db
            .write(move |conn| {
                heads::store_head(conn, epoch, &signed)?;
                queue::remove_published(conn, up_to)
            })
            .await?;
        Ok(Some(epoch))
    }

    /// Signs and stores the head of akd's latest epoch if it has none.
    /// Called with the epoch lock held for writing.
    async fn store_missing_head(&self) -> Result<(), DirectoryServiceError> {
        let EpochHash(epoch, root_hash) = self.akd.get_epoch_hash().await?;
        let stored = self.db.read(heads::latest_epoch).await?;
        if epoch <= stored {
            return Ok(());
        }
        if epoch > stored + 1 {
            tracing::warn!(
                stored,
                epoch,
                "heads of intermediate epochs are missing; storing the latest only"
            );
        }
        tracing::info!(
            epoch,
            "storing the head of an epoch published before a stop"
        );
        let signed = self.sign_head(epoch, root_hash);
        self.db
            .write(move |conn| heads::store_head(conn, epoch, &signed))
            .await?;
        Ok(())
    }

    fn sign_head(&self, epoch: u64, root_hash: [u8; 32]) -> SignedHead {
        let head = DirectoryHead {
            server_id: self.server_id.clone(),
            epoch,
            root_hash,
            time: crate::auth::unix_now(),
        };
        SignedHead::sign(&head, &self.keys.signing)
    }

    /// The server id and public keys.
    pub(crate) fn info(&self) -> DirectoryInfo {
        DirectoryInfo {
            server_id: self.server_id.clone(),
            directory_key: self.keys.directory_key(),
            vrf_public_key: self.vrf_public_key.clone(),
        }
    }

    /// The head of `epoch` (the latest if `None`) with its cosignatures.
    pub(crate) async fn head(
        &self,
        epoch: Option<u64>,
    ) -> Result<Answer<HeadWithCosignatures>, DirectoryServiceError> {
        let head = self
            .db
            .read(move |conn| {
                let epoch = match epoch {
                    Some(epoch) => epoch,
                    None => heads::latest_epoch(conn)?,
                };
                heads::head_with_cosignatures(conn, epoch)
            })
            .await?;
        Ok(match (head, epoch) {
            (Some(head), _) => Answer::Found(head),
            (None, Some(epoch)) => Answer::Missing(format!("epoch {epoch} is not published")),
            (None, None) => Answer::Missing("no epoch is published yet".into()),
        })
    }

    /// The heads of epochs `from..=to`.
    pub(crate) async fn heads(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Answer<Vec<HeadWithCosignatures>>, DirectoryServiceError> {
        let latest = self.db.read(heads::latest_epoch).await?;
        if from == 0 || from > to || to > latest || to - from >= MAX_HEADS_PER_REQUEST {
            return Ok(Answer::Refused(format!(
                "heads need 1 <= from <= to <= {latest} (the latest epoch) and at most {MAX_HEADS_PER_REQUEST} of them, not from={from} to={to}"
            )));
        }
        let heads = self
            .db
            .read(move |conn| heads::heads_with_cosignatures(conn, from, to))
            .await?;
        Ok(Answer::Found(heads))
    }

    /// The lookup proof for `user` at the latest epoch.
    pub(crate) async fn lookup(
        &self,
        user: &UserName,
    ) -> Result<Answer<LookupResponse>, DirectoryServiceError> {
        let _reading = self.epochs.read().await;
        let label = AkdLabel::from(user.as_str());
        if !self.is_published(&label).await? {
            return Ok(Answer::Missing(format!("{user} is not in the directory")));
        }
        let (proof, EpochHash(epoch, _)) = self.akd.lookup(label).await?;
        let head = self.stored_head(epoch).await?;
        let device_list = self.archived_list(user, &proof.value).await?;
        let proof = proto::LookupProof::from(&proof).write_to_bytes()?;
        Ok(Answer::Found(LookupResponse {
            head,
            proof,
            device_list,
        }))
    }

    /// The lookup proofs, all at the latest epoch, of the asked users whose
    /// published device list is newer than the version the caller holds;
    /// and which asked users have an update queued, or no account.
    pub(crate) async fn lookups(
        &self,
        asked: Vec<KnownVersion>,
    ) -> Result<LookupsResponse, DirectoryServiceError> {
        // A user asked twice counts once, with the lower version.
        let mut lowest: BTreeMap<UserName, u64> = BTreeMap::new();
        for KnownVersion { user, version } in asked {
            let known = lowest.entry(user).or_insert(version);
            *known = (*known).min(version);
        }
        let _reading = self.epochs.read().await;
        let labels: Vec<AkdLabel> = lowest
            .keys()
            .map(|user| AkdLabel::from(user.as_str()))
            .collect();
        let published = self
            .storage
            .get_user_state_versions(&labels, ValueStateRetrievalFlag::MaxEpoch)
            .await
            .map_err(DirectoryServiceError::Storage)?;
        let query: Vec<(String, Option<Vec<u8>>)> = lowest
            .keys()
            .zip(&labels)
            .map(|(user, label)| {
                let value = published.get(label).map(|(_, value)| value.0.clone());
                (user.to_string(), value)
            })
            .collect();
        let facts = self
            .db
            .read(move |conn| queue::lookup_facts(conn, &query))
            .await?;
        let mut answer = LookupsResponse {
            head: None,
            lookups: Vec::new(),
            pending: Vec::new(),
            unknown: Vec::new(),
        };
        let mut newer = Vec::new();
        for ((user, known), facts) in lowest.into_iter().zip(facts) {
            if !facts.exists {
                answer.unknown.push(user);
                continue;
            }
            if facts.pending {
                answer.pending.push(user.clone());
            }
            if let Some(list) = facts.published {
                let version = serde_json::from_slice::<DeviceList>(&list.list)
                    .map_err(|_| {
                        DirectoryServiceError::Inconsistent(format!(
                            "the archived device list of {user} does not parse"
                        ))
                    })?
                    .version;
                if version > known {
                    newer.push((user, list));
                }
            }
        }
        let epoch = if newer.is_empty() {
            self.akd.get_epoch_hash().await?.0
        } else {
            let labels: Vec<AkdLabel> = newer
                .iter()
                .map(|(user, _)| AkdLabel::from(user.as_str()))
                .collect();
            let (proofs, EpochHash(epoch, _)) = self.akd.batch_lookup(&labels).await?;
            for ((user, device_list), proof) in newer.into_iter().zip(&proofs) {
                answer.lookups.push(UserLookup {
                    user,
                    proof: proto::LookupProof::from(proof).write_to_bytes()?,
                    device_list,
                });
            }
            epoch
        };
        if epoch > 0 {
            answer.head = Some(self.stored_head(epoch).await?);
        }
        Ok(answer)
    }

    /// The complete key history proof for `user` at the latest epoch.
    pub(crate) async fn history(
        &self,
        user: &UserName,
    ) -> Result<Answer<HistoryResponse>, DirectoryServiceError> {
        let _reading = self.epochs.read().await;
        let label = AkdLabel::from(user.as_str());
        if !self.is_published(&label).await? {
            return Ok(Answer::Missing(format!("{user} is not in the directory")));
        }
        let (proof, EpochHash(epoch, _)) = self
            .akd
            .key_history(&label, HistoryParams::Complete)
            .await?;
        let head = self.stored_head(epoch).await?;
        let mut versions: Vec<_> = proof
            .update_proofs
            .iter()
            .map(|update| (update.version, &update.value))
            .collect();
        versions.sort_by_key(|(version, _)| *version);
        let mut device_lists = Vec::with_capacity(versions.len());
        for (_, value) in versions {
            device_lists.push(self.archived_list(user, value).await?);
        }
        let proof = proto::HistoryProof::from(&proof).write_to_bytes()?;
        Ok(Answer::Found(HistoryResponse {
            head,
            proof,
            device_lists,
        }))
    }

    /// The append-only proof from epoch `from` to epoch `to`.
    pub(crate) async fn audit(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Answer<AuditResponse>, DirectoryServiceError> {
        let _reading = self.epochs.read().await;
        let latest = self.db.read(heads::latest_epoch).await?;
        if from == 0 || from >= to || to > latest {
            return Ok(Answer::Refused(format!(
                "an audit needs 1 <= from < to <= {latest} (the latest epoch), not from={from} to={to}"
            )));
        }
        let proof = self.akd.audit(from, to).await?;
        let start = self.stored_head(from).await?.head;
        let end = self.stored_head(to).await?.head;
        let proof = proto::AppendOnlyProof::from(&proof).write_to_bytes()?;
        Ok(Answer::Found(AuditResponse { proof, start, end }))
    }

    /// Stores a witness's cosignature if it verifies against the stored
    /// head of its epoch.
    pub(crate) async fn cosign(
        &self,
        post: PostCosignature,
    ) -> Result<Answer<()>, DirectoryServiceError> {
        let epoch = post.epoch;
        let Some(signed) = self.db.read(move |conn| heads::head(conn, epoch)).await? else {
            return Ok(Answer::Refused(format!("epoch {epoch} is not published")));
        };
        let head = signed
            .parse_unverified()
            .map_err(|_| DirectoryServiceError::Inconsistent(format!("head of epoch {epoch}")))?;
        if let Err(error) = post.cosignature.verify(&head) {
            return Ok(Answer::Refused(format!("epoch {epoch}: {error}")));
        }
        let cosignature = post.cosignature;
        self.db
            .write(move |conn| heads::store_cosignature(conn, epoch, &cosignature))
            .await?;
        Ok(Answer::Found(()))
    }

    /// Whether akd holds any value for `label`.
    async fn is_published(&self, label: &AkdLabel) -> Result<bool, DirectoryServiceError> {
        match self
            .storage
            .get_user_state(label, ValueStateRetrievalFlag::MaxEpoch)
            .await
        {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound(_)) => Ok(false),
            Err(error) => Err(DirectoryServiceError::Storage(error)),
        }
    }

    async fn stored_head(&self, epoch: u64) -> Result<HeadWithCosignatures, DirectoryServiceError> {
        self.db
            .read(move |conn| heads::head_with_cosignatures(conn, epoch))
            .await?
            .ok_or_else(|| {
                DirectoryServiceError::Inconsistent(format!("no stored head for epoch {epoch}"))
            })
    }

    async fn archived_list(
        &self,
        user: &UserName,
        value: &AkdValue,
    ) -> Result<SignedDeviceList, DirectoryServiceError> {
        let (name, bytes) = (user.to_string(), value.0.clone());
        self.db
            .read(move |conn| queue::device_list(conn, &name, &bytes))
            .await?
            .ok_or_else(|| {
                DirectoryServiceError::Inconsistent(format!(
                    "a published value of {user} has no archived device list"
                ))
            })
    }
}
