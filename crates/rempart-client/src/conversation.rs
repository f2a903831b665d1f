//! Opening conversations, sending, and committing changes to a group.
//!
//! Sending an application message is one encryption and one upload whatever
//! the group's size. A commit is persisted as openmls's pending commit,
//! uploaded with the epoch it was built on, and merged only once the server
//! accepted it; if another member's commit won that epoch, the pending commit
//! is dropped, the winner is fetched and merged, and the change is rebuilt.

use openmls::prelude::{
    GroupId as MlsGroupId, KeyPackage, LeafNodeParameters, MlsGroup, MlsMessageOut,
    OpenMlsProvider as _,
};
use rempart_proto::api::{Appended, CommitUpload};
use rempart_proto::{DeviceId, GroupId, MessageId, UserName};
use serde::{Deserialize, Serialize};

use crate::api::CommitOutcome;
use crate::device_list::{self, VerifiedDeviceList};
use crate::error::ClientError;
use crate::event::{Alert, AlertCode, Event};
use crate::mls::{self, KeyPackageRefusal};
use crate::store::{Conversation, StoredMessage};
use crate::{Client, MAX_TEXT_BYTES};

/// How many times a commit is rebuilt after losing its epoch to another.
const MAX_COMMIT_ATTEMPTS: usize = 5;

/// The plaintext of an application message, encrypted by MLS. Its id is
/// inside the encryption, so the server can neither forge nor alter it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// Format version.
    pub v: u8,
    /// The message's id, for deduplication.
    pub id: MessageId,
    /// Unix seconds at sending, as the sender's clock says.
    pub sent_at: i64,
    /// The text.
    pub text: String,
}

/// What a commit builder produces.
pub(crate) struct BuiltCommit {
    pub commit: MlsMessageOut,
    pub welcome: Option<MlsMessageOut>,
    pub add_devices: Vec<DeviceId>,
    pub remove_devices: Vec<DeviceId>,
}

