//! `cargo bench --bench client`: the client engine's local work on each MLS
//! operation against openmls alone doing the same operation.
//!
//! At each group size (members, the measuring device included), two groups
//! are built the same way, with the engine's configuration
//! (`rempart_client::bench::group_create_config`: Rempart's ciphersuite,
//! leaf capabilities, metadata extension, ratchet-tree extension, sender
//! ratchet and past-epoch settings):
//!
//! - the **engine**'s: a `rempart_client::Client` with no server
//!   ([`rempart_client::bench::offline_account`]) founds the group, with its
//!   SQLite store (WAL, `synchronous=FULL`) in a temporary directory
//!   (`TMPDIR`, on disk unless it points to a RAM file system);
//! - the **raw** one: an openmls `MlsGroup` with openmls's in-memory storage
//!   (`OpenMlsRustCrypto`) founds it.
//!
//! Each founder adds every other member in one commit: a *peer*, a device
//! known only to openmls that joins by the Welcome and sends the messages
//! and commits the founder processes, and `size - 2` members that never
//! join. Their leaves stay as their KeyPackages made them, so the tree is
//! *sparse*: only the paths of the founder and the peer get populated by
//! their commits, and a commit encrypts its path secrets to about every
//! leaf. Every member has an account-signed device list, given to the
//! engine as verified ([`rempart_client::bench::trust_device_lists`]).
//!
//! Then, [`ClientOptions::iterations`] times, each founder does each
//! [`Operation`] in turn, timed alone; the peer keeps up with the
//! founder's commits, untimed. The figure of an operation is the median of
//! its times. The engine's side of each operation is the engine's own code
//! without its network hop (see `rempart_client::bench`); openmls's side is
//! the same MLS operation, message encoding and decoding included. Each
//! outcome is checked (a message decrypted, a member added or removed, an
//! epoch reached) so that no failure is timed as work.
//!
//! Neither side includes the server: uploads, log reads, claiming
//! KeyPackages, and the device-list lookups the engine makes before
//! trusting a new device (its server answers that it holds nothing newer
//! than the lists the engine verified, as a server does once the engine
//! has them).
//!
//! # Figures
//!
//! For each operation `OP` (see [`Operation::key`]) and size `N`:
//! `OP_ms_N`, the engine's median time in milliseconds; `raw_OP_ms_N`,
//! openmls's; and `ratio_OP_N = OP_ms_N / raw_OP_ms_N`. `max_overhead_ratio`
//! is the largest of the ratios, and `iterations` the number of times each
//! operation was measured.
//!
//! A second engine, built the same way in the same run but with its store
//! encrypted at rest (SQLCipher, as `rempart init` makes it), gives
//! `sealed_OP_ms_N` and `at_rest_ratio_OP_N = sealed_OP_ms_N / OP_ms_N`,
//! what encryption at rest costs; `max_at_rest_ratio` is the largest.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, CredentialWithKey, KeyPackage, LeafNodeIndex, LeafNodeParameters, MlsGroup,
    MlsMessageIn, OpenMlsProvider, ProcessedMessageContent, ProtocolMessage, StagedWelcome,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::types::SignatureScheme;
use rand::rngs::OsRng;
use rempart_client::bench::{self as engine, ConversationRef};
use rempart_client::protocol::{CIPHERSUITE, capabilities, join_config};
use rempart_client::{Client, ClientError, Event, Passphrase};
use rempart_proto::api::{EntryKind, LogEntry};
use rempart_proto::directory::SignedHead;
use rempart_proto::{
    DeviceEntry, DeviceId, DeviceList, DeviceListError, IdError, MessageId, PublicKey,
    SignedDeviceList, UserName,
};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The group's name, the same in both groups.
const GROUP: &str = "bench";

/// The text every message carries: a typical short message.
const TEXT: &str = "See you at the station at nine, by the north entrance.";

/// How much work one run of the client benchmark does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Group sizes, in members (the measuring device included), each at
    /// least 2.
    pub sizes: Vec<usize>,
    /// Times each operation is measured at each size.
    pub iterations: usize,
}

impl ClientOptions {
    /// The full run: 2, 100 and 1,000 members.
    pub fn full() -> Self {
        Self {
            sizes: vec![2, 100, 1_000],
            iterations: 11,
        }
    }

    /// The `--quick` run: 2 and 100 members.
    pub fn quick() -> Self {
        Self {
            sizes: vec![2, 100],
            iterations: 5,
        }
    }

    fn check(&self) -> Result<(), ClientBenchError> {
        let refuse = |reason: &str| Err(ClientBenchError::Options(reason.to_owned()));
        if self.sizes.is_empty() {
            return refuse("give at least one group size");
        }
        if self.sizes.iter().any(|&size| size < 2) {
            return refuse("a group has at least 2 members: the founder and its peer");
        }
        if self.iterations == 0 {
            return refuse("iterations must be at least 1");
        }
        Ok(())
    }
}

