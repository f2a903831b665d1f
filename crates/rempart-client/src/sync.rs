//! Sync: read the inbox and every conversation's log by cursor, process
//! Welcomes and commits, decrypt messages, and report what happened.
//!
//! Nothing from the server is trusted: a Welcome is joined only if every
//! member's credential is in its owner's verified device list; a commit is
//! merged only if it comes from a member and every leaf it adds or changes
//! passes the same check; log entries must be consecutive (`message_gap`
//! otherwise); messages are deduplicated by the id inside their encryption.

use std::collections::BTreeSet;

use openmls::framing::errors::{MessageDecryptionError, SecretTreeError};
use openmls::prelude::{
    ContentType, LeafNode, MlsGroup, MlsMessageBodyIn, MlsMessageIn, OpenMlsProvider as _,
    ProcessMessageError, ProcessedMessageContent, ProtocolMessage, Sender, StagedCommit,
    StagedWelcome, ValidationError, WelcomeError, tls_codec::Deserialize as _,
};
use rempart_proto::api::{EntryKind, InboxItem, InboxKind, LogEntry, error_code};
use rempart_proto::{DeviceId, GroupId, UserName};

use crate::Client;
use crate::api::unix_now;
use crate::conversation::{Change, Envelope, Leaf, roster};
use crate::device_list::DeviceLists;
use crate::error::ClientError;
use crate::event::{Alert, AlertCode, Event};
use crate::history::StoredMessage;
use crate::mls::{self, CIPHERSUITE, Metadata};
use crate::outbox::Http;
use crate::store::{Conversation, Transaction};

/// The events a sync learns, before they are queued durably.
#[derive(Default)]
struct Journal {
    /// Learnt since the last [`Journal::keep`].
    events: Vec<Event>,
    /// Every alert this sync raised so far: its code and the user it names.
    alerts: Vec<(AlertCode, Option<UserName>)>,
}

impl Journal {
    /// Queues the events learnt so far durably, for this sync's result or,
    /// if it is cancelled, the next one's.
    fn keep(&mut self, store: &crate::store::Store) -> Result<(), ClientError> {
        for event in &self.events {
            if let Event::Alert { code, sender, .. } = event {
                self.alerts.push((*code, sender.clone()));
            }
        }
        store.queue_events(&self.events)?;
        self.events.clear();
        Ok(())
    }

    /// Whether this sync already raised alert `code` about `user`.
    fn said(&self, code: AlertCode, user: Option<&UserName>) -> bool {
        let kept = self
            .alerts
            .iter()
            .any(|(c, u)| *c == code && u.as_ref() == user);
        kept || self.events.iter().any(|e| {
            matches!(e, Event::Alert { code: c, sender, .. } if *c == code && sender.as_ref() == user)
        })
    }
}

/// Where the events a conversation's sync learns go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Left in the caller's list: the operation reports them itself.
    InMemory,
    /// Queued durably after each entry (see [`Client::sync`]).
    Durably,
}

/// A Welcome staged for this device, or why it is skipped (with the event
/// to report, if any).
enum Staging {
    Staged(Box<StagedWelcome>),
    Skip(Option<Event>),
}

/// A leaf to check against its owner's device list: who its credential
/// names, and its signature key.
struct LeafClaim {
    named: Option<(UserName, DeviceId)>,
    signature_key: Vec<u8>,
}

impl LeafClaim {
    fn of(leaf: &LeafNode) -> Self {
        Self {
            named: mls::parse_credential(leaf.credential()),
            signature_key: leaf.signature_key().as_slice().to_vec(),
        }
    }
}

