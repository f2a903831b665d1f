//! Encryption at rest: the store is an SQLCipher database, whose key comes
//! from the user's passphrase through Argon2id.
//!
//! The Argon2id parameters and salt are kept beside the store in a small
//! header file ([`HEADER_FILE`]); the key never is, anywhere. A store
//! without a header file is plain: made with `--no-passphrase`, or by an
//! earlier version. The passphrase and the key live in memory only while
//! the store is opened, in buffers wiped when dropped; neither has a
//! `Debug` that shows it, and no error carries them.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// File name of the header beside the store in the home directory.
pub const HEADER_FILE: &str = "rempart.db.header";

/// Argon2id memory cost for new stores, in KiB (64 MiB).
const MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes for new stores.
const ITERATIONS: u32 = 3;
/// Argon2id lanes for new stores.
const PARALLELISM: u32 = 1;
/// Bytes of salt for new stores.
const SALT_BYTES: usize = 16;

/// A passphrase, held only while needed and wiped when dropped.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// `text` as a passphrase; an empty one is refused.
    pub fn new(text: String) -> Result<Self, AtRestError> {
        let text = Zeroizing::new(text);
        if text.is_empty() {
            return Err(AtRestError::EmptyPassphrase);
        }
        Ok(Self(text))
    }

    /// The passphrase in `path`: its whole content but one final line
    /// break.
    pub fn from_file(path: &Path) -> Result<Self, AtRestError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            AtRestError::PassphraseFile {
                path: path.to_owned(),
                source,
            }
        })?);
        let line = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        Self::new(line.to_owned())
    }

    /// Whether `other` is the same passphrase (typed twice).
    pub fn same_as(&self, other: &Passphrase) -> bool {
        self.0 == other.0
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// What a store's header says: how its key is derived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    /// Always `argon2id`.
    kdf: String,
    /// Argon2id memory cost, in KiB.
    memory_kib: u32,
    /// Argon2id passes.
    iterations: u32,
    /// Argon2id lanes.
    parallelism: u32,
    /// The salt, base64.
    salt: String,
}

impl Header {
    fn new() -> Self {
        let mut salt = [0u8; SALT_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Self {
            kdf: "argon2id".into(),
            memory_kib: MEMORY_KIB,
            iterations: ITERATIONS,
            parallelism: PARALLELISM,
            salt: B64.encode(salt),
        }
    }

    fn derive(&self, passphrase: &Passphrase) -> Result<StoreKey, AtRestError> {
        if self.kdf != "argon2id" {
            return Err(AtRestError::Header(format!("unknown kdf {:?}", self.kdf)));
        }
        let salt = B64
            .decode(&self.salt)
            .map_err(|_| AtRestError::Header("the salt is not base64".into()))?;
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| AtRestError::Header(format!("Argon2id parameters: {e}")))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.bytes(), &salt, key.as_mut())
            .map_err(|e| AtRestError::Header(format!("Argon2id: {e}")))?;
        Ok(StoreKey(key))
    }
}

/// The store's 256-bit SQLCipher key, wiped when dropped.
pub(crate) struct StoreKey(Zeroizing<[u8; 32]>);

impl StoreKey {
    /// The statement that gives SQLCipher this key as a raw key (no
    /// derivation of its own), wiped when dropped.
    pub(crate) fn pragma(&self) -> Zeroizing<String> {
        let mut sql = Zeroizing::new(String::with_capacity(96));
        sql.push_str("PRAGMA key = ");
        self.push_literal(&mut sql);
        sql.push(';');
        sql
    }

    /// The statement that attaches the database at `path` as `schema`
    /// under this key, wiped when dropped.
    pub(crate) fn attach(&self, path: &Path, schema: &str) -> Zeroizing<String> {
        let mut sql = Zeroizing::new(String::with_capacity(160));
        sql.push_str("ATTACH DATABASE '");
        sql.push_str(&path.to_string_lossy().replace('\'', "''"));
        sql.push_str("' AS ");
        sql.push_str(schema);
        sql.push_str(" KEY ");
        self.push_literal(&mut sql);
        sql.push(';');
        sql
    }

    fn push_literal(&self, sql: &mut String) {
        sql.push_str("\"x'");
        for byte in self.0.iter() {
            // Writing to a String cannot fail.
            let _ = write_hex(sql, *byte);
        }
        sql.push_str("'\"");
    }
}

fn write_hex(out: &mut String, byte: u8) -> fmt::Result {
    use fmt::Write as _;
    write!(out, "{byte:02x}")
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

/// Why a store could not be protected or unlocked.
#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    /// An empty passphrase.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// A new store needs a passphrase, and none can be asked for.
    #[error(
        "this device's store needs a new passphrase: give it in a file (`init --passphrase-file F`, `passphrase change --new-passphrase-file F`, or REMPART_PASSPHRASE_FILE at init), type it on a terminal, or keep the store unencrypted with `init --no-passphrase`"
    )]
    PassphraseNeeded,
    /// The passphrase typed twice differs.
    #[error("the two passphrases differ: nothing was changed; try again")]
    PassphrasesDiffer,
    /// The passphrase file could not be read.
    #[error("cannot read the passphrase file {}", path.display())]
    PassphraseFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The header file is damaged or unknown.
    #[error("the store's header {HEADER_FILE} is unreadable: {0}")]
    Header(String),
    /// The header file could not be read or written.
    #[error("cannot read or write {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// Path of the header in `home`.