/// One operation, as each founder does it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Encrypt a text message (engine: `send_to_group`, the server
    /// accepting it).
    Encrypt,
    /// Decrypt the peer's text message (engine: the log entry as `sync`
    /// processes it).
    Decrypt,
    /// Commit the addition of one device, and merge it.
    Add,
    /// Commit the removal of that device, and merge it.
    Remove,
    /// Commit a self-update of the founder's leaf, and merge it.
    Update,
    /// Process and merge the peer's commit adding a device (engine: with
    /// the check of the new leaf against its owner's device list).
    ProcessAdd,
    /// Process and merge the peer's commit removing that device.
    ProcessRemove,
    /// Process and merge the peer's self-update commit (engine: with the
    /// check of the peer's new leaf against its device list).
    ProcessUpdate,
}

impl Operation {
    /// Every operation, in the order each iteration does them.
    pub const ALL: [Operation; 8] = [
        Self::Encrypt,
        Self::Decrypt,
        Self::Update,
        Self::Add,
        Self::Remove,
        Self::ProcessUpdate,
        Self::ProcessAdd,
        Self::ProcessRemove,
    ];

    /// The operation's name in the figures' keys.
    pub fn key(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Update => "update",
            Self::ProcessAdd => "process_add",
            Self::ProcessRemove => "process_remove",
            Self::ProcessUpdate => "process_update",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|&op| op == self).unwrap_or(0)
    }
}

/// One operation at one size, on both sides.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// The operation.
    pub operation: Operation,
    /// Members in the group.
    pub members: usize,
    /// The engine's median time, in milliseconds.
    pub engine_ms: f64,
    /// openmls's median time, in milliseconds.
    pub raw_ms: f64,
    /// The engine's median time with its store encrypted at rest, in
    /// milliseconds.
    pub sealed_ms: f64,
}

impl Figures {
    /// The engine's time over openmls's.
    pub fn ratio(&self) -> f64 {
        self.engine_ms / self.raw_ms.max(f64::MIN_POSITIVE)
    }

    /// The engine's time with its store encrypted over its time with a
    /// plain store: what encryption at rest costs.
    pub fn at_rest_ratio(&self) -> f64 {
        self.sealed_ms / self.engine_ms.max(f64::MIN_POSITIVE)
    }
}

/// The client benchmark's figures. Serialized flat, every value a number:
/// see the [module documentation](self).
#[derive(Clone, Debug, PartialEq)]
pub struct ClientReport {
    /// Times each operation was measured at each size.
    pub iterations: usize,
    /// Every operation at every size, size by size.
    pub figures: Vec<Figures>,
}

impl ClientReport {
    /// The largest engine/openmls ratio over every operation and size.
    pub fn max_overhead_ratio(&self) -> f64 {
        self.figures.iter().map(Figures::ratio).fold(0.0, f64::max)
    }

    /// The largest cost of encryption at rest over every operation and
    /// size.
    pub fn max_at_rest_ratio(&self) -> f64 {
        self.figures
            .iter()
            .map(Figures::at_rest_ratio)
            .fold(0.0, f64::max)
    }

    /// The figures with the largest ratio.
    pub fn worst(&self) -> Option<&Figures> {
        self.figures
            .iter()
            .max_by(|a, b| a.ratio().total_cmp(&b.ratio()))
    }
}

impl Serialize for ClientReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3 + 5 * self.figures.len()))?;
        map.serialize_entry("iterations", &self.iterations)?;
        map.serialize_entry("max_overhead_ratio", &self.max_overhead_ratio())?;
        map.serialize_entry("max_at_rest_ratio", &self.max_at_rest_ratio())?;
        for figures in &self.figures {
            let (op, n) = (figures.operation.key(), figures.members);
            map.serialize_entry(&format!("{op}_ms_{n}"), &figures.engine_ms)?;
            map.serialize_entry(&format!("raw_{op}_ms_{n}"), &figures.raw_ms)?;
            map.serialize_entry(&format!("ratio_{op}_{n}"), &figures.ratio())?;
            map.serialize_entry(&format!("sealed_{op}_ms_{n}"), &figures.sealed_ms)?;
            map.serialize_entry(&format!("at_rest_ratio_{op}_{n}"), &figures.at_rest_ratio())?;
        }
        map.end()
    }
}

