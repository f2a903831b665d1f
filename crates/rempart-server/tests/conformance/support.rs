//! What the cases share: accounts with real signed device lists, commits,
//! KeyPackage uploads, and tasks started together.

use std::future::Future;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use rand::rngs::OsRng;
use rempart_proto::api::{CommitUpload, InboxKind, KeyPackageUpload};
use rempart_proto::limits::MAX_PAGE;
use rempart_proto::{DeviceEntry, DeviceId, DeviceList, GroupId, MessageId, PublicKey};
use rempart_proto::{SignedDeviceList, UserName};
use rempart_server::store::{AccountSignedDeviceList, Store};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// The store every case runs against.
pub type Db = Arc<dyn Store>;

/// The "now" of the cases (Unix seconds), decades ahead of the wall clock:
/// a store may prune by the real clock on its own, and that must never
/// remove a nonce or link a case wrote around `NOW`.
pub const NOW: i64 = 4_000_000_000;

/// Asserts that `$result` is an `Err` matching the pattern (and guard).
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $result {
            Err($pattern) $(if $guard)? => {}
            other => panic!(
                "expected Err({}), got {other:?}",
                stringify!($pattern $(if $guard)?)
            ),
        }
    };
}
pub(crate) use assert_err;

/// A device and its signature key.
#[derive(Debug)]
pub struct Device {
    pub id: DeviceId,
    key: SigningKey,
}

impl Device {
    /// A device with a random id and a new key.
    pub fn new() -> Self {
        Self::with_id(DeviceId::random())
    }

    /// A device `id` with a new key.
    pub fn with_id(id: DeviceId) -> Self {
        Self {
            id,
            key: SigningKey::generate(&mut OsRng),
        }
    }

    /// The public key the store records for this device.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::new(self.key.verifying_key())
    }

    fn entry(&self) -> DeviceEntry {
        DeviceEntry {
            id: self.id,
            signature_key: self.public_key(),
        }
    }
}

/// A user with an account key and devices (not necessarily registered).
#[derive(Debug)]
pub struct Account {
    pub user: UserName,
    pub key: SigningKey,
    pub devices: Vec<Device>,
}

impl Account {
    /// `name` with a new account key and `devices` new devices.
    pub fn new(name: &str, devices: usize) -> Self {
        Self {
            user: name.parse().unwrap(),
            key: SigningKey::generate(&mut OsRng),
            devices: (0..devices).map(|_| Device::new()).collect(),
        }
    }

    /// The id of device `i`.
    pub fn id(&self, i: usize) -> DeviceId {
        self.devices[i].id
    }

    /// The ids of all devices.
    pub fn ids(&self) -> Vec<DeviceId> {
        self.devices.iter().map(|d| d.id).collect()
    }

    /// The account's devices at `version`, signed by its account key.
    pub fn list(&self, version: u64) -> AccountSignedDeviceList {
        self.list_of(version, &self.key, self.devices.iter())
    }

    /// The account's devices at `version`, binding each of `addresses` to
    /// a fingerprint, signed by its account key.
    pub fn list_with_mail(
        &self,
        version: u64,
        addresses: &[(&str, char)],
    ) -> AccountSignedDeviceList {
        let mut list: DeviceList =
            serde_json::from_slice(&self.list(version).signed().list).unwrap();
        list.mail = addresses
            .iter()
            .map(|(address, digit)| rempart_proto::mail::MailBinding {
                address: rempart_proto::mail::MailAddress::parse(address).unwrap(),
                fingerprint: fingerprint(*digit),
            })
            .collect();
        let signed = SignedDeviceList::sign(&list, &self.key).unwrap();
        AccountSignedDeviceList::verify(signed, &self.user).unwrap()
    }

