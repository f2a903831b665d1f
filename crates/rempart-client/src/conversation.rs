//! Conversations: opening them, sending, and changing who is in them.
//!
//! Sending an application message is one encryption and one upload whatever
//! the group's size. Every membership change is an MLS commit built by
//! [`Client::apply_change`]: persisted as openmls's pending commit, uploaded
//! with the epoch it was built on, and merged only once the server accepted
//! it. If another member's commit won that epoch, the pending commit is
//! dropped, the winner is fetched and merged, and the change is rebuilt
//! against the new roster (it may have become unnecessary).

use std::collections::BTreeSet;

use openmls::prelude::{
    GroupId as MlsGroupId, KeyPackage, LeafNodeIndex, LeafNodeParameters, MlsGroup, MlsMessageOut,
    OpenMlsProvider as _,
};
use rempart_proto::api::{Appended, CommitUpload};
use rempart_proto::directory::SignedHead;
use rempart_proto::{DeviceId, GroupId, MessageId, UserName};
use serde::{Deserialize, Serialize};

use crate::api::{AppendOutcome, unix_now};
use crate::device_list::DeviceLists;
use crate::error::ClientError;
use crate::event::{Alert, AlertCode, Event};
use crate::mls::{self, KeyPackageRefusal, Metadata};
use crate::outbox::{Http, Outgoing, Recipient};
use crate::store::Conversation;
use crate::sync::Keep;
use crate::{Client, MAX_TEXT_BYTES};

/// How many times a commit is rebuilt after losing its epoch to another.
pub(crate) const MAX_COMMIT_ATTEMPTS: usize = 8;

/// The plaintext of an application message, encrypted by MLS. Its id is
/// inside the encryption, so the server can neither forge nor alter it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Envelope {
    /// A text message.
    Text {
        /// The message's id, for deduplication.
        id: MessageId,
        /// Unix seconds at sending, as the sender's clock says.
        sent_at: i64,
        /// The text.
        text: String,
        /// The newest directory head the sender accepted: members compare
        /// the heads they were shown, so a server showing them different
        /// directories is caught.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        head: Option<SignedHead>,
        /// The sending device's count of the messages it sent in this
        /// group, this one included: a receiver seeing it jump knows the
        /// server withheld some (whatever the log's numbering says).
        #[serde(default)]
        counter: u64,
    },
    /// The sender's user leaves the group; any member commits the removal
    /// of all of that user's devices.
    Leave {
        /// The request's id.
        id: MessageId,
    },
}

impl Envelope {
    /// The id of the message or request.
    pub(crate) fn id(&self) -> MessageId {
        match self {
            Self::Text { id, .. } | Self::Leave { id } => *id,
        }
    }

    /// The bytes MLS encrypts.
    pub(crate) fn plaintext(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, ClientError> {
        serde_json::to_vec(self)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| ClientError::Corrupt(e.to_string()))
    }
}

/// A text message about to be encrypted: its envelope, and this
/// device's message counter inside it.
pub(crate) struct OutgoingText {
    pub counter: u64,
    pub envelope: Envelope,
}

/// A device in a conversation's roster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RosterEntry {
    /// The user.
    pub user: UserName,
    /// The device.
    pub device: DeviceId,
    /// Fingerprint of the device's key.
    pub fingerprint: String,
}

/// A conversation, for listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConversationInfo {
    /// The name every member uses: the group's name, or the peer's user name.
    pub name: String,
    /// True for a named group, false for a 1:1 conversation.
    pub is_group: bool,
    /// The users in it (for an ended one, when it ended here).
    pub members: Vec<UserName>,
    /// Whether it ended here: this device was removed, or left.
    pub ended: bool,
    /// Who ended it here, once ended: the member who removed this device,
    /// or this account's own user if it left.
    pub ended_by: Option<UserName>,
    /// Received messages not read yet (see [`Client::history`]).
    pub unread: u64,
    /// The time of its newest message (Unix seconds; 0 if none).
    pub last_activity: i64,
    /// Whether the user verified every other member's account key (by
    /// comparing safety numbers) and none changed since.
    pub verified: bool,
    /// Members whose account key changed since the user verified it:
    /// sending here is refused until their new safety number is confirmed.
    pub key_changed: Vec<UserName>,
}

/// A leaf of the MLS tree, as Rempart reads it.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub index: LeafNodeIndex,
    pub user: UserName,
    pub device: DeviceId,
    pub signature_key: Vec<u8>,
}

