//! `rempart-bench directory`: the key-transparency directory on the
//! server's SQLite store against akd's in-memory store.
//!
//! Both stores get the same work, through the same akd
//! [`Directory`] (WhatsApp's tree configuration, the server's parallelism
//! settings and, with [`DirectoryOptions::cache`], the server's record
//! cache; without it, [`StorageManager::new_no_cache`]):
//!
//! 1. **build**: [`DirectoryOptions::users`] new users, published
//!    [`DirectoryOptions::batch`] per epoch, each with a 32-byte value (as
//!    the server's hashes of signed device lists) under a label such as
//!    `user000123`;
//! 2. **update**: [`DirectoryOptions::update_epochs`] epochs of `batch`
//!    existing users each changing their value, spread over the directory;
//! 3. **lookups**: [`DirectoryOptions::lookups`] lookup proofs, spread over
//!    the users, each encoded as the server serves it (akd's protobuf),
//!    then decoded and verified as a client does.
//!
//! Memory is read from `/proc/self/status` right after the build. Each store
//! is measured by [`measure_store`]; [`measure_in_children`] runs each in a
//! process of its own, so that each store's memory figures are its own. The
//! two stores must end on the same root hash and serve byte-identical
//! proofs, or the run fails.

use std::fmt;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use akd::append_only_zks::AzksParallelismConfig;
use akd::ecvrf::HardCodedAkdVRF;
use akd::errors::AkdError;
use akd::proto::specs::types as proto;
use akd::storage::memory::AsyncInMemoryDatabase;
use akd::storage::{Database, StorageManager};
use akd::{AkdLabel, AkdValue, Directory, EpochHash, LookupProof, WhatsAppV1Configuration};
use protobuf::Message as _;
use rempart_server::directory::DirectoryStorage;
use rempart_server::store::{SqliteStore, Store as _, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::memory::MemoryUsage;

/// akd's tree configuration, as the server runs it.
type Config = WhatsAppV1Configuration;

/// How much work one run of the directory benchmark does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryOptions {
    /// Users in the directory once it is built.
    pub users: u64,
    /// Updates per published epoch.
    pub batch: u64,
    /// Epochs of `batch` changed values published after the build.
    pub update_epochs: u64,
    /// Lookup proofs generated and verified.
    pub lookups: u64,
    /// Whether akd's storage manager keeps its in-memory cache of records,
    /// as the server does ([`StorageManager::new`] with the server's
    /// record lifetime and memory limit), or reads every record from its
    /// store ([`StorageManager::new_no_cache`]).
    pub cache: bool,
    /// With `cache`, the cache's memory limit in MiB, which akd enforces
    /// every 15 s by evicting the oldest records; `None` for the server's.
    pub cache_mib: Option<u64>,
}

impl DirectoryOptions {
    /// The full run: 100,000 users.
    pub fn full() -> Self {
        Self {
            users: 100_000,
            batch: 1_000,
            update_epochs: 10,
            lookups: 200,
            cache: false,
            cache_mib: None,
        }
    }

    /// The `--quick` run: 10,000 users.
    pub fn quick() -> Self {
        Self {
            users: 10_000,
            batch: 1_000,
            update_epochs: 3,
            lookups: 50,
            cache: false,
            cache_mib: None,
        }
    }

    /// Epochs published to build the directory (the last may be partial).
    pub fn build_epochs(&self) -> u64 {
        self.users.div_ceil(self.batch.max(1))
    }

    fn check(&self) -> Result<(), DirectoryBenchError> {
        let refuse = |reason: &str| Err(DirectoryBenchError::Options(reason.to_owned()));
        if self.users == 0 || self.batch == 0 || self.lookups == 0 {
            return refuse("users, batch and lookups must each be at least 1");
        }
        if self.batch > self.users {
            return refuse("batch must not exceed users");
        }
        if self.lookups > self.users {
            return refuse("lookups must not exceed users");
        }
        Ok(())
    }
}

