//! `rempart-bench catch-up`: a device catching up on a backlog, and the
//! memory of a live client with many conversations.
//!
//! Both parts run the real client engine against a `rempart-server` process
//! the benchmark starts ([`ServerUnderTest`]).
//!
//! **Backlog** ([`measure_backlog`]). Alice sends `messages` texts to Bob
//! in their 1:1 conversation while Bob is away (untimed), then Bob's
//! `Client::sync` is timed: it fetches the log page by page, decrypts and
//! checks each message, and keeps it in his history as unread, with the
//! rest of a sync's work (directory head, own key history, inbox, device
//! lists). The baseline, measured in the same run on the same server, is
//! the floor under it: a device without the engine ([`BenchDevice`])
//! reading a log of as many entries, of the same mean size as the MLS
//! messages the server stored for Bob, by the same pages, decoding each
//! page's JSON and processing nothing.
//!
//! **Live memory** ([`measure_live_memory`]). A hub account has a 1:1
//! conversation with each of `conversations` peers. It runs `rempart
//! listen`, the binary users run (found beside this one), on its store;
//! each peer then sends it one message, and once the listener has printed
//! them all its resident memory (`VmRSS`, and the peak `VmHWM`) is read.
//! The baseline is the same with a single conversation.

use std::fmt;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, TryStreamExt as _};
use rempart_client::{Client, Event};
use rempart_proto::api::{self, LogPage};
use rempart_proto::limits::MAX_PAGE;
use rempart_proto::{MessageId, UserName};
use serde::Serialize;
use tempfile::TempDir;

use crate::delivery::run_prefix;
use crate::device::BenchDevice;
use crate::error::BenchError;
use crate::memory::MemoryUsage;
use crate::server::{ServerUnderTest, binary_beside_this_one};

/// Uploads of the baseline's log in flight at a time (untimed).
const FILL_PARALLEL: usize = 32;

/// How much work one run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUpOptions {
    /// Messages in the backlog.
    pub messages: usize,
    /// Conversations of the live client.
    pub conversations: usize,
}

impl CatchUpOptions {
    /// The full run: a backlog of 10,000 messages, 100 conversations.
    pub fn full() -> Self {
        Self {
            messages: 10_000,
            conversations: 100,
        }
    }

    /// A quick run: 1,000 messages, 10 conversations.
    pub fn quick() -> Self {
        Self {
            messages: 1_000,
            conversations: 10,
        }
    }
}

/// What the backlog part measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Backlog {
    /// Messages in the backlog.
    pub messages: u64,
    /// Bob's sync over the backlog, in seconds.
    pub catch_up_s: f64,
    /// Messages caught up per second.
    pub msgs_per_s: f64,
    /// The baseline: the same number of entries read without the engine,
    /// in seconds.
    pub read_baseline_s: f64,
    /// `catch_up_s / read_baseline_s`.
    pub catch_up_ratio: f64,
    /// Mean size of the MLS messages of the backlog, in bytes.
    pub mean_message_bytes: u64,
}

/// What the live-memory part measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LiveMemory {
    /// Conversations of the measured client.
    pub conversations: u64,
    /// Its resident memory once every conversation brought a message, MiB.
    pub rss_mib: f64,
    /// Its peak resident memory, MiB.
    pub hwm_mib: f64,
    /// The same client with one conversation: resident memory, MiB.
    pub baseline_rss_mib: f64,
    /// Its peak, MiB.
    pub baseline_hwm_mib: f64,
    /// `rss_mib / baseline_rss_mib`.
    pub rss_ratio: f64,
    /// `(rss_mib - baseline_rss_mib) / (conversations - 1)`, in KiB.
    pub kib_per_conversation: f64,
}

/// Both parts (in JSON, one flat object of numbers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CatchUpReport {
    /// The backlog.
    #[serde(flatten)]
    pub backlog: Backlog,
    /// The live client's memory.
    #[serde(flatten)]
    pub live: LiveMemory,
}