impl fmt::Display for ClientReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "client: the engine (its SQLite store in a temporary directory) against openmls \
             (in-memory storage), median of {} per operation; sparse trees (members that never \
             joined)",
            self.iterations
        )?;
        writeln!(
            f,
            "{:<16}{:>9}{:>13}{:>13}{:>9}{:>16}{:>10}",
            "operation",
            "members",
            "engine, ms",
            "openmls, ms",
            "ratio",
            "encrypted, ms",
            "at rest"
        )?;
        for figures in &self.figures {
            writeln!(
                f,
                "{:<16}{:>9}{:>13.3}{:>13.3}{:>9.2}{:>16.3}{:>10.2}",
                figures.operation.key(),
                figures.members,
                figures.engine_ms,
                figures.raw_ms,
                figures.ratio(),
                figures.sealed_ms,
                figures.at_rest_ratio()
            )?;
        }
        writeln!(
            f,
            "largest cost of encryption at rest: {:.2}x",
            self.max_at_rest_ratio()
        )?;
        match self.worst() {
            Some(worst) => write!(
                f,
                "largest overhead: {:.2}x ({} at {} members)",
                worst.ratio(),
                worst.operation.key(),
                worst.members
            ),
            None => write!(f, "nothing measured"),
        }
    }
}

/// Why the client benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientBenchError {
    /// The options ask for no work, or for impossible work.
    #[error("invalid options: {0}")]
    Options(String),
    /// The client engine failed.
    #[error("the client engine failed")]
    Engine(#[from] ClientError),
    /// openmls failed, on the raw side or for the peer.
    #[error("openmls failed to {doing}: {reason}")]
    Mls {
        /// What it was doing.
        doing: &'static str,
        /// openmls's error.
        reason: String,
    },
    /// A member's device list could not be signed.
    #[error("cannot sign a device list")]
    DeviceList(#[from] DeviceListError),
    /// A member's name is not a valid user name.
    #[error("invalid user name")]
    UserName(#[from] IdError),
    /// The temporary directory of the engine's store failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// An operation ended otherwise than it should have.
    #[error("{operation} at {members} members: {what}")]
    Unexpected {
        /// The operation.
        operation: &'static str,
        /// The group's size.
        members: usize,
        /// What happened instead.
        what: String,
    },
}

/// An openmls failure while `doing`.
fn mls(doing: &'static str) -> impl Fn(&dyn fmt::Display) -> ClientBenchError {
    move |error| ClientBenchError::Mls {
        doing,
        reason: error.to_string(),
    }
}

/// Measures every operation at every size of `options`.
pub async fn measure(options: &ClientOptions) -> Result<ClientReport, ClientBenchError> {
    options.check()?;
    let mut figures = Vec::with_capacity(options.sizes.len() * Operation::ALL.len());
    for &members in &options.sizes {
        figures.extend(measure_size(members, options.iterations).await?);
    }
    Ok(ClientReport {
        iterations: options.iterations,
        figures,
    })
}

/// Times of each operation, by [`Operation::index`].
type Times = [Vec<Duration>; Operation::ALL.len()];

async fn measure_size(members: usize, iterations: usize) -> Result<Vec<Figures>, ClientBenchError> {
    let home = tempfile::tempdir()?;
    let people = People::new(members, iterations)?;
    let mut engine_side = EngineSide::build(&home.path().join("engine"), &people, None).await?;
    let passphrase =
        Passphrase::new("the benchmark's passphrase".into()).map_err(ClientError::from)?;
    let mut sealed_side =
        EngineSide::build(&home.path().join("sealed"), &people, Some(&passphrase)).await?;
    let mut raw_side = RawSide::build(&people, engine_side.head.clone())?;
    let mut engine_times: Times = Default::default();
    let mut sealed_times: Times = Default::default();
    let mut raw_times: Times = Default::default();
    for round in 0..iterations {
        engine_side.round(&people, round, &mut engine_times).await?;
        sealed_side.round(&people, round, &mut sealed_times).await?;
        raw_side.round(&people, round, &mut raw_times)?;
    }
    Ok(Operation::ALL
        .iter()
        .map(|&operation| Figures {
            operation,
            members,
            engine_ms: median_ms(&mut engine_times[operation.index()]),
            raw_ms: median_ms(&mut raw_times[operation.index()]),
            sealed_ms: median_ms(&mut sealed_times[operation.index()]),
        })
        .collect())
}

/// The median of `times`, in milliseconds (0 for none).
fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort_unstable();
    let n = times.len();
    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => times.get(n / 2).map_or(0.0, ms),
        _ => (times.get(n / 2 - 1).map_or(0.0, ms) + times.get(n / 2).map_or(0.0, ms)) / 2.0,
    }
}

/// Runs `work` and adds how long it took to `times`.
fn timed<T>(times: &mut Vec<Duration>, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let done = work();
    times.push(started.elapsed());
    done
}

/// A device known only to openmls, with an account-signed device list.
struct RawDevice {
    user: UserName,
    device: DeviceId,
    signer: SignatureKeyPair,
    list: SignedDeviceList,
}