pub fn header_path(home: &Path) -> PathBuf {
    home.join(HEADER_FILE)
}

/// Path of a header being put in place by a re-key: until it replaces
/// [`header_path`], the store may already be under it (see
/// [`crate::store::Store::open_existing`]).
pub(crate) fn staged_header_path(home: &Path) -> PathBuf {
    home.join(format!("{HEADER_FILE}.new"))
}

/// Whether the store in `home` is encrypted (it has a header).
pub fn is_encrypted(home: &Path) -> bool {
    header_path(home).exists()
}

/// Whether opening the store in `home` may need a passphrase: it is
/// encrypted, or a change of passphrase (or an encryption in place) was
/// interrupted there.
pub fn needs_passphrase(home: &Path) -> bool {
    is_encrypted(home) || staged_header_path(home).exists()
}

/// How the existing store in `home` opens.
pub(crate) enum Unlock {
    /// A plain store: no key.
    Plain,
    /// An encrypted store, and no passphrase to open it.
    Locked,
    /// The key the passphrase gives (right or wrong: the store tells).
    Key(StoreKey),
}

/// How the existing store in `home` opens with `passphrase`, under the
/// header at `path`.
pub(crate) fn unlock_with(
    path: &Path,
    passphrase: Option<&Passphrase>,
) -> Result<Unlock, AtRestError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Unlock::Plain),
        Err(source) => {
            return Err(AtRestError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let header: Header =
        serde_json::from_str(&text).map_err(|e| AtRestError::Header(e.to_string()))?;
    match passphrase {
        None => Ok(Unlock::Locked),
        Some(passphrase) => header.derive(passphrase).map(Unlock::Key),
    }
}

/// How the existing store in `home` opens with `passphrase`.
#[cfg(test)]
pub(crate) fn unlock(home: &Path, passphrase: Option<&Passphrase>) -> Result<Unlock, AtRestError> {
    unlock_with(&header_path(home), passphrase)
}

/// A new header in `home` (mode 0600), and the key `passphrase` gives
/// under it.
pub(crate) fn protect(home: &Path, passphrase: &Passphrase) -> Result<StoreKey, AtRestError> {
    write_header(&header_path(home), passphrase)
}

/// A new header at [`staged_header_path`] (replacing one left by an
/// interrupted re-key), and the key `passphrase` gives under it.
pub(crate) fn stage(home: &Path, passphrase: &Passphrase) -> Result<StoreKey, AtRestError> {
    let path = staged_header_path(home);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(AtRestError::Io { path, source }),
    }
    write_header(&path, passphrase)
}

fn write_header(path: &Path, passphrase: &Passphrase) -> Result<StoreKey, AtRestError> {
    let header = Header::new();
    let key = header.derive(passphrase)?;
    let path = path.to_owned();
    let io = |source| AtRestError::Io {
        path: path.clone(),
        source,
    };
    let text =
        serde_json::to_string_pretty(&header).map_err(|e| AtRestError::Header(e.to_string()))?;
    if path.exists() {
        return Err(io(std::io::Error::from(std::io::ErrorKind::AlreadyExists)));
    }
    // Written whole beside it, then renamed into place: the header is
    // there complete, or not at all.
    let mut partial = path.clone().into_os_string();
    partial.push(".part");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&partial).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&partial, &path).map_err(io)?;
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_passphrase_derives_the_same_key_under_its_header_and_another_does_not() {
        let home = tempfile::tempdir().unwrap();
        let passphrase = Passphrase::new("correct horse".into()).unwrap();
        let key = protect(home.path(), &passphrase).unwrap();
        let opened = |passphrase| match unlock(home.path(), passphrase).unwrap() {
            Unlock::Key(key) => key,
            _ => panic!("no key"),
        };
        assert_eq!(*key.pragma(), *opened(Some(&passphrase)).pragma());
        let other = Passphrase::new("battery staple".into()).unwrap();
        assert_ne!(*key.pragma(), *opened(Some(&other)).pragma());
        assert!(matches!(unlock(home.path(), None).unwrap(), Unlock::Locked));
        // The header holds the parameters and salt, never the key.
        let header = std::fs::read_to_string(header_path(home.path())).unwrap();
        assert!(header.contains("argon2id") && header.contains("\"salt\""));
        let hex = &key.pragma()[16..80];
        assert!(!header.contains(hex));
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let passphrase = Passphrase::new("hunter22".into()).unwrap();
        assert_eq!(format!("{passphrase:?}"), "Passphrase(..)");
        let key = StoreKey(Zeroizing::new([7; 32]));
        assert_eq!(format!("{key:?}"), "StoreKey(..)");
    }

    #[test]
    fn a_passphrase_file_loses_one_final_line_break_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, "two words \n").unwrap();
        assert_eq!(Passphrase::from_file(&path).unwrap().bytes(), b"two words ");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            Passphrase::from_file(&path),
            Err(AtRestError::EmptyPassphrase)
        ));
    }
}