fn engine(error: impl fmt::Display) -> BenchError {
    BenchError::Protocol(format!("client engine: {error}"))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Runs both parts, each on a server of its own.
pub async fn measure(options: &CatchUpOptions) -> Result<CatchUpReport, BenchError> {
    if options.messages == 0 || options.conversations < 2 {
        return Err(BenchError::Options(
            "a backlog needs at least one message, and the live client at least two conversations"
                .into(),
        ));
    }
    let backlog = measure_backlog(&ServerUnderTest::start(&[])?, options.messages).await?;
    let listener = binary_beside_this_one("rempart")?;
    let live = measure_live_memory(&listener, options.conversations).await?;
    Ok(CatchUpReport { backlog, live })
}

/// Times Bob's catch-up on a backlog of `messages` texts, and the baseline.
pub async fn measure_backlog(
    server: &ServerUnderTest,
    messages: usize,
) -> Result<Backlog, BenchError> {
    let url = server.url();
    let homes = TempDir::new().map_err(BenchError::io("creating the engines' homes"))?;
    let prefix = run_prefix('b');
    let alice_name: UserName = format!("{prefix}alice").parse()?;
    let bob_name: UserName = format!("{prefix}bob").parse()?;
    let mut alice = Client::create_account(&homes.path().join("alice"), url, alice_name)
        .await
        .map_err(engine)?;
    let mut bob = Client::create_account(&homes.path().join("bob"), url, bob_name.clone())
        .await
        .map_err(engine)?;
    alice.send_text(&bob_name, "hello").await.map_err(engine)?;
    bob.sync().await.map_err(engine)?;
    for i in 0..messages {
        alice
            .send_text(&bob_name, &format!("backlog message {i:05}"))
            .await
            .map_err(engine)?;
    }

    let start = Instant::now();
    let events = bob.sync().await.map_err(engine)?;
    let catch_up = start.elapsed().as_secs_f64();
    let received = events
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count();
    if received != messages || events.iter().any(Event::is_alert) {
        return Err(BenchError::Protocol(format!(
            "Bob caught up on {received} of {messages} messages: {:?}",
            events.iter().find(|e| e.is_alert())
        )));
    }

    let mean = mean_message_bytes(server)?;
    let baseline = read_without_engine(url, messages, mean).await?;
    Ok(Backlog {
        messages: messages as u64,
        catch_up_s: catch_up,
        msgs_per_s: messages as f64 / catch_up,
        read_baseline_s: baseline,
        catch_up_ratio: catch_up / baseline,
        mean_message_bytes: mean as u64,
    })
}

/// The mean size of the application messages the server stored, read from
/// its database.
fn mean_message_bytes(server: &ServerUnderTest) -> Result<usize, BenchError> {
    let dir = server.data_dir().ok_or_else(|| {
        BenchError::Options("the backlog needs a server this benchmark started".into())
    })?;
    let db = rusqlite::Connection::open_with_flags(
        dir.join(rempart_server::DATABASE_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mean: f64 = db.query_row(
        "SELECT coalesce(avg(length(data)), 0) FROM log WHERE kind = 'application'",
        [],
        |r| r.get(0),
    )?;
    Ok(mean.round() as usize)
}

/// Fills a log of `entries` entries of `bytes` bytes (untimed) and times
/// reading it back by pages, decoding each page and nothing more.
async fn read_without_engine(url: &str, entries: usize, bytes: usize) -> Result<f64, BenchError> {
    let http = reqwest::Client::new();
    let reader: UserName = format!("{}reader", run_prefix('r')).parse()?;
    let device = BenchDevice::register(&http, url, reader).await?;
    let (group, epoch) = device.create_group(&http, url, []).await?;
    let body = vec![0x5a; bytes.max(1)];
    futures_util::stream::iter(0..entries)
        .map(|_| {
            let (http, device, body) = (&http, &device, body.clone());
            async move {
                let path = api::message_path(&group, &MessageId::random(), epoch);
                device
                    .request(http, url, reqwest::Method::PUT, &path, body)
                    .await
            }
        })
        .buffer_unordered(FILL_PARALLEL)
        .try_for_each(|_| async { Ok(()) })
        .await?;

    let start = Instant::now();
    let (mut after, mut read) = (0, 0);
    loop {
        let path = api::log_path(&group, after, MAX_PAGE);
        let answer = device
            .request(&http, url, reqwest::Method::GET, &path, Vec::new())
            .await?;
        let page: LogPage = serde_json::from_slice(&answer)?;
        read += page.entries.len();
        let Some(last) = page.entries.last() else {
            break;
        };
        after = last.seq;
        if page.entries.len() < MAX_PAGE as usize {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // The group's founding commit, then the entries.
    if read != entries + 1 {
        return Err(BenchError::Protocol(format!(
            "the baseline read {read} entries of {}",
            entries + 1
        )));
    }
    Ok(elapsed)
}

/// Measures `rempart listen` with `conversations` conversations, and with
/// one, each against a server of its own.
pub async fn measure_live_memory(
    listener: &Path,
    conversations: usize,
) -> Result<LiveMemory, BenchError> {
    let baseline = live_client_memory(listener, 1).await?;
    let measured = live_client_memory(listener, conversations).await?;
    let (rss, base) = (mib(measured.rss_bytes), mib(baseline.rss_bytes));
    Ok(LiveMemory {
        conversations: conversations as u64,
        rss_mib: rss,
        hwm_mib: mib(measured.hwm_bytes),
        baseline_rss_mib: base,
        baseline_hwm_mib: mib(baseline.hwm_bytes),
        rss_ratio: rss / base,
        kib_per_conversation: (rss - base) * 1024.0
            / (conversations.saturating_sub(1).max(1)) as f64,
    })
}

/// A `rempart listen` process, killed when dropped.
struct Listener {
    child: Child,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The memory of `rempart listen` for a hub with `conversations` 1:1
/// conversations, once each has brought it a message.
async fn live_client_memory(
    listener: &Path,
    conversations: usize,
) -> Result<MemoryUsage, BenchError> {
    let server = ServerUnderTest::start(&[])?;
    let url = server.url();
    let homes = TempDir::new().map_err(BenchError::io("creating the engines' homes"))?;
    let prefix = run_prefix('m');
    let hub_name: UserName = format!("{prefix}hub").parse()?;
    let hub_home = homes.path().join("hub");
    let mut hub = Client::create_account(&hub_home, url, hub_name.clone())
        .await
        .map_err(engine)?;
    let mut peers = Vec::with_capacity(conversations);
    for i in 0..conversations {
        let name: UserName = format!("{prefix}p{i:04}").parse()?;
        let mut peer = Client::create_account(&homes.path().join(name.as_str()), url, name)
            .await
            .map_err(engine)?;
        peer.send_text(&hub_name, "hello").await.map_err(engine)?;
        peers.push(peer);
    }
    hub.sync().await.map_err(engine)?;
    let active = hub.conversations().map_err(engine)?.len();
    if active != conversations {
        return Err(BenchError::Protocol(format!(
            "the hub has {active} conversations, not {conversations}"
        )));
    }
    drop(hub);

    let mut listening = Listener {
        child: Command::new(listener)
            .arg("--home")
            .arg(&hub_home)
            .args(["--json", "listen"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(BenchError::io(format!("starting {}", listener.display())))?,
    };
    let stdout = listening
        .child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Protocol("the listener's stdout was not captured".into()))?;
    // Its lines are read on a thread of their own: each message it prints
    // is counted, until one per conversation.
    let (printed, mut counted) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(r#""kind":"message""#) && printed.send(()).is_err() {
                break;
            }
        }
    });
    for peer in &mut peers {
        peer.send_text(&hub_name, "are you there?")
            .await
            .map_err(engine)?;
    }
    for _ in 0..conversations {
        tokio::time::timeout(Duration::from_secs(120), counted.recv())
            .await
            .ok()
            .flatten()
            .ok_or_else(|| BenchError::Protocol("the listener stopped printing messages".into()))?;
    }
    let usage = MemoryUsage::of_process(listening.child.id())
        .map_err(BenchError::io("reading the listener's memory"))?;
    drop(listening);
    drop(server);
    Ok(usage)
}

impl fmt::Display for CatchUpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (b, l) = (&self.backlog, &self.live);
        writeln!(
            f,
            "catch-up on a backlog of {} messages ({} B each on average):",
            b.messages, b.mean_message_bytes
        )?;
        writeln!(
            f,
            "  engine (`sync`): {:.2} s ({:.0} messages/s)",
            b.catch_up_s, b.msgs_per_s
        )?;
        writeln!(
            f,
            "  baseline (the same log read without the engine): {:.2} s (ratio {:.1})",
            b.read_baseline_s, b.catch_up_ratio
        )?;
        writeln!(
            f,
            "`rempart listen` with {} conversations:",
            l.conversations
        )?;
        writeln!(
            f,
            "  resident {:.1} MiB (peak {:.1} MiB)",
            l.rss_mib, l.hwm_mib
        )?;
        write!(
            f,
            "  baseline, one conversation: {:.1} MiB (peak {:.1} MiB); ratio {:.2}, {:.0} KiB per conversation",
            l.baseline_rss_mib, l.baseline_hwm_mib, l.rss_ratio, l.kib_per_conversation
        )
    }
}