/// The roster of a group: every leaf with a well-formed credential.
pub(crate) fn roster(group: &MlsGroup) -> Vec<Leaf> {
    group
        .members()
        .filter_map(|m| {
            let (user, device) = mls::parse_credential(&m.credential)?;
            Some(Leaf {
                index: m.index,
                user,
                device,
                signature_key: m.signature_key,
            })
        })
        .collect()
}

/// A membership change, recomputed against the roster at each attempt.
#[derive(Debug, Default)]
pub(crate) struct Change {
    /// Devices to add, with their checked KeyPackages.
    pub adds: Vec<(UserName, DeviceId, KeyPackage)>,
    /// Users all of whose devices leave.
    pub remove_users: BTreeSet<UserName>,
    /// Single devices that leave.
    pub remove_devices: BTreeSet<(UserName, DeviceId)>,
}

impl Change {
    fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.remove_users.is_empty() && self.remove_devices.is_empty()
    }
}

/// What a commit builder produced.
pub(crate) struct BuiltCommit {
    pub commit: MlsMessageOut,
    pub welcome: Option<MlsMessageOut>,
    pub add_devices: Vec<DeviceId>,
    pub remove_devices: Vec<DeviceId>,
}

impl Client {
    /// Sends `text` in the 1:1 conversation with `to`, creating it if
    /// needed, through the outbox: once this returns, the message is kept
    /// whatever happens. It is [`Sent`](crate::outbox::DeliveryState::Sent) once the server
    /// durably accepted it, or [`Queued`](crate::outbox::DeliveryState::Queued) if the server
    /// could not be reached (the next sync or send delivers it). A message
    /// the server refused is kept as failed, and its error returned.
    pub async fn send_text(&mut self, to: &UserName, text: &str) -> Result<Outgoing, ClientError> {
        self.send_through(&mut Http, Recipient::Peer(to), text)
            .await
    }

    /// Sends `text` in the group named `name`, as [`Client::send_text`]
    /// does.
    pub async fn send_to_group(&mut self, name: &str, text: &str) -> Result<Outgoing, ClientError> {
        self.send_through(&mut Http, Recipient::Group(name), text)
            .await
    }

    /// What is checked and read before a text is encrypted: no member's
    /// account key changed since the user verified it, this device's next
    /// message counter, and the newest directory head to gossip.
    pub(crate) fn prepare_text(
        &self,
        conversation: &Conversation,
        id: MessageId,
        sent_at: i64,
        text: &str,
    ) -> Result<OutgoingText, ClientError> {
        let members: BTreeSet<UserName> = roster(&self.load_group(&conversation.group)?)
            .into_iter()
            .map(|l| l.user)
            .collect();
        self.check_verified_keys(&members, &conversation.name)?;
        let counter = self
            .store
            .last_counter(&conversation.group, &self.id.device)?
            .unwrap_or(0)
            .saturating_add(1);
        let envelope = Envelope::Text {
            id,
            sent_at,
            text: text.to_owned(),
            head: self.store.newest_head()?,
            counter,
        };
        Ok(OutgoingText { counter, envelope })
    }