impl RawDevice {
    fn new(user: &str) -> Result<Self, ClientBenchError> {
        let user: UserName = user.parse()?;
        let account = SigningKey::generate(&mut OsRng);
        let key = SigningKey::generate(&mut OsRng);
        let device = DeviceId::random();
        let list = DeviceList {
            user: user.clone(),
            account_key: PublicKey::new(account.verifying_key()),
            version: 1,
            timestamp: 0,
            devices: vec![DeviceEntry {
                id: device,
                signature_key: PublicKey::new(key.verifying_key()),
            }],
            mail: Vec::new(),
        };
        let list = SignedDeviceList::sign(&list, &account)?;
        let signer = SignatureKeyPair::from_raw(
            SignatureScheme::ED25519,
            key.to_bytes().to_vec(),
            key.verifying_key().to_bytes().to_vec(),
        );
        Ok(Self {
            user,
            device,
            signer,
            list,
        })
    }

    /// Its MLS credential, as Rempart's: `user/device`, the device key.
    fn credential(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(format!("{}/{}", self.user, self.device).into_bytes())
                .into(),
            signature_key: self.signer.public().to_vec().into(),
        }
    }

    /// A fresh KeyPackage, its private parts in `provider`.
    fn key_package(&self, provider: &OpenMlsRustCrypto) -> Result<KeyPackage, ClientBenchError> {
        let bundle = KeyPackage::builder()
            .leaf_node_capabilities(capabilities())
            .build(CIPHERSUITE, provider, &self.signer, self.credential())
            .map_err(|e| mls("build a KeyPackage")(&e))?;
        Ok(bundle.key_package().clone())
    }

    /// Its leaf in `group`, if it is a member.
    fn leaf(&self, group: &MlsGroup) -> Option<LeafNodeIndex> {
        let credential = self.credential().credential;
        group.member_leaf_index(&credential)
    }
}

/// Everyone in the groups of one size but the founders.
struct People {
    members: usize,
    /// Joins by the Welcome; sends the messages and commits founders process.
    peer: RawDevice,
    /// Never join.
    passive: Vec<RawDevice>,
    /// Added and removed by the founders, one per round.
    added: Vec<RawDevice>,
    /// Added and removed by the peer, one per round.
    peer_added: Vec<RawDevice>,
}

impl People {
    fn new(members: usize, rounds: usize) -> Result<Self, ClientBenchError> {
        let many = |prefix: &str, count: usize| {
            (0..count)
                .map(|i| RawDevice::new(&format!("{prefix}{i}")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            members,
            peer: RawDevice::new("peer")?,
            passive: many("member", members.saturating_sub(2))?,
            added: many("added", rounds)?,
            peer_added: many("peeradded", rounds)?,
        })
    }

    fn everyone(&self) -> impl Iterator<Item = &RawDevice> {
        std::iter::once(&self.peer)
            .chain(&self.passive)
            .chain(&self.added)
            .chain(&self.peer_added)
    }

    fn unexpected(&self, operation: Operation, what: String) -> ClientBenchError {
        ClientBenchError::Unexpected {
            operation: operation.key(),
            members: self.members,
            what,
        }
    }
}

/// The peer's state in one founder's group.
struct Peer {
    provider: OpenMlsRustCrypto,
    group: MlsGroup,
    /// Text messages it sent.
    sent: u64,
}

impl Peer {
    /// Joins by `welcome`, with the KeyPackage whose private parts
    /// `provider` holds.
    fn join(provider: OpenMlsRustCrypto, welcome: &[u8]) -> Result<Self, ClientBenchError> {
        let welcome = match MlsMessageIn::tls_deserialize_exact(welcome)
            .map_err(|e| mls("decode the Welcome")(&e))?
            .extract()
        {
            openmls::prelude::MlsMessageBodyIn::Welcome(welcome) => welcome,
            _ => {
                return Err(mls("join")(&"the founder's message is not a Welcome"));
            }
        };
        let group = StagedWelcome::new_from_welcome(&provider, &join_config(), welcome, None)
            .map_err(|e| mls("join by the Welcome")(&e))?
            .into_group(&provider)
            .map_err(|e| mls("join by the Welcome")(&e))?;
        Ok(Self {
            provider,
            group,
            sent: 0,
        })
    }

    /// Its next text message, as a Rempart client's, gossiping `head`.
    fn message(
        &mut self,
        signer: &SignatureKeyPair,
        head: Option<SignedHead>,
    ) -> Result<Vec<u8>, ClientBenchError> {
        self.sent += 1;
        let plaintext = engine::text_plaintext(TEXT, self.sent, head)?;
        self.group
            .create_message(&self.provider, signer, &plaintext)
            .map_err(|e| mls("encrypt the peer's message")(&e))?
            .to_bytes()
            .map_err(|e| mls("encode the peer's message")(&e))
    }

    /// Processes and merges a commit of the founder.
    fn follow(&mut self, commit: &[u8]) -> Result<(), ClientBenchError> {
        process_commit(&mut self.group, &self.provider, commit)
    }

