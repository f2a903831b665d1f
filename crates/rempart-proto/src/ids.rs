//! Identifiers. Each is valid once constructed: parse with [`str::parse`] or
//! build from random bytes; raw strings never travel further than the parser.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A user name must be 3 to 32 characters of `a-z`, `0-9`, `.`, `_`, `-`.
    #[error("invalid user name {0:?}: expected 3 to 32 characters of a-z, 0-9, '.', '_' or '-'")]
    UserName(String),
    /// A hexadecimal identifier had the wrong length or a non-hex character.
    #[error("invalid {kind} {found:?}: expected {len} lowercase hexadecimal characters")]
    Hex {
        /// Which identifier was being parsed.
        kind: &'static str,
        /// Expected number of hex characters.
        len: usize,
        /// What was found (truncated).
        found: String,
    },
}

/// A user name: 3–32 characters of `[a-z0-9._-]`, unique on a server.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "alice")]
pub struct UserName(String);

impl UserName {
    /// Shortest accepted user name.
    pub const MIN_LEN: usize = 3;
    /// Longest accepted user name.
    pub const MAX_LEN: usize = 32;

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserName {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok_len = (Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len());
        let ok_chars = s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if ok_len && ok_chars {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::UserName(truncate(s)))
        }
    }
}

impl TryFrom<String> for UserName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<UserName> for String {
    fn from(name: UserName) -> Self {
        name.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserName({})", self.0)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $kind:expr, $example:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, example = $example)]
        pub struct $name([u8; $len]);

        impl $name {
            /// A fresh random identifier from the operating system's generator.
            pub fn random() -> Self {
                let mut bytes = [0u8; $len];
                fill_random(&mut bytes);
                Self(bytes)
            }

            /// The identifier's bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Builds the identifier from its bytes.
            pub fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = || IdError::Hex { kind: $kind, len: 2 * $len, found: truncate(s) };
                if s.len() != 2 * $len || s.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(err());
                }
                let mut bytes = [0u8; $len];
                hex::decode_to_slice(s, &mut bytes).map_err(|_| err())?;
                Ok(Self(bytes))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }
    };
}

hex_id!(
    /// A device identifier: 8 random bytes, written as 16 hex characters.
    DeviceId, 8, "device id", "00112233445566ff"
);
hex_id!(
    /// A conversation (MLS group) identifier: 16 random bytes, 32 hex characters.
    GroupId, 16, "group id", "00112233445566778899aabbccddeeff"
);
hex_id!(
    /// A client-chosen message identifier: 16 random bytes, 32 hex characters.
    /// Sending twice with the same id is idempotent.
    MessageId, 16, "message id", "00112233445566778899aabbccddeeff"
);

hex_id!(
    /// A device-linking rendezvous id: 16 bytes derived from the one-time
    /// code, 32 hex characters.
    LinkId, 16, "link id", "00112233445566778899aabbccddeeff"
);

fn fill_random(bytes: &mut [u8]) {
    use rand::RngCore as _;
    use rand::rngs::OsRng;
    OsRng.fill_bytes(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for ok in ["bob", "alice.smith", "a_b-c.9", &"x".repeat(32)] {
            assert!(ok.parse::<UserName>().is_ok(), "{ok}");
        }
        for bad in ["", "ab", "Alice", "al ice", "bob!", "é", &"x".repeat(33)] {
            assert!(bad.parse::<UserName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn hex_ids_round_trip_and_refuse_bad_input() {
        let id = DeviceId::random();
        assert_eq!(id.to_string().parse::<DeviceId>().unwrap(), id);
        assert!("0011".parse::<DeviceId>().is_err());
        assert!("00112233445566FF".parse::<DeviceId>().is_err());
        assert!("0011223344556zzz".parse::<DeviceId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<DeviceId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<GroupId>("\"00\"").is_err());
    }
}
