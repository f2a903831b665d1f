//! The directory service: publishes epochs and answers proofs.
//!
//! One [`DirectoryService`] per server node owns an akd [`Directory`] over
//! the server's database. Its publisher runs every epoch interval: it reads
//! the durable queue ([`queue`](super::queue)), keeps the latest value per
//! user, publishes them in one akd epoch if there is anything new, signs the
//! epoch's head with the directory key and, in one transaction, stores the
//! head and removes the queue rows it read. Nothing pending means no epoch.
//!
//! Publishing and the proofs share one lock: the publisher holds it for
//! writing from the akd publish until the head is stored, and every proof
//! holds it for reading, so on one node a proof is always for an epoch
//! whose signed head is stored. If the process stops between akd's commit
//! and the head's, the next start (or the next publisher tick) signs and
//! stores the missing head; the queue rows of that epoch are then still
//! there, and are dropped unpublished because akd already holds their
//! values.
//!
//! # Several nodes on one PostgreSQL database
//!
//! Every node serves proofs, but only one publishes: the holder of the
//! publisher lock ([`leader`](super::leader)). The others try to take it at
//! each tick, so when the leader stops, another takes over within an epoch
//! interval or two. A node that takes the lead first empties akd's cache,
//! which may hold what another node has since replaced, and stores the head
//! of an epoch its predecessor committed without one. A publish that fails
//! (another node committed the epoch first) empties the cache too, since
//! akd caches an epoch's records before writing them.
//!
//! A node that does not publish reads what the leader writes through its
//! own akd cache. Before each proof it compares the latest stored head with
//! the one it last saw and empties the cache if another node stored a new
//! one. akd may then hold an epoch whose head the leader has not stored yet;
//! a proof for it is refused as [`DirectoryServiceError::NotReady`], which
//! clients retry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
use rempart_proto::mail::{MailAddress, MailLookupResponse, mail_label};
use rempart_proto::{DeviceList, SignedDeviceList, UserName};
use tokio::sync::{Mutex, RwLock, RwLockReadGuard, oneshot};
use tokio::time::MissedTickBehavior;

use super::DirectoryDb;
use super::DirectoryStorage;
use super::db::KeyCheck;
use super::keys::{DirectoryKeys, FileVrf, KeyError};
use super::leader::{Lead, OpeningLock, PublisherLock};
use crate::store::StoreError;

/// How long akd's storage manager keeps a tree node or value read from the
/// database. The publishing node writes through the same manager, so its
/// cache never holds a stale node, and a node that does not publish empties
/// its cache when another stores a new epoch; the lifetime only bounds
/// memory held by rarely used parts of the tree.
pub const CACHE_ITEM_LIFETIME: Duration = Duration::from_secs(600);
/// The most memory akd's cache may hold (enforced at akd's cleaning
/// interval, 15 s).
pub const CACHE_LIMIT_BYTES: usize = 256 * 1024 * 1024;

/// The akd directory as Rempart runs it.
type Akd = Directory<WhatsAppV1Configuration, DirectoryStorage, FileVrf>;

/// The key-transparency directory of one server node.
pub(crate) struct DirectoryService {
    akd: Akd,
    /// akd's storage manager (a handle on the same cache), to empty the
    /// cache when the database changed under it.
    manager: StorageManager<DirectoryStorage>,
    storage: DirectoryStorage,
    db: DirectoryDb,
    keys: DirectoryKeys,
    server_id: String,
    vrf_public_key: Vec<u8>,
    /// Held for writing while an epoch is published or akd's cache emptied,
    /// for reading by proofs.
    epochs: RwLock<()>,
    /// The latest stored head when akd's cache was last known to agree with
    /// the database.
    seen_head: AtomicU64,
    /// On PostgreSQL, the lock that makes this node the publisher; on
    /// SQLite, `None`: this node is the only one, and always publishes.
    publisher_lock: Option<Mutex<PublisherLock>>,
    /// Whose cosignatures are accepted and served.
    witnesses: WitnessPolicy,
}

