//! The directory's two secrets, each in its own file of the data directory:
//! the Ed25519 key that signs epoch heads ([`DIRECTORY_KEY_FILE`]) and akd's
//! VRF key, which derives the tree's labels from user names
//! ([`VRF_KEY_FILE`]).
//!
//! Both are 32 random bytes, created on first start with mode 0600 (the file
//! is created with that mode, written in full and synced under a temporary
//! name, then renamed into place, so a crash never leaves a short key) and
//! read back on later starts, by
//! [`load_or_create_seed`](rempart_proto::local::load_or_create_seed). In
//! memory they live in types that zeroize on drop and print no secret in
//! `Debug`; nothing here logs them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use akd::ecvrf::{VRFKeyStorage, VrfError};
use ed25519_dalek::SigningKey;
use rempart_proto::PublicKey;
use rempart_proto::local::{SEED_BYTES, load_or_create_seed};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// The directory signing key's file in the data directory.
pub const DIRECTORY_KEY_FILE: &str = "directory.key";
/// The VRF key's file in the data directory.
pub const VRF_KEY_FILE: &str = "vrf.key";

/// The directory's keys, loaded from (or created in) the data directory.
pub(crate) struct DirectoryKeys {
    /// Signs heads; zeroizes on drop (ed25519-dalek's `zeroize` feature).
    pub(crate) signing: SigningKey,
    /// akd's VRF key.
    pub(crate) vrf: FileVrf,
}

impl DirectoryKeys {
    /// Loads both keys from `data_dir`, creating each that is missing.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Self, KeyError> {
        let seed = load_or_create_seed(&data_dir.join(DIRECTORY_KEY_FILE))?;
        let signing = SigningKey::from_bytes(&seed);
        let vrf = FileVrf {
            secret: Arc::new(load_or_create_seed(&data_dir.join(VRF_KEY_FILE))?),
        };
        Ok(Self { signing, vrf })
    }

    /// The public half of the signing key.
    pub(crate) fn directory_key(&self) -> PublicKey {
        PublicKey::new(self.signing.verifying_key())
    }

    /// The server id: hex of the first 16 bytes of SHA-256 of the directory
    /// public key.
    pub(crate) fn server_id(&self) -> String {
        let digest = Sha256::digest(self.signing.verifying_key().as_bytes());
        hex::encode(&digest[..16])
    }
}

impl fmt::Debug for DirectoryKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryKeys")
            .field("directory_key", &self.directory_key())
            .finish_non_exhaustive()
    }
}

/// akd's [`VRFKeyStorage`] over the bytes of [`VRF_KEY_FILE`], held in
/// memory (zeroized on drop) once read.
#[derive(Clone)]
pub(crate) struct FileVrf {
    secret: Arc<Zeroizing<[u8; SEED_BYTES]>>,
}

#[async_trait::async_trait]
impl VRFKeyStorage for FileVrf {
    async fn retrieve(&self) -> Result<Vec<u8>, VrfError> {
        // akd's trait hands the key over as a Vec, which akd drops without
        // zeroizing; it parses it into a VRFPrivateKey, which zeroizes.
        Ok(self.secret.to_vec())
    }
}

impl fmt::Debug for FileVrf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileVrf(..)")
    }
}

/// Why a directory key could not be loaded or created: the shared seed
/// file's error, which names the file and holds none of its bytes.
pub use rempart_proto::local::SeedFileError as KeyError;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn keys_are_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirectoryKeys::load_or_create(dir.path()).unwrap();
        for file in [DIRECTORY_KEY_FILE, VRF_KEY_FILE] {
            let mode = fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let again = DirectoryKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(first.directory_key(), again.directory_key());
        assert_eq!(first.server_id(), again.server_id());
        assert_eq!(first.server_id().len(), 32);
        assert_eq!(**first.vrf.secret, **again.vrf.secret);
        assert_ne!(**first.vrf.secret, [0; SEED_BYTES]);
        // Debug shows no secret.
        let shown = format!("{first:?} {:?}", first.vrf);
        assert!(!shown.contains(&hex::encode(first.signing.to_bytes())));
    }

    #[test]
    fn a_short_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(DIRECTORY_KEY_FILE), [1; 31]).unwrap();
        assert!(matches!(
            DirectoryKeys::load_or_create(dir.path()),
            Err(KeyError::Length { found: 31, .. })
        ));
    }
}
