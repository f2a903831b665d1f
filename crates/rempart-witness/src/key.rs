//! The witness's Ed25519 key, the one secret it holds.
//!
//! 32 random bytes in [`WITNESS_KEY_FILE`] in the data directory, created on
//! first use with mode 0600 (written in full and synced under a temporary
//! name, then renamed into place, so a crash never leaves a short key) and
//! read back afterwards. In memory it lives in a [`SigningKey`], which
//! zeroizes on drop; [`WitnessKey`]'s `Debug` prints the public key only and
//! nothing here logs the seed.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use rand::RngCore as _;
use rand::rngs::OsRng;
use rempart_proto::PublicKey;
use rempart_proto::directory::{Cosignature, DirectoryHead};
use zeroize::Zeroizing;

/// The witness key's file in the data directory.
pub const WITNESS_KEY_FILE: &str = "witness.key";
/// Length of the key file: an Ed25519 seed.
const SEED_BYTES: usize = 32;

/// The key a witness cosigns heads with.
pub(crate) struct WitnessKey {
    /// Zeroizes on drop (ed25519-dalek's `zeroize` feature).
    signing: SigningKey,
}

impl WitnessKey {
    /// Loads the key from `data_dir`, creating it if missing.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Self, KeyError> {
        let seed = load_or_create(&data_dir.join(WITNESS_KEY_FILE))?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// The public key, which clients configure with `rempart init --witness`.
    pub(crate) fn public_key(&self) -> PublicKey {
        PublicKey::new(self.signing.verifying_key())
    }

    /// Cosigns `(server id, epoch, root hash)` of `head`.
    pub(crate) fn cosign(&self, head: &DirectoryHead) -> Cosignature {
        Cosignature::sign(&self.signing, &head.server_id, head.epoch, &head.root_hash)
    }
}

impl fmt::Debug for WitnessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitnessKey")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// Why the witness key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read, created or written.
    #[error("cannot read or create the witness key file {}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The key file does not hold exactly 32 bytes.
    #[error("the witness key file {} holds {found} bytes, expected {SEED_BYTES}", path.display())]
    Length {
        /// The key file.
        path: PathBuf,
        /// Its length.
        found: usize,
    },
}

fn load_or_create(path: &Path) -> Result<Zeroizing<[u8; SEED_BYTES]>, KeyError> {
    let io_error = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::File::open(path) {
        Ok(file) => {
            let mut bytes = Zeroizing::new(Vec::with_capacity(SEED_BYTES + 1));
            // Read one byte more than a seed to notice a longer file.
            file.take(SEED_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(io_error)?;
            let seed: [u8; SEED_BYTES] =
                bytes.as_slice().try_into().map_err(|_| KeyError::Length {
                    path: path.to_path_buf(),
                    found: bytes.len(),
                })?;
            Ok(Zeroizing::new(seed))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => create(path).map_err(io_error),
        Err(error) => Err(io_error(error)),
    }
}

/// Creates a new random seed at `path`: written and synced under a temporary
/// name created with mode 0600, then renamed into place.
fn create(path: &Path) -> io::Result<Zeroizing<[u8; SEED_BYTES]>> {
    let mut seed = Zeroizing::new([0; SEED_BYTES]);
    OsRng.fill_bytes(seed.as_mut());
    let temporary = path.with_extension("key.new");
    // A leftover from a crash during an earlier creation holds no used key.
    match fs::remove_file(&temporary) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(seed.as_ref())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_key_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = WitnessKey::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(WITNESS_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = WitnessKey::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        assert_eq!(first.signing.to_bytes(), again.signing.to_bytes());
        assert_ne!(first.signing.to_bytes(), [0; SEED_BYTES]);
    }

    #[test]
    fn debug_shows_the_public_key_and_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let key = WitnessKey::load_or_create(dir.path()).unwrap();
        let shown = format!("{key:?}");
        let seed = key.signing.to_bytes();
        assert!(shown.contains(&String::from(key.public_key())));
        assert!(!shown.contains(&hex::encode(seed)));
        assert!(!shown.contains(&rempart_proto::b64::encode(&seed)));
    }

    #[test]
    fn a_key_file_of_the_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for length in [31, 33] {
            fs::write(dir.path().join(WITNESS_KEY_FILE), vec![1; length]).unwrap();
            assert!(matches!(
                WitnessKey::load_or_create(dir.path()),
                Err(KeyError::Length { found, .. }) if found == length
            ));
        }
    }
}