/// Which storage the directory runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// The server's own: `DirectoryStorage` over a SQLite database in a
    /// temporary directory, opened as the server opens it.
    Persistent,
    /// akd's `AsyncInMemoryDatabase`.
    InMemory,
}

impl StoreKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Persistent => "persistent",
            Self::InMemory => "in-memory",
        }
    }
}

/// What one store measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreFigures {
    /// Seconds spent publishing the build epochs.
    pub publish_s: f64,
    /// Users published per second over the whole build.
    pub publish_per_s: f64,
    /// Users published per second over the last tenth of the build epochs
    /// (at least one), when the directory is nearly full size.
    pub publish_tail_per_s: f64,
    /// Changed values published per second after the build (0 without
    /// update epochs).
    pub update_per_s: f64,
    /// Mean time to generate one lookup proof, in milliseconds.
    pub lookup_ms: f64,
    /// Mean time to decode and verify one lookup proof, in milliseconds.
    pub lookup_verify_ms: f64,
    /// Mean size of a lookup proof in akd's protobuf encoding, in bytes.
    pub lookup_proof_bytes: f64,
    /// Resident memory right after the build (`VmRSS`).
    pub rss_bytes: u64,
    /// Peak resident memory up to the end of the build (`VmHWM`).
    pub hwm_bytes: u64,
    /// Size of the database and its write-ahead log after the updates; 0
    /// for the in-memory store.
    pub db_bytes: u64,
    /// The directory's root hash at the end, in hex: both stores must agree.
    pub root_hash: String,
    /// SHA-256 of every lookup proof in turn, in hex: both stores must agree.
    pub proofs_digest: String,
}

/// The directory benchmark's figures: the persistent store's under plain
/// names, the in-memory store's prefixed with `inmemory_`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectoryReport {
    /// Users in the directory once built.
    pub users: u64,
    /// Updates per epoch.
    pub batch: u64,
    /// Epochs published to build the directory.
    pub epochs: u64,
    /// Epochs of changed values published after the build.
    pub update_epochs: u64,
    /// Lookup proofs generated and verified per store.
    pub lookups: u64,
    /// 1 if akd's storage manager had its cache, 0 if not (as the server).
    pub cache: u8,
    /// The cache's memory limit in MiB; 0 for none (or no cache).
    pub cache_mib: u64,
    /// Users published per second, persistent store.
    pub publish_per_s: f64,
    /// Users published per second, in-memory store.
    pub inmemory_publish_per_s: f64,
    /// `publish_per_s / inmemory_publish_per_s`.
    pub ratio_to_inmemory: f64,
    /// Users published per second over the last tenth of the build,
    /// persistent store.
    pub publish_tail_per_s: f64,
    /// The same, in-memory store.
    pub inmemory_publish_tail_per_s: f64,
    /// Changed values published per second, persistent store.
    pub update_per_s: f64,
    /// The same, in-memory store.
    pub inmemory_update_per_s: f64,
    /// Mean lookup proof generation time in ms, persistent store.
    pub lookup_ms: f64,
    /// The same, in-memory store.
    pub inmemory_lookup_ms: f64,
    /// Mean time to decode and verify a lookup proof, in ms (client side;
    /// measured in the persistent store's run).
    pub lookup_verify_ms: f64,
    /// Mean protobuf size of a lookup proof, in bytes (the same for both
    /// stores).
    pub lookup_proof_bytes: f64,
    /// Resident memory after the build, persistent store.
    pub rss_bytes: u64,
    /// Peak resident memory up to the end of the build, persistent store.
    pub hwm_bytes: u64,
    /// Resident memory after the build, in-memory store.
    pub inmemory_rss_bytes: u64,
    /// Peak resident memory up to the end of the build, in-memory store.
    pub inmemory_hwm_bytes: u64,
    /// Database and write-ahead log on disk at the end.
    pub db_bytes: u64,
}