    /// A list of this user at `version` naming `devices`, signed by `key`.
    pub fn list_of<'a>(
        &self,
        version: u64,
        key: &SigningKey,
        devices: impl IntoIterator<Item = &'a Device>,
    ) -> AccountSignedDeviceList {
        let list = DeviceList {
            user: self.user.clone(),
            account_key: PublicKey::new(key.verifying_key()),
            version,
            timestamp: 1_700_000_000 + version as i64,
            devices: devices.into_iter().map(Device::entry).collect(),
            mail: Vec::new(),
        };
        let signed = SignedDeviceList::sign(&list, key).unwrap();
        AccountSignedDeviceList::verify(signed, &self.user).unwrap()
    }
}

/// Registers `name` with `devices` devices at version 1.
pub async fn register(store: &Db, name: &str, devices: usize) -> Account {
    let account = Account::new(name, devices);
    store.register(account.list(1)).await.unwrap();
    account
}

/// A commit built on `epoch` that adds `add`, with a fresh message id.
pub fn commit(epoch: u64, add: &[DeviceId], welcome: Option<&[u8]>) -> CommitUpload {
    CommitUpload {
        epoch,
        message_id: MessageId::random(),
        commit: format!("commit on epoch {epoch}").into_bytes(),
        welcome: welcome.map(<[u8]>::to_vec),
        add_devices: add.to_vec(),
        remove_devices: Vec::new(),
    }
}

/// Creates a group of `creator` that adds `members` with a Welcome; the
/// group is then at epoch 1 with one log entry.
pub async fn create_group(store: &Db, creator: DeviceId, members: &[DeviceId]) -> GroupId {
    let group = GroupId::random();
    let outcome = store
        .append_commit(group, creator, commit(0, members, Some(b"welcome")))
        .await
        .unwrap();
    assert_eq!((outcome.appended.seq, outcome.appended.epoch), (1, 1));
    group
}

/// `count` one-time KeyPackages named after `tag` and their index, and a
/// last-resort one if asked.
pub fn key_packages(tag: &str, count: usize, last_resort: bool) -> KeyPackageUpload {
    KeyPackageUpload {
        one_time: (0..count).map(|i| one_time(tag, i)).collect(),
        last_resort: last_resort.then(|| format!("{tag} last resort").into_bytes()),
    }
}

/// The bytes of one-time KeyPackage `i` of [`key_packages`].
pub fn one_time(tag: &str, i: usize) -> Vec<u8> {
    format!("{tag} one-time {i}").into_bytes()
}

/// Runs `task(0..count)` on `count` tasks that start together (they wait on
/// one barrier first) and returns their results in index order.
pub async fn together<T, F, Fut>(count: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(count));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let barrier = barrier.clone();
        let run = task(i);
        tasks.spawn(async move {
            barrier.wait().await;
            (i, run.await)
        });
    }
    let mut results: Vec<(usize, T)> = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("a task was cancelled: {error}"),
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, result)| result).collect()
}

/// An inbox item as `(kind, group, sender, data)`.
pub type Item = (InboxKind, GroupId, DeviceId, Vec<u8>);

/// A Welcome into `group` from `sender`.
pub fn welcome(group: GroupId, sender: DeviceId, data: &[u8]) -> Item {
    (InboxKind::Welcome, group, sender, data.to_vec())
}

/// The whole inbox of `device`, without the item ids.
pub async fn inbox(store: &Db, device: DeviceId) -> Vec<Item> {
    let page = store.read_inbox(device, 0, MAX_PAGE).await.unwrap();
    page.items
        .into_iter()
        .map(|item| (item.kind, item.group, item.sender, item.data))
        .collect()
}

/// `items` sorted, to compare sets of devices or groups.
pub fn sorted<T: Ord>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut items: Vec<T> = items.into_iter().collect();
    items.sort();
    items
}

/// A fingerprint of forty `digit`s.
pub fn fingerprint(digit: char) -> rempart_proto::mail::Fingerprint {
    rempart_proto::mail::Fingerprint::parse(&digit.to_string().repeat(40)).unwrap()
}
