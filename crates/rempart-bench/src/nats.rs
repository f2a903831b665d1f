//! The NATS JetStream reference for the delivery benchmark: the same
//! workload as Rempart's delivery benchmark, run on a NATS server with
//! JetStream, so that Rempart's figures can be read beside those of a
//! well-known durable message broker on the same machine.
//!
//! [`reference`] runs a [`NatsWorkload`]:
//!
//! - one file-backed stream ([`StorageType::File`], one replica) with a name
//!   unique to the run, `REMPART_BENCH_<run>`, on the subjects
//!   `rempart-bench.<run>.>`; it is deleted at the end, also when the run
//!   fails after creating it;
//! - `devices` devices, each with a connection of its own, in groups of
//!   `group_size` (consecutive devices); group `g` publishes on
//!   `rempart-bench.<run>.g<g>`;
//! - receiving: each device has an ephemeral push consumer on the stream,
//!   filtered to its group's subject, created before anyone publishes
//!   (deliver new messages only, no acknowledgements: the consumer's
//!   position is its cursor in the group's log). Each member thus receives
//!   each message of its group *from the stream*, after it was stored, as a
//!   Rempart member reads its group's log. A device's consumer also delivers
//!   the device's own messages, which it discards. [`reference_receiving`]
//!   with [`Receiving::Subscriptions`] gives each device a core NATS
//!   subscription to its group's subject instead: NATS's own fan-out, which
//!   does not wait for the stream;
//! - publishing: for `duration`, every device publishes `message_bytes`-byte
//!   messages to its group's subject through JetStream and awaits each
//!   publish acknowledgement (the stream's promise that it stored the
//!   message), keeping up to [`IN_FLIGHT_PER_DEVICE`] publishes awaiting
//!   their acknowledgement. After `duration` it sends no more and awaits
//!   those still in flight.
//!
//! Each payload starts with the sender's index and the instant its publish
//! started (nanoseconds since the start of the run, all in this process);
//! the latency of a delivery is from that instant to the moment the other
//! member's receiving task has the message. Throughput is acknowledged
//! publishes per second, from the first publish to the last
//! acknowledgement. Once every publisher is done, the run waits for the
//! remaining deliveries, or for [`DRAIN_QUIET`] without one.
//!
//! With many groups, receiving from the stream costs nats-server (2.9 at
//! least) in proportion to consumers × messages: a filtered consumer finds
//! its next message by scanning the stream's message block from its
//! position, past every other group's messages, under the lock the writer
//! needs. The two ways of receiving then give very different figures: a
//! comparison should quote both.
//!
//! What an acknowledgement means depends on the server
//! ([`NatsFigures::durability`]): by default JetStream acknowledges a
//! message once written to its file store, and fsyncs that store only every
//! two minutes; `sync_interval: always` (nats-server 2.10 and later) makes
//! it fsync before acknowledging.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use rempart_bench::nats::{NatsWorkload, reference};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let workload = NatsWorkload {
//!     url: "nats://127.0.0.1:4222".to_owned(),
//!     devices: 4,
//!     group_size: 2,
//!     message_bytes: 256,
//!     duration: Duration::from_secs(1),
//! };
//! match reference(&workload).await? {
//!     Some(figures) => println!("{} msgs/s, p99 {} ms", figures.msgs_per_s, figures.p99_ms),
//!     None => println!("no NATS server at {}", workload.url),
//! }
//! # Ok(())
//! # }
//! ```

use std::future::IntoFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::client::FlushError;
use async_nats::jetstream::consumer::push::{self, MessagesError};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, StreamError};
use async_nats::jetstream::context::{
    CreateStreamError, DeleteStreamError, PublishAckFuture, PublishError,
};
use async_nats::jetstream::stream::{self, ConsumerError, StorageType};
use async_nats::jetstream::{self, ContextBuilder};
use async_nats::{
    Client, ConnectError, ConnectErrorKind, ConnectOptions, Subject, SubscribeError, Subscriber,
};
use futures_util::stream::{FuturesUnordered, StreamExt as _, TryStreamExt as _};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};