impl DirectoryReport {
    /// Puts the two stores' figures side by side, once checked that both
    /// ended on the same directory.
    pub fn new(
        options: &DirectoryOptions,
        persistent: &StoreFigures,
        in_memory: &StoreFigures,
    ) -> Result<Self, DirectoryBenchError> {
        if persistent.root_hash != in_memory.root_hash
            || persistent.proofs_digest != in_memory.proofs_digest
        {
            return Err(DirectoryBenchError::Diverged {
                persistent: persistent.root_hash.clone(),
                in_memory: in_memory.root_hash.clone(),
            });
        }
        Ok(Self {
            users: options.users,
            batch: options.batch,
            epochs: options.build_epochs(),
            update_epochs: options.update_epochs,
            lookups: options.lookups,
            cache: u8::from(options.cache),
            cache_mib: options.cache_mib.unwrap_or(0),
            publish_per_s: persistent.publish_per_s,
            inmemory_publish_per_s: in_memory.publish_per_s,
            ratio_to_inmemory: persistent.publish_per_s / in_memory.publish_per_s,
            publish_tail_per_s: persistent.publish_tail_per_s,
            inmemory_publish_tail_per_s: in_memory.publish_tail_per_s,
            update_per_s: persistent.update_per_s,
            inmemory_update_per_s: in_memory.update_per_s,
            lookup_ms: persistent.lookup_ms,
            inmemory_lookup_ms: in_memory.lookup_ms,
            lookup_verify_ms: persistent.lookup_verify_ms,
            lookup_proof_bytes: persistent.lookup_proof_bytes,
            rss_bytes: persistent.rss_bytes,
            hwm_bytes: persistent.hwm_bytes,
            inmemory_rss_bytes: in_memory.rss_bytes,
            inmemory_hwm_bytes: in_memory.hwm_bytes,
            db_bytes: persistent.db_bytes,
        })
    }
}

impl fmt::Display for DirectoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        writeln!(
            f,
            "directory: {} users in {} epochs of {}, then {} epochs of {} changed values; \
             {} lookups; akd storage cache {}",
            self.users,
            self.epochs,
            self.batch,
            self.update_epochs,
            self.batch,
            self.lookups,
            match (self.cache, self.cache_mib) {
                (0, _) => "off".to_owned(),
                (_, 0) => "on, unbounded".to_owned(),
                (_, mib) => format!("on, {mib} MiB"),
            },
        )?;
        writeln!(f, "{:<36}{:>12}{:>12}", "", "persistent", "in-memory")?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, persistent: f64, in_memory: f64| {
            writeln!(f, "{name:<36}{persistent:>12.1}{in_memory:>12.1}")
        };
        row(
            f,
            "publish, updates/s",
            self.publish_per_s,
            self.inmemory_publish_per_s,
        )?;
        row(
            f,
            "  last tenth of the build, updates/s",
            self.publish_tail_per_s,
            self.inmemory_publish_tail_per_s,
        )?;
        row(
            f,
            "changed values, updates/s",
            self.update_per_s,
            self.inmemory_update_per_s,
        )?;
        writeln!(
            f,
            "{:<36}{:>12.2}{:>12.2}",
            "lookup proof generation, ms", self.lookup_ms, self.inmemory_lookup_ms
        )?;
        row(
            f,
            "RSS after the build, MiB",
            mib(self.rss_bytes),
            mib(self.inmemory_rss_bytes),
        )?;
        row(
            f,
            "peak RSS, MiB",
            mib(self.hwm_bytes),
            mib(self.inmemory_hwm_bytes),
        )?;
        writeln!(
            f,
            "{:<36}{:>12.1}{:>12}",
            "database on disk, MiB",
            mib(self.db_bytes),
            "-"
        )?;
        writeln!(
            f,
            "persistent publish rate / in-memory: {:.2}",
            self.ratio_to_inmemory
        )?;
        write!(
            f,
            "lookup proof: {:.0} bytes (protobuf, mean), decoded and verified in {:.3} ms",
            self.lookup_proof_bytes, self.lookup_verify_ms
        )
    }
}