impl Client {
    /// Fetches and processes everything new: Welcomes, then each
    /// conversation's log. Returns the events in order; security alerts are
    /// [`Event::Alert`].
    pub async fn sync(&mut self) -> Result<Vec<Event>, ClientError> {
        // Each step's events are queued durably as soon as the step has
        // stored what it learnt, so that a sync cancelled midway (its
        // future dropped at a network call) loses none: the next sync
        // reports them. What an earlier operation queued comes first.
        let mut journal = Journal::default();
        self.settle_pending_commits().await?;
        // What was written while the server was away goes first.
        for attempt in self.deliver_outbox(&mut Http).await? {
            journal.events.push(attempt.event(&self.id.user));
        }
        journal.keep(&self.store)?;
        self.check_head(&mut journal.events).await?;
        journal.keep(&self.store)?;
        self.monitor_own_history(&mut journal.events).await?;
        journal.keep(&self.store)?;
        self.check_own_mail(&mut journal.events).await?;
        journal.keep(&self.store)?;
        self.sync_inbox(&mut journal).await?;
        for conversation in self.store.active_conversations()? {
            self.sync_conversation(&conversation, &mut journal.events, Keep::Durably)
                .await?;
        }
        self.check_gossip(&mut journal.events).await?;
        journal.keep(&self.store)?;

        // Every device list this device relies on, its own included: a list
        // that fails verification is an alert (for the own account,
        // `unknown_own_device`), and a valid change is applied to every
        // conversation by a commit.
        // A conversation whose log the server withholds cannot take a
        // commit either: it waits, alerted, until the log is served again.
        let conversations = self.store.writable_conversations()?;
        let mut rosters = Vec::with_capacity(conversations.len());
        let mut users = BTreeSet::from([self.id.user.clone()]);
        for conversation in conversations {
            let leaves = roster(&self.load_group(&conversation.group)?);
            users.extend(leaves.iter().map(|l| l.user.clone()));
            rosters.push((conversation, leaves));
        }
        let fetched = self.device_lists(users.iter()).await?;
        // The own account's key history may have said it already.
        for alert in fetched.alerts {
            if !journal.said(alert.code, alert.user.as_ref()) {
                journal.events.push(alert.into());
            }
        }
        journal.keep(&self.store)?;
        for (conversation, leaves) in rosters {
            self.reconcile(&conversation, &leaves, &fetched.lists, &mut journal.events)
                .await?;
            journal.keep(&self.store)?;
        }
        for conversation in self.store.writable_conversations()? {
            let updated = self.maybe_self_update(&conversation).await?;
            journal.events.extend(updated);
            journal.keep(&self.store)?;
        }
        if let Some(drained) = self.replenish_key_packages().await? {
            journal.events.push(drained);
            journal.keep(&self.store)?;
        }
        let (events, queued_up_to) = self.store.queued_events()?;
        self.store.drop_queued_events(queued_up_to)?;
        Ok(events)
    }

    /// Brings a conversation's roster in line with its members' verified
    /// device lists and with leave requests: adds missing devices, removes
    /// devices no longer listed and users who left, in one commit.
    async fn reconcile(
        &mut self,
        conversation: &Conversation,
        leaves: &[Leaf],
        lists: &DeviceLists,
        events: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        let group = conversation.group;
        let in_roster: BTreeSet<&UserName> = leaves.iter().map(|l| &l.user).collect();
        let mut leavers = BTreeSet::new();
        for user in self.store.leave_requests(&group)? {
            if in_roster.contains(&user) {
                leavers.insert(user);
            } else {
                self.store.clear_leave_request(&group, &user)?;
            }
        }
        let mut wanted = BTreeSet::new();
        let mut stale = BTreeSet::new();
        for user in in_roster.iter().filter(|u| !leavers.contains(**u)) {
            let Some(list) = lists.get(*user) else {
                continue; // No verified list: change nothing for this user.
            };
            for device in list.devices() {
                if !leaves
                    .iter()
                    .any(|l| &l.user == *user && l.device == device.id)
                {
                    wanted.insert(((*user).clone(), device.id));
                }
            }
            for leaf in leaves.iter().filter(|l| &l.user == *user) {
                if !list.authorizes(&leaf.device, &leaf.signature_key) {
                    stale.insert(((*user).clone(), leaf.device));
                }
            }
        }
        let mut adds = Vec::new();
        if !wanted.is_empty() {
            let users: BTreeSet<UserName> = wanted.iter().map(|(u, _)| u.clone()).collect();
            match self.claim_checked(&users, Some(&wanted)).await {
                Ok(packages) => adds = packages,
                Err(ClientError::Alert(mut alert)) => {
                    alert.conversation = Some(conversation.name.clone());
                    events.push(alert.into());
                }
                Err(e) => return Err(e),
            }
        }
        let change = Change {
            adds,
            remove_users: leavers,
            remove_devices: stale,
        };
        let learnt = self.apply_change(conversation, change).await?;
        events.extend(learnt);
        Ok(())
    }

    /// Self-updates in `conversation` if the policy says it is due.
    pub(crate) async fn maybe_self_update(
        &mut self,
        conversation: &Conversation,
    ) -> Result<Vec<Event>, ClientError> {
        let policy = self.update_policy()?;
        let Some(current) = self.store.conversation(&conversation.group)? else {
            return Ok(Vec::new());
        };
        let age = unix_now().saturating_sub(current.updated_at);
        let due = age >= policy.interval_secs || current.sent_since_update >= policy.after_messages;
        if !due {
            return Ok(Vec::new());
        }
        self.self_update(&current).await
    }

    async fn sync_inbox(&mut self, journal: &mut Journal) -> Result<(), ClientError> {
        let page = self.api.read_inbox(self.signer(), 0).await?;
        let mut done = Vec::with_capacity(page.items.len());
        for item in page.items {
            match item.kind {
                InboxKind::Welcome => self.join(&item, &mut journal.events).await?,
            }
            journal.keep(&self.store)?;
            done.push(item.id);
        }
        if !done.is_empty() {
            self.api.ack_inbox(self.signer(), done).await?;
        }
        Ok(())
    }

