//! The witness's Ed25519 key, the one secret it holds.
//!
//! 32 random bytes in [`WITNESS_KEY_FILE`] in the data directory, created on
//! first use with mode 0600 (written in full and synced under a temporary
//! name, then renamed into place, so a crash never leaves a short key) and
//! read back afterwards, by
//! [`load_or_create_seed`](rempart_proto::local::load_or_create_seed). In
//! memory it lives in a [`SigningKey`], which zeroizes on drop;
//! [`WitnessKey`]'s `Debug` prints the public key only and nothing here logs
//! the seed.

use std::fmt;
use std::path::Path;

use ed25519_dalek::SigningKey;
use rempart_proto::PublicKey;
use rempart_proto::directory::{Cosignature, DirectoryHead};
use rempart_proto::local::load_or_create_seed;

/// The witness key's file in the data directory.
pub const WITNESS_KEY_FILE: &str = "witness.key";

/// The key a witness cosigns heads with.
pub(crate) struct WitnessKey {
    /// Zeroizes on drop (ed25519-dalek's `zeroize` feature).
    signing: SigningKey,
}

impl WitnessKey {
    /// Loads the key from `data_dir`, creating it if missing.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Self, KeyError> {
        let seed = load_or_create_seed(&data_dir.join(WITNESS_KEY_FILE))?;
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

/// Why the witness key could not be loaded or created: the shared seed
/// file's error, which names the file and holds none of its bytes.
pub use rempart_proto::local::SeedFileError as KeyError;

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use rempart_proto::local::SEED_BYTES;

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
