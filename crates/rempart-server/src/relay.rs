//! Push across server nodes.
//!
//! With one node, a push notice goes straight to this node's [`Hub`]. With
//! several nodes on one PostgreSQL database, a device may be connected to
//! another node than the one that stored what concerns it: every node sends
//! its notices with PostgreSQL's `NOTIFY` on a channel of its deployment
//! (named after the schema, so deployments sharing a database stay apart),
//! and every node, itself included, `LISTEN`s on that channel and delivers
//! them to its own sessions. No other broker is needed.
//!
//! A notice is sent once the write it announces has committed. Notices are
//! batched: one task per node sends them in order, as many per `NOTIFY` as
//! its 8,000-byte payload holds. Like every push a notice is a hint: a
//! client reads by cursor, so a lost notice costs latency, never data. If a
//! node's listening connection fails, it ends its push sessions, whose
//! clients reconnect and catch up by reading; it then listens again as soon
//! as the database answers.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt as _;
use rempart_proto::api::{LogEntry, PushEvent};
use rempart_proto::{DeviceId, GroupId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::push::Hub;
use crate::store::{PostgresStore, Store, StoreError};

/// Most device ids in one notice: a `NOTIFY` payload holds at most 8,000
/// bytes, and a device id takes about 70 in JSON.
const DEVICES_PER_NOTICE: usize = 64;
/// Most bytes of JSON in one `NOTIFY` payload (PostgreSQL's limit is 8,000).
const NOTIFY_PAYLOAD_BYTES: usize = 7900;
/// How long a node waits before listening again after its connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// Something devices should hear about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Notice {
    /// An application message was appended at `seq`: push to the group's
    /// members, with the entry if it is small.
    Message {
        /// The group.
        group: GroupId,
        /// Its log's highest sequence number.
        seq: u64,
        /// The device that sent it (it needs no push).
        sender: DeviceId,
        /// The entry, to push inline.
        entry: Option<LogEntry>,
    },
    /// A commit was appended at `seq`: the group's members may have changed;
    /// push to its members.
    Committed {
        /// The group.
        group: GroupId,
        /// Its log's highest sequence number.
        seq: u64,
        /// The device that committed (it needs no push).
        sender: DeviceId,
    },
    /// These devices received a Welcome in their inbox.
    Welcomed {
        /// The devices.
        devices: Vec<DeviceId>,
    },
    /// This device was removed from its account: end its sessions.
    Removed {
        /// The device.
        device: DeviceId,
    },
}

/// Where this node's push notices go.
#[derive(Clone)]
pub(crate) struct Pushes {
    hub: Hub,
    store: Arc<dyn Store>,
    relay: Option<Relay>,
}

/// The queue of notices to the other nodes, sent by [`forward`].
#[derive(Clone)]
struct Relay {
    outbox: mpsc::UnboundedSender<Notice>,
}

impl Pushes {
    /// Notices delivered to this node's sessions only (one node).
    pub(crate) fn local(hub: Hub, store: Arc<dyn Store>) -> Self {
        Self {
            hub,
            store,
            relay: None,
        }
    }

    /// Notices sent to every node of the deployment in `database`. Returns
    /// the tasks that send and listen for them, which run until aborted.
    pub(crate) async fn shared(
        hub: Hub,
        store: Arc<dyn Store>,
        database: &PostgresStore,
    ) -> Result<(Self, [JoinHandle<()>; 2]), StoreError> {
        let conn = database.conn().await?;
        let schema: String = conn
            .query_one("SELECT current_schema()", &[])
            .await?
            .try_get(0)?;
        drop(conn);
        let channel = channel_name(&schema);
        let (outbox, queued) = mpsc::unbounded_channel();
        let pushes = Self {
            hub,
            store,
            relay: Some(Relay { outbox }),
        };
        let forwarder = tokio::spawn(forward(database.pool().clone(), channel.clone(), queued));
        let listener = tokio::spawn(listen(database.config().clone(), channel, pushes.clone()));
        Ok((pushes, [forwarder, listener]))
    }

    /// The hub of this node's sessions.
    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Announces a commit that is durable at `seq`: `Inbox` to the
    /// welcomed devices and `Group` to every other member.
    pub(crate) fn committed(
        &self,
        group: GroupId,
        sender: DeviceId,
        seq: u64,
        welcomed: Vec<DeviceId>,
    ) {
        for devices in welcomed.chunks(DEVICES_PER_NOTICE) {
            self.send(Notice::Welcomed {
                devices: devices.to_vec(),
            });
        }
        self.send(Notice::Committed { group, seq, sender });
    }

    /// Announces an application message that is durable at `seq`: `Group`
    /// to every other member, with `entry` inline if given.
    pub(crate) fn message(
        &self,
        group: GroupId,
        sender: DeviceId,
        seq: u64,
        entry: Option<LogEntry>,
    ) {
        self.send(Notice::Message {
            group,
            seq,
            sender,
            entry,
        });
    }

    /// Ends the push sessions of a device removed from its account.
    pub(crate) fn removed(&self, device: DeviceId) {
        self.send(Notice::Removed { device });
    }

    fn send(&self, notice: Notice) {
        match &self.relay {
            None => self.deliver(notice),
            Some(relay) => {
                if relay.outbox.send(notice).is_err() {
                    tracing::warn!("the push relay has stopped; a push notice is lost");
                }
            }
        }
    }