/// Publishes each device keeps awaiting their acknowledgement at once.
pub const IN_FLIGHT_PER_DEVICE: usize = 8;
/// How long connecting may take; past it, or on a refused connection, the
/// server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a JetStream API request or a publish acknowledgement may take
/// before the run fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Once every publisher is done, how long the receivers may go without a
/// delivery before the run stops waiting for the rest.
pub const DRAIN_QUIET: Duration = Duration::from_secs(2);

/// The payload's header: the sender's index (4 bytes, little-endian) and
/// its publish instant (8 bytes, nanoseconds since the run's start).
const HEADER_BYTES: usize = 12;
/// Devices connected and given their consumer at once during setup.
const SETUP_CONCURRENCY: usize = 32;
/// How often the drain checks the delivery count.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// The work of one reference run: the delivery benchmark's workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsWorkload {
    /// The NATS server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Devices, each publishing and receiving on a connection of its own.
    pub devices: usize,
    /// Devices per group; `devices` must be a multiple of it.
    pub group_size: usize,
    /// Size of every message, at least 12 bytes (the timing header).
    pub message_bytes: usize,
    /// How long the devices publish.
    pub duration: Duration,
}

impl NatsWorkload {
    /// Groups of `group_size` devices.
    pub fn groups(&self) -> usize {
        self.devices / self.group_size.max(1)
    }

    fn check(&self) -> Result<(), NatsError> {
        let refuse = |reason: &str| Err(NatsError::Workload(reason.to_owned()));
        if self.group_size < 2 {
            return refuse("groups need at least 2 devices: one sends, the others receive");
        }
        if self.devices == 0 || !self.devices.is_multiple_of(self.group_size) {
            return refuse("devices must be a positive multiple of group_size");
        }
        if u32::try_from(self.devices).is_err() {
            return refuse("devices must fit in 32 bits");
        }
        if self.message_bytes < HEADER_BYTES {
            return refuse("message_bytes must be at least 12, the timing header");
        }
        if self.duration.is_zero() {
            return refuse("duration must not be zero");
        }
        Ok(())
    }
}

/// How each device receives its group's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receiving {
    /// From the stream ([`reference`]): an ephemeral push consumer per
    /// device, filtered to its group's subject, with no acknowledgements.
    /// A member gets each message once the stream has stored it, as a
    /// Rempart member reads its group's log.
    StreamConsumers,
    /// A core NATS subscription per device on its group's subject: a member
    /// gets each message as the server routes the publish, while the stream
    /// stores it, not from the stream. NATS's fastest fan-out, with no
    /// promise that what a member received was stored.
    Subscriptions,
}

/// What a reference run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NatsFigures {
    /// Acknowledged publishes per second, from the first publish to the
    /// last acknowledgement.
    pub msgs_per_s: f64,
    /// Median latency from the start of a publish to its receipt by another
    /// member of the group, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile of that latency, in milliseconds.
    pub p99_ms: f64,
    /// Largest such latency, in milliseconds.
    pub max_ms: f64,
    /// What a publish acknowledgement meant on this server.
    pub durability: String,
    /// Publishes acknowledged.
    pub acked: u64,
    /// Receipts by members other than the sender, the latencies' sample; at
    /// most `acked * (group_size - 1)` unless a publish was stored but its
    /// acknowledgement lost, fewer if deliveries were lost or still late
    /// after [`DRAIN_QUIET`].
    pub delivered: u64,
}