impl Client {
    /// Sends `text` in the 1:1 conversation with `to`, creating it if needed.
    /// Returns the message's id once the server durably accepted it.
    pub async fn send_text(&mut self, to: &UserName, text: &str) -> Result<MessageId, ClientError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(ClientError::TextTooLong(text.len()));
        }
        let conversation = match self.store.conversation_with(to)? {
            Some(c) => c,
            None => self.open_conversation(to).await?,
        };
        let id = MessageId::random();
        let envelope = Envelope {
            v: 1,
            id,
            sent_at: crate::api::unix_now(),
            text: text.to_owned(),
        };
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(&envelope).map_err(|e| ClientError::Corrupt(e.to_string()))?,
        );
        let group = conversation.group;
        let ciphertext = self.store.atomic(|| {
            let provider = self.provider();
            let mut mls_group = self.load_group(&group)?;
            let out = mls_group
                .create_message(&provider, &self.id.device_key, &plaintext)
                .map_err(ClientError::mls)?;
            self.store.record_sent(&group, &id)?;
            self.store.store_message(&StoredMessage {
                group: &group,
                message_id: &id,
                sender: &self.id.user,
                sender_device: &self.id.device,
                text,
                sent_at: envelope.sent_at,
            })?;
            out.to_bytes().map_err(ClientError::mls)
        })?;
        self.api
            .put_message(self.signer(), &group, &id, ciphertext)
            .await?;
        Ok(id)
    }

    /// Rotates this device's leaf key material in the conversation with
    /// `peer` (an MLS self-update commit), for post-compromise security.
    /// Returns what was learnt from other members' commits that won the
    /// epoch first, if any.
    pub async fn update_keys(&mut self, peer: &UserName) -> Result<Vec<Event>, ClientError> {
        let conversation = self
            .store
            .conversation_with(peer)?
            .ok_or_else(|| ClientError::UnknownUser(peer.clone()))?;
        self.commit(&conversation, |client, group| {
            let bundle = group
                .self_update(
                    &client.provider(),
                    &client.id.device_key,
                    LeafNodeParameters::default(),
                )
                .map_err(ClientError::mls)?;
            let (commit, _, _) = bundle.into_messages();
            Ok(BuiltCommit {
                commit,
                welcome: None,
                add_devices: Vec::new(),
                remove_devices: Vec::new(),
            })
        })
        .await
        .map(|(_, events)| events)
    }

    /// Starts the 1:1 conversation with `peer`: an MLS group with every
    /// device of both accounts, each checked against its account-signed
    /// device list before anything is sent.
    async fn open_conversation(&mut self, peer: &UserName) -> Result<Conversation, ClientError> {
        if peer == &self.id.user {
            return Err(ClientError::SelfConversation);
        }
        let peer_list = self.verified_device_list(peer).await?;
        let own_list = device_list::verify(&self.store, &self.id.user, &self.id.device_list)?;
        let mut key_packages = self.claim_checked(&peer_list).await?;
        if key_packages.is_empty() {
            return Err(ClientError::NoKeyPackages(peer.clone()));
        }
        if own_list.devices().len() > 1 {
            key_packages.extend(self.claim_checked(&own_list).await?);
        }
        let group = GroupId::random();
        let message_id = MessageId::random();
        let add_devices: Vec<DeviceId> = key_packages.iter().map(|(d, _)| *d).collect();
        let packages: Vec<KeyPackage> = key_packages.into_iter().map(|(_, kp)| kp).collect();

        // The group exists locally only if the server accepts its first
        // commit: everything below is one local transaction.
        self.store.conn().execute_batch("BEGIN IMMEDIATE")?;
        let result = self
            .create_group(&group, peer, message_id, &packages, add_devices)
            .await;
        match result {
            Ok(()) => self.store.conn().execute_batch("COMMIT")?,
            Err(e) => {
                // The original error matters more than a failed rollback.
                let _ = self.store.conn().execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        self.store
            .conversation_with(peer)?
            .ok_or_else(|| ClientError::Corrupt("conversation vanished after creation".into()))
    }

    async fn create_group(
        &self,
        group: &GroupId,
        peer: &UserName,
        message_id: MessageId,
        packages: &[KeyPackage],
        add_devices: Vec<DeviceId>,
    ) -> Result<(), ClientError> {
        let upload = {
            let provider = self.provider();
            let credential = mls::credential(&self.id.user, &self.id.device, &self.id.device_key);
            let mut mls_group = MlsGroup::new_with_group_id(
                &provider,
                &self.id.device_key,
                &mls::create_config(),
                MlsGroupId::from_slice(group.as_bytes()),
                credential,
            )
            .map_err(ClientError::mls)?;
            let (commit, welcome, _) = mls_group
                .add_members(&provider, &self.id.device_key, packages)
                .map_err(ClientError::mls)?;
            CommitUpload {
                epoch: 0,
                message_id,
                commit: commit.to_bytes().map_err(ClientError::mls)?,
                welcome: Some(welcome.to_bytes().map_err(ClientError::mls)?),
                add_devices,
                remove_devices: Vec::new(),
            }
        };
        match self.api.post_commit(self.signer(), group, &upload).await? {
            CommitOutcome::Accepted(appended) => {
                let mut mls_group = self.load_group(group)?;
                mls_group
                    .merge_pending_commit(&self.provider())
                    .map_err(ClientError::mls)?;
                self.store
                    .add_conversation(group, peer.as_str(), Some(peer))?;
                self.store.record_sent(group, &message_id)?;
                self.store.set_cursor(group, appended.seq)?;
                Ok(())
            }
            CommitOutcome::Stale { .. } => Err(ClientError::CommitConflict),
        }
    }

    /// Builds a commit with `build`, uploads it, and merges it once accepted;
    /// after a stale-epoch refusal, syncs the conversation and rebuilds.
    pub(crate) async fn commit(
        &mut self,
        conversation: &Conversation,
        build: impl Fn(&Client, &mut MlsGroup) -> Result<BuiltCommit, ClientError>,
    ) -> Result<(Appended, Vec<Event>), ClientError> {
        let group = conversation.group;
        let mut events = Vec::new();
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let message_id = MessageId::random();
            let upload = self.store.atomic(|| {
                let mut mls_group = self.load_group(&group)?;
                let epoch = mls_group.epoch().as_u64();
                let built = build(self, &mut mls_group)?;
                self.store.set_pending_commit(&group, Some(&message_id))?;
                self.store.record_sent(&group, &message_id)?;
                Ok(CommitUpload {
                    epoch,
                    message_id,
                    commit: built.commit.to_bytes().map_err(ClientError::mls)?,
                    welcome: built
                        .welcome
                        .map(|w| w.to_bytes().map_err(ClientError::mls))
                        .transpose()?,
                    add_devices: built.add_devices,
                    remove_devices: built.remove_devices,
                })
            })?;
            // On a network error the outcome is unknown: the pending commit
            // stays, and the next sync merges it if the log has it.
            match self.api.post_commit(self.signer(), &group, &upload).await? {
                CommitOutcome::Accepted(appended) => {
                    self.store.atomic(|| {
                        self.load_group(&group)?
                            .merge_pending_commit(&self.provider())
                            .map_err(ClientError::mls)?;
                        self.store.set_pending_commit(&group, None)
                    })?;
                    return Ok((appended, events));
                }
                CommitOutcome::Stale { .. } => {
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
                    self.sync_conversation(&current, &mut events).await?;
                }
            }
        }
        Err(ClientError::CommitConflict)
    }

    /// Claims one KeyPackage per device of `list`'s user and checks each: a
    /// valid self-signed MLS KeyPackage in Rempart's ciphersuite, whose
    /// credential names that user and a listed device, with that device's
    /// key. One bad package refuses them all: nothing is sent.
    async fn claim_checked(
        &self,
        list: &VerifiedDeviceList,
    ) -> Result<Vec<(DeviceId, KeyPackage)>, ClientError> {
        let user = list.user();
        let claimed = self.api.claim_key_packages(self.signer(), user).await?;
        let mut checked = Vec::with_capacity(claimed.packages.len());
        for package in claimed.packages {
            if package.device == self.id.device {
                continue; // This device is the group's creator, not a joiner.
            }
            let refuse = |code, message: String| {
                ClientError::Alert(Alert {
                    code,
                    conversation: Some(user.to_string()),
                    user: Some(user.clone()),
                    message,
                })
            };
            let key_package = mls::validate_key_package(&self.crypto, &package.key_package)
                .map_err(|e| match e {
                    KeyPackageRefusal::Downgrade => refuse(
                        AlertCode::CiphersuiteDowngrade,
                        format!("a KeyPackage of {user} uses another ciphersuite; refused"),
                    ),
                    KeyPackageRefusal::Invalid(why) => refuse(
                        AlertCode::UnauthorizedMember,
                        format!("a KeyPackage given for {user} is invalid ({why}); refused"),
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
            if checked.iter().any(|(d, _)| *d == package.device) {
                continue;
            }
            checked.push((package.device, key_package));
        }
        Ok(checked)
    }

    /// Fetches `user`'s device list and verifies it ([`device_list::verify`]).
    pub(crate) async fn verified_device_list(
        &self,
        user: &UserName,
    ) -> Result<VerifiedDeviceList, ClientError> {
        let signed = self
            .api
            .device_list(user)
            .await?
            .ok_or_else(|| ClientError::UnknownUser(user.clone()))?;
        device_list::verify(&self.store, user, &signed)
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