/// Whose cosignatures the directory takes and serves with its heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessPolicy {
    /// Only these witnesses' (none if empty), each checked against the head
    /// it cosigns and kept once per epoch: what `rempart-server --witness
    /// KEY` sets. Cosignatures stored under an earlier policy are no
    /// longer served.
    Only(Vec<rempart_proto::PublicKey>),
    /// Any key's cosignature that verifies against its head, one per key
    /// and epoch: for test setups whose witnesses come after the server.
    /// On an open server anyone could grow every head with it, so the
    /// binary has no flag for it.
    AnyVerifying,
}

impl WitnessPolicy {
    fn accepts(&self, witness: &rempart_proto::PublicKey) -> bool {
        match self {
            Self::Only(listed) => listed.contains(witness),
            Self::AnyVerifying => true,
        }
    }

    /// `head` with only the cosignatures this policy accepts.
    fn served(&self, mut head: HeadWithCosignatures) -> HeadWithCosignatures {
        head.cosignatures.retain(|c| self.accepts(&c.witness));
        head
    }
}

impl Default for WitnessPolicy {
    /// No witness: no cosignature is taken.
    fn default() -> Self {
        Self::Only(Vec::new())
    }
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
    Akd(AkdError),
    /// akd's storage failed.
    #[error("the directory storage failed: {0:?}")]
    Storage(StorageError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A proof could not be encoded as protobuf.
    #[error("cannot encode a proof")]
    Encode(#[from] protobuf::Error),
    /// This node's key files are not those of the other nodes on its
    /// database.
    #[error(
        "this node's {0} is not the one the other nodes on this database use: give every node the key files of the first (directory.key and vrf.key in its data directory)"
    )]
    OtherKeys(&'static str),
    /// Stored state contradicts itself (e.g. a proven value whose device
    /// list is not archived, or an akd epoch without a head).
    #[error("inconsistent directory state: {0}")]
    Inconsistent(String),
    /// The latest epoch has no signed head yet: another node committed it
    /// and has not stored its head. Retrying shortly succeeds.
    #[error("epoch {0} is committed but its signed head is not stored yet")]
    NotReady(u64),
}

/// akd's errors, with a database that cannot be reached reported as such.
impl From<AkdError> for DirectoryServiceError {
    fn from(error: AkdError) -> Self {
        match error {
            AkdError::Storage(error) => error.into(),
            other => Self::Akd(other),
        }
    }
}

impl From<StorageError> for DirectoryServiceError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Connection(message) => {
                tracing::warn!(%message, "the directory's database is unreachable");
                Self::Store(StoreError::Unavailable)
            }
            other => Self::Storage(other),
        }
    }
}

