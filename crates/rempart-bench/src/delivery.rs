//! `rempart-bench delivery`: messages per second acknowledged durably, and
//! the latency from send to receipt at every other member of the group.
//!
//! `devices` devices, each registered and connected to the server by its
//! authenticated WebSocket session, form groups of `group_size`. For
//! `duration`, every device keeps up to `in_flight` application messages of
//! `message_bytes` bytes in flight on its session (a message is in flight
//! until the server answers that it is durable), and receives the others'
//! messages as the server pushes them. In the same run, the storage ceiling
//! is measured: raw batched durable inserts of rows of the same size into
//! SQLite with the server's durability settings.
//!
//! Message bytes are opaque to the server, so the devices send filler of the
//! right size instead of MLS ciphertext (whose cost on a client the `client`
//! benchmark measures); the first 8 bytes of each carry its send time, which
//! the recipients read to measure latency.

use std::fmt;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use rempart_proto::api::{self, LogPage, PushEvent, SessionRequest};
use rempart_proto::limits::MAX_PAGE;
use rempart_proto::{GroupId, MessageId};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::device::BenchDevice;
use crate::error::BenchError;
use crate::nats::{self, NatsWorkload, Receiving};
use crate::server::ServerUnderTest;

/// What to run.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Connected devices.
    pub devices: usize,
    /// Devices per group.
    pub group_size: usize,
    /// Bytes per message.
    pub message_bytes: usize,
    /// How long the devices send.
    pub duration: Duration,
    /// Messages each device keeps in flight.
    pub in_flight: usize,
    /// A server to use instead of starting one (no process figures then).
    pub server: Option<String>,
    /// Also run the same workload through NATS JetStream, as a reference.
    pub nats: Option<String>,
    /// Also run this many real client engines live against the same server
    /// ([`crate::end_to_end`]), after the server-only mode.
    pub end_to_end: Option<usize>,
}

impl DeliveryOptions {
    /// The workload: 1,000 devices in pairs, 256-byte messages, 10 s.
    pub fn full() -> Self {
        Self {
            devices: 1000,
            group_size: 2,
            message_bytes: 256,
            duration: Duration::from_secs(10),
            in_flight: 8,
            server: None,
            nats: None,
            end_to_end: None,
        }
    }

