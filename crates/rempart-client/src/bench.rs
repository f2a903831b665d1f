//! Seams for benchmarks of the engine's local work (the `bench` feature,
//! for `cargo bench -p rempart-bench --bench client`). Not part of Rempart's API.
//!
//! Each function runs the code of one of the engine's operations with the
//! network hop taken out, and nothing else changed: the same checks, the
//! same SQLite transactions, openmls over the same storage provider.
//!
//! - [`send_text`] is `Client::send_to_group` with a server that accepts
//!   the message at once: its checks, the outbox's transaction, the
//!   encryption's transaction, then the one that closes the outbox entry.
//! - [`receive`] is what `Client::sync` does with one entry of a log: the
//!   decryption or the commit, with its checks, in the entry's transaction.
//! - [`add_device`], [`remove_user`] and [`self_update`] are
//!   `Client::add_member` (once the KeyPackage is claimed and checked),
//!   `Client::remove_member` and `Client::update_group_keys` once the
//!   server accepted the commit: the membership check, the commit built and
//!   kept pending in one transaction, merged in another.
//!
//! A client made by [`offline_account`] has no server: every request fails
//! without leaving the process, except device-list lookups, which are
//! answered as a server answers a device already holding every user's
//! newest list (no newer list, so no proof to check). The lists it relies
//! on are the ones given to [`trust_device_lists`], verified and cached as
//! after a checked lookup.

use std::path::Path;

use ed25519_dalek::SigningKey;
use openmls::prelude::{KeyPackage, MlsGroupCreateConfig};
use rand::rngs::OsRng;
use rempart_proto::api::{CommitUpload, LogEntry};
use rempart_proto::directory::{DirectoryHead, SignedHead};
use rempart_proto::{DeviceId, GroupId, MessageId, PublicKey, SignedDeviceList, UserName};
use sha2::{Digest as _, Sha256};

use futures_util::FutureExt as _;
use rempart_proto::api::Appended;

use crate::api::{AppendOutcome, ServerApi, unix_now};
use crate::conversation::{Change, Envelope};
use crate::device_list::VerifiedDeviceList;
use crate::directory::PinnedDirectory;
use crate::error::ClientError;
use crate::event::Event;
use crate::mls::{self, Metadata};
use crate::outbox::{Courier, DeliveryState, Recipient};
use crate::store::{Conversation, Store};
use crate::{Client, new_identity};

/// A new account in `home`, registered with no server.
///
/// Its first device list is signed by its own account key and its key is
/// pinned, as `Client::create_account` does. Its key-transparency directory
/// is a key made here, with one signed head accepted, so that its messages
/// gossip a head as those of a client synced with a real directory do.
pub fn offline_account(home: &Path, user: UserName) -> Result<Client, ClientError> {
    offline_account_with(home, user, None)
}

/// [`offline_account`] with its store encrypted at rest under
/// `passphrase`, as `rempart init` makes it.
pub fn offline_account_with(
    home: &Path,
    user: UserName,
    passphrase: Option<&crate::Passphrase>,
) -> Result<Client, ClientError> {
    let api = ServerApi::offline()?;
    let store = Store::create(home, passphrase)?;
    let id = new_identity(user, api.base())?;
    let directory_key = SigningKey::generate(&mut OsRng);
    let directory_public = PublicKey::new(directory_key.verifying_key());
    let digest = Sha256::digest(directory_public.as_bytes());
    let server_id = hex::encode(&digest[..16]);
    let head = SignedHead::sign(
        &DirectoryHead {
            server_id: server_id.clone(),
            epoch: 1,
            root_hash: [0; 32],
            time: unix_now(),
        },
        &directory_key,
    );
    store.atomic(|| {
        store.save_identity(&id)?;
        store.pin_key(&id.user, &id.account_key.public())?;
        store.pin_directory(&PinnedDirectory {
            server_id,
            directory_key: directory_public,
            vrf_public_key: Vec::new(),
        })?;
        store.see_head(1, &head)
    })?;
    Ok(Client::assemble(home, store, api, id))
}

/// Verifies each signed device list for its user (the account key's
/// signature, that key pinned on first sight) and caches it, as after a
/// checked lookup proof; all in one transaction.
pub fn trust_device_lists(
    client: &Client,
    lists: &[(UserName, SignedDeviceList)],
) -> Result<(), ClientError> {
    client.store.atomic(|| {
        for (user, signed) in lists {
            // Epoch 0: proven at no head at all, which only this seam does.
            let list = VerifiedDeviceList::from_store(&client.store, user, signed, None)?;
            client
                .store
                .cache_device_list(user, list.version(), signed, 0)?;
        }
        Ok(())
    })
}

/// The configuration the engine creates the group `name` with, for groups
/// built the same way with openmls alone.
pub fn group_create_config(name: &str) -> Result<MlsGroupCreateConfig, ClientError> {
    mls::create_config(&Metadata::Group {
        name: name.to_owned(),
    })
}

/// Founds the group `name` with `members`, as `Client::create_group` does
/// once their KeyPackages are claimed and checked and the server accepted
/// the first commit at log position 1. Returns the Welcome, if any member
/// was added.
pub fn found_group(
    client: &mut Client,
    name: &str,
    members: Vec<(UserName, DeviceId, KeyPackage)>,
) -> Result<Option<Vec<u8>>, ClientError> {
    let group = GroupId::random();
    let metadata = Metadata::Group {
        name: name.to_owned(),
    };
    let upload = client.store.atomic(|| {
        let upload =
            client.build_founding_commit(&group, MessageId::random(), &metadata, members)?;
        client.merge_founding_commit(&group, name, None, &upload, 1)?;
        Ok(upload)
    })?;
    Ok(upload.welcome)
}