    /// Joins the group of a Welcome if, and only if, every member is genuine.
    async fn join(&mut self, item: &InboxItem, events: &mut Vec<Event>) -> Result<(), ClientError> {
        let conversation = item.group.to_string();
        let welcome =
            match MlsMessageIn::tls_deserialize_exact(&item.data).map(MlsMessageIn::extract) {
                Ok(MlsMessageBodyIn::Welcome(welcome)) => welcome,
                _ => {
                    events.push(undecryptable(
                        &conversation,
                        None,
                        "inbox item is not an MLS Welcome",
                    ));
                    return Ok(());
                }
            };
        if welcome.ciphersuite() != CIPHERSUITE {
            events.push(alert(
                AlertCode::CiphersuiteDowngrade,
                Some(conversation),
                None,
                format!(
                    "a Welcome uses ciphersuite {:?}; Rempart requires {CIPHERSUITE:?}. Not joined",
                    welcome.ciphersuite()
                ),
            ));
            return Ok(());
        }

        let mut last_resort = false;
        for secret in welcome.secrets() {
            last_resort |= self.store.is_last_resort(secret.new_member().as_slice())?;
        }
        // Staged once to learn who is in the group, and discarded: their
        // device lists come from the network, outside any transaction.
        let (claims, adder) = {
            let _peek = self.store.begin()?;
            match self.stage_welcome(item, welcome.clone())? {
                Staging::Staged(staged) => {
                    let claims: Vec<LeafClaim> = staged
                        .members()
                        .map(|m| LeafClaim {
                            named: mls::parse_credential(&m.credential),
                            signature_key: m.signature_key,
                        })
                        .collect();
                    let adder = staged
                        .welcome_sender()
                        .ok()
                        .and_then(|leaf| mls::parse_credential(leaf.credential()))
                        .map(|(user, _)| user);
                    (claims, adder)
                }
                Staging::Skip(event) => {
                    events.extend(event);
                    return Ok(());
                }
            }
        };
        let fallback_name = item.group.to_string();
        let lists = match self.lists_for(&claims).await {
            Ok(lists) => lists,
            Err(ClientError::Alert(a)) => {
                events.push(a.into());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if let Some(bad) = first_unauthorized(&claims, &lists) {
            events.push(alert(
                AlertCode::UnauthorizedMember,
                Some(fallback_name),
                bad.clone(),
                format!(
                    "refused to join a conversation containing a device that is not in {}'s account-signed device list",
                    bad.map_or_else(|| "its owner".to_owned(), |u| u.to_string())
                ),
            ));
            return Ok(());
        }
        let Some(adder) = adder else {
            events.push(alert(
                AlertCode::UnauthorizedMember,
                Some(fallback_name),
                None,
                "a Welcome came from a sender without a valid credential; not joined".into(),
            ));
            return Ok(());
        };
        let others: BTreeSet<UserName> = claims
            .iter()
            .filter_map(|c| c.named.as_ref().map(|(u, _)| u.clone()))
            .filter(|u| u != &self.id.user)
            .collect();
        // Why a last-resort package was used: only a stock that did not run
        // out makes it the server's doing. Asked before the transaction.
        let last_resort = match last_resort {
            false => None,
            true => Some(self.last_resort_reason().await?),
        };
        // The same Welcome, staged again and joined, in one transaction.
        self.store.atomic_if(|| {
            let Staging::Staged(staged) = self.stage_welcome(item, welcome)? else {
                return Ok(false);
            };
            self.join_staged(item, staged, adder, &others, last_resort.as_deref(), events)?;
            Ok(true)
        })?;
        Ok(())
    }

    /// Stages a Welcome for this device, or says why it is skipped.
    fn stage_welcome(
        &self,
        item: &InboxItem,
        welcome: openmls::prelude::Welcome,
    ) -> Result<Staging, ClientError> {
        let staged = {
            let provider = self.provider();
            // A device removed and later added again replaces its old state.
            StagedWelcome::build_from_welcome(&provider, &mls::join_config(), welcome)
                .and_then(|builder| builder.replace_old_group().build())
        };
        match staged {
            Ok(staged) => Ok(Staging::Staged(Box::new(staged))),
            // Its KeyPackage was already used: this Welcome was processed
            // before and only its acknowledgement was lost.
            Err(WelcomeError::NoMatchingKeyPackage)
                if self.store.conversation(&item.group)?.is_some() =>
            {
                Ok(Staging::Skip(None))
            }
            Err(e) => Ok(Staging::Skip(Some(undecryptable(
                &item.group.to_string(),
                None,
                &format!("cannot join: {e}"),
            )))),
        }
    }

    /// Joins a staged Welcome whose members were all checked, inside the
    /// join's transaction.
    fn join_staged(
        &self,
        item: &InboxItem,
        staged: Box<StagedWelcome>,
        adder: UserName,
        others: &BTreeSet<UserName>,
        last_resort: Option<&str>,
        events: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        let group = staged
            .into_group(&self.provider())
            .map_err(ClientError::mls)?;
        let (name, peer) = match Metadata::of(&group) {
            Some(Metadata::Group { name }) => {
                // Names are unique here; a clash keeps both, told apart by id.
                let clash = self
                    .store
                    .group_named(&name)?
                    .filter(|c| c.group != item.group && c.active);
                let name = if clash.is_some() {
                    format!("{name}#{}", &item.group.to_string()[..8])
                } else {
                    name
                };
                (name, None)
            }
            _ => match others.iter().next() {
                Some(peer) if others.len() == 1 => (peer.to_string(), Some(peer.clone())),
                _ => (item.group.to_string(), None),
            },
        };
        self.store.remove_conversation(&item.group)?;
        self.store
            .forget_peer_counters(&item.group, &self.id.device)?;
        self.store
            .add_conversation(&item.group, &name, peer.as_ref(), unix_now())?;
        self.store
            .set_join_epoch(&item.group, Some(group.epoch().as_u64()))?;
        tracing::debug!(group = %item.group, epoch = group.epoch().as_u64(), "joined conversation");
        if let Some(why) = last_resort {
            events.push(alert(
                AlertCode::LastResortUsed,
                Some(name.clone()),
                Some(adder.clone()),
                format!(
                    "{adder} added this device to {name} with its reused last-resort KeyPackage: {why}"
                ),
            ));
        }
        events.push(Event::MemberAdded {
            conversation: name,
            sender: adder,
            user: self.id.user.clone(),
            device: self.id.device,
        });
        Ok(())
    }

    /// Reads `conversation`'s log after its cursor and processes each entry.
    ///
    /// A conversation this device's MLS state says it is in, but whose log
    /// the server refuses it, is an eviction without a commit:
    /// `conversation_withheld`, and the conversation stays to be checked
    /// again. A server that serves pages without progress ends the sync
    /// with [`ClientError::BadLog`] rather than keeping it busy for ever.
    pub(crate) async fn sync_conversation(
        &mut self,
        conversation: &Conversation,
        events: &mut Vec<Event>,
        keep: Keep,
    ) -> Result<(), ClientError> {
        let kept = |client: &Client, events: &mut Vec<Event>| -> Result<(), ClientError> {
            if keep == Keep::Durably {
                client.store.queue_events(events)?;
                events.clear();
            }
            Ok(())
        };
        let group = conversation.group;
        let name = &conversation.name;
        let mut cursor = conversation.cursor;
        let mut withheld = conversation.withheld;
        loop {
            let page = match self.api.read_log(self.signer(), &group, cursor).await {
                Ok(page) => page,
                Err(ClientError::Server { code, .. })
                    if code == error_code::FORBIDDEN || code == error_code::NOT_FOUND =>
                {
                    // Said once, until the server serves the log again.
                    if !withheld {
                        self.store.set_withheld(&group, true)?;
                        events.push(alert(
                            AlertCode::ConversationWithheld,
                            Some(name.clone()),
                            None,
                            format!(
                                "the server refuses this device the log of {name} ({code}), but no member removed it: the server is cutting it out in silence while the others still write to it. The conversation is kept and checked again at every sync"
                            ),
                        ));
                    }
                    return kept(self, events);
                }
                Err(e) => return Err(e),
            };
            if withheld {
                self.store.set_withheld(&group, false)?;
                withheld = false;
            }
            let count = page.entries.len();
            let before = cursor;
            // A run of application messages is processed in one local
            // transaction, so that a backlog costs one write to disk per
            // page rather than one per message. Only a commit may call the
            // network (for the device lists of the leaves it brings): the
            // run ends before it. Dropped uncommitted (an error, a future
            // cancelled), the run is rolled back whole, cursor included.
            let mut run: Option<Transaction<'_>> = None;
            for entry in page.entries {
                if entry.seq <= cursor {
                    continue; // Served twice; already processed.
                }
                match (entry.kind, run.take()) {
                    (EntryKind::Commit, Some(open)) => open.commit()?,
                    (EntryKind::Commit, None) => {}
                    (EntryKind::Application, open) => {
                        run = Some(match open {
                            Some(open) => open,
                            None => self.store.begin()?,
                        });
                    }
                }
                // `cursor < entry.seq`, so neither bound over- or underflows.
                let (first_missing, last_missing) = (cursor.saturating_add(1), entry.seq - 1);
                if entry.seq != first_missing {
                    events.push(alert(
                        AlertCode::MessageGap,
                        Some(name.clone()),
                        None,
                        format!(
                            "the server skipped log entries {first_missing} to {last_missing} of conversation {name}"
                        ),
                    ));
                }
                self.process_entry(conversation, &entry, events).await?;
                kept(self, events)?;
                cursor = entry.seq;
                if entry.kind == EntryKind::Commit && !self.is_active(&group)? {
                    // Removed by that commit: nothing after it is for us.
                    return Ok(());
                }
            }
            if let Some(open) = run {
                open.commit()?;
            }
            if count < rempart_proto::limits::MAX_PAGE as usize {
                if cursor == page.last_seq {
                    self.note_server_epoch(&group, page.epoch)?;
                }
                return Ok(());
            }
            if cursor == before {
                return Err(ClientError::BadLog {
                    conversation: name.clone(),
                    reason: format!("a full page after entry {cursor} held nothing after it"),
                });
            }
        }
    }

    /// For a device that joined from a Welcome: whether `entry` comes
    /// before the commit that added it, history it was never part of and
    /// skips without a word (an entry that cannot be dated included). The
    /// commit that added it, or any message of the epoch it joined at or
    /// later, ends that state.
    fn before_joining(
        &self,
        group: &GroupId,
        message: Option<&ProtocolMessage>,
        entry: &LogEntry,
    ) -> Result<bool, ClientError> {
        let Some(joined) = self.store.conversation(group)?.and_then(|c| c.join_epoch) else {
            return Ok(false);
        };
        let Some(epoch) = message.map(|m| m.epoch().as_u64()) else {
            return Ok(true);
        };
        if epoch >= joined {
            self.store.set_join_epoch(group, None)?;
            return Ok(false);
        }
        if epoch.saturating_add(1) == joined && entry.kind == EntryKind::Commit {
            // The commit that added this device: what follows is its own.
            self.store.set_join_epoch(group, None)?;
        }
        Ok(true)
    }

    /// Records how the server's epoch counter maps to the group's MLS
    /// epoch, once this device processed the whole log: each entry the
    /// server took as a commit but the members rejected (`invalid_commit`)
    /// moved the server's counter and not the MLS epoch.
    fn note_server_epoch(&self, group: &GroupId, server_epoch: u64) -> Result<(), ClientError> {
        let mls_epoch = self.load_group(group)?.epoch().as_u64();
        // A server counting fewer epochs than MLS is lying; it can only
        // make this device's uploads fail, which it could anyway.
        let offset = server_epoch.saturating_sub(mls_epoch);
        self.store.set_epoch_offset(group, offset)
    }

    fn is_active(&self, group: &GroupId) -> Result<bool, ClientError> {
        Ok(self.store.conversation(group)?.is_some_and(|c| c.active))
    }

    /// Checks a sender device's message counter: one beyond the last seen
    /// means messages of that device were withheld from this one.
    fn judge_counter(
        &self,
        conversation: &Conversation,
        sender: &UserName,
        device: &DeviceId,
        counter: u64,
        events: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        if counter == 0 {
            return Ok(()); // A sender that numbers nothing.
        }
        let group = &conversation.group;
        if let Some(last) = self.store.last_counter(group, device)?
            && let Some(missing) = counter.checked_sub(last).and_then(|d| d.checked_sub(1))
            && missing > 0
        {
            events.push(alert(
                AlertCode::MessageGap,
                Some(conversation.name.clone()),
                Some(sender.clone()),
                format!(
                    "the server withheld {missing} message(s) of {sender} (device {device}) in {}",
                    conversation.name
                ),
            ));
        }
        self.store.note_counter(group, device, counter)
    }

    pub(crate) async fn process_entry(
        &self,
        conversation: &Conversation,
        entry: &LogEntry,
        events: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        let group = conversation.group;
        let name = &conversation.name;
        let advance = |client: &Client| client.store.set_cursor(&group, entry.seq);

        if entry.sender == self.id.device {
            if self.store.pending_commit(&group)? == Some(entry.message_id) {
                // Our own commit, accepted while we did not hear the answer.
                return self.store.atomic(|| {
                    let mut mls_group = self.load_group(&group)?;
                    let epoch = mls_group.epoch().as_u64();
                    mls_group
                        .merge_pending_commit(&self.provider())
                        .map_err(ClientError::mls)?;
                    self.store.note_merged_commit(&group, epoch, &entry.data)?;
                    self.store.set_pending_commit(&group, None)?;
                    advance(self)
                });
            }
            if self.store.was_sent(&group, &entry.message_id)? {
                return advance(self);
            }
        }

        let mut mls_group = self.load_group(&group)?;
        let our_epoch = mls_group.epoch().as_u64();
        let sender_user = roster(&mls_group)
            .into_iter()
            .find(|l| l.device == entry.sender)
            .map(|l| l.user);
        // An entry the server counted as a commit moved its epoch counter:
        // whatever the members make of it, they all make the same.
        let invalid_commit = |reason: &str| {
            alert(
                AlertCode::InvalidCommit,
                Some(name.clone()),
                sender_user.clone(),
                format!(
                    "log entry {} of {name}, from device {}, was rejected as a commit of epoch {our_epoch}: {reason}. Every member rejects it alike, and the conversation goes on without it",
                    entry.seq, entry.sender
                ),
            )
        };
        let message = MlsMessageIn::tls_deserialize_exact(&entry.data)
            .ok()
            .and_then(|m| m.try_into_protocol_message().ok());
        if conversation.join_epoch.is_some()
            && self.before_joining(&group, message.as_ref(), entry)?
        {
            return advance(self);
        }
        let Some(message) = message else {
            events.push(match entry.kind {
                EntryKind::Commit => invalid_commit("it is not an MLS message"),
                EntryKind::Application => {
                    undecryptable(name, None, "log entry is not an MLS message")
                }
            });
            return advance(self);
        };
        let message_epoch = message.epoch().as_u64();
        let is_commit = message.content_type() == ContentType::Commit;
        if is_commit != (entry.kind == EntryKind::Commit) {
            // Members apply commits only where the server counts them, or
            // its epoch counter and theirs would part.
            events.push(invalid_commit(if is_commit {
                "it is a commit the server stored as an application message"
            } else {
                "the server stored as a commit an entry that is not one"
            }));
            return advance(self);
        }
        if is_commit && message_epoch < our_epoch {
            if self
                .store
                .is_other_commit(&group, message_epoch, &entry.data)?
            {
                events.push(alert(
                    AlertCode::ConversationFork,
                    Some(name.clone()),
                    None,
                    format!(
                        "two different commits left epoch {message_epoch} of {name}: the server split the conversation, and members on the other side cannot read this device"
                    ),
                ));
            }
            return advance(self); // Before we joined, or already merged.
        }
        if message_epoch > our_epoch {
            // Only a commit moves a group to a new epoch, and the log holds
            // every commit before what is built on it: the server withheld
            // one (a removal, perhaps) from this device.
            events.push(alert(
                AlertCode::MessageGap,
                Some(name.clone()),
                None,
                format!(
                    "a message of epoch {message_epoch} arrived while {name} is at epoch {our_epoch} here: the server withheld a change of the conversation from this device, which cannot read what follows"
                ),
            ));
            return advance(self);
        }
        if is_commit && self.store.pending_commit(&group)?.is_some() {
            // Another member's commit won the epoch our pending one was for.
            self.store.atomic(|| {
                mls_group
                    .clear_pending_commit(self.provider().storage())
                    .map_err(ClientError::mls)?;
                self.store.set_pending_commit(&group, None)
            })?;
        }

        // A commit is staged once to learn the leaves it adds or changes,
        // and that is discarded: their device lists come from the network,
        // outside any transaction. Then it is processed again and merged.
        let lists = if is_commit {
            let peeked = {
                // Rolled back when dropped, at the end of this block.
                let _peek = self.store.begin()?;
                self.load_group(&group)?
                    .process_message(&self.provider(), message.clone())
                    .map(|processed| match processed.into_content() {
                        ProcessedMessageContent::StagedCommitMessage(staged) => {
                            commit_claims(&staged).0
                        }
                        _ => Vec::new(),
                    })
            };
            let claims = match peeked {
                Ok(claims) => claims,
                Err(e) => {
                    events.push(invalid_commit(&e.to_string()));
                    return advance(self);
                }
            };
            match self.lists_for(&claims).await {
                Ok(lists) => Some(lists),
                Err(ClientError::Alert(mut a)) => {
                    a.conversation = Some(name.clone());
                    events.push(a.into());
                    return advance(self);
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };

        let from_past_epoch = message_epoch < our_epoch;
        let kept = self.store.atomic_if(|| {
            let keep = self.process_message(
                conversation,
                entry,
                &mut mls_group,
                message,
                from_past_epoch,
                lists.as_ref(),
                events,
            )?;
            if keep {
                advance(self)?;
            }
            Ok(keep)
        })?;
        if kept { Ok(()) } else { advance(self) }
    }

    /// Inside the entry's transaction: `Ok(true)` to commit what openmls and
    /// this function stored, `Ok(false)` to discard it.
    #[allow(clippy::too_many_arguments)]
    fn process_message(
        &self,
        conversation: &Conversation,
        entry: &LogEntry,
        mls_group: &mut MlsGroup,
        message: ProtocolMessage,
        from_past_epoch: bool,
        lists: Option<&DeviceLists>,
        events: &mut Vec<Event>,
    ) -> Result<bool, ClientError> {
        let name = &conversation.name;
        let processed = match mls_group.process_message(&self.provider(), message) {
            Ok(processed) => processed,
            Err(e) if entry.kind == EntryKind::Commit => {
                events.push(alert(
                    AlertCode::InvalidCommit,
                    Some(name.clone()),
                    None,
                    format!(
                        "log entry {} of {name}, from device {}, was rejected as a commit: {e}",
                        entry.seq, entry.sender
                    ),
                ));
                return Ok(false);
            }
            Err(e) => {
                // Messages from before this device joined, and replays of
                // messages already decrypted, are dropped without noise.
                if !from_past_epoch && !is_replay(&e) {
                    tracing::warn!(group = %conversation.group, seq = entry.seq, "undecryptable log entry");
                    events.push(undecryptable(name, None, &e.to_string()));
                }
                return Ok(false);
            }
        };
        let sender = mls::parse_credential(processed.credential());
        let from_member = matches!(processed.sender(), Sender::Member(_));
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                let Some((sender, sender_device)) = sender else {
                    events.push(undecryptable(
                        name,
                        None,
                        "message sender has no valid credential",
                    ));
                    return Ok(false);
                };
                let (id, sent_at, text) =
                    match serde_json::from_slice::<Envelope>(&app.into_bytes()) {
                        Ok(Envelope::Text {
                            id,
                            sent_at,
                            text,
                            head,
                            counter,
                        }) => {
                            if let Some(head) = head {
                                self.judge_gossip(name, &head, events)?;
                            }
                            self.judge_counter(
                                conversation,
                                &sender,
                                &sender_device,
                                counter,
                                events,
                            )?;
                            (id, sent_at, text)
                        }
                        Ok(Envelope::Leave { .. }) => {
                            // Any member commits the removal, at its next sync.
                            self.store.add_leave_request(&conversation.group, &sender)?;
                            return Ok(true);
                        }
                        Err(_) => {
                            events.push(undecryptable(
                                name,
                                Some(sender),
                                "message content is not readable",
                            ));
                            return Ok(true);
                        }
                    };
                let fresh = self.keep_message(&StoredMessage {
                    group: &conversation.group,
                    message_id: &id,
                    sender: &sender,
                    sender_device: &sender_device,
                    text: &text,
                    sent_at,
                    // Another device of this account wrote it: read here.
                    unread: sender != self.id.user,
                })?;
                if fresh {
                    events.push(Event::Message {
                        conversation: name.clone(),
                        sender,
                        sender_device,
                        text,
                        message_id: id,
                        sent_at,
                    });
                }
                Ok(true)
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let committer = match (from_member, sender) {
                    (true, Some((user, _))) => user,
                    _ => {
                        events.push(alert(
                            AlertCode::UnauthorizedMember,
                            Some(name.clone()),
                            None,
                            "a commit from outside the conversation was refused".into(),
                        ));
                        return Ok(false);
                    }
                };
                let epoch = mls_group.epoch().as_u64();
                let empty = DeviceLists::default();
                let merged = self.merge_checked(
                    conversation,
                    mls_group,
                    *staged,
                    committer,
                    lists.unwrap_or(&empty),
                    events,
                )?;
                if merged {
                    self.store
                        .note_merged_commit(&conversation.group, epoch, &entry.data)?;
                }
                Ok(merged)
            }
            ProcessedMessageContent::OwnPendingCommit => {
                let epoch = mls_group.epoch().as_u64();
                mls_group
                    .merge_pending_commit(&self.provider())
                    .map_err(ClientError::mls)?;
                self.store
                    .note_merged_commit(&conversation.group, epoch, &entry.data)?;
                self.store.set_pending_commit(&conversation.group, None)?;
                Ok(true)
            }
            // Our own message served back under another id: nothing to show.
            ProcessedMessageContent::OwnPrivateMessage => Ok(false),
            ProcessedMessageContent::ProposalMessage(_) => Ok(true),
            ProcessedMessageContent::ExternalJoinProposalMessage(_) => {
                events.push(alert(
                    AlertCode::UnauthorizedMember,
                    Some(name.clone()),
                    None,
                    "an external join proposal was refused".into(),
                ));
                Ok(false)
            }
        }
    }

    /// Merges a member's commit if every leaf it adds or changes is in its
    /// owner's verified device list (`lists`, fetched before the entry's
    /// transaction); otherwise refuses it with an alert.
    fn merge_checked(
        &self,
        conversation: &Conversation,
        mls_group: &mut MlsGroup,
        staged: StagedCommit,
        committer: UserName,
        lists: &DeviceLists,
        events: &mut Vec<Event>,
    ) -> Result<bool, ClientError> {
        let name = &conversation.name;
        let conversation_group = conversation.group;
        let (claims, added) = commit_claims(&staged);
        let removed: Vec<(UserName, DeviceId)> = staged
            .remove_proposals()
            .filter_map(|p| mls_group.member(p.remove_proposal().removed()))
            .filter_map(mls::parse_credential)
            .collect();
        if let Some(bad) = first_unauthorized(&claims, lists) {
            events.push(alert(
                AlertCode::UnauthorizedMember,
                Some(name.clone()),
                bad,
                format!("a commit by {committer} adds or changes a device that is not in its owner's account-signed device list; refused"),
            ));
            return Ok(false);
        }

        let self_removed = staged.self_removed();
        let users_before: BTreeSet<UserName> =
            roster(mls_group).into_iter().map(|l| l.user).collect();
        mls_group
            .merge_staged_commit(&self.provider(), staged)
            .map_err(ClientError::mls)?;
        let users_after: BTreeSet<UserName> =
            roster(mls_group).into_iter().map(|l| l.user).collect();
        for (user, device) in added {
            let conversation = name.clone();
            let sender = committer.clone();
            events.push(if users_before.contains(&user) {
                Event::DeviceAdded {
                    conversation,
                    sender,
                    user,
                    device,
                }
            } else {
                Event::MemberAdded {
                    conversation,
                    sender,
                    user,
                    device,
                }
            });
        }
        for (user, device) in removed {
            let conversation = name.clone();
            if users_after.contains(&user) {
                let sender = committer.clone();
                events.push(Event::DeviceRemoved {
                    conversation,
                    sender,
                    user,
                    device,
                });
            } else {
                // A user who asked to leave is the one who did it.
                let left = self.store.clear_leave_request(&conversation_group, &user)?;
                let sender = if left {
                    user.clone()
                } else {
                    committer.clone()
                };
                events.push(Event::MemberRemoved {
                    conversation,
                    sender,
                    user,
                    device,
                });
            }
        }
        if self_removed {
            // Kept as ended history; the removal event above says by whom.
            self.store.end(&conversation.group, &committer)?;
        }
        Ok(true)
    }

    /// Verified device lists of every user the claims name, in one request.
    /// A credential naming a user who does not exist simply has no list,
    /// and `first_unauthorized` reports it.
    async fn lists_for(&self, claims: &[LeafClaim]) -> Result<DeviceLists, ClientError> {
        let users: BTreeSet<&UserName> = claims
            .iter()
            .filter_map(|c| c.named.as_ref().map(|(u, _)| u))
            .collect();
        self.device_lists_or_alert(users).await
    }
}

/// The leaves a commit adds or changes, to check against their owners'
/// device lists, and who it adds.
fn commit_claims(staged: &StagedCommit) -> (Vec<LeafClaim>, Vec<(UserName, DeviceId)>) {
    let added: Vec<LeafClaim> = staged
        .add_proposals()
        .map(|p| LeafClaim::of(p.add_proposal().key_package().leaf_node()))
        .collect();
    let named = added.iter().filter_map(|c| c.named.clone()).collect();
    let claims = staged
        .update_proposals()
        .map(|p| LeafClaim::of(p.update_proposal().leaf_node()))
        .chain(staged.update_path_leaf_node().map(LeafClaim::of))
        .chain(added)
        .collect();
    (claims, named)
}

/// The first claim not authorized by its owner's list: `Some(Some(user))` if
/// it names a user, `Some(None)` if its credential is malformed.
fn first_unauthorized(claims: &[LeafClaim], lists: &DeviceLists) -> Option<Option<UserName>> {
    claims.iter().find_map(|claim| match &claim.named {
        None => Some(None),
        Some((user, device)) => {
            let ok = lists
                .get(user)
                .is_some_and(|list| list.authorizes(device, &claim.signature_key));
            (!ok).then(|| Some(user.clone()))
        }
    })
}

fn is_replay<E>(e: &ProcessMessageError<E>) -> bool {
    matches!(
        e,
        ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(
            MessageDecryptionError::SecretTreeError(
                SecretTreeError::SecretReuseError | SecretTreeError::TooDistantInThePast
            )
        ))
    )
}

fn alert(
    code: AlertCode,
    conversation: Option<String>,
    user: Option<UserName>,
    message: String,
) -> Event {
    Alert {
        code,
        conversation,
        user,
        message,
    }
    .into()
}

fn undecryptable(conversation: &str, sender: Option<UserName>, reason: &str) -> Event {
    Event::Undecryptable {
        conversation: conversation.to_owned(),
        sender,
        reason: reason.to_owned(),
    }
}