/// Why a reference run failed. An unreachable server is not a failure:
/// [`reference`] then returns `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The workload asks for nothing or for something impossible.
    #[error("invalid NATS workload: {0}")]
    Workload(String),
    /// The server answered but refused the connection (authentication, TLS,
    /// a malformed URL), or a device's connection failed once the server had
    /// answered.
    #[error("connecting to the NATS server failed")]
    Connect(#[source] ConnectError),
    /// The server refused the stream, e.g. because JetStream is not enabled.
    #[error("creating the JetStream stream {stream} failed (is JetStream enabled?)")]
    CreateStream {
        /// The stream's name.
        stream: String,
        /// The client's error.
        #[source]
        source: CreateStreamError,
    },
    /// The server refused a device's consumer.
    #[error("creating a device's consumer failed")]
    CreateConsumer(#[source] ConsumerError),
    /// A device could not subscribe to its consumer's deliveries.
    #[error("subscribing to a device's consumer failed")]
    SubscribeConsumer(#[source] StreamError),
    /// A device could not subscribe to its group's subject.
    #[error("subscribing to a group's subject failed")]
    Subscribe(#[source] SubscribeError),
    /// A device's connection did not confirm its subscription.
    #[error("flushing a device's connection failed")]
    Flush(#[source] FlushError),
    /// A publish was refused or its acknowledgement did not come within
    /// [`REQUEST_TIMEOUT`].
    #[error("a JetStream publish failed")]
    Publish(#[source] PublishError),
    /// A device's consumer reported an error.
    #[error("receiving from a device's consumer failed")]
    Receive(#[source] MessagesError),
    /// A device's subscription ended before the run did.
    #[error("a device's subscription closed during the run")]
    SubscriptionClosed,
    /// A delivered message is shorter than the timing header or names no
    /// device of the run: something else publishes on the run's subjects.
    #[error("a delivered message is not one of the run's ({bytes} bytes)")]
    ForeignMessage {
        /// Its size.
        bytes: usize,
    },
    /// Publishes were acknowledged but no other member received any.
    #[error("{acked} publishes were acknowledged but no member received one")]
    NothingDelivered {
        /// Publishes acknowledged.
        acked: u64,
    },
    /// The run's stream could not be deleted; delete it by hand.
    #[error("deleting the JetStream stream {stream} failed: delete it with `nats stream rm`")]
    DeleteStream {
        /// The stream's name.
        stream: String,
        /// The client's error.
        #[source]
        source: DeleteStreamError,
    },
    /// A publishing or receiving task panicked or was cancelled.
    #[error("a benchmark task failed")]
    Task(#[from] JoinError),
}

/// Runs `workload` on the NATS server at `workload.url`, each device
/// receiving from the stream ([`Receiving::StreamConsumers`]); `Ok(None)`
/// when no server answers there within [`CONNECT_TIMEOUT`] (refused or timed
/// out).
pub async fn reference(workload: &NatsWorkload) -> Result<Option<NatsFigures>, NatsError> {
    reference_receiving(workload, Receiving::StreamConsumers).await
}

/// [`reference`], with the devices receiving as `receiving` says.
pub async fn reference_receiving(
    workload: &NatsWorkload,
    receiving: Receiving,
) -> Result<Option<NatsFigures>, NatsError> {
    workload.check()?;
    let Some(control) = connect_if_reachable(&workload.url).await? else {
        return Ok(None);
    };
    let durability = durability(&control.server_info().version);
    let context = ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(control);
    let run = run_id();
    let names = Names::new(&run);
    context
        .create_stream(stream::Config {
            name: names.stream.clone(),
            subjects: vec![format!("{}.>", names.prefix)],
            storage: StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|source| NatsError::CreateStream {
            stream: names.stream.clone(),
            source,
        })?;
    let measured = measure(workload, &names, receiving).await;
    let deleted = context.delete_stream(&names.stream).await;
    let mut figures = measured?;
    deleted.map_err(|source| NatsError::DeleteStream {
        stream: names.stream.clone(),
        source,
    })?;
    figures.durability = durability;
    Ok(Some(figures))
}

/// What a publish acknowledgement means on nats-server `version` with a
/// file-backed stream of one replica.
fn durability(version: &str) -> String {
    let mut numbers = version.split('.').map(|part| part.parse::<u64>().ok());
    let (major, minor) = (numbers.next().flatten(), numbers.next().flatten());
    match (major, minor) {
        (Some(major), Some(minor)) if (major, minor) < (2, 10) => format!(
            "file storage, one replica: acknowledged once written to the stream's file \
             (write(2), not fsync); fsync every 2 min (nats-server {version} fixes the stream's \
             SyncInterval at 2 min; `sync_interval` exists from 2.10)"
        ),
        _ => format!(
            "file storage, one replica: acknowledged once written to the stream's file; fsync \
             every 2 min unless the server sets `jetstream.sync_interval` (nats-server {version}; \
             `always` fsyncs before each acknowledgement; a client cannot see the setting)"
        ),
    }
}

/// The run's stream and subjects.
struct Names {
    stream: String,
    prefix: String,
}

impl Names {
    fn new(run: &str) -> Self {
        Self {
            stream: format!("REMPART_BENCH_{run}"),
            prefix: format!("rempart-bench.{run}"),
        }
    }

    fn group_subject(&self, group: usize) -> String {
        format!("{}.g{group}", self.prefix)
    }
}

/// A name for this run: the wall clock in nanoseconds and the process id,
/// in hex.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{nanos:x}{:x}", std::process::id())
}

async fn connect(url: &str) -> Result<Client, ConnectError> {
    ConnectOptions::new()
        .connection_timeout(CONNECT_TIMEOUT)
        .connect(url)
        .await
}

/// The first connection: `None` if nothing answers at `url`.
async fn connect_if_reachable(url: &str) -> Result<Option<Client>, NatsError> {
    // A margin over the client's own timeout, which covers each attempt.
    match tokio::time::timeout(2 * CONNECT_TIMEOUT, connect(url)).await {
        Err(_elapsed) => Ok(None),
        Ok(Ok(client)) => Ok(Some(client)),
        Ok(Err(error))
            if matches!(
                error.kind(),
                ConnectErrorKind::Io | ConnectErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Ok(Err(error)) => Err(NatsError::Connect(error)),
    }
}

/// One device, connected, subscribed to its group's messages.
struct Device {
    index: u32,
    subject: Subject,
    context: jetstream::Context,
    deliveries: Deliveries,
}

/// Where a device receives its group's messages.
enum Deliveries {
    /// Its consumer's deliveries ([`Receiving::StreamConsumers`]).
    Consumer(Box<push::Messages>),
    /// Its subscription to the group's subject ([`Receiving::Subscriptions`]).
    Subscription(Subscriber),
}

impl Deliveries {
    /// The next message; cancel-safe.
    async fn next(&mut self) -> Result<async_nats::Message, NatsError> {
        match self {
            Self::Consumer(messages) => match messages.next().await {
                Some(Ok(message)) => Ok(message.message),
                Some(Err(error)) => Err(NatsError::Receive(error)),
                None => Err(NatsError::SubscriptionClosed),
            },
            Self::Subscription(subscriber) => {
                subscriber.next().await.ok_or(NatsError::SubscriptionClosed)
            }
        }
    }
}

async fn measure(
    workload: &NatsWorkload,
    names: &Names,
    receiving: Receiving,
) -> Result<NatsFigures, NatsError> {
    let devices: Vec<Device> = futures_util::stream::iter(0..workload.devices)
        .map(|index| set_up(workload, names, index, receiving))
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;

    let run_start = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let delivered = Arc::new(AtomicU64::new(0));
    let mut receivers = JoinSet::new();
    let mut publishers = JoinSet::new();
    let publishing_start = Instant::now();
    let deadline = publishing_start + workload.duration;
    for device in devices {
        receivers.spawn(receive(
            device.index,
            workload.devices,
            device.deliveries,
            run_start,
            stopped.clone(),
            Arc::clone(&delivered),
        ));
        publishers.spawn(publish(
            device.index,
            device.context,
            device.subject,
            workload.message_bytes,
            run_start,
            deadline,
        ));
    }
    let mut acked = 0;
    while let Some(joined) = publishers.join_next().await {
        acked += joined??;
    }
    let publishing = publishing_start.elapsed();

    let expected = acked.saturating_mul(workload.group_size as u64 - 1);
    let (mut seen, mut last_progress) = (delivered.load(Ordering::Relaxed), Instant::now());
    while seen < expected && last_progress.elapsed() < DRAIN_QUIET {
        tokio::time::sleep(DRAIN_POLL).await;
        let now = delivered.load(Ordering::Relaxed);
        if now > seen {
            (seen, last_progress) = (now, Instant::now());
        }
    }
    // Every receiver may have ended already: then there is nobody to tell.
    let _ = stop.send(true);
    let mut latencies = Vec::new();
    while let Some(joined) = receivers.join_next().await {
        latencies.extend(joined??);
    }
    if latencies.is_empty() {
        return Err(NatsError::NothingDelivered { acked });
    }
    latencies.sort_unstable();
    let millis = |nanos: u64| nanos as f64 / 1e6;
    Ok(NatsFigures {
        msgs_per_s: acked as f64 / publishing.as_secs_f64().max(f64::MIN_POSITIVE),
        p50_ms: millis(percentile(&latencies, 0.50)),
        p99_ms: millis(percentile(&latencies, 0.99)),
        max_ms: millis(percentile(&latencies, 1.0)),
        durability: String::new(),
        acked,
        delivered: latencies.len() as u64,
    })
}

/// Connects device `index` and subscribes it to its group's messages, as
/// `receiving` says.
async fn set_up(
    workload: &NatsWorkload,
    names: &Names,
    index: usize,
    receiving: Receiving,
) -> Result<Device, NatsError> {
    let client = connect(&workload.url).await.map_err(NatsError::Connect)?;
    let subject = names.group_subject(index / workload.group_size);
    let context = ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(client.clone());
    let deliveries = match receiving {
        Receiving::StreamConsumers => {
            let consumer = context
                .create_consumer_on_stream(
                    push::Config {
                        deliver_subject: client.new_inbox(),
                        filter_subject: subject.clone(),
                        deliver_policy: DeliverPolicy::New,
                        ack_policy: AckPolicy::None,
                        ..Default::default()
                    },
                    &names.stream,
                )
                .await
                .map_err(NatsError::CreateConsumer)?;
            let messages = consumer
                .messages()
                .await
                .map_err(NatsError::SubscribeConsumer)?;
            Deliveries::Consumer(Box::new(messages))
        }
        Receiving::Subscriptions => Deliveries::Subscription(
            client
                .subscribe(subject.clone())
                .await
                .map_err(NatsError::Subscribe)?,
        ),
    };
    // The server has the subscription once it answers the flush's ping:
    // nothing published after this is lost for want of it.
    client.flush().await.map_err(NatsError::Flush)?;
    Ok(Device {
        // `NatsWorkload::check` bounds the devices to 32 bits.
        index: u32::try_from(index).unwrap_or(u32::MAX),
        subject: Subject::from(subject),
        context,
        deliveries,
    })
}

/// Device `index` publishing until `deadline`, at most
/// [`IN_FLIGHT_PER_DEVICE`] awaiting their acknowledgement; returns how
/// many were acknowledged.
async fn publish(
    index: u32,
    context: jetstream::Context,
    subject: Subject,
    message_bytes: usize,
    run_start: Instant,
    deadline: Instant,
) -> Result<u64, NatsError> {
    let mut payload = vec![0x5a; message_bytes];
    payload[..4].copy_from_slice(&index.to_le_bytes());
    let mut in_flight: FuturesUnordered<<PublishAckFuture as IntoFuture>::IntoFuture> =
        FuturesUnordered::new();
    let mut acked = 0;
    while Instant::now() < deadline {
        if in_flight.len() >= IN_FLIGHT_PER_DEVICE {
            if let Some(ack) = in_flight.next().await {
                ack.map_err(NatsError::Publish)?;
                acked += 1;
            }
            continue;
        }
        let sent = nanos_since(run_start);
        payload[4..HEADER_BYTES].copy_from_slice(&sent.to_le_bytes());
        let ack = context
            .publish(subject.clone(), payload.clone().into())
            .await
            .map_err(NatsError::Publish)?;
        in_flight.push(ack.into_future());
    }
    while let Some(ack) = in_flight.next().await {
        ack.map_err(NatsError::Publish)?;
        acked += 1;
    }
    Ok(acked)
}

/// Device `index` receiving its group's messages until told to stop;
/// returns the latency of each message another device sent, in
/// nanoseconds.
async fn receive(
    index: u32,
    devices: usize,
    mut deliveries: Deliveries,
    run_start: Instant,
    mut stop: watch::Receiver<bool>,
    delivered: Arc<AtomicU64>,
) -> Result<Vec<u64>, NatsError> {
    let mut latencies = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(latencies),
            next = deliveries.next() => {
                let message = next?;
                let received = nanos_since(run_start);
                let (sender, sent) = header(&message.payload, devices)?;
                if sender != index {
                    latencies.push(received.saturating_sub(sent));
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The sender's index and publish instant at the front of `payload`.
fn header(payload: &[u8], devices: usize) -> Result<(u32, u64), NatsError> {
    let foreign = || NatsError::ForeignMessage {
        bytes: payload.len(),
    };
    let sender = payload
        .get(..4)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u32::from_le_bytes)
        .filter(|&sender| usize::try_from(sender).is_ok_and(|sender| sender < devices))
        .ok_or_else(foreign)?;
    let sent = payload
        .get(4..HEADER_BYTES)
        .and_then(|bytes| bytes.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(foreign)?;
    Ok((sender, sent))
}

fn nanos_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The nearest-rank `quantile` (0 to 1) of `sorted`, which is not empty.
fn percentile(sorted: &[u64], quantile: f64) -> u64 {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .copied()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> NatsWorkload {
        NatsWorkload {
            url: "nats://127.0.0.1:4222".to_owned(),
            devices: 4,
            group_size: 2,
            message_bytes: 256,
            duration: Duration::from_secs(1),
        }
    }

    #[test]
    fn workloads_that_ask_for_nothing_or_too_much_are_refused() {
        assert!(workload().check().is_ok());
        for bad in [
            NatsWorkload {
                devices: 0,
                ..workload()
            },
            NatsWorkload {
                devices: 5,
                ..workload()
            },
            NatsWorkload {
                group_size: 1,
                ..workload()
            },
            NatsWorkload {
                message_bytes: HEADER_BYTES - 1,
                ..workload()
            },
            NatsWorkload {
                duration: Duration::ZERO,
                ..workload()
            },
        ] {
            assert!(
                matches!(bad.check(), Err(NatsError::Workload(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn headers_round_trip_and_foreign_payloads_are_refused() {
        let mut payload = vec![0; 20];
        payload[..4].copy_from_slice(&3_u32.to_le_bytes());
        payload[4..12].copy_from_slice(&123_456_u64.to_le_bytes());
        assert_eq!(header(&payload, 4).unwrap(), (3, 123_456));
        assert!(matches!(
            header(&payload, 3),
            Err(NatsError::ForeignMessage { bytes: 20 })
        ));
        assert!(matches!(
            header(&payload[..11], 4),
            Err(NatsError::ForeignMessage { bytes: 11 })
        ));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.50), 50);
        assert_eq!(percentile(&sorted, 0.99), 99);
        assert_eq!(percentile(&sorted, 1.0), 100);
        assert_eq!(percentile(&[7], 0.5), 7);
    }

    #[test]
    fn durability_says_when_the_sync_interval_is_fixed() {
        assert!(durability("2.9.10").contains("fixes the stream's SyncInterval at 2 min"));
        assert!(durability("2.10.4").contains("jetstream.sync_interval"));
        assert!(durability("garbage").contains("jetstream.sync_interval"));
    }
}