/// Why the directory benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryBenchError {
    /// The options ask for no work, or for impossible work.
    #[error("invalid options: {0}")]
    Options(String),
    /// akd failed.
    #[error("akd failed: {0}")]
    Akd(#[from] AkdError),
    /// The server's store failed to open.
    #[error("the SQLite store failed")]
    Store(#[from] StoreError),
    /// A temporary file, `/proc/self/status` or a child process failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A lookup proof could not be encoded or decoded as protobuf.
    #[error("lookup proof protobuf: {0}")]
    Protobuf(String),
    /// A lookup proof did not verify, or proved another value.
    #[error("the lookup proof for {user} does not verify: {reason}")]
    Verification {
        /// The user looked up.
        user: String,
        /// What the verifier said.
        reason: String,
    },
    /// The two stores ended on different directories from the same updates.
    #[error(
        "the persistent store ended on root hash {persistent} and the in-memory one on \
         {in_memory} (or their proofs differ), from the same updates"
    )]
    Diverged {
        /// The persistent store's root hash.
        persistent: String,
        /// The in-memory store's root hash.
        in_memory: String,
    },
    /// A child process measuring one store failed.
    #[error("measuring the {store} store failed ({status}): {stderr}")]
    Child {
        /// The store it measured.
        store: &'static str,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// A child process printed something other than its figures.
    #[error("the {store} store's figures are not the expected JSON")]
    ChildOutput {
        /// The store it measured.
        store: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

impl From<protobuf::Error> for DirectoryBenchError {
    fn from(error: protobuf::Error) -> Self {
        Self::Protobuf(error.to_string())
    }
}

/// Measures both stores, each in a child process of its own running `exe`
/// (the `rempart-bench` binary) as `exe --json directory --store KIND …`:
/// the persistent store first, then the in-memory one.
pub fn measure_in_children(
    exe: &Path,
    options: &DirectoryOptions,
) -> Result<DirectoryReport, DirectoryBenchError> {
    options.check()?;
    let persistent = measure_in_child(exe, StoreKind::Persistent, options)?;
    let in_memory = measure_in_child(exe, StoreKind::InMemory, options)?;
    DirectoryReport::new(options, &persistent, &in_memory)
}

/// Measures both stores in this process, the persistent store first. The
/// in-memory store's memory figures then include what the persistent run
/// left allocated, and its peak is at least the persistent run's.
pub async fn measure_in_process(
    options: &DirectoryOptions,
) -> Result<DirectoryReport, DirectoryBenchError> {
    let persistent = measure_store(StoreKind::Persistent, options).await?;
    let in_memory = measure_store(StoreKind::InMemory, options).await?;
    DirectoryReport::new(options, &persistent, &in_memory)
}

/// Builds, updates and looks up a directory on `kind` of storage, in this
/// process.
pub async fn measure_store(
    kind: StoreKind,
    options: &DirectoryOptions,
) -> Result<StoreFigures, DirectoryBenchError> {
    options.check()?;
    match kind {
        StoreKind::InMemory => {
            measure(
                storage_manager(AsyncInMemoryDatabase::new(), options),
                options,
            )
            .await
        }
        StoreKind::Persistent => {
            let data = tempfile::tempdir()?;
            let path = data.path().join("db");
            let store = SqliteStore::open(path.clone()).await?;
            let storage = storage_manager(DirectoryStorage::new(&store), options);
            let measured = measure(storage, options).await;
            let on_disk = database_bytes(&path);
            store.close().await;
            let mut figures = measured?;
            figures.db_bytes = on_disk?;
            Ok(figures)
        }
    }
}

fn measure_in_child(
    exe: &Path,
    kind: StoreKind,
    options: &DirectoryOptions,
) -> Result<StoreFigures, DirectoryBenchError> {
    let mut command = Command::new(exe);
    command.args(["--json", "directory", "--store", kind.name()]);
    for (flag, value) in [
        ("--users", options.users),
        ("--batch", options.batch),
        ("--update-epochs", options.update_epochs),
        ("--lookups", options.lookups),
    ] {
        command.arg(flag).arg(value.to_string());
    }
    if options.cache {
        command.arg("--cache");
    }
    if let Some(mib) = options.cache_mib {
        command.arg("--cache-mib").arg(mib.to_string());
    }
    let output = command.output()?;
    if !output.status.success() {
        return Err(DirectoryBenchError::Child {
            store: kind.name(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|source| DirectoryBenchError::ChildOutput {
        store: kind.name(),
        source,
    })
}

fn storage_manager<Db: Database>(db: Db, options: &DirectoryOptions) -> StorageManager<Db> {
    if options.cache {
        let limit = options
            .cache_mib
            .map(|mib| usize::try_from(mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX));
        // As the server runs it: its record lifetime, and its memory limit
        // unless another is asked for.
        StorageManager::new(
            db,
            Some(rempart_server::directory::CACHE_ITEM_LIFETIME),
            limit.or(Some(rempart_server::directory::CACHE_LIMIT_BYTES)),
            None,
        )
    } else {
        StorageManager::new_no_cache(db)
    }
}

/// The three phases on one store.
async fn measure<Db: Database + 'static>(
    storage: StorageManager<Db>,
    options: &DirectoryOptions,
) -> Result<StoreFigures, DirectoryBenchError> {
    let akd =
        Directory::<Config, _, _>::new(storage, HardCodedAkdVRF, AzksParallelismConfig::default())
            .await?;
    let users = options.users;
    let batch = options.batch;

    // Build: every user once, `batch` per epoch.
    let epochs = options.build_epochs();
    let tail_from = epochs - (epochs / 10).max(1);
    let (mut publishing, mut tail, mut tail_users) = (Duration::ZERO, Duration::ZERO, 0);
    for epoch in 0..epochs {
        let first = epoch * batch;
        let end = (first + batch).min(users);
        let updates = (first..end)
            .map(|user| (label(user), value(user, 0)))
            .collect();
        let took = timed(akd.publish(updates)).await?.1;
        publishing += took;
        if epoch >= tail_from {
            tail += took;
            tail_users += end - first;
        }
    }
    let memory = MemoryUsage::current()?;

    // Update: `batch` distinct users per epoch, spread over the directory.
    let mut versions = vec![0_u64; usize::try_from(users).unwrap_or(usize::MAX)];
    let stride = users / batch;
    let mut updating = Duration::ZERO;
    for round in 0..options.update_epochs {
        let version = round + 1;
        let changed: Vec<u64> = (0..batch).map(|k| (k * stride + round) % users).collect();
        for &user in &changed {
            if let Some(slot) = index(user).and_then(|i| versions.get_mut(i)) {
                *slot = version;
            }
        }
        let updates = changed
            .iter()
            .map(|&user| (label(user), value(user, version)))
            .collect();
        updating += timed(akd.publish(updates)).await?.1;
    }

    // Lookups: generated by the directory, checked as a client checks them.
    let vrf_public_key = akd.get_public_key().await?;
    let (mut looking_up, mut verifying, mut proof_bytes) = (Duration::ZERO, Duration::ZERO, 0);
    let mut proofs = Sha256::new();
    for k in 0..options.lookups {
        let user = k * users / options.lookups;
        let ((proof, EpochHash(epoch, root_hash)), took) = timed(akd.lookup(label(user))).await?;
        looking_up += took;
        let encoded = proto::LookupProof::from(&proof).write_to_bytes()?;
        proof_bytes += encoded.len();
        proofs.update(&encoded);

        let started = Instant::now();
        let decoded = proto::LookupProof::parse_from_bytes(&encoded)?;
        let decoded = LookupProof::try_from(&decoded)
            .map_err(|error| DirectoryBenchError::Protobuf(error.to_string()))?;
        let verified = akd::client::lookup_verify::<Config>(
            vrf_public_key.as_bytes(),
            root_hash,
            epoch,
            label(user),
            decoded,
        );
        verifying += started.elapsed();
        let expected = index(user)
            .and_then(|i| versions.get(i))
            .map(|&version| value(user, version));
        match verified {
            Ok(verified) if Some(&verified.value) == expected.as_ref() => {}
            Ok(_) => {
                return Err(DirectoryBenchError::Verification {
                    user: user_name(user),
                    reason: "it proves another value than the one published".to_owned(),
                });
            }
            Err(error) => {
                return Err(DirectoryBenchError::Verification {
                    user: user_name(user),
                    reason: error.to_string(),
                });
            }
        }
    }
    let EpochHash(_, root_hash) = akd.get_epoch_hash().await?;

    let lookups = options.lookups as f64;
    Ok(StoreFigures {
        publish_s: publishing.as_secs_f64(),
        publish_per_s: per_second(users, publishing),
        publish_tail_per_s: per_second(tail_users, tail),
        update_per_s: per_second(options.update_epochs * batch, updating),
        lookup_ms: looking_up.as_secs_f64() * 1e3 / lookups,
        lookup_verify_ms: verifying.as_secs_f64() * 1e3 / lookups,
        lookup_proof_bytes: proof_bytes as f64 / lookups,
        rss_bytes: memory.rss_bytes,
        hwm_bytes: memory.hwm_bytes,
        db_bytes: 0,
        root_hash: hex::encode(root_hash),
        proofs_digest: hex::encode(proofs.finalize()),
    })
}

/// Runs `work` and says how long it took.
async fn timed<T>(
    work: impl Future<Output = Result<T, AkdError>>,
) -> Result<(T, Duration), AkdError> {
    let started = Instant::now();
    let done = work.await?;
    Ok((done, started.elapsed()))
}

/// `count` per second over `elapsed` (0 for no work).
fn per_second(count: u64, elapsed: Duration) -> f64 {
    if count == 0 {
        return 0.0;
    }
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn index(user: u64) -> Option<usize> {
    usize::try_from(user).ok()
}

/// The name of the `user`th user, as the server's labels are user names.
fn user_name(user: u64) -> String {
    format!("user{user:06}")
}

fn label(user: u64) -> AkdLabel {
    AkdLabel::from(user_name(user).as_str())
}

/// The `version`th value of `user`: 32 bytes, as the server's hash of a
/// signed device list.
fn value(user: u64, version: u64) -> AkdValue {
    let digest = Sha256::new()
        .chain_update(user.to_be_bytes())
        .chain_update(version.to_be_bytes())
        .finalize();
    AkdValue(digest.to_vec())
}

/// The database file and its write-ahead log, in bytes.
fn database_bytes(path: &Path) -> io::Result<u64> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let main = std::fs::metadata(path)?.len();
    let wal = match std::fs::metadata(&wal) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
        Err(error) => return Err(error),
    };
    Ok(main + wal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_values_look_like_the_servers() {
        assert_eq!(label(123), AkdLabel::from("user000123"));
        assert_eq!(value(1, 0).0.len(), 32);
        assert_ne!(value(1, 0), value(1, 1));
        assert_ne!(value(1, 0), value(2, 0));
    }

    #[test]
    fn options_that_ask_for_nothing_or_too_much_are_refused() {
        assert!(DirectoryOptions::full().check().is_ok());
        assert!(DirectoryOptions::quick().check().is_ok());
        for bad in [
            DirectoryOptions {
                users: 0,
                ..DirectoryOptions::quick()
            },
            DirectoryOptions {
                batch: 20_000,
                ..DirectoryOptions::quick()
            },
            DirectoryOptions {
                lookups: 0,
                ..DirectoryOptions::quick()
            },
        ] {
            assert!(matches!(bad.check(), Err(DirectoryBenchError::Options(_))));
        }
    }

    #[test]
    fn the_last_build_epoch_may_be_partial() {
        let options = DirectoryOptions {
            users: 2_500,
            ..DirectoryOptions::quick()
        };
        assert_eq!(options.build_epochs(), 3);
    }
}
