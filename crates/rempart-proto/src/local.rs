//! Helpers the Rempart binaries share for their own process: secret seed
//! files, durations given on the command line, error chains for logs.
//!
//! Nothing here goes on the wire. The server and the witness each keep
//! Ed25519 (and VRF) seeds in files of their data directory, take intervals
//! as command-line flags and log errors with their causes; this is the one
//! copy of that code.
//!
//! - [`load_or_create_seed`] reads a 32-byte secret seed file, or creates it
//!   with mode 0600 so that a crash never leaves a short one (Unix only);
//! - [`parse_duration`] and [`parse_nonzero_duration`] read `200ms`, `1s`,
//!   `2m` or `1h`;
//! - [`error_chain`] writes an error and its causes on one line.
//!
//! ```
//! use std::time::Duration;
//!
//! use rempart_proto::local::{error_chain, parse_duration, parse_nonzero_duration};
//!
//! assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
//! let error = parse_nonzero_duration("0s").unwrap_err();
//! assert_eq!(error_chain(&error), "the duration must be above zero");
//! ```

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Length of a seed file: an Ed25519 or VRF seed.
pub const SEED_BYTES: usize = 32;

/// `error: cause: cause…`: an error and each of its sources, for a log line
/// or a last message on stderr.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Parses a duration written as a whole number and a unit: `ms`, `s`, `m`
/// or `h` (e.g. `200ms`, `1s`, `2m`), as command-line flags take it.
/// Surrounding white space is ignored; zero is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let invalid = || DurationError::Invalid(text.to_owned());
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(invalid)
}

/// [`parse_duration`], refusing zero: for intervals such as
/// `--epoch-interval` or `--poll`.
pub fn parse_nonzero_duration(text: &str) -> Result<Duration, DurationError> {
    match parse_duration(text)? {
        duration if duration.is_zero() => Err(DurationError::Zero),
        duration => Ok(duration),
    }
}

/// A duration that [`parse_duration`] or [`parse_nonzero_duration`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a whole number and a unit, or too long to hold.
    #[error("{0:?} is not a duration: write a whole number and ms, s, m or h, e.g. 200ms or 1s")]
    Invalid(String),
    /// Zero, where a duration above zero is needed.
    #[error("the duration must be above zero")]
    Zero,
}

/// Why a seed file could not be loaded or created. It names the file and
/// never holds any of its bytes.
#[derive(Debug, thiserror::Error)]
pub enum SeedFileError {
    /// The key file could not be read, created or written.
    #[error("cannot read or create the key file {}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The key file does not hold exactly [`SEED_BYTES`] bytes.
    #[error("the key file {} holds {found} bytes, expected {SEED_BYTES}", path.display())]
    Length {
        /// The key file.
        path: PathBuf,
        /// Its length (at most one more than expected: reading stops there).
        found: usize,
    },
}

#[cfg(unix)]
pub use self::seed::load_or_create_seed;

#[cfg(unix)]
mod seed {
    use std::fs::{self, OpenOptions};
    use std::io::{self, Read as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::path::{Path, PathBuf};

    use rand::RngCore as _;
    use rand::rngs::OsRng;
    use zeroize::Zeroizing;

    use super::{SEED_BYTES, SeedFileError};

    /// Loads the 32-byte secret seed at `path`, or creates it with random
    /// bytes if there is no such file.
    ///
    /// A new seed is written in full and synced under a temporary name (the
    /// file name and `.new`) created with mode 0600, then renamed into place
    /// and the directory synced, so a crash never leaves a short seed; a
    /// temporary file left by an earlier crash is replaced. A file of any
    /// other length is refused, not repaired. The seed is zeroized when the
    /// returned value drops, and so is every copy made while reading it.
    /// `Zeroizing`'s `Debug` would print it: callers keep it in types whose
    /// `Debug` does not, and never log it.
    pub fn load_or_create_seed(path: &Path) -> Result<Zeroizing<[u8; SEED_BYTES]>, SeedFileError> {
        let io_error = |source| SeedFileError::Io {
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
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| SeedFileError::Length {
                            path: path.to_path_buf(),
                            found: bytes.len(),
                        })?;
                Ok(Zeroizing::new(seed))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => create(path).map_err(io_error),
            Err(error) => Err(io_error(error)),
        }
    }