    /// A self-update commit, merged.
    fn self_update(&mut self, signer: &SignatureKeyPair) -> Result<Vec<u8>, ClientBenchError> {
        let bundle = self
            .group
            .self_update(&self.provider, signer, LeafNodeParameters::default())
            .map_err(|e| mls("build the peer's self-update")(&e))?;
        let commit = bundle
            .into_messages()
            .0
            .to_bytes()
            .map_err(|e| mls("encode the peer's commit")(&e))?;
        self.merge()?;
        Ok(commit)
    }

    /// A commit adding `key_package`, merged.
    fn add(
        &mut self,
        signer: &SignatureKeyPair,
        key_package: KeyPackage,
    ) -> Result<Vec<u8>, ClientBenchError> {
        let commit = add_commit(&mut self.group, &self.provider, signer, key_package)?.0;
        self.merge()?;
        Ok(commit)
    }

    /// A commit removing `leaf`, merged.
    fn remove(
        &mut self,
        signer: &SignatureKeyPair,
        leaf: LeafNodeIndex,
    ) -> Result<Vec<u8>, ClientBenchError> {
        let commit = remove_commit(&mut self.group, &self.provider, signer, leaf)?;
        self.merge()?;
        Ok(commit)
    }

    fn merge(&mut self) -> Result<(), ClientBenchError> {
        self.group
            .merge_pending_commit(&self.provider)
            .map_err(|e| mls("merge the peer's commit")(&e))
    }
}

/// A commit adding `key_package` to `group`, built as the engine builds
/// one (the commit builder, PSKs loaded, staged): the commit and the
/// Welcome, encoded.
fn add_commit<P: OpenMlsProvider>(
    group: &mut MlsGroup,
    provider: &P,
    signer: &SignatureKeyPair,
    key_package: KeyPackage,
) -> Result<(Vec<u8>, Option<Vec<u8>>), ClientBenchError> {
    let bundle = group
        .commit_builder()
        .propose_adds([key_package])
        .load_psks(provider.storage())
        .map_err(|e| mls("load PSKs")(&e))?
        .build(provider.rand(), provider.crypto(), signer, |_| true)
        .map_err(|e| mls("build an add commit")(&e))?
        .stage_commit(provider)
        .map_err(|e| mls("stage an add commit")(&e))?;
    let (commit, welcome, _) = bundle.into_messages();
    let commit = commit.to_bytes().map_err(|e| mls("encode a commit")(&e))?;
    let welcome = welcome
        .map(|w| w.to_bytes())
        .transpose()
        .map_err(|e| mls("encode a Welcome")(&e))?;
    Ok((commit, welcome))
}

/// A commit removing `leaf` from `group`, built as the engine builds one,
/// encoded.
fn remove_commit<P: OpenMlsProvider>(
    group: &mut MlsGroup,
    provider: &P,
    signer: &SignatureKeyPair,
    leaf: LeafNodeIndex,
) -> Result<Vec<u8>, ClientBenchError> {
    let bundle = group
        .commit_builder()
        .propose_removals([leaf])
        .load_psks(provider.storage())
        .map_err(|e| mls("load PSKs")(&e))?
        .build(provider.rand(), provider.crypto(), signer, |_| true)
        .map_err(|e| mls("build a remove commit")(&e))?
        .stage_commit(provider)
        .map_err(|e| mls("stage a remove commit")(&e))?;
    bundle
        .into_messages()
        .0
        .to_bytes()
        .map_err(|e| mls("encode a commit")(&e))
}

/// Decodes an MLS message from the wire.
fn protocol_message(bytes: &[u8]) -> Result<ProtocolMessage, ClientBenchError> {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| mls("decode a message")(&e))?
        .try_into_protocol_message()
        .map_err(|e| mls("decode a message")(&e))
}

/// Decodes, processes and merges a commit.
fn process_commit<P: OpenMlsProvider>(
    group: &mut MlsGroup,
    provider: &P,
    commit: &[u8],
) -> Result<(), ClientBenchError> {
    let processed = group
        .process_message(provider, protocol_message(commit)?)
        .map_err(|e| mls("process a commit")(&e))?;
    match processed.into_content() {
        ProcessedMessageContent::StagedCommitMessage(staged) => group
            .merge_staged_commit(provider, *staged)
            .map_err(|e| mls("merge a commit")(&e)),
        _ => Err(mls("process a commit")(&"the message is not a commit")),
    }
}

/// The engine's group, founded by a client with no server.
struct EngineSide {
    client: Client,
    conversation: ConversationRef,
    peer: Peer,
    head: Option<SignedHead>,
    /// Position of the last entry of the group's log.
    seq: u64,
}

