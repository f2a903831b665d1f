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
//! not own. [`DirectoryStorage`] is that layer over the server's own SQLite
//! database, so the directory survives restarts and shares the server's
//! durable, group-committed writes. It holds no secret: the VRF key that
//! derives the tree's labels is not stored there.
//!
//! So far this module is the storage only: the publisher, its keys and the
//! directory's endpoints come next.
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

mod storage;

pub use self::storage::DirectoryStorage;
