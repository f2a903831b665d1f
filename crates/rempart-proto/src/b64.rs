//! Serde helpers: binary fields travel as standard, padded base64 in JSON.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serializer};

/// Encodes bytes as standard base64.
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}

/// `#[serde(with = "rempart_proto::b64")]` for `Vec<u8>` fields.
pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&encode(bytes))
}

/// See [`serialize`].
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(deserializer)?;
    decode(&text).map_err(serde::de::Error::custom)
}

/// `#[serde(with = "rempart_proto::b64::option")]` for `Option<Vec<u8>>` fields.
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `Some(bytes)` as base64 and `None` as `null`.
    pub fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::serialize(bytes, serializer),
            None => serializer.serialize_none(),
        }
    }

    /// See [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        text.map(|t| super::decode(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// `#[serde(with = "rempart_proto::b64::vec")]` for `Vec<Vec<u8>>` fields.
pub mod vec {
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    /// Serializes each element as base64.
    pub fn serialize<S: Serializer>(items: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&super::encode(item))?;
        }
        seq.end()
    }

    /// See [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|t| super::decode(t).map_err(serde::de::Error::custom))
            .collect()
    }
}