impl EngineSide {
    /// The group of a founder whose store is in `home`, encrypted at rest
    /// under `passphrase` if given.
    async fn build(
        home: &std::path::Path,
        people: &People,
        passphrase: Option<&Passphrase>,
    ) -> Result<Self, ClientBenchError> {
        let mut client = engine::offline_account_with(home, "founder".parse()?, passphrase)?;
        let lists: Vec<_> = people
            .everyone()
            .map(|d| (d.user.clone(), d.list.clone()))
            .collect();
        engine::trust_device_lists(&client, &lists)?;
        let peer_provider = OpenMlsRustCrypto::default();
        let passive_provider = OpenMlsRustCrypto::default();
        let mut packages = vec![(
            people.peer.user.clone(),
            people.peer.device,
            people.peer.key_package(&peer_provider)?,
        )];
        for member in &people.passive {
            packages.push((
                member.user.clone(),
                member.device,
                member.key_package(&passive_provider)?,
            ));
        }
        let welcome = engine::found_group(&mut client, GROUP, packages)?
            .ok_or_else(|| mls("found the group")(&"the engine made no Welcome"))?;
        let peer = Peer::join(peer_provider, &welcome)?;
        let conversation = engine::conversation(&client, GROUP)?;
        let head = engine::newest_head(&client)?;
        Ok(Self {
            client,
            conversation,
            peer,
            head,
            seq: 1,
        })
    }

    /// The next entry of the log, as the server numbers it.
    fn entry(&mut self, kind: EntryKind, epoch: u64, sender: DeviceId, data: Vec<u8>) -> LogEntry {
        self.seq += 1;
        LogEntry {
            seq: self.seq,
            kind,
            epoch,
            sender,
            message_id: MessageId::random(),
            data,
        }
    }

    /// The founder's own upload took the next position of the log.
    fn uploaded(&mut self) {
        self.seq += 1;
    }

    /// Processes the peer's entry, timed, and checks what it showed.
    async fn receive(
        &mut self,
        people: &People,
        operation: Operation,
        entry: LogEntry,
        times: &mut Times,
        expected: impl Fn(&Event) -> bool,
    ) -> Result<(), ClientBenchError> {
        let started = Instant::now();
        let events = engine::receive(&mut self.client, &self.conversation, &entry).await?;
        times[operation.index()].push(started.elapsed());
        let all_expected = events.len() == 1 && events.iter().all(expected);
        if !all_expected {
            return Err(people.unexpected(operation, format!("the engine showed {events:?}")));
        }
        Ok(())
    }

    /// Checks that the engine and the peer are at the same epoch.
    fn check_epoch(&self, people: &People, operation: Operation) -> Result<(), ClientBenchError> {
        let engine = self.client.group_epoch(GROUP)?;
        let peer = self.peer.group.epoch().as_u64();
        if engine != peer {
            return Err(people.unexpected(
                operation,
                format!("the engine is at epoch {engine}, the peer at {peer}"),
            ));
        }
        Ok(())
    }

    /// The founder's own commit: timed, then followed by the peer.
    fn own_commit(
        &mut self,
        people: &People,
        operation: Operation,
        times: &mut Times,
        commit: impl FnOnce(
            &mut Client,
        ) -> Result<Option<rempart_proto::api::CommitUpload>, ClientError>,
    ) -> Result<(), ClientBenchError> {
        let upload = timed(&mut times[operation.index()], || commit(&mut self.client))?
            .ok_or_else(|| people.unexpected(operation, "the engine committed nothing".into()))?;
        self.uploaded();
        self.peer.follow(&upload.commit)?;
        self.check_epoch(people, operation)
    }