    /// The same for 3 s.
    pub fn quick() -> Self {
        Self {
            duration: Duration::from_secs(3),
            ..Self::full()
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    /// Connected devices.
    pub devices: usize,
    /// Devices per group.
    pub group_size: usize,
    /// Bytes per message.
    pub message_bytes: usize,
    /// Seconds the devices sent for.
    pub seconds: f64,
    /// Messages acknowledged as durable while the devices sent.
    pub acknowledged: u64,
    /// Acknowledged messages per second.
    pub msgs_per_s: f64,
    /// Messages pushed to a member (one per other member per message).
    pub received: u64,
    /// Deliveries expected but not pushed by the end (members read those
    /// by cursor; a push is a hint).
    pub not_pushed: u64,
    /// Send to receipt at a member, median, in ms.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Server CPU while the devices sent, in cores (CPU seconds per second).
    pub server_cpu_cores: f64,
    /// Server resident memory at the end, bytes.
    pub server_rss_bytes: f64,
    /// Raw durable inserts of rows of the same size, per second.
    pub ceiling_rows_per_s: f64,
    /// `msgs_per_s / ceiling_rows_per_s`.
    pub ratio_to_ceiling: f64,
    /// End-to-end mode, from the same run: real client engines running
    /// live, texts delivered per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_msgs_per_s: Option<f64>,
    /// Its start of a send to arrival as an event, median, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_p50_ms: Option<f64>,
    /// Its 99th percentile, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_p99_ms: Option<f64>,
    /// Its devices (half of them send).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_devices: Option<usize>,
    /// The same workload through a NATS JetStream stream, members reading
    /// from the stream: acknowledged publishes/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_msgs_per_s: Option<f64>,
    /// Its median latency, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_p50_ms: Option<f64>,
    /// Its 99th percentile, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_p99_ms: Option<f64>,
    /// The same, members subscribed to the subject instead (they receive
    /// what the stream is storing, not what it stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_subscribed_msgs_per_s: Option<f64>,
    /// Its median latency, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_subscribed_p50_ms: Option<f64>,
    /// Its 99th percentile, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_subscribed_p99_ms: Option<f64>,
    /// What a NATS acknowledgement means.
    #[serde(skip)]
    pub nats_durability: Option<String>,
}

/// What one device saw.
#[derive(Debug, Default)]
struct DeviceRun {
    acknowledged: u64,
    refused: u64,
    latencies_us: Vec<u32>,
}

/// Runs the benchmark.
pub async fn measure(options: &DeliveryOptions) -> Result<DeliveryReport, BenchError> {
    if options.group_size < 2 || options.devices < options.group_size {
        return Err(BenchError::Options(
            "groups need at least 2 devices, and there must be at least one group".into(),
        ));
    }
    if options.message_bytes < 8 {
        return Err(BenchError::Options(
            "messages need at least 8 bytes (their send time)".into(),
        ));
    }
    let server = ServerUnderTest::given_or_started(options.server.as_deref())?;
    let http = reqwest::Client::new();
    let devices =
        BenchDevice::register_many(&http, server.url(), &run_prefix('d'), options.devices, 32)
            .await?;
    let groups = form_groups(&http, server.url(), &devices, options.group_size).await?;

    let ws = server.ws_url();
    let sessions = futures_util::stream::iter(devices.iter())
        .map(|device| device.open_session(&ws))
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;

    let before = server.usage()?;
    let start = Instant::now();
    let deadline = start + options.duration;
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(index, session)| {
            let group = groups[index / options.group_size];
            let drive = Drive {
                group,
                start,
                deadline,
                in_flight: options.in_flight,
                message_bytes: options.message_bytes,
            };
            tokio::spawn(drive.run(session))
        })
        .collect();
    let mut runs = Vec::with_capacity(tasks.len());
    for task in tasks {
        runs.push(
            task.await
                .map_err(|e| BenchError::Protocol(e.to_string()))??,
        );
    }
    let seconds = options.duration.as_secs_f64();
    let after = server.usage()?;

    let acknowledged: u64 = runs.iter().map(|r| r.acknowledged).sum();
    let refused: u64 = runs.iter().map(|r| r.refused).sum();
    if refused > 0 {
        return Err(BenchError::Protocol(format!(
            "the server refused {refused} messages"
        )));
    }
    // Every acknowledged message is in its group's log exactly once.
    check_logs(
        &http,
        server.url(),
        &devices,
        &groups,
        options.group_size,
        acknowledged,
    )
    .await?;
    let mut latencies: Vec<u32> = runs.into_iter().flat_map(|r| r.latencies_us).collect();
    latencies.sort_unstable();
    let received = latencies.len() as u64;
    let expected = acknowledged * (options.group_size as u64 - 1);

    let ceiling = tokio::task::spawn_blocking({
        let bytes = options.message_bytes;
        move || storage_ceiling(bytes, Duration::from_secs(2))
    })
    .await
    .map_err(|e| BenchError::Protocol(e.to_string()))??;

    let msgs_per_s = acknowledged as f64 / seconds;
    let (server_cpu_cores, server_rss_bytes) = match (before, after) {
        (Some(before), Some(after)) => (
            (after.cpu_seconds - before.cpu_seconds) / seconds,
            after.rss_bytes as f64,
        ),
        _ => (0.0, 0.0),
    };
    let mut report = DeliveryReport {
        devices: options.devices,
        group_size: options.group_size,
        message_bytes: options.message_bytes,
        seconds,
        acknowledged,
        msgs_per_s,
        received,
        not_pushed: expected.saturating_sub(received),
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
        max_ms: percentile_ms(&latencies, 1.0),
        server_cpu_cores,
        server_rss_bytes,
        ceiling_rows_per_s: ceiling,
        ratio_to_ceiling: msgs_per_s / ceiling,
        e2e_msgs_per_s: None,
        e2e_p50_ms: None,
        e2e_p99_ms: None,
        e2e_devices: None,
        nats_msgs_per_s: None,
        nats_p50_ms: None,
        nats_p99_ms: None,
        nats_subscribed_msgs_per_s: None,
        nats_subscribed_p50_ms: None,
        nats_subscribed_p99_ms: None,
        nats_durability: None,
    };
    if let Some(devices) = options.end_to_end {
        let figures = crate::end_to_end::measure(server.url(), devices, options.duration).await?;
        report.e2e_msgs_per_s = Some(figures.msgs_per_s);
        report.e2e_p50_ms = Some(figures.p50_ms);
        report.e2e_p99_ms = Some(figures.p99_ms);
        report.e2e_devices = Some(figures.devices);
    }
    drop(server);

    if let Some(url) = &options.nats {
        let workload = NatsWorkload {
            url: url.clone(),
            devices: options.devices,
            group_size: options.group_size,
            message_bytes: options.message_bytes,
            duration: options.duration,
        };
        let unreachable = || BenchError::Options(format!("NATS is not reachable at {url}"));
        let stream = nats::reference_receiving(&workload, Receiving::StreamConsumers)
            .await?
            .ok_or_else(unreachable)?;
        let subscribed = nats::reference_receiving(&workload, Receiving::Subscriptions)
            .await?
            .ok_or_else(unreachable)?;
        report.nats_msgs_per_s = Some(stream.msgs_per_s);
        report.nats_p50_ms = Some(stream.p50_ms);
        report.nats_p99_ms = Some(stream.p99_ms);
        report.nats_subscribed_msgs_per_s = Some(subscribed.msgs_per_s);
        report.nats_subscribed_p50_ms = Some(subscribed.p50_ms);
        report.nats_subscribed_p99_ms = Some(subscribed.p99_ms);
        report.nats_durability = Some(stream.durability);
    }
    Ok(report)
}

/// Creates one group per `group_size` devices: the first device commits on
/// epoch 0, adding the others. Returns the groups, each at epoch 1.
async fn form_groups(
    http: &reqwest::Client,
    base: &str,
    devices: &[BenchDevice],
    group_size: usize,
) -> Result<Vec<GroupId>, BenchError> {
    let created = futures_util::stream::iter(devices.chunks_exact(group_size))
        .map(|members| async move {
            let others = members[1..].iter().map(|d| d.device);
            let (group, epoch) = members[0].create_group(http, base, others).await?;
            if epoch != 1 {
                return Err(BenchError::Protocol(format!(
                    "a new group is at epoch {epoch}, not 1"
                )));
            }
            Ok(group)
        })
        .buffered(32)
        .collect::<Vec<_>>()
        .await;
    created.into_iter().collect()
}

/// One device's part of the run.
struct Drive {
    group: GroupId,
    start: Instant,
    deadline: Instant,
    in_flight: usize,
    message_bytes: usize,
}

/// Once its messages are answered, a device stops when no push came for
/// this long.
const PUSH_IDLE: Duration = Duration::from_millis(300);
/// How long after the end the last answers may take.
const ANSWER_GRACE: Duration = Duration::from_secs(30);

impl Drive {
    async fn run(self, session: crate::device::Session) -> Result<DeviceRun, BenchError> {
        let (mut sink, mut stream) = session.split();
        let mut run = DeviceRun::default();
        let mut next_id = 1u64;
        let mut outstanding = 0usize;
        let mut data = vec![0u8; self.message_bytes];
        loop {
            let now = Instant::now();
            let sending = now < self.deadline;
            if sending && outstanding < self.in_flight {
                while outstanding < self.in_flight {
                    let sent_at = micros_since(self.start);
                    data[..8].copy_from_slice(&sent_at.to_le_bytes());
                    let request = SessionRequest::Send {
                        id: next_id,
                        group: self.group,
                        message_id: MessageId::random(),
                        epoch: 1,
                        data: data.clone(),
                    };
                    next_id += 1;
                    outstanding += 1;
                    sink.feed(Message::text(serde_json::to_string(&request)?))
                        .await?;
                }
                sink.flush().await?;
            }
            // After the deadline: wait for the last answers, then for the
            // pushes still on their way.
            let until = if sending {
                self.deadline
            } else if outstanding > 0 {
                self.deadline + ANSWER_GRACE
            } else {
                now + PUSH_IDLE
            };
            let frame = match tokio::time::timeout_at(until.into(), stream.next()).await {
                Err(_) if sending => continue,
                Err(_) if outstanding > 0 => {
                    return Err(BenchError::Protocol(format!(
                        "{outstanding} messages unanswered {} s after the end",
                        ANSWER_GRACE.as_secs()
                    )));
                }
                Err(_) => break,
                Ok(None) => {
                    return Err(BenchError::Protocol("the server ended a session".into()));
                }
                Ok(Some(frame)) => frame?,
            };
            let Message::Text(text) = frame else {
                continue;
            };
            match serde_json::from_str::<PushEvent>(&text)? {
                PushEvent::Sent { .. } => {
                    outstanding -= 1;
                    if Instant::now() <= self.deadline {
                        run.acknowledged += 1;
                    }
                }
                PushEvent::Refused { .. } => {
                    outstanding -= 1;
                    run.refused += 1;
                }
                PushEvent::Group {
                    entry: Some(entry), ..
                } => {
                    if let Some(sent_at) = entry.data.get(..8) {
                        let mut bytes = [0u8; 8];
                        bytes.copy_from_slice(sent_at);
                        let sent_at = u64::from_le_bytes(bytes);
                        let latency = micros_since(self.start).saturating_sub(sent_at);
                        run.latencies_us
                            .push(u32::try_from(latency).unwrap_or(u32::MAX));
                    }
                }
                PushEvent::Group { entry: None, .. } | PushEvent::Inbox => {}
            }
        }
        let _ = sink.close().await;
        Ok(run)
    }
}

/// Reads every group's log and checks that it holds the creating commit and
/// at least the acknowledged messages, each once.
async fn check_logs(
    http: &reqwest::Client,
    base: &str,
    devices: &[BenchDevice],
    groups: &[GroupId],
    group_size: usize,
    acknowledged: u64,
) -> Result<(), BenchError> {
    let stored = futures_util::stream::iter(groups.iter().enumerate())
        .map(|(index, group)| async move {
            let reader = &devices[index * group_size];
            let mut after = 0;
            let mut ids = std::collections::HashSet::new();
            loop {
                let path = api::log_path(group, after, MAX_PAGE);
                let page: LogPage = serde_json::from_slice(
                    &reader
                        .request(http, base, reqwest::Method::GET, &path, Vec::new())
                        .await?,
                )?;
                let Some(last) = page.entries.last() else {
                    break;
                };
                after = last.seq;
                for entry in &page.entries {
                    if !ids.insert(entry.message_id) {
                        return Err(BenchError::Protocol(format!(
                            "message {} is twice in a log",
                            entry.message_id
                        )));
                    }
                }
            }
            // Minus the commit that created the group.
            Ok::<u64, BenchError>(ids.len() as u64 - 1)
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let stored: u64 = stored.into_iter().sum::<Result<u64, _>>()?;
    if stored < acknowledged {
        return Err(BenchError::Protocol(format!(
            "{acknowledged} messages were acknowledged but the logs hold {stored}"
        )));
    }
    Ok(())
}

/// Rows per transaction in the ceiling measurement: the server's writer
/// commits up to this many writes at once.
const CEILING_BATCH: usize = 1000;

/// Bytes a log row holds besides the message: group id, seq, kind, epoch,
/// sender, message id.
const LOG_ROW_OVERHEAD: usize = 16 + 8 + 11 + 8 + 16 + 16;

/// Raw durable inserts per second into SQLite (WAL, `synchronous=FULL`, as
/// the server runs it) of rows of a log entry's size, [`CEILING_BATCH`] per
/// transaction, for `duration`.
pub fn storage_ceiling(message_bytes: usize, duration: Duration) -> Result<f64, BenchError> {
    let dir = tempfile::tempdir().map_err(BenchError::io("creating a temporary directory"))?;
    let conn = rusqlite::Connection::open(dir.path().join("ceiling.sqlite3"))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE rows (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")?;
    let row = vec![7u8; message_bytes + LOG_ROW_OVERHEAD];
    let start = Instant::now();
    let mut rows = 0u64;
    while start.elapsed() < duration {
        let tx = conn.unchecked_transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO rows (data) VALUES (?1)")?;
            for _ in 0..CEILING_BATCH {
                insert.execute([&row])?;
            }
        }
        tx.commit()?;
        rows += CEILING_BATCH as u64;
    }
    Ok(rows as f64 / start.elapsed().as_secs_f64())
}

fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The `q` quantile of sorted microseconds, in milliseconds.
pub(crate) fn percentile_ms(sorted_us: &[u32], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted_us[rank.min(sorted_us.len() - 1)]) / 1000.0
}

/// A user-name prefix unique to this run (`letter` and 8 random hex
/// digits), so that runs against one server do not collide.
pub(crate) fn run_prefix(letter: char) -> String {
    let id = MessageId::random();
    format!("{letter}{}", &id.to_string()[..8])
}

impl fmt::Display for DeliveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "delivery: {} devices in groups of {}, {}-byte messages, {:.0} s",
            self.devices, self.group_size, self.message_bytes, self.seconds
        )?;
        writeln!(
            f,
            "  acknowledged durably  {:>10.0} msgs/s  ({} messages)",
            self.msgs_per_s, self.acknowledged
        )?;
        writeln!(
            f,
            "  send → member         p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} pushes, {} read by cursor instead)",
            self.p50_ms, self.p99_ms, self.max_ms, self.received, self.not_pushed
        )?;
        writeln!(
            f,
            "  server                {:.2} cores, {:.0} MiB resident",
            self.server_cpu_cores,
            self.server_rss_bytes / (1024.0 * 1024.0)
        )?;
        writeln!(
            f,
            "  storage ceiling       {:>10.0} rows/s  (ratio {:.3})",
            self.ceiling_rows_per_s, self.ratio_to_ceiling
        )?;
        if let (Some(devices), Some(rate), Some(p50), Some(p99)) = (
            self.e2e_devices,
            self.e2e_msgs_per_s,
            self.e2e_p50_ms,
            self.e2e_p99_ms,
        ) {
            writeln!(
                f,
                "  end to end            {rate:>10.0} msgs/s  ({devices} live client engines; send → delivered p50 {p50:.2} ms, p99 {p99:.2} ms)"
            )?;
        }
        if let (Some(rate), Some(p50), Some(p99)) =
            (self.nats_msgs_per_s, self.nats_p50_ms, self.nats_p99_ms)
        {
            writeln!(
                f,
                "  NATS JetStream        {rate:>10.0} msgs/s, p50 {p50:.2} ms, p99 {p99:.2} ms (members read the stream)"
            )?;
            if let (Some(rate), Some(p50), Some(p99)) = (
                self.nats_subscribed_msgs_per_s,
                self.nats_subscribed_p50_ms,
                self.nats_subscribed_p99_ms,
            ) {
                writeln!(
                    f,
                    "                        {rate:>10.0} msgs/s, p50 {p50:.2} ms, p99 {p99:.2} ms (members subscribed)"
                )?;
            }
            if let Some(durability) = &self.nats_durability {
                writeln!(f, "                        ({durability})")?;
            }
        }
        Ok(())
    }
}