    /// Creates a new random seed at `path`: written and synced under a
    /// temporary name created with mode 0600, then renamed into place.
    fn create(path: &Path) -> io::Result<Zeroizing<[u8; SEED_BYTES]>> {
        let mut seed = Zeroizing::new([0; SEED_BYTES]);
        OsRng.fill_bytes(seed.as_mut());
        let temporary = temporary_path(path)?;
        // A leftover from a crash during an earlier creation holds no used seed.
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
            // `Path::parent` of a bare file name is "", meaning the current
            // directory.
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            fs::File::open(parent)?.sync_all()?;
        }
        Ok(seed)
    }

    /// `path` with `.new` added to its file name (`witness.key.new`).
    fn temporary_path(path: &Path) -> io::Result<PathBuf> {
        let mut name = path
            .file_name()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a seed file's path must end in a file name",
                )
            })?
            .to_os_string();
        name.push(".new");
        Ok(path.with_file_name(name))
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    #[test]
    fn durations_parse_with_their_units() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 5s\n"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_nonzero_duration("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in [
            "",
            "1",
            "s",
            "1.5s",
            "-1s",
            "+1s",
            "1 s",
            "1d",
            "1S",
            "1sec",
            "99999999999999999999s",
            // Fits in u64 milliseconds only before the multiplication.
            "18446744073709551615h",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError::Invalid(bad.trim().to_owned())),
                "{bad:?}"
            );
            assert!(parse_nonzero_duration(bad).is_err(), "{bad:?}");
        }
        let message = parse_duration("1d").unwrap_err().to_string();
        assert_eq!(
            message,
            "\"1d\" is not a duration: write a whole number and ms, s, m or h, e.g. 200ms or 1s"
        );
    }

    #[test]
    fn zero_is_refused_where_it_must_be_above_zero() {
        for zero in ["0ms", "0s", "00m", "0h"] {
            assert_eq!(parse_nonzero_duration(zero), Err(DurationError::Zero));
        }
        assert_eq!(
            DurationError::Zero.to_string(),
            "the duration must be above zero"
        );
    }

    /// An error with an optional cause, to build chains.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|cause| cause as _)
        }
    }

    #[test]
    fn error_chains_list_every_cause_in_order() {
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
        let chained = Layer(
            "cannot start",
            Some(Box::new(Layer(
                "cannot open the key",
                Some(Box::new(Layer("permission denied", None))),
            ))),
        );
        assert_eq!(
            error_chain(&chained),
            "cannot start: cannot open the key: permission denied"
        );
        let io = SeedFileError::Io {
            path: "/data/witness.key".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(
            error_chain(&io),
            format!(
                "cannot read or create the key file /data/witness.key: {}",
                io::Error::from(io::ErrorKind::PermissionDenied)
            )
        );
    }

    #[cfg(unix)]
    mod seed_files {
        use std::fs;
        use std::os::unix::fs::PermissionsExt as _;

        use super::super::*;

        #[test]
        fn a_seed_is_created_private_and_reloaded_the_same() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("test.key");
            let first = load_or_create_seed(&path).unwrap();
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            assert_eq!(fs::read(&path).unwrap(), first.as_slice());
            assert_ne!(*first, [0; SEED_BYTES]);
            assert!(!dir.path().join("test.key.new").exists());
            let again = load_or_create_seed(&path).unwrap();
            assert_eq!(*first, *again);
            // Another file gets another seed.
            let other = load_or_create_seed(&dir.path().join("other.key")).unwrap();
            assert_ne!(*first, *other);
        }

        #[test]
        fn a_leftover_temporary_file_is_replaced() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("test.key");
            let temporary = dir.path().join("test.key.new");
            fs::write(&temporary, [7; 5]).unwrap();
            let seed = load_or_create_seed(&path).unwrap();
            assert!(!temporary.exists());
            assert_eq!(fs::read(&path).unwrap(), seed.as_slice());
        }

        #[test]
        fn a_seed_file_of_the_wrong_length_is_refused_and_kept() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("test.key");
            for (length, found) in [(0, 0), (31, 31), (33, 33), (1000, 33)] {
                fs::write(&path, vec![1; length]).unwrap();
                let error = load_or_create_seed(&path).unwrap_err();
                assert!(
                    matches!(
                        &error,
                        SeedFileError::Length { path: named, found: f }
                            if *f == found && named == &path
                    ),
                    "{length}: {error:?}"
                );
                assert_eq!(fs::read(&path).unwrap().len(), length);
            }
        }

        #[test]
        fn errors_name_the_file_and_show_no_seed() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("test.key");
            let seed = [0xab; SEED_BYTES + 1];
            fs::write(&path, seed).unwrap();
            let error = load_or_create_seed(&path).unwrap_err();
            let shown = format!("{error} {error:?}");
            assert!(shown.contains("test.key"), "{shown}");
            assert!(!shown.contains("ab, ab") && !shown.contains("171, 171"));
            assert!(!shown.contains(&hex::encode(&seed[..4])));
        }

        #[test]
        fn a_missing_directory_is_an_io_error() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("absent").join("test.key");
            assert!(matches!(
                load_or_create_seed(&path),
                Err(SeedFileError::Io { path: named, .. }) if named == path
            ));
        }
    }
}