    async fn round(
        &mut self,
        people: &People,
        round: usize,
        times: &mut Times,
    ) -> Result<(), ClientBenchError> {
        let peer_device = &people.peer;

        timed(&mut times[Operation::Encrypt.index()], || {
            engine::send_text(&mut self.client, GROUP, TEXT)
        })?;
        self.uploaded();

        let message = self.peer.message(&peer_device.signer, self.head.clone())?;
        let epoch = self.peer.group.epoch().as_u64();
        let entry = self.entry(EntryKind::Application, epoch, peer_device.device, message);
        self.receive(
            people,
            Operation::Decrypt,
            entry,
            times,
            |e| matches!(e, Event::Message { text, .. } if text == TEXT),
        )
        .await?;

        self.own_commit(people, Operation::Update, times, |client| {
            engine::self_update(client, GROUP)
        })?;

        let added = round_device(&people.added, round, people)?;
        let key_package = added.key_package(&OpenMlsRustCrypto::default())?;
        self.own_commit(people, Operation::Add, times, |client| {
            engine::add_device(client, GROUP, added.user.clone(), added.device, key_package)
        })?;
        self.own_commit(people, Operation::Remove, times, |client| {
            engine::remove_user(client, GROUP, &added.user)
        })?;

        let epoch = self.peer.group.epoch().as_u64();
        let commit = self.peer.self_update(&peer_device.signer)?;
        let entry = self.entry(EntryKind::Commit, epoch, peer_device.device, commit);
        let started = Instant::now();
        let events = engine::receive(&mut self.client, &self.conversation, &entry).await?;
        times[Operation::ProcessUpdate.index()].push(started.elapsed());
        if !events.is_empty() {
            return Err(people.unexpected(
                Operation::ProcessUpdate,
                format!("the engine showed {events:?}"),
            ));
        }
        self.check_epoch(people, Operation::ProcessUpdate)?;

        let added = round_device(&people.peer_added, round, people)?;
        let epoch = self.peer.group.epoch().as_u64();
        let key_package = added.key_package(&OpenMlsRustCrypto::default())?;
        let commit = self.peer.add(&peer_device.signer, key_package)?;
        let entry = self.entry(EntryKind::Commit, epoch, peer_device.device, commit);
        self.receive(
            people,
            Operation::ProcessAdd,
            entry,
            times,
            |e| matches!(e, Event::MemberAdded { user, .. } if user == &added.user),
        )
        .await?;
        self.check_epoch(people, Operation::ProcessAdd)?;

        let epoch = self.peer.group.epoch().as_u64();
        let leaf = added.leaf(&self.peer.group).ok_or_else(|| {
            people.unexpected(
                Operation::ProcessRemove,
                "the added device has no leaf".into(),
            )
        })?;
        let commit = self.peer.remove(&peer_device.signer, leaf)?;
        let entry = self.entry(EntryKind::Commit, epoch, peer_device.device, commit);
        self.receive(
            people,
            Operation::ProcessRemove,
            entry,
            times,
            |e| matches!(e, Event::MemberRemoved { user, .. } if user == &added.user),
        )
        .await?;
        self.check_epoch(people, Operation::ProcessRemove)
    }
}

/// The device `round` of `devices`.
fn round_device<'a>(
    devices: &'a [RawDevice],
    round: usize,
    people: &People,
) -> Result<&'a RawDevice, ClientBenchError> {
    devices
        .get(round)
        .ok_or_else(|| ClientBenchError::Unexpected {
            operation: "setup",
            members: people.members,
            what: format!("no device for round {round}"),
        })
}

/// The raw openmls group, founded by a device with in-memory storage.
struct RawSide {
    founder: RawDevice,
    provider: OpenMlsRustCrypto,
    group: MlsGroup,
    peer: Peer,
    /// What the founder encrypts: the same bytes as the engine's messages.
    plaintext: Vec<u8>,
    head: Option<SignedHead>,
}

impl RawSide {
    /// Founds the group; its messages gossip `head`, as the engine's do.
    fn build(people: &People, head: Option<SignedHead>) -> Result<Self, ClientBenchError> {
        let founder = RawDevice::new("founder")?;
        let provider = OpenMlsRustCrypto::default();
        let mut group = MlsGroup::new(
            &provider,
            &founder.signer,
            &engine::group_create_config(GROUP)?,
            founder.credential(),
        )
        .map_err(|e| mls("create the group")(&e))?;
        let peer_provider = OpenMlsRustCrypto::default();
        let passive_provider = OpenMlsRustCrypto::default();
        let mut key_packages = vec![people.peer.key_package(&peer_provider)?];
        for member in &people.passive {
            key_packages.push(member.key_package(&passive_provider)?);
        }
        let (_, welcome, _) = group
            .add_members(&provider, &founder.signer, &key_packages)
            .map_err(|e| mls("add the members")(&e))?;
        group
            .merge_pending_commit(&provider)
            .map_err(|e| mls("merge the founding commit")(&e))?;
        let welcome = welcome
            .to_bytes()
            .map_err(|e| mls("encode the Welcome")(&e))?;
        let peer = Peer::join(peer_provider, &welcome)?;
        let plaintext = engine::text_plaintext(TEXT, 1, head.clone())?;
        Ok(Self {
            founder,
            provider,
            group,
            peer,
            plaintext,
            head,
        })
    }

    fn check_epoch(&self, people: &People, operation: Operation) -> Result<(), ClientBenchError> {
        let (founder, peer) = (self.group.epoch(), self.peer.group.epoch());
        if founder != peer {
            return Err(people.unexpected(
                operation,
                format!("the founder is at epoch {founder:?}, the peer at {peer:?}"),
            ));
        }
        Ok(())
    }

    /// The founder's own commit, built and merged, timed; then followed by
    /// the peer.
    fn own_commit(
        &mut self,
        people: &People,
        operation: Operation,
        times: &mut Times,
        commit: impl FnOnce(
            &mut MlsGroup,
            &OpenMlsRustCrypto,
            &SignatureKeyPair,
        ) -> Result<Vec<u8>, ClientBenchError>,
    ) -> Result<(), ClientBenchError> {
        let (group, provider, signer) = (&mut self.group, &self.provider, &self.founder.signer);
        let commit = timed(&mut times[operation.index()], || {
            let commit = commit(group, provider, signer)?;
            group
                .merge_pending_commit(provider)
                .map_err(|e| mls("merge the founder's commit")(&e))?;
            Ok::<_, ClientBenchError>(commit)
        })?;
        self.peer.follow(&commit)?;
        self.check_epoch(people, operation)
    }

