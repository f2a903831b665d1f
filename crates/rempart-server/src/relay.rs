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
//! A notice is sent once the write it announces has committed. Like every
//! push it is a hint: a client reads by cursor, so a lost notice costs
//! latency, never data. If a node's listening connection fails, it ends its
//! push sessions, whose clients reconnect and catch up by reading; it then
//! listens again as soon as the database answers.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::StreamExt as _;
use rempart_proto::api::PushEvent;
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
/// How long a node waits before listening again after its connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// Something devices should hear about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Notice {
    /// A group's log grew to `seq`: push to its members.
    Appended {
        /// The group.
        group: GroupId,
        /// Its log's highest sequence number.
        seq: u64,
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

/// The PostgreSQL channel shared by the nodes of one deployment.
#[derive(Clone)]
struct Relay {
    pool: Pool,
    channel: String,
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
    /// the task that listens for them, which runs until aborted.
    pub(crate) async fn shared(
        hub: Hub,
        store: Arc<dyn Store>,
        database: &PostgresStore,
    ) -> Result<(Self, JoinHandle<()>), StoreError> {
        let conn = database.conn().await?;
        let schema: String = conn
            .query_one("SELECT current_schema()", &[])
            .await?
            .try_get(0)?;
        drop(conn);
        let relay = Relay {
            pool: database.pool().clone(),
            channel: channel_name(&schema),
        };
        let pushes = Self {
            hub,
            store,
            relay: Some(relay.clone()),
        };
        let listener = tokio::spawn(listen(
            database.config().clone(),
            relay.channel,
            pushes.clone(),
        ));
        Ok((pushes, listener))
    }

    /// The hub of this node's sessions.
    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Announces an append that has committed: `Inbox` to the welcomed
    /// devices and `Group` to every member.
    pub(crate) fn appended(&self, group: GroupId, seq: u64, welcomed: Vec<DeviceId>) {
        for devices in welcomed.chunks(DEVICES_PER_NOTICE) {
            self.send(Notice::Welcomed {
                devices: devices.to_vec(),
            });
        }
        self.send(Notice::Appended { group, seq });
    }

    /// Ends the push sessions of a device removed from its account.
    pub(crate) fn removed(&self, device: DeviceId) {
        self.send(Notice::Removed { device });
    }

    fn send(&self, notice: Notice) {
        match &self.relay {
            None => self.deliver(notice),
            Some(relay) => {
                let relay = relay.clone();
                tokio::spawn(async move {
                    if let Err(error) = relay.notify(&notice).await {
                        tracing::warn!(%error, "could not relay a push notice");
                    }
                });
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
            Notice::Appended { group, seq } => {
                // Listing members is a read; it runs off the caller's path.
                let (store, hub) = (self.store.clone(), self.hub.clone());
                tokio::spawn(async move {
                    match store.group_members(group).await {
                        Ok(members) => {
                            let event = PushEvent::Group { group, seq };
                            for device in members {
                                hub.notify(device, &event);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, %group, "could not list members to push to");
                        }
                    }
                });
            }
        }
    }
}

impl Relay {
    async fn notify(&self, notice: &Notice) -> Result<(), StoreError> {
        let payload = serde_json::to_string(notice)
            .map_err(|e| StoreError::Corrupt(format!("push notice: {e}")))?;
        let conn = self.pool.get().await.map_err(|_| StoreError::Unavailable)?;
        conn.execute("SELECT pg_notify($1, $2)", &[&self.channel, &payload])
            .await?;
        Ok(())
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
        match serde_json::from_str::<Notice>(&payload) {
            Ok(notice) => pushes.deliver(notice),
            Err(error) => tracing::warn!(%error, "ignoring an unreadable push notice"),
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