/// What one turn of the publisher did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Another node publishes; this one did not.
    Followed,
    /// This node publishes: the new epoch, if anything new was pending.
    Published(Option<u64>),
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
    /// Loads (or creates) the keys in `data_dir` and opens the akd
    /// directory in the server's database. On SQLite, also stores the head
    /// of an epoch akd committed but whose head was not stored; on
    /// PostgreSQL the publisher does that once it leads.
    pub(crate) async fn open(
        db: DirectoryDb,
        data_dir: &std::path::Path,
    ) -> Result<Self, DirectoryServiceError> {
        let keys = {
            let data_dir = data_dir.to_path_buf();
            tokio::task::spawn_blocking(move || DirectoryKeys::load_or_create(&data_dir))
                .await
                .map_err(|e| StoreError::Backend(Box::new(e)))??
        };
        let storage = DirectoryStorage::from_db(&db);
        let manager = StorageManager::new(
            storage.clone(),
            Some(CACHE_ITEM_LIFETIME),
            Some(CACHE_LIMIT_BYTES),
            None,
        );
        let (publisher_lock, opening) = match &db {
            DirectoryDb::Sqlite(_) => (None, None),
            DirectoryDb::Postgres(pool) => (
                Some(Mutex::new(PublisherLock::new(pool.clone()))),
                Some(OpeningLock::take(pool).await?),
            ),
        };
        // akd creates the directory's first state if it finds none: under
        // the opening lock, only the first node to start does.
        let akd = Directory::new(
            manager.clone(),
            keys.vrf.clone(),
            AzksParallelismConfig::default(),
        )
        .await?;
        drop(opening);
        let vrf_public_key = akd.get_public_key().await?.as_bytes().to_vec();
        match db
            .check_keys(keys.directory_key().as_bytes(), &vrf_public_key)
            .await?
        {
            KeyCheck::Same => {}
            KeyCheck::OtherDirectoryKey => {
                return Err(DirectoryServiceError::OtherKeys("directory.key"));
            }
            KeyCheck::OtherVrfKey => return Err(DirectoryServiceError::OtherKeys("vrf.key")),
        }
        let service = Self {
            akd,
            manager,
            storage,
            db,
            server_id: keys.server_id(),
            keys,
            vrf_public_key,
            epochs: RwLock::new(()),
            seen_head: AtomicU64::new(0),
            publisher_lock,
            witnesses: WitnessPolicy::default(),
        };
        {
            let _publishing = service.epochs.write().await;
            if service.publisher_lock.is_none() {
                service.store_missing_head().await?;
            }
            let latest = service.db.latest_epoch().await?;
            service.seen_head.store(latest, Ordering::Release);
        }
        tracing::info!(server_id = %service.server_id, "key-transparency directory ready");
        Ok(service)
    }

    /// Takes a publisher turn every `interval` until `stop` fires, then
    /// publishes once more if this node leads, gives the lead up and
    /// returns.
    pub(crate) async fn run_publisher(
        self: Arc<Self>,
        interval: Duration,
        mut stop: oneshot::Receiver<()>,
    ) {
        // The first turn one interval after the start, like every other:
        // an immediate one would publish whatever arrives while the node
        // starts, at a moment that depends on scheduling.
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = ticks.tick() => log_turn(self.turn().await),
            }
        }
        match &self.publisher_lock {
            None => log_turn(self.publish_pending().await.map(Turn::Published)),
            Some(lock) => {
                let mut lock = lock.lock().await;
                if lock.held() {
                    log_turn(self.publish_pending().await.map(Turn::Published));
                    lock.release();
                    tracing::info!("this node no longer publishes the directory");
                }
            }
        }
    }

    /// One turn of the publisher: on PostgreSQL, keeps or tries to take the
    /// lead first; then publishes what is pending if this node leads.
    pub(crate) async fn turn(&self) -> Result<Turn, DirectoryServiceError> {
        let Some(lock) = &self.publisher_lock else {
            return Ok(Turn::Published(self.publish_pending().await?));
        };
        let mut lock = lock.lock().await;
        match lock.keep_or_take().await? {
            Lead::Follows => return Ok(Turn::Followed),
            Lead::Lost => {
                tracing::warn!(
                    "this node lost the directory publisher lock; another node may publish"
                );
                return Ok(Turn::Followed);
            }
            Lead::Taken => {
                tracing::info!("this node now publishes the directory");
                let _publishing = self.epochs.write().await;
                self.manager.flush_cache().await;
            }
            Lead::Kept => {}
        }
        Ok(Turn::Published(self.publish_pending().await?))
    }

    /// Publishes what is pending as one epoch, if anything is new, whether
    /// or not this node leads. Returns the new epoch.
    pub(crate) async fn publish_pending(&self) -> Result<Option<u64>, DirectoryServiceError> {
        let _publishing = self.epochs.write().await;
        let published = self.publish_locked().await;
        if published.is_err() {
            // akd caches an epoch's records before writing them: if the
            // write failed, the cache holds records the database does not.
            self.manager.flush_cache().await;
        }
        published
    }

    /// [`publish_pending`](Self::publish_pending), with the epoch lock held
    /// for writing.
    async fn publish_locked(&self) -> Result<Option<u64>, DirectoryServiceError> {
        self.store_missing_head().await?;
        let pending = self.db.pending().await?;
        if pending.updates.is_empty() {
            return Ok(None);
        }
        let labels: Vec<AkdLabel> = pending
            .updates
            .keys()
            .map(|user| AkdLabel::from(user.as_str()))
            .collect();
        let current = self
            .storage
            .get_user_state_versions(&labels, ValueStateRetrievalFlag::MaxEpoch)
            .await?;
        // Values akd already holds were published before a crash stopped
        // the queue from being cleared.
        let updates: Vec<(AkdLabel, AkdValue)> = pending
            .updates
            .into_iter()
            .map(|(user, value)| (AkdLabel::from(user.as_str()), AkdValue(value.to_vec())))
            .filter(|(label, value)| current.get(label).is_none_or(|(_, held)| held != value))
            .collect();
        if updates.is_empty() {
            self.db.remove_published(pending.ids).await?;
            return Ok(None);
        }
        let EpochHash(epoch, root_hash) = self.akd.publish(updates).await?;
        let signed = self.sign_head(epoch, root_hash);
        self.db.store_head(epoch, signed, pending.ids).await?;
        self.seen_head.store(epoch, Ordering::Release);
        Ok(Some(epoch))
    }

    /// Signs and stores the head of akd's latest epoch if it has none.
    /// Called with the epoch lock held for writing.
    async fn store_missing_head(&self) -> Result<(), DirectoryServiceError> {
        let stored = self.db.latest_epoch().await?;
        let mut akd_head = self.akd.get_epoch_hash().await?;
        if akd_head.epoch() < stored {
            // Another node published since this one's cache was filled.
            self.manager.flush_cache().await;
            akd_head = self.akd.get_epoch_hash().await?;
        }
        let EpochHash(epoch, root_hash) = akd_head;
        if epoch <= stored {
            self.seen_head.store(stored, Ordering::Release);
            return Ok(());
        }
        if epoch > stored + 1 {
            tracing::warn!(
                stored,
                epoch,
                "heads of intermediate epochs are missing; storing the latest only"
            );
        }
        tracing::info!(epoch, "storing the head of an epoch committed without one");
        let signed = self.sign_head(epoch, root_hash);
        self.db.store_head(epoch, signed, Vec::new()).await?;
        self.seen_head.store(epoch, Ordering::Release);
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

    /// Holds the epoch lock for reading, once akd's cache agrees with the
    /// database: on PostgreSQL, if another node stored a head since this
    /// one last looked, the cache is emptied first.
    async fn current(&self) -> Result<RwLockReadGuard<'_, ()>, DirectoryServiceError> {
        if self.publisher_lock.is_some() {
            let stored = self.db.latest_epoch().await?;
            if stored != self.seen_head.load(Ordering::Acquire) {
                let _flushing = self.epochs.write().await;
                // The publisher of this node may have stored it meanwhile.
                let stored = self.db.latest_epoch().await?;
                if stored != self.seen_head.load(Ordering::Acquire) {
                    self.manager.flush_cache().await;
                    self.seen_head.store(stored, Ordering::Release);
                }
            }
        }
        Ok(self.epochs.read().await)
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
        let head = self.db.head_with_cosignatures(epoch).await?;
        Ok(match (head, epoch) {
            (Some(head), _) => Answer::Found(self.witnesses.served(head)),
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
        let latest = self.db.latest_epoch().await?;
        if from == 0 || from > to || to > latest || to - from >= MAX_HEADS_PER_REQUEST {
            return Ok(Answer::Refused(format!(
                "heads need 1 <= from <= to <= {latest} (the latest epoch) and at most {MAX_HEADS_PER_REQUEST} of them, not from={from} to={to}"
            )));
        }
        let heads = self.db.heads_with_cosignatures(from, to).await?;
        Ok(Answer::Found(
            heads
                .into_iter()
                .map(|head| self.witnesses.served(head))
                .collect(),
        ))
    }

    /// The lookup proof for `user` at the latest epoch.
    pub(crate) async fn lookup(
        &self,
        user: &UserName,
    ) -> Result<Answer<LookupResponse>, DirectoryServiceError> {
        let _reading = self.current().await?;
        let label = AkdLabel::from(user.as_str());
        let EpochHash(latest, _) = self.akd.get_epoch_hash().await?;
        if !self.is_published(&label, latest).await? {
            return Ok(Answer::Missing(format!("{user} is not in the directory")));
        }
        let (proof, EpochHash(epoch, _)) = self.akd.lookup(label).await?;
        let head = self.stored_head(epoch).await?;
        let device_list = self.archived_list(user.as_str(), &proof.value).await?;
        let proof = proto::LookupProof::from(&proof).write_to_bytes()?;
        Ok(Answer::Found(LookupResponse {
            head,
            proof,
            device_list,
        }))
    }

    /// The proofs that `address` is published with `user`'s current device
    /// list: both labels' lookup proofs at one epoch, with the list; the
    /// certificate is the caller's to add.
    pub(crate) async fn mail_lookup(
        &self,
        address: &MailAddress,
        user: &UserName,
    ) -> Result<Answer<MailLookupResponse>, DirectoryServiceError> {
        let _reading = self.current().await?;
        let address_label = AkdLabel::from(mail_label(address).as_str());
        let EpochHash(latest, _) = self.akd.get_epoch_hash().await?;
        if !self.is_published(&address_label, latest).await? {
            return Ok(Answer::Missing(format!(
                "{address} is not in the directory (yet: a new address is published at the next epoch)"
            )));
        }
        let labels = [address_label, AkdLabel::from(user.as_str())];
        let (proofs, EpochHash(epoch, _)) = self.akd.batch_lookup(&labels).await?;
        let [address_proof, user_proof] = proofs.as_slice() else {
            return Err(DirectoryServiceError::Inconsistent(format!(
                "akd gave {} proofs for two labels",
                proofs.len()
            )));
        };
        let head = self.stored_head(epoch).await?;
        let device_list = self.archived_list(user.as_str(), &user_proof.value).await?;
        Ok(Answer::Found(MailLookupResponse {
            head,
            user: user.clone(),
            address_proof: proto::LookupProof::from(address_proof).write_to_bytes()?,
            user_proof: proto::LookupProof::from(user_proof).write_to_bytes()?,
            device_list,
            certificate: Vec::new(),
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
        // Which users have a change queued, asked before the epoch is read:
        // a change no longer queued now was published in an epoch stored
        // before this point (the queue row goes with the head's write), so
        // the epoch read below holds it. Asked only after, a change that
        // another node publishes in between would be neither queued nor in
        // the epoch read, and look like no change at all.
        let queued_before: Vec<bool> = self
            .db
            .lookup_facts(lowest.keys().map(|user| (user.to_string(), None)).collect())
            .await?
            .into_iter()
            .map(|facts| facts.pending)
            .collect();
        let _reading = self.current().await?;
        let EpochHash(epoch, _) = self.akd.get_epoch_hash().await?;
        let labels: Vec<AkdLabel> = lowest
            .keys()
            .map(|user| AkdLabel::from(user.as_str()))
            .collect();
        // Another node may have committed a newer epoch: the values are
        // those of the epoch akd proves.
        let published = self
            .storage
            .get_user_state_versions(&labels, ValueStateRetrievalFlag::LeqEpoch(epoch))
            .await?;
        let query: Vec<(String, Option<Vec<u8>>)> = lowest
            .keys()
            .zip(&labels)
            .map(|(user, label)| {
                let value = published.get(label).map(|(_, value)| value.0.clone());
                (user.to_string(), value)
            })
            .collect();
        let facts = self.db.lookup_facts(query).await?;
        let mut answer = LookupsResponse {
            head: None,
            lookups: Vec::new(),
            pending: Vec::new(),
            unknown: Vec::new(),
        };
        let mut newer = Vec::new();
        for (((user, known), facts), queued_before) in
            lowest.into_iter().zip(facts).zip(queued_before)
        {
            if !facts.exists {
                answer.unknown.push(user);
                continue;
            }
            if facts.pending || queued_before {
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
        if !newer.is_empty() {
            let labels: Vec<AkdLabel> = newer
                .iter()
                .map(|(user, _)| AkdLabel::from(user.as_str()))
                .collect();
            let (proofs, EpochHash(proved, _)) = self.akd.batch_lookup(&labels).await?;
            if proved != epoch {
                return Err(DirectoryServiceError::Inconsistent(format!(
                    "akd moved from epoch {epoch} to {proved} during one batch lookup"
                )));
            }
            for ((user, device_list), proof) in newer.into_iter().zip(&proofs) {
                answer.lookups.push(UserLookup {
                    user,
                    proof: proto::LookupProof::from(proof).write_to_bytes()?,
                    device_list,
                });
            }
        }
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
        self.label_history(user.as_str()).await
    }

    /// The complete key history proof for the mail address `address` (its
    /// label, [`mail_label`]) at the latest epoch: every device list it was
    /// ever published with.
    pub(crate) async fn mail_history(
        &self,
        address: &MailAddress,
    ) -> Result<Answer<HistoryResponse>, DirectoryServiceError> {
        self.label_history(&mail_label(address)).await
    }

    /// The complete key history proof for `label` at the latest epoch, with
    /// the device list of each version, as archived under that label.
    async fn label_history(
        &self,
        name: &str,
    ) -> Result<Answer<HistoryResponse>, DirectoryServiceError> {
        let _reading = self.current().await?;
        let label = AkdLabel::from(name);
        let EpochHash(latest, _) = self.akd.get_epoch_hash().await?;
        if !self.is_published(&label, latest).await? {
            return Ok(Answer::Missing(format!("{name} is not in the directory")));
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
            device_lists.push(self.archived_list(name, value).await?);
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
        let _reading = self.current().await?;
        let latest = self.db.latest_epoch().await?;
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
    /// Takes and serves cosignatures as `witnesses` says.
    pub(crate) fn accepting(mut self, witnesses: WitnessPolicy) -> Self {
        self.witnesses = witnesses;
        self
    }

    pub(crate) async fn cosign(
        &self,
        post: PostCosignature,
    ) -> Result<Answer<()>, DirectoryServiceError> {
        let epoch = post.epoch;
        if !self.witnesses.accepts(&post.cosignature.witness) {
            return Ok(Answer::Refused(
                "the cosigning key is not a witness of this server: its operator lists them with --witness KEY"
                    .into(),
            ));
        }
        let Some(signed) = self.db.head(epoch).await? else {
            return Ok(Answer::Refused(format!("epoch {epoch} is not published")));
        };
        let head = signed
            .parse_unverified()
            .map_err(|_| DirectoryServiceError::Inconsistent(format!("head of epoch {epoch}")))?;
        if let Err(error) = post.cosignature.verify(&head) {
            return Ok(Answer::Refused(format!("epoch {epoch}: {error}")));
        }
        self.db.store_cosignature(epoch, post.cosignature).await?;
        Ok(Answer::Found(()))
    }

    /// Whether akd holds a value for `label` at `epoch` or before.
    async fn is_published(
        &self,
        label: &AkdLabel,
        epoch: u64,
    ) -> Result<bool, DirectoryServiceError> {
        match self
            .storage
            .get_user_state(label, ValueStateRetrievalFlag::LeqEpoch(epoch))
            .await
        {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound(_)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// The stored head of `epoch`, an epoch akd proves.
    async fn stored_head(&self, epoch: u64) -> Result<HeadWithCosignatures, DirectoryServiceError> {
        if let Some(head) = self.db.head_with_cosignatures(Some(epoch)).await? {
            return Ok(self.witnesses.served(head));
        }
        if epoch > self.db.latest_epoch().await? {
            return Err(DirectoryServiceError::NotReady(epoch));
        }
        Err(DirectoryServiceError::Inconsistent(format!(
            "no stored head for epoch {epoch}"
        )))
    }

    async fn archived_list(
        &self,
        label: &str,
        value: &AkdValue,
    ) -> Result<SignedDeviceList, DirectoryServiceError> {
        self.db
            .device_list(label.to_owned(), value.0.clone())
            .await?
            .ok_or_else(|| {
                DirectoryServiceError::Inconsistent(format!(
                    "a published value of {label} has no archived device list"
                ))
            })
    }
}

/// Logs what a publisher turn did, or why it failed.
fn log_turn(turn: Result<Turn, DirectoryServiceError>) {
    match turn {
        Ok(Turn::Published(Some(epoch))) => tracing::debug!(epoch, "directory epoch published"),
        Ok(Turn::Published(None) | Turn::Followed) => {}
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "directory publish failed; the updates stay queued");
        }
    }
}