    /// Encrypts and uploads one application message, in the group's current
    /// epoch: if the server says a commit landed first, catches up and
    /// encrypts again. `record` runs in the same local transaction as the
    /// accepted encryption's bookkeeping.
    async fn upload_envelope(
        &mut self,
        conversation: &Conversation,
        envelope: &Envelope,
        record: impl Fn(&Client) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let id = envelope.id();
        let plaintext = envelope.plaintext()?;
        let mut conversation = conversation.clone();
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let group = conversation.group;
            let (epoch, ciphertext) = self.encrypt_envelope(&group, &id, &plaintext)?;
            match self
                .api
                .put_message(self.signer(), &group, &id, epoch, ciphertext)
                .await?
            {
                AppendOutcome::Accepted(_) => return self.store.atomic(|| record(self)),
                AppendOutcome::Stale { .. } => {
                    conversation = self.catch_up_after_stale(&conversation).await?;
                }
            }
        }
        Err(ClientError::CommitConflict)
    }

    /// After the server refused a message as encrypted in a stale epoch:
    /// catches up with the conversation (queueing what it learnt for the
    /// next sync). Returns the conversation, still active, or the error
    /// for writing to it.
    pub(crate) async fn catch_up_after_stale(
        &mut self,
        conversation: &Conversation,
    ) -> Result<Conversation, ClientError> {
        let group = conversation.group;
        let mut learnt = Vec::new();
        let current = self
            .store
            .conversation(&group)?
            .unwrap_or_else(|| conversation.clone());
        self.sync_conversation(&current, &mut learnt, Keep::InMemory)
            .await?;
        self.store.queue_events(&learnt)?;
        match self.store.conversation(&group)? {
            Some(c) if c.active => Ok(c),
            Some(c) => Err(self.ended(&c)),
            None => Err(ClientError::UnknownConversation(conversation.name.clone())),
        }
    }

    /// The server's epoch counter for the group at MLS epoch `mls_epoch`:
    /// they differ by the entries the server took as commits and the
    /// members rejected (see `note_server_epoch`).
    pub(crate) fn server_epoch(&self, group: &GroupId, mls_epoch: u64) -> Result<u64, ClientError> {
        let offset = self
            .store
            .conversation(group)?
            .map_or(0, |c| c.epoch_offset);
        Ok(mls_epoch.saturating_add(offset))
    }

    /// Encrypts `plaintext` in the group's current epoch and records `id` as
    /// sent, in one local transaction. Returns the server's epoch counter
    /// for that epoch and the MLS message.
    pub(crate) fn encrypt_envelope(
        &self,
        group: &GroupId,
        id: &MessageId,
        plaintext: &[u8],
    ) -> Result<(u64, Vec<u8>), ClientError> {
        self.store.atomic(|| {
            let mut mls_group = self.load_group(group)?;
            let out = mls_group
                .create_message(&self.provider(), &self.id.device_key, plaintext)
                .map_err(ClientError::mls)?;
            self.store.record_sent(group, id)?;
            Ok((
                self.server_epoch(group, mls_group.epoch().as_u64())?,
                out.to_bytes().map_err(ClientError::mls)?,
            ))
        })
    }

    /// Rotates this device's leaf key material in the conversation with
    /// `peer` (an MLS self-update commit), for post-compromise security.
    /// Returns what was learnt from other members' commits that won the
    /// epoch first, if any.
    pub async fn update_keys(&mut self, peer: &UserName) -> Result<Vec<Event>, ClientError> {
        let conversation = self
            .store
            .conversation_with(peer)?
            .ok_or_else(|| ClientError::UnknownConversation(peer.to_string()))?;
        self.self_update(&conversation).await
    }

    /// Rotates this device's leaf key material in the group named `name`.
    pub async fn update_group_keys(&mut self, name: &str) -> Result<Vec<Event>, ClientError> {
        let conversation = self.active_group(name)?;
        self.self_update(&conversation).await
    }

    pub(crate) async fn self_update(
        &mut self,
        conversation: &Conversation,
    ) -> Result<Vec<Event>, ClientError> {
        let group = conversation.group;
        let (_, events) = self
            .commit(conversation, |client, mls_group| {
                client.build_self_update(mls_group)
            })
            .await?;
        self.store.note_updated(&group, unix_now())?;
        Ok(events)
    }

    /// A self-update commit of this device's leaf, for [`Client::commit`].
    pub(crate) fn build_self_update(
        &self,
        mls_group: &mut MlsGroup,
    ) -> Result<Option<BuiltCommit>, ClientError> {
        let bundle = mls_group
            .self_update(
                &self.provider(),
                &self.id.device_key,
                LeafNodeParameters::default(),
            )
            .map_err(ClientError::mls)?;
        let (commit, _, _) = bundle.into_messages();
        Ok(Some(BuiltCommit {
            commit,
            welcome: None,
            add_devices: Vec::new(),
            remove_devices: Vec::new(),
        }))
    }

    /// Creates the group `name` with every device of every member (and this
    /// account's other devices), each checked against its account-signed
    /// device list before anything is sent. The name travels inside the
    /// group, so every member sees the same one.
    pub async fn create_group(
        &mut self,
        name: &str,
        members: &[UserName],
    ) -> Result<(), ClientError> {
        check_group_name(name)?;
        // A founding cancelled earlier may be this very group.
        self.settle_pending_commits().await?;
        if self.store.group_named(name)?.is_some_and(|c| c.active) {
            return Err(ClientError::GroupExists(name.to_owned()));
        }
        let mut users: BTreeSet<UserName> = members.iter().cloned().collect();
        users.insert(self.id.user.clone());
        let packages = self.claim_checked(&users, None).await?;
        for member in members {
            if member != &self.id.user && !packages.iter().any(|(u, _, _)| u == member) {
                return Err(ClientError::NoKeyPackages(member.clone()));
            }
        }
        self.found_group(
            Metadata::Group {
                name: name.to_owned(),
            },
            name,
            None,
            packages,
        )
        .await
    }

    /// Starts the 1:1 conversation with `peer`.
    pub(crate) async fn open_conversation(
        &mut self,
        peer: &UserName,
    ) -> Result<Conversation, ClientError> {
        if peer == &self.id.user {
            return Err(ClientError::SelfConversation);
        }
        let users = BTreeSet::from([peer.clone(), self.id.user.clone()]);
        let packages = self.claim_checked(&users, None).await?;
        if !packages.iter().any(|(u, _, _)| u == peer) {
            return Err(ClientError::NoKeyPackages(peer.clone()));
        }
        self.found_group(Metadata::Direct, peer.as_str(), Some(peer), packages)
            .await?;
        self.store
            .conversation_with(peer)?
            .ok_or_else(|| ClientError::Corrupt("conversation vanished after creation".into()))
    }

    /// Creates a group with the given members. The group exists locally only
    /// once the server accepted its first commit: the MLS state is built
    /// and stored first, the commit uploaded outside any transaction, then
    /// merged with the conversation's record in one transaction, or
    /// deleted if the server refused it.
    async fn found_group(
        &mut self,
        metadata: Metadata,
        name: &str,
        peer: Option<&UserName>,
        packages: Vec<(UserName, DeviceId, KeyPackage)>,
    ) -> Result<(), ClientError> {
        let group = GroupId::random();
        let message_id = MessageId::random();
        let upload = self.store.atomic(|| {
            let upload = self.build_founding_commit(&group, message_id, &metadata, packages)?;
            self.store
                .set_pending_founding(&group, &upload, name, peer)?;
            Ok(upload)
        })?;
        // Cancelled from here on, the founding is settled by the next
        // operation (`settle_pending_commits`).
        let refused = match self.api.post_commit(self.signer(), &group, &upload).await {
            Ok(AppendOutcome::Accepted(appended)) => {
                return self.store.atomic(|| {
                    self.merge_founding_commit(&group, name, peer, &upload, appended.seq)
                });
            }
            Ok(AppendOutcome::Stale { .. }) => ClientError::CommitConflict,
            Err(refused @ ClientError::Server { .. }) => refused,
            // The outcome is unknown: settled later, by sending it again.
            Err(e) => return Err(e),
        };
        // Refused: nothing refers to the group's state yet, it goes too.
        self.store.atomic(|| self.drop_founding(&group))?;
        Err(refused)
    }

    /// Forgets a group whose founding the server refused.
    pub(crate) fn drop_founding(&self, group: &GroupId) -> Result<(), ClientError> {
        self.store.set_pending_commit(group, None)?;
        self.load_group(group)?
            .delete(self.provider().storage())
            .map_err(ClientError::mls)
    }

    /// Settles every commit of this device whose outcome is unknown (an
    /// operation cancelled or cut off after it was built): sends it again,
    /// which the server answers as the first time if it had it. Accepted,
    /// it is merged (a group founded gets its conversation); refused by a
    /// commit that won its epoch, or by the server, it is rolled back. A
    /// network failure leaves it pending, for the next operation.
    pub(crate) async fn settle_pending_commits(&mut self) -> Result<(), ClientError> {
        for pending in self.store.pending_commits()? {
            let group = pending.group;
            let outcome = match self
                .api
                .post_commit(self.signer(), &group, &pending.upload)
                .await
            {
                Ok(outcome) => Ok(outcome),
                Err(ClientError::Server { .. }) => Err(()),
                Err(e) => return Err(e),
            };
            match (outcome, &pending.founding) {
                (Ok(AppendOutcome::Accepted(appended)), Some((name, peer))) => {
                    self.store.atomic(|| {
                        self.merge_founding_commit(
                            &group,
                            name,
                            peer.as_ref(),
                            &pending.upload,
                            appended.seq,
                        )
                    })?;
                }
                (Ok(AppendOutcome::Accepted(_)), None) => {
                    self.merge_own_commit(&group, &pending.upload)?;
                }
                (_, Some(_)) => self.store.atomic(|| self.drop_founding(&group))?,
                (_, None) => self.store.atomic(|| {
                    self.load_group(&group)?
                        .clear_pending_commit(self.provider().storage())
                        .map_err(ClientError::mls)?;
                    self.store.set_pending_commit(&group, None)
                })?,
            }
        }
        Ok(())
    }

    /// Creates the MLS group and its first commit, which adds `packages`
    /// (or, alone, updates this device's leaf).
    pub(crate) fn build_founding_commit(
        &self,
        group: &GroupId,
        message_id: MessageId,
        metadata: &Metadata,
        packages: Vec<(UserName, DeviceId, KeyPackage)>,
    ) -> Result<CommitUpload, ClientError> {
        let add_devices: Vec<DeviceId> = packages.iter().map(|(_, d, _)| *d).collect();
        let key_packages: Vec<KeyPackage> = packages.into_iter().map(|(_, _, kp)| kp).collect();
        let provider = self.provider();
        let credential = mls::credential(&self.id.user, &self.id.device, &self.id.device_key);
        let mut mls_group = MlsGroup::new_with_group_id(
            &provider,
            &self.id.device_key,
            &mls::create_config(metadata)?,
            MlsGroupId::from_slice(group.as_bytes()),
            credential,
        )
        .map_err(ClientError::mls)?;
        let (commit, welcome) = if key_packages.is_empty() {
            // Alone (a group of one's own single device): nothing to add.
            let bundle = mls_group
                .self_update(
                    &provider,
                    &self.id.device_key,
                    LeafNodeParameters::default(),
                )
                .map_err(ClientError::mls)?;
            let (commit, welcome, _) = bundle.into_messages();
            (commit, welcome)
        } else {
            let (commit, welcome, _) = mls_group
                .add_members(&provider, &self.id.device_key, &key_packages)
                .map_err(ClientError::mls)?;
            (commit, Some(welcome))
        };
        Ok(CommitUpload {
            epoch: 0,
            message_id,
            commit: commit.to_bytes().map_err(ClientError::mls)?,
            welcome: welcome
                .map(|w| w.to_bytes().map_err(ClientError::mls))
                .transpose()?,
            add_devices,
            remove_devices: Vec::new(),
        })
    }

    /// Once the server accepted the first commit at log position `seq`:
    /// merges it and records the conversation.
    pub(crate) fn merge_founding_commit(
        &self,
        group: &GroupId,
        name: &str,
        peer: Option<&UserName>,
        upload: &CommitUpload,
        seq: u64,
    ) -> Result<(), ClientError> {
        self.load_group(group)?
            .merge_pending_commit(&self.provider())
            .map_err(ClientError::mls)?;
        self.store.note_merged_commit(group, 0, &upload.commit)?;
        self.store.add_conversation(group, name, peer, unix_now())?;
        self.store.record_sent(group, &upload.message_id)?;
        self.store.set_pending_commit(group, None)?;
        self.store.set_cursor(group, seq)
    }

    /// Adds every device of `user` to the group `name`.
    pub async fn add_member(
        &mut self,
        name: &str,
        user: &UserName,
    ) -> Result<Vec<Event>, ClientError> {
        let (conversation, events) = self.caught_up(name).await?;
        let added = async {
            if self.is_member(&conversation, user)? {
                return Err(ClientError::AlreadyMember(user.clone(), name.to_owned()));
            }
            let adds = self
                .claim_checked(&BTreeSet::from([user.clone()]), None)
                .await?;
            if adds.is_empty() {
                return Err(ClientError::NoKeyPackages(user.clone()));
            }
            let change = Change {
                adds,
                ..Change::default()
            };
            self.apply_change(&conversation, change).await
        }
        .await;
        self.with_caught_up(events, added)
    }

    /// Removes every device of `user` from the group `name`.
    pub async fn remove_member(
        &mut self,
        name: &str,
        user: &UserName,
    ) -> Result<Vec<Event>, ClientError> {
        if user == &self.id.user {
            return Err(ClientError::UseLeave);
        }
        let (conversation, events) = self.caught_up(name).await?;
        let removed = async {
            if !self.is_member(&conversation, user)? {
                return Err(ClientError::NotAMember(user.clone(), name.to_owned()));
            }
            let change = Change {
                remove_users: BTreeSet::from([user.clone()]),
                ..Change::default()
            };
            self.apply_change(&conversation, change).await
        }
        .await;
        self.with_caught_up(events, removed)
    }

    /// The group `name` after catching up with its log, so that a change is
    /// judged against the current roster; and what catching up showed.
    async fn caught_up(&mut self, name: &str) -> Result<(Conversation, Vec<Event>), ClientError> {
        let conversation = self.active_group(name)?;
        let mut events = Vec::new();
        self.sync_conversation(&conversation, &mut events, Keep::InMemory)
            .await?;
        // Catching up may have shown this device its own removal.
        match self.active_group(name) {
            Ok(conversation) => Ok((conversation, events)),
            Err(e) => {
                self.store.queue_events(&events)?;
                Err(e)
            }
        }
    }

    /// The events of catching up followed by those of the change, or, if
    /// the change failed, its error with the events kept for the next sync.
    fn with_caught_up(
        &self,
        mut events: Vec<Event>,
        change: Result<Vec<Event>, ClientError>,
    ) -> Result<Vec<Event>, ClientError> {
        match change {
            Ok(learnt) => {
                events.extend(learnt);
                Ok(events)
            }
            Err(e) => {
                self.store.queue_events(&events)?;
                Err(e)
            }
        }
    }

    pub(crate) fn is_member(
        &self,
        conversation: &Conversation,
        user: &UserName,
    ) -> Result<bool, ClientError> {
        Ok(roster(&self.load_group(&conversation.group)?)
            .iter()
            .any(|l| &l.user == user))
    }

    /// Leaves the group `name` with all of this account's devices: asks the
    /// other members (in an encrypted message) to commit the removal, and
    /// stops using the group here.
    pub async fn leave_group(&mut self, name: &str) -> Result<(), ClientError> {
        let conversation = self.active_group(name)?;
        let envelope = Envelope::Leave {
            id: MessageId::random(),
        };
        self.upload_envelope(&conversation, &envelope, |client| {
            client.store.end(&conversation.group, &client.id.user)
        })
        .await
    }

    /// The devices in the group `name`, with their key fingerprints.
    pub fn group_members(&self, name: &str) -> Result<Vec<RosterEntry>, ClientError> {
        let conversation = self.group(name)?;
        let group = self.load_group(&conversation.group)?;
        let mut entries: Vec<RosterEntry> = group
            .members()
            .filter_map(|m| {
                let (user, device) = mls::parse_credential(&m.credential)?;
                let key = rempart_proto::PublicKey::from_bytes(&m.signature_key).ok()?;
                Some(RosterEntry {
                    user,
                    device,
                    fingerprint: key.fingerprint(),
                })
            })
            .collect();
        entries.sort_by(|a, b| (&a.user, a.device).cmp(&(&b.user, b.device)));
        Ok(entries)
    }

    /// The MLS epoch of the group `name`: members who processed the same
    /// commits are at the same epoch.
    pub fn group_epoch(&self, name: &str) -> Result<u64, ClientError> {
        let conversation = self.group(name)?;
        Ok(self.load_group(&conversation.group)?.epoch().as_u64())
    }

    /// This device's conversations, the ended ones included.
    pub fn conversations(&self) -> Result<Vec<ConversationInfo>, ClientError> {
        self.store
            .all_conversations()?
            .into_iter()
            .map(|c| {
                let (unread, last_activity) = self.unread_and_last(&c.group.to_string())?;
                let members: BTreeSet<UserName> = roster(&self.load_group(&c.group)?)
                    .into_iter()
                    .map(|l| l.user)
                    .collect();
                let mut verified = members.len() > 1;
                let mut key_changed = Vec::new();
                for member in members.iter().filter(|m| **m != self.id.user) {
                    let (current, changed) = self.verification(member)?;
                    verified &= current;
                    if changed {
                        key_changed.push(member.clone());
                    }
                }
                Ok(ConversationInfo {
                    name: c.name,
                    is_group: c.is_group,
                    members: members.into_iter().collect(),
                    ended: !c.active,
                    ended_by: c.ended_by,
                    unread,
                    last_activity,
                    verified,
                    key_changed,
                })
            })
            .collect()
    }

    /// The group named `name`, active or ended (for reading).
    pub(crate) fn group(&self, name: &str) -> Result<Conversation, ClientError> {
        self.store
            .group_named(name)?
            .ok_or_else(|| ClientError::UnknownConversation(name.to_owned()))
    }

    /// The error for writing to an ended conversation: removed by whom, or
    /// left.
    pub(crate) fn ended(&self, conversation: &Conversation) -> ClientError {
        let name = conversation.name.clone();
        match &conversation.ended_by {
            Some(by) if by == &self.id.user => ClientError::Left(name),
            Some(by) => ClientError::Removed {
                conversation: name,
                by: by.clone(),
            },
            None => ClientError::Ended(name),
        }
    }

    /// The active group named `name` (for writing): an ended one is
    /// [`ClientError::Removed`] or [`ClientError::Left`].
    pub(crate) fn active_group(&self, name: &str) -> Result<Conversation, ClientError> {
        let conversation = self.group(name)?;
        if conversation.active {
            Ok(conversation)
        } else {
            Err(self.ended(&conversation))
        }
    }

    /// Commits `change` to `conversation`, rebuilt against the current
    /// roster at each attempt. Returns the events of other members' commits
    /// that won an epoch first.
    pub(crate) async fn apply_change(
        &mut self,
        conversation: &Conversation,
        change: Change,
    ) -> Result<Vec<Event>, ClientError> {
        if change.is_empty() {
            return Ok(Vec::new());
        }
        let (_, events) = self
            .commit(conversation, |client, mls_group| {
                client.build_change(mls_group, &change)
            })
            .await?;
        Ok(events)
    }

    /// The commit of `change` against the group's current roster, for
    /// [`Client::commit`]: devices already in are not added again, this
    /// device never removes itself, and `None` if nothing is left to do.
    pub(crate) fn build_change(
        &self,
        mls_group: &mut MlsGroup,
        change: &Change,
    ) -> Result<Option<BuiltCommit>, ClientError> {
        let own = (self.id.user.clone(), self.id.device);
        let leaves = roster(mls_group);
        let present: BTreeSet<(UserName, DeviceId)> =
            leaves.iter().map(|l| (l.user.clone(), l.device)).collect();
        let adds: Vec<&(UserName, DeviceId, KeyPackage)> = change
            .adds
            .iter()
            .filter(|(u, d, _)| !present.contains(&(u.clone(), *d)))
            .collect();
        let removes: Vec<&Leaf> = leaves
            .iter()
            .filter(|l| (l.user.clone(), l.device) != own)
            .filter(|l| {
                change.remove_users.contains(&l.user)
                    || change.remove_devices.contains(&(l.user.clone(), l.device))
            })
            .collect();
        if adds.is_empty() && removes.is_empty() {
            return Ok(None);
        }
        let provider = self.provider();
        let bundle = mls_group
            .commit_builder()
            .propose_adds(adds.iter().map(|(_, _, kp)| kp.clone()))
            .propose_removals(removes.iter().map(|l| l.index))
            .load_psks(provider.storage())
            .map_err(ClientError::mls)?
            .build(
                provider.rand(),
                provider.crypto(),
                &self.id.device_key,
                |_| true,
            )
            .map_err(ClientError::mls)?
            .stage_commit(&provider)
            .map_err(ClientError::mls)?;
        let (commit, welcome, _) = bundle.into_messages();
        Ok(Some(BuiltCommit {
            commit,
            welcome,
            add_devices: adds.iter().map(|(_, d, _)| *d).collect(),
            remove_devices: removes.iter().map(|l| l.device).collect(),
        }))
    }

    /// Builds a commit with `build` (`None`: nothing to commit), uploads it,
    /// and merges it once accepted; after a stale-epoch refusal, syncs the
    /// conversation and rebuilds.
    pub(crate) async fn commit(
        &mut self,
        conversation: &Conversation,
        build: impl Fn(&Client, &mut MlsGroup) -> Result<Option<BuiltCommit>, ClientError>,
    ) -> Result<(Option<Appended>, Vec<Event>), ClientError> {
        let group = conversation.group;
        let mut events = Vec::new();
        // A commit of an earlier, cancelled operation would stand in the way.
        self.settle_pending_commits().await?;
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let Some(upload) = self.build_own_commit(&group, MessageId::random(), &build)? else {
                return Ok((None, events));
            };
            // On a network error the outcome is unknown: the pending commit
            // stays, and the next sync merges it if the log has it.
            match self.api.post_commit(self.signer(), &group, &upload).await? {
                AppendOutcome::Accepted(appended) => {
                    self.merge_own_commit(&group, &upload)?;
                    return Ok((Some(appended), events));
                }
                AppendOutcome::Stale { .. } => {
                    self.store.atomic(|| {
                        self.load_group(&group)?
                            .clear_pending_commit(self.provider().storage())
                            .map_err(ClientError::mls)?;
                        self.store.set_pending_commit(&group, None)
                    })?;
                    let current = self
                        .store
                        .conversation(&group)?
                        .unwrap_or_else(|| conversation.clone());
                    self.sync_conversation(&current, &mut events, Keep::InMemory)
                        .await?;
                }
            }
        }
        Err(ClientError::CommitConflict)
    }

    /// Builds a commit with `build` on the group's current epoch and keeps
    /// it as openmls's pending commit, its id recorded as sent, in one local
    /// transaction. `None`: nothing to commit.
    pub(crate) fn build_own_commit(
        &self,
        group: &GroupId,
        message_id: MessageId,
        build: &impl Fn(&Client, &mut MlsGroup) -> Result<Option<BuiltCommit>, ClientError>,
    ) -> Result<Option<CommitUpload>, ClientError> {
        self.store.atomic(|| {
            let mut mls_group = self.load_group(group)?;
            let epoch = self.server_epoch(group, mls_group.epoch().as_u64())?;
            let Some(built) = build(self, &mut mls_group)? else {
                return Ok(None);
            };
            let upload = CommitUpload {
                epoch,
                message_id,
                commit: built.commit.to_bytes().map_err(ClientError::mls)?,
                welcome: built
                    .welcome
                    .map(|w| w.to_bytes().map_err(ClientError::mls))
                    .transpose()?,
                add_devices: built.add_devices,
                remove_devices: built.remove_devices,
            };
            self.store.set_pending_commit(group, Some(&upload))?;
            self.store.record_sent(group, &message_id)?;
            Ok(Some(upload))
        })
    }

    /// Merges this device's pending commit once the server accepted it, in
    /// one local transaction.
    pub(crate) fn merge_own_commit(
        &self,
        group: &GroupId,
        upload: &CommitUpload,
    ) -> Result<(), ClientError> {
        self.store.atomic(|| {
            let mut mls_group = self.load_group(group)?;
            let epoch = mls_group.epoch().as_u64();
            mls_group
                .merge_pending_commit(&self.provider())
                .map_err(ClientError::mls)?;
            self.store
                .note_merged_commit(group, epoch, &upload.commit)?;
            self.store.set_pending_commit(group, None)
        })
    }

    /// Claims KeyPackages for every device of `users` (all of `wanted` if
    /// given) and checks each: a valid self-signed MLS KeyPackage in
    /// Rempart's ciphersuite whose credential names its user and a device of
    /// that user's verified device list, with that device's key. One bad
    /// package refuses them all: nothing is sent.
    pub(crate) async fn claim_checked(
        &self,
        users: &BTreeSet<UserName>,
        wanted: Option<&BTreeSet<(UserName, DeviceId)>>,
    ) -> Result<Vec<(UserName, DeviceId, KeyPackage)>, ClientError> {
        let lists: DeviceLists = self.device_lists_or_alert(users.iter()).await?;
        for user in users {
            if !lists.contains_key(user) {
                return Err(ClientError::UnknownUser(user.clone()));
            }
        }
        let claimed = self
            .api
            .claim_key_packages(self.signer(), users.iter().cloned().collect())
            .await?;
        let mut checked: Vec<(UserName, DeviceId, KeyPackage)> = Vec::new();
        for package in claimed.packages {
            let user = &package.user;
            if package.device == self.id.device {
                continue; // This device founds or commits; it never joins itself.
            }
            if wanted.is_some_and(|w| !w.contains(&(user.clone(), package.device))) {
                continue;
            }
            let refuse = |code, message: String| {
                ClientError::Alert(Alert {
                    code,
                    conversation: None,
                    user: Some(user.clone()),
                    message,
                })
            };
            let Some(list) = lists.get(user).filter(|_| users.contains(user)) else {
                return Err(refuse(
                    AlertCode::UnauthorizedMember,
                    format!(
                        "the server offered a KeyPackage for {user}, who was not asked for; nothing was sent"
                    ),
                ));
            };
            let key_package = mls::validate_key_package(&self.crypto, &package.key_package)
                .map_err(|e| match e {
                    KeyPackageRefusal::Downgrade => refuse(
                        AlertCode::CiphersuiteDowngrade,
                        format!(
                            "a KeyPackage of {user} uses another ciphersuite; nothing was sent"
                        ),
                    ),
                    KeyPackageRefusal::Invalid(why) => refuse(
                        AlertCode::UnauthorizedMember,
                        format!(
                            "a KeyPackage given for {user} is invalid ({why}); nothing was sent"
                        ),
                    ),
                })?;
            let leaf = key_package.leaf_node();
            let named = mls::parse_credential(leaf.credential());
            let genuine = matches!(&named, Some((u, d)) if u == user && *d == package.device)
                && list.authorizes(&package.device, leaf.signature_key().as_slice());
            if !genuine {
                return Err(refuse(
                    AlertCode::UnauthorizedMember,
                    format!(
                        "the server offered a KeyPackage for {user}'s device {} whose key is not in {user}'s account-signed device list; nothing was sent",
                        package.device
                    ),
                ));
            }
            if checked
                .iter()
                .any(|(u, d, _)| u == user && *d == package.device)
            {
                continue;
            }
            checked.push((user.clone(), package.device, key_package));
        }
        Ok(checked)
    }

    pub(crate) fn load_group(&self, group: &GroupId) -> Result<MlsGroup, ClientError> {
        MlsGroup::load(
            self.provider().storage(),
            &MlsGroupId::from_slice(group.as_bytes()),
        )
        .map_err(ClientError::mls)?
        .ok_or_else(|| ClientError::Corrupt(format!("no MLS state for conversation {group}")))
    }
}

pub(crate) fn check_text(text: &str) -> Result<(), ClientError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ClientError::TextTooLong(text.len()));
    }
    Ok(())
}

/// Longest group name, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 64;

fn check_group_name(name: &str) -> Result<(), ClientError> {
    let ok = !name.trim().is_empty()
        && name.chars().count() <= MAX_GROUP_NAME_CHARS
        && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ClientError::InvalidGroupName(name.to_owned()))
    }
}