/// A conversation, as [`receive`] takes it.
#[derive(Debug, Clone)]
pub struct ConversationRef(Conversation);

/// The group named `name`.
pub fn conversation(client: &Client, name: &str) -> Result<ConversationRef, ClientError> {
    client.group(name).map(ConversationRef)
}

/// The newest directory head this device accepted: what its messages
/// gossip.
pub fn newest_head(client: &Client) -> Result<Option<SignedHead>, ClientError> {
    client.store.newest_head()
}

/// The plaintext of a text message as a Rempart client encrypts it: the
/// sending device's `counter`th message, gossiping `head`.
pub fn text_plaintext(
    text: &str,
    counter: u64,
    head: Option<SignedHead>,
) -> Result<Vec<u8>, ClientError> {
    let envelope = Envelope::Text {
        id: MessageId::random(),
        sent_at: unix_now(),
        text: text.to_owned(),
        head,
        counter,
    };
    Ok(envelope.plaintext()?.to_vec())
}

/// Sends `text` in the group `name` as `Client::send_to_group` does, the
/// server accepting it: the checks, the outbox's transaction, the
/// encryption with its transaction, and the transaction that closes the
/// outbox entry. Returns the MLS message.
pub fn send_text(client: &mut Client, name: &str, text: &str) -> Result<Vec<u8>, ClientError> {
    let mut server = Accepting::default();
    // Nothing in it waits: the conversation exists and the "server"
    // answers at once, so the future completes on its first poll.
    let sent = client
        .send_through(&mut server, Recipient::Group(name), text)
        .now_or_never()
        .ok_or_else(|| ClientError::Corrupt("a local send waited".into()))??;
    match (sent.state, server.last) {
        (DeliveryState::Sent, Some(ciphertext)) => Ok(ciphertext),
        _ => Err(ClientError::Corrupt("a local send was not accepted".into())),
    }
}

/// A server that takes every message at once, and keeps the last.
#[derive(Default)]
struct Accepting {
    last: Option<Vec<u8>>,
}

impl Courier for Accepting {
    async fn put(
        &mut self,
        _client: &Client,
        _group: &GroupId,
        _id: &MessageId,
        epoch: u64,
        data: Vec<u8>,
    ) -> Result<AppendOutcome, ClientError> {
        self.last = Some(data);
        Ok(AppendOutcome::Accepted(Appended { seq: 0, epoch }))
    }
}

/// Processes `entry` of `conversation`'s log as `Client::sync` does, and
/// returns what it showed.
pub async fn receive(
    client: &mut Client,
    conversation: &ConversationRef,
    entry: &LogEntry,
) -> Result<Vec<Event>, ClientError> {
    let mut events = Vec::new();
    client
        .process_entry(&conversation.0, entry, &mut events)
        .await?;
    Ok(events)
}

/// Adds `device` of `user` to the group `name` with `key_package`, as
/// `Client::add_member` does once the package is claimed and checked, the
/// server accepting the commit. `None` if there was nothing to commit.
pub fn add_device(
    client: &mut Client,
    name: &str,
    user: UserName,
    device: DeviceId,
    key_package: KeyPackage,
) -> Result<Option<CommitUpload>, ClientError> {
    let conversation = client.group(name)?;
    if client.is_member(&conversation, &user)? {
        return Err(ClientError::AlreadyMember(user, name.to_owned()));
    }
    let change = Change {
        adds: vec![(user, device, key_package)],
        ..Change::default()
    };
    commit_change(client, &conversation, &change)
}

/// Removes every device of `user` from the group `name`, as
/// `Client::remove_member` does, the server accepting the commit. `None` if
/// there was nothing to commit.
pub fn remove_user(
    client: &mut Client,
    name: &str,
    user: &UserName,
) -> Result<Option<CommitUpload>, ClientError> {
    if user == client.user() {
        return Err(ClientError::UseLeave);
    }
    let conversation = client.group(name)?;
    if !client.is_member(&conversation, user)? {
        return Err(ClientError::NotAMember(user.clone(), name.to_owned()));
    }
    let change = Change {
        remove_users: [user.clone()].into(),
        ..Change::default()
    };
    commit_change(client, &conversation, &change)
}

/// Rotates this device's leaf in the group `name`, as
/// `Client::update_group_keys` does, the server accepting the commit.
pub fn self_update(client: &mut Client, name: &str) -> Result<Option<CommitUpload>, ClientError> {
    let conversation = client.group(name)?;
    let group = conversation.group;
    let upload = client.build_own_commit(&group, MessageId::random(), &|client, mls_group| {
        client.build_self_update(mls_group)
    })?;
    if let Some(upload) = &upload {
        client.merge_own_commit(&group, upload)?;
    }
    client.store.note_updated(&group, unix_now())?;
    Ok(upload)
}

/// `Client::apply_change` on `conversation`, the server accepting the
/// commit.
fn commit_change(
    client: &Client,
    conversation: &Conversation,
    change: &Change,
) -> Result<Option<CommitUpload>, ClientError> {
    let group = conversation.group;
    let upload = client.build_own_commit(&group, MessageId::random(), &|client, mls_group| {
        client.build_change(mls_group, change)
    })?;
    if let Some(upload) = &upload {
        client.merge_own_commit(&group, upload)?;
    }
    Ok(upload)
}
