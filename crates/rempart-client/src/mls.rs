//! MLS plumbing: the openmls provider over the local SQLite store, group
//! configuration, credentials and KeyPackages.
//!
//! A leaf's credential is an MLS basic credential whose identity is
//! `user/device_id`; its signature key is the device key. Whether that pair
//! is genuine is decided only against the user's account-signed device list
//! (see [`crate::device_list`]).

use openmls::prelude::{
    BasicCredential, Capabilities, Ciphersuite, Credential, CredentialWithKey, Extension,
    ExtensionType, Extensions, KeyPackage, KeyPackageIn, MlsGroup, MlsGroupCreateConfig,
    MlsGroupJoinConfig, OpenMlsProvider, PURE_CIPHERTEXT_WIRE_FORMAT_POLICY, ProtocolVersion,
    SenderRatchetConfiguration, UnknownExtension, tls_codec::Deserialize as _,
    tls_codec::Serialize as _,
};
use openmls_rust_crypto::RustCrypto;
use openmls_sqlite_storage::{Codec, Connection, SqliteStorageProvider};
use rempart_proto::{DeviceId, UserName};
use serde::{Deserialize, Serialize};

use crate::error::ClientError;
use crate::keys::DeviceKey;

/// The only ciphersuite Rempart accepts (DESIGN.md §4). Anything else in a
/// Welcome or KeyPackage is a downgrade and is refused.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Private-use group-context extension carrying [`Metadata`]: what kind of
/// conversation this is and, for a group, its name. Every member sees the
/// same value, authenticated by MLS.
pub const METADATA_EXTENSION: u16 = 0xF0A1;

/// Capabilities every Rempart leaf declares: the metadata extension.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        // A last-resort KeyPackage carries the last_resort extension, which
        // its leaf must declare.
        Some(&[
            ExtensionType::Unknown(METADATA_EXTENSION),
            ExtensionType::LastResort,
        ]),
        None,
        None,
    )
}

/// What a conversation is, as every member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Metadata {
    /// A 1:1 conversation; the peer is the other user in the roster.
    Direct,
    /// A named group.
    Group {
        /// The group's name, the same for every member.
        name: String,
    },
}

impl Metadata {
    fn extensions(&self) -> Result<Extensions<openmls::prelude::GroupContext>, ClientError> {
        let bytes = serde_json::to_vec(self).map_err(|e| ClientError::Corrupt(e.to_string()))?;
        Extensions::single(Extension::Unknown(
            METADATA_EXTENSION,
            UnknownExtension(bytes),
        ))
        .map_err(ClientError::mls)
    }

    /// The metadata of a group, if it carries a readable one.
    pub fn of(group: &MlsGroup) -> Option<Self> {
        group.extensions().iter().find_map(|ext| match ext {
            Extension::Unknown(METADATA_EXTENSION, UnknownExtension(bytes)) => {
                serde_json::from_slice(bytes).ok()
            }
            _ => None,
        })
    }
}

/// Past epochs whose secrets are kept, so messages sent just before a commit
/// still decrypt after it.
const MAX_PAST_EPOCHS: usize = 16;

/// How far out of order, and how far ahead, application messages may arrive.
const OUT_OF_ORDER_TOLERANCE: u32 = 64;
const MAX_FORWARD_DISTANCE: u32 = 10_000;

/// openmls state is stored as JSON (openmls requires a self-describing codec).
#[derive(Debug, Default)]
pub(crate) struct JsonCodec;

impl Codec for JsonCodec {
    type Error = serde_json::Error;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        serde_json::to_vec(value)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        serde_json::from_slice(slice)
    }
}

/// The openmls provider: RustCrypto, and storage in the client's database.
pub(crate) struct Provider<'a> {
    crypto: &'a RustCrypto,
    storage: SqliteStorageProvider<JsonCodec, &'a Connection>,
}

impl<'a> Provider<'a> {
    pub fn new(crypto: &'a RustCrypto, conn: &'a Connection) -> Self {
        Self {
            crypto,
            storage: SqliteStorageProvider::new(conn),
        }
    }
}

impl<'a> OpenMlsProvider for Provider<'a> {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = SqliteStorageProvider<JsonCodec, &'a Connection>;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        self.crypto
    }
}

/// Configuration of groups this device creates.
pub(crate) fn create_config(metadata: &Metadata) -> Result<MlsGroupCreateConfig, ClientError> {
    Ok(MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .capabilities(capabilities())
        .with_group_context_extensions(metadata.extensions()?)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(
            OUT_OF_ORDER_TOLERANCE,
            MAX_FORWARD_DISTANCE,
        ))
        .build())
}

/// Configuration of groups this device joins by Welcome.
pub fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(
            OUT_OF_ORDER_TOLERANCE,
            MAX_FORWARD_DISTANCE,
        ))
        .build()
}

/// This device's credential: identity `user/device`, key the device key.
pub(crate) fn credential(user: &UserName, device: &DeviceId, key: &DeviceKey) -> CredentialWithKey {
    let identity = format!("{user}/{device}").into_bytes();
    CredentialWithKey {
        credential: BasicCredential::new(identity).into(),
        signature_key: key.public().as_bytes().to_vec().into(),
    }
}

/// The `(user, device)` a credential names, if it is a well-formed basic
/// credential. Says nothing about whether it is genuine.
pub(crate) fn parse_credential(credential: &Credential) -> Option<(UserName, DeviceId)> {
    let basic = BasicCredential::try_from(credential.clone()).ok()?;
    let identity = std::str::from_utf8(basic.identity()).ok()?;
    let (user, device) = identity.split_once('/')?;
    Some((user.parse().ok()?, device.parse().ok()?))
}

/// A fresh KeyPackage for this device, its private parts kept in the store.
/// Returns the TLS-serialized public KeyPackage and its hash reference.
pub(crate) fn new_key_package(
    provider: &Provider<'_>,
    key: &DeviceKey,
    credential: CredentialWithKey,
    last_resort: bool,
) -> Result<(Vec<u8>, Vec<u8>), ClientError> {
    let mut builder = KeyPackage::builder().leaf_node_capabilities(capabilities());
    if last_resort {
        builder = builder.mark_as_last_resort();
    }
    let bundle = builder
        .build(CIPHERSUITE, provider, key, credential)
        .map_err(ClientError::mls)?;
    let hash_ref = bundle
        .key_package()
        .hash_ref(provider.crypto())
        .map_err(ClientError::mls)?;
    let bytes = bundle
        .key_package()
        .tls_serialize_detached()
        .map_err(ClientError::mls)?;
    Ok((bytes, hash_ref.as_slice().to_vec()))
}

/// Why a claimed KeyPackage was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyPackageRefusal {
    /// Not a parseable or validly self-signed KeyPackage.
    Invalid(String),
    /// A ciphersuite or version other than Rempart's.
    Downgrade,
}

/// Parses a KeyPackage and checks its own signature, protocol version,
/// lifetime and ciphersuite.
pub(crate) fn validate_key_package(
    crypto: &RustCrypto,
    bytes: &[u8],
) -> Result<KeyPackage, KeyPackageRefusal> {
    let key_package = KeyPackageIn::tls_deserialize_exact(bytes)
        .map_err(|e| KeyPackageRefusal::Invalid(e.to_string()))?
        .validate(crypto, ProtocolVersion::Mls10)
        .map_err(|e| KeyPackageRefusal::Invalid(e.to_string()))?;
    if key_package.ciphersuite() != CIPHERSUITE {
        return Err(KeyPackageRefusal::Downgrade);
    }
    Ok(key_package)
}