    /// Processes the peer's commit, timed.
    fn process(
        &mut self,
        people: &People,
        operation: Operation,
        times: &mut Times,
        commit: &[u8],
    ) -> Result<(), ClientBenchError> {
        let (group, provider) = (&mut self.group, &self.provider);
        timed(&mut times[operation.index()], || {
            process_commit(group, provider, commit)
        })?;
        self.check_epoch(people, operation)
    }

    fn round(
        &mut self,
        people: &People,
        round: usize,
        times: &mut Times,
    ) -> Result<(), ClientBenchError> {
        let peer_device = &people.peer;
        let (group, provider, signer) = (&mut self.group, &self.provider, &self.founder.signer);
        let plaintext = &self.plaintext;
        timed(&mut times[Operation::Encrypt.index()], || {
            group
                .create_message(provider, signer, plaintext)
                .map_err(|e| mls("encrypt")(&e))?
                .to_bytes()
                .map_err(|e| mls("encode a message")(&e))
        })?;

        let message = self.peer.message(&peer_device.signer, self.head.clone())?;
        let decrypted = timed(&mut times[Operation::Decrypt.index()], || {
            let processed = group
                .process_message(provider, protocol_message(&message)?)
                .map_err(|e| mls("decrypt")(&e))?;
            match processed.into_content() {
                ProcessedMessageContent::ApplicationMessage(app) => Ok(app.into_bytes()),
                _ => Err(mls("decrypt")(&"the message is not an application message")),
            }
        })?;
        if decrypted.is_empty() {
            return Err(people.unexpected(Operation::Decrypt, "nothing decrypted".into()));
        }

        self.own_commit(
            people,
            Operation::Update,
            times,
            |group, provider, signer| {
                let bundle = group
                    .self_update(provider, signer, LeafNodeParameters::default())
                    .map_err(|e| mls("build a self-update")(&e))?;
                bundle
                    .into_messages()
                    .0
                    .to_bytes()
                    .map_err(|e| mls("encode a commit")(&e))
            },
        )?;

        let added = round_device(&people.added, round, people)?;
        let key_package = added.key_package(&OpenMlsRustCrypto::default())?;
        self.own_commit(people, Operation::Add, times, |group, provider, signer| {
            add_commit(group, provider, signer, key_package).map(|(commit, _)| commit)
        })?;
        let leaf = added.leaf(&self.group).ok_or_else(|| {
            people.unexpected(Operation::Remove, "the added device has no leaf".into())
        })?;
        self.own_commit(
            people,
            Operation::Remove,
            times,
            |group, provider, signer| remove_commit(group, provider, signer, leaf),
        )?;

        let commit = self.peer.self_update(&peer_device.signer)?;
        self.process(people, Operation::ProcessUpdate, times, &commit)?;

        let added = round_device(&people.peer_added, round, people)?;
        let key_package = added.key_package(&OpenMlsRustCrypto::default())?;
        let commit = self.peer.add(&peer_device.signer, key_package)?;
        self.process(people, Operation::ProcessAdd, times, &commit)?;

        let leaf = added.leaf(&self.peer.group).ok_or_else(|| {
            people.unexpected(
                Operation::ProcessRemove,
                "the added device has no leaf".into(),
            )
        })?;
        let commit = self.peer.remove(&peer_device.signer, leaf)?;
        self.process(people, Operation::ProcessRemove, times, &commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_ask_for_nothing_or_too_little_are_refused() {
        assert!(ClientOptions::full().check().is_ok());
        assert!(ClientOptions::quick().check().is_ok());
        for bad in [
            ClientOptions {
                sizes: Vec::new(),
                iterations: 1,
            },
            ClientOptions {
                sizes: vec![1],
                iterations: 1,
            },
            ClientOptions {
                sizes: vec![2],
                iterations: 0,
            },
        ] {
            assert!(matches!(bad.check(), Err(ClientBenchError::Options(_))));
        }
    }

    #[test]
    fn the_median_is_the_middle_time() {
        let ms = Duration::from_millis;
        assert_eq!(median_ms(&mut [ms(3), ms(1), ms(2)]), 2.0);
        assert_eq!(median_ms(&mut [ms(4), ms(1), ms(2), ms(3)]), 2.5);
        assert_eq!(median_ms(&mut []), 0.0);
    }

    #[test]
    fn every_operation_has_its_own_slot() {
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(op.index(), i);
        }
    }
}