    /// Delivers a notice to this node's sessions.
    fn deliver(&self, notice: Notice) {
        match notice {
            Notice::Welcomed { devices } => {
                for device in devices {
                    self.hub.notify(device, &PushEvent::Inbox);
                }
            }
            Notice::Removed { device } => self.hub.disconnect(device),
            Notice::Message {
                group,
                seq,
                sender,
                entry,
            } => {
                let event = PushEvent::Group { group, seq, entry };
                self.hub.notify_group(group, &event, Some(sender));
            }
            Notice::Committed { group, seq, sender } => {
                // The members may have changed: learn them again (a read,
                // off the caller's path), then push.
                let (store, hub) = (self.store.clone(), self.hub.clone());
                tokio::spawn(async move {
                    match store.group_members(group).await {
                        Ok(members) => hub.set_members(group, &members),
                        Err(error) => {
                            tracing::warn!(%error, %group, "could not list members to push to");
                        }
                    }
                    let event = PushEvent::Group {
                        group,
                        seq,
                        entry: None,
                    };
                    hub.notify_group(group, &event, Some(sender));
                });
            }
        }
    }
}

/// Sends the queued notices, in order, as many per `NOTIFY` as fit; runs
/// until the queue's senders are gone.
async fn forward(pool: Pool, channel: String, mut queued: mpsc::UnboundedReceiver<Notice>) {
    let mut next: Option<String> = None;
    loop {
        let first = match next.take() {
            Some(json) => json,
            None => match queued.recv().await {
                Some(notice) => encode(notice),
                None => return,
            },
        };
        let mut bytes = first.len();
        let mut batch = vec![first];
        while let Ok(notice) = queued.try_recv() {
            let json = encode(notice);
            if bytes + json.len() + 1 > NOTIFY_PAYLOAD_BYTES {
                next = Some(json);
                break;
            }
            bytes += json.len() + 1;
            batch.push(json);
        }
        let payload = format!("[{}]", batch.join(","));
        let sent = match pool.get().await {
            Ok(conn) => conn
                .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
                .await
                .map(drop)
                .map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable),
        };
        if let Err(error) = sent {
            tracing::warn!(%error, notices = batch.len(), "could not relay push notices");
        }
    }
}

/// A notice in JSON, without its inline entry if it would not fit in a
/// `NOTIFY` payload.
fn encode(notice: Notice) -> String {
    // Ids, numbers and bytes in base64: serialising does not fail; if it
    // did, the listeners would skip this one notice (`null`), not the batch.
    let json = |notice: &Notice| {
        serde_json::to_string(notice).unwrap_or_else(|error| {
            tracing::error!(%error, "could not encode a push notice");
            "null".into()
        })
    };
    let encoded = json(&notice);
    if encoded.len() < NOTIFY_PAYLOAD_BYTES {
        return encoded;
    }
    match notice {
        Notice::Message {
            group, seq, sender, ..
        } => json(&Notice::Message {
            group,
            seq,
            sender,
            entry: None,
        }),
        other => json(&other),
    }
}

/// `rempart_push_` and a hash of the schema: a valid identifier, short
/// enough for PostgreSQL's 63 bytes whatever the schema's name.
fn channel_name(schema: &str) -> String {
    let digest = Sha256::digest(schema.as_bytes());
    format!("rempart_push_{}", hex::encode(&digest[..8]))
}

/// Listens on `channel` and delivers what arrives, reconnecting after a
/// failure; ends this node's push sessions whenever it may have missed
/// notices.
async fn listen(config: tokio_postgres::Config, channel: String, pushes: Pushes) {
    loop {
        match listen_once(&config, &channel, &pushes).await {
            Ok(()) => tracing::warn!("the push relay's connection closed"),
            Err(error) => tracing::warn!(%error, "the push relay's connection failed"),
        }
        // Notices may have been missed: let clients reconnect and read.
        pushes.hub.disconnect_all();
        tokio::time::sleep(RELISTEN_DELAY).await;
    }
}

/// One connection's worth of listening; returns when it ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    channel: &str,
    pushes: &Pushes,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (notices, mut received) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if notices.send(notification.payload().to_owned()).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    });
    // The channel name is ours: letters, digits and underscores only.
    if let Err(error) = client.batch_execute(&format!("LISTEN {channel}")).await {
        driver.abort();
        return Err(error);
    }
    tracing::info!(channel, "relaying push notices between nodes");
    while let Some(payload) = received.recv().await {
        // A notice that could not be encoded travels as `null` and is skipped.
        match serde_json::from_str::<Vec<Option<Notice>>>(&payload) {
            Ok(notices) => notices
                .into_iter()
                .flatten()
                .for_each(|n| pushes.deliver(n)),
            Err(error) => tracing::warn!(%error, "ignoring unreadable push notices"),
        }
    }
    drop(client);
    match driver.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn notices_fit_in_a_notify_payload() {
        let devices = (0..DEVICES_PER_NOTICE)
            .map(|_| DeviceId::random())
            .collect();
        let json = serde_json::to_string(&Notice::Welcomed { devices }).unwrap();
        assert!(json.len() < 8000, "{} bytes", json.len());
    }

    #[test]
    fn a_notice_that_could_not_be_encoded_does_not_lose_its_batch() {
        let device = DeviceId::random();
        let batch = format!("[null,{}]", encode(Notice::Removed { device }));
        let notices: Vec<Option<Notice>> = serde_json::from_str(&batch).unwrap();
        let notices: Vec<Notice> = notices.into_iter().flatten().collect();
        assert_eq!(notices, [Notice::Removed { device }]);
    }

    #[test]
    fn channel_names_are_short_identifiers_per_schema() {
        let long = "s".repeat(63);
        let (a, b) = (channel_name("public"), channel_name(&long));
        assert_ne!(a, b);
        for name in [a, b] {
            assert!(name.len() <= 63);
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        }
    }
}
