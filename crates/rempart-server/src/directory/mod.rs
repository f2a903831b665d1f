//! The key-transparency directory: where user names map to their device lists.
//!
//! Rempart's directory is an [akd] auditable key directory, the construction
//! behind WhatsApp's key transparency. Its label is a user name and its value
//! the hash of that user's signed device list. Each published epoch commits
//! to the whole directory with one root hash, and lookups, key histories and
//! append-only audits come with proofs that clients and witnesses verify
//! against that hash: the server cannot show one user a device list without
//! committing to it for everyone, nor rewrite a past epoch.
//!
//! akd keeps its state (the tree of its append-only zero-knowledge set, each
//! user's values by epoch, and the latest epoch) in a storage layer it does
//! not own. [`DirectoryStorage`] is that layer over the server's own
//! database, SQLite or PostgreSQL, so the directory survives restarts and
//! shares the server's durable writes. It holds no secret: the VRF key that
//! derives the tree's labels is not stored there.
//!
//! The server's side of it:
//!
//! - its two keys ([`keys`]): the Ed25519 key that signs each epoch head and
//!   akd's VRF key, 32 random bytes each in the data directory (mode 0600);
//! - a durable queue of updates ([`queue`]), written in the same transaction
//!   as every registration and device-list change, with an archive of every
//!   signed device list by the value it is committed under;
//! - a publisher that, every epoch interval, publishes the latest pending
//!   value of each changed user as one akd epoch (none if nothing changed)
//!   and stores the epoch's signed head, beside witness cosignatures;
//! - public endpoints serving heads, lookup, key history and append-only
//!   proofs in akd's protobuf encoding, and taking witness cosignatures.
//!
//! Several server nodes can share one PostgreSQL database, each with its
//! own directory service and the same two key files. They all serve
//! proofs; one at a time publishes, the holder of an advisory lock in the
//! database, and another takes over when it stops. An epoch commit
//! checks in its own transaction that it advances the stored epoch, so two
//! nodes that both believe they lead still cannot both commit an epoch.
//!
//! ```
//! use akd::append_only_zks::AzksParallelismConfig;
//! use akd::ecvrf::HardCodedAkdVRF;
//! use akd::storage::StorageManager;
//! use akd::{AkdLabel, AkdValue, Directory, WhatsAppV1Configuration};
//! use rempart_server::directory::DirectoryStorage;
//! use rempart_server::store::{SqliteStore, Store as _};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = tempfile::tempdir()?;
//! let store = SqliteStore::open(data.path().join("db")).await?;
//! // A fixed VRF key is for examples only.
//! let directory = Directory::<WhatsAppV1Configuration, _, _>::new(
//!     StorageManager::new_no_cache(DirectoryStorage::new(&store)),
//!     HardCodedAkdVRF,
//!     AzksParallelismConfig::default(),
//! )
//! .await?;
//! let alice = AkdLabel::from("alice");
//! directory
//!     .publish(vec![(alice.clone(), AkdValue::from("hash of a device list"))])
//!     .await?;
//!
//! let (proof, head) = directory.lookup(alice.clone()).await?;
//! let vrf_key = directory.get_public_key().await?;
//! let verified = akd::client::lookup_verify::<WhatsAppV1Configuration>(
//!     vrf_key.as_bytes(),
//!     head.hash(),
//!     head.epoch(),
//!     alice,
//!     proof,
//! )
//! // akd_core's VerificationError implements Display but not Error.
//! .map_err(|error| error.to_string())?;
//! assert_eq!(verified.value, AkdValue::from("hash of a device list"));
//! store.close().await;
//! # Ok(())
//! # }
//! ```

mod db;
pub(crate) mod endpoints;
mod epochs;
mod heads;
mod keys;
mod leader;
#[cfg(test)]
mod postgres_tests;
pub(crate) mod queue;
mod storage;

pub(crate) use self::db::DirectoryDb;
pub(crate) use self::epochs::DirectoryService;
pub use self::epochs::{
    CACHE_ITEM_LIFETIME, CACHE_LIMIT_BYTES, DirectoryServiceError, WitnessPolicy,
};
pub use self::keys::{DIRECTORY_KEY_FILE, KeyError, VRF_KEY_FILE};
pub use self::storage::DirectoryStorage;
