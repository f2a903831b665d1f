//! `rempart-bench connections`: the server's memory per idle push session.
//!
//! 1. **register** [`ConnectionsOptions::connections`] accounts of one
//!    device each ([`BenchDevice::register_many`]), then wait until the
//!    server is quiet: its directory has published every new account and
//!    its resident memory has stopped moving. That memory is the baseline.
//! 2. **open** one authenticated WebSocket session per device
//!    ([`BenchDevice::open_session`]), [`ConnectionsOptions::open_parallel`]
//!    upgrades in flight at a time, timing them and the server's CPU time.
//! 3. **hold** them idle until the server's memory settles again, and read
//!    it: `rss_bytes_per_connection` is the growth over the baseline divided
//!    by the number of sessions.
//! 4. **check** that every session is still live (each answers a ping), then
//!    close them all. A lost session fails the run.
//!
//! Memory and CPU figures need a server process this benchmark started
//! ([`ServerUnderTest::start`]); for a server given by URL they are left out.
//! The target, for the benchmark, is at most 64 KiB of server memory per idle
//! session at 10,000 sessions.

use std::fmt;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _, TryStreamExt as _};
use rand::RngCore as _;
use rempart_proto::directory::{DirectoryHead, HeadWithCosignatures};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::device::{BenchDevice, Session};
use crate::error::BenchError;
use crate::server::ServerUnderTest;

/// Open files the benchmark needs besides one per session (its HTTP pool,
/// the runtime, stdio, the server's log).
const SPARE_FILES: u64 = 256;
/// How often the server's memory and directory are read while waiting for
/// them to settle.
const SETTLE_POLL: Duration = Duration::from_millis(250);
/// How long they must stay put to count as settled.
const SETTLE_QUIET: Duration = Duration::from_secs(1);
/// How long to wait for them to settle before measuring anyway.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// Memory moving by at most this many bytes, or by this fraction of itself,
/// over [`SETTLE_QUIET`] counts as settled.
const SETTLE_BYTES: u64 = 256 * 1024;
/// See [`SETTLE_BYTES`].
const SETTLE_FRACTION: f64 = 0.002;
/// How long one session has to answer a ping, or to close.
const SESSION_DEADLINE: Duration = Duration::from_secs(30);
/// The memory target per idle session, in bytes (for the table).
pub const TARGET_BYTES_PER_CONNECTION: f64 = 64.0 * 1024.0;

/// How much work one run of the connections benchmark does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionsOptions {
    /// Sessions opened, each by a device of its own account.
    pub connections: usize,
    /// Registrations in flight at a time.
    pub register_parallel: usize,
    /// WebSocket upgrades in flight at a time.
    pub open_parallel: usize,
}

impl ConnectionsOptions {
    /// The full run: 10,000 sessions.
    pub fn full() -> Self {
        Self {
            connections: 10_000,
            register_parallel: 16,
            open_parallel: 64,
        }
    }

    /// The `--quick` run: 1,000 sessions.
    pub fn quick() -> Self {
        Self {
            connections: 1_000,
            ..Self::full()
        }
    }
}

/// The connections benchmark's figures. The server's memory and CPU figures
/// are absent for a server given by URL.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectionsReport {
    /// Sessions opened and held.
    pub connections: u64,
    /// Seconds spent registering the accounts.
    pub register_s: f64,
    /// Accounts registered per second.
    pub register_per_s: f64,
    /// Seconds from the end of registration until the server was quiet.
    pub settle_s: f64,
    /// Seconds spent opening the sessions.
    pub open_s: f64,
    /// Sessions opened per second.
    pub open_per_s: f64,
    /// Server CPU time (user + system) spent while the sessions opened, in
    /// seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_cpu_s: Option<f64>,
    /// Server resident memory once registered and quiet, before any
    /// session (`VmRSS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_rss_bytes: Option<u64>,
    /// Server resident memory with every session open, once settled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// `(rss_bytes - baseline_rss_bytes) / connections`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes_per_connection: Option<f64>,
    /// Server peak resident memory up to then (`VmHWM`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hwm_bytes: Option<u64>,
    /// Sessions that answered a ping at the end (all of them, or the run
    /// fails).
    pub live: u64,
}

/// Runs the connections benchmark against `server`.
pub async fn measure(
    server: &ServerUnderTest,
    options: &ConnectionsOptions,
) -> Result<ConnectionsReport, BenchError> {
    let count = options.connections;
    raise_open_files_limit(
        u64::try_from(count)
            .unwrap_or(u64::MAX)
            .saturating_add(SPARE_FILES),
    )?;
    let http = reqwest::Client::new();

    let started = Instant::now();
    let devices = BenchDevice::register_many(
        &http,
        server.url(),
        &run_prefix(),
        count,
        options.register_parallel,
    )
    .await?;
    let register_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    settle(server, Some(&http)).await?;
    let settle_s = started.elapsed().as_secs_f64();
    let baseline = server.usage()?;

    let started = Instant::now();
    let ws_base = server.ws_url();
    let mut sessions: Vec<Session> = futures_util::stream::iter(&devices)
        .map(|device| device.open_session(&ws_base))
        .buffer_unordered(options.open_parallel.max(1))
        .try_collect()
        .await?;
    let open_s = started.elapsed().as_secs_f64();
    let opened = server.usage()?;

    settle(server, None).await?;
    let held = server.usage()?;

    let live = check_and_close(&mut sessions, options.open_parallel.max(1)).await;
    if live < sessions.len() {
        return Err(BenchError::SessionsLost {
            opened: sessions.len(),
            lost: sessions.len() - live,
        });
    }

    let connections = count as f64;
    Ok(ConnectionsReport {
        connections: count as u64,
        register_s,
        register_per_s: per_second(connections, register_s),
        settle_s,
        open_s,
        open_per_s: per_second(connections, open_s),
        open_cpu_s: baseline
            .zip(opened)
            .map(|(before, after)| (after.cpu_seconds - before.cpu_seconds).max(0.0)),
        baseline_rss_bytes: baseline.map(|u| u.rss_bytes),
        rss_bytes: held.map(|u| u.rss_bytes),
        rss_bytes_per_connection: baseline.zip(held).map(|(before, after)| {
            (after.rss_bytes as f64 - before.rss_bytes as f64) / connections.max(1.0)
        }),
        hwm_bytes: held.map(|u| u.hwm_bytes),
        live: live as u64,
    })
}

/// Raises this process's soft limit on open files to its hard limit, and
/// checks that `needed` files fit; returns the new soft limit.
pub fn raise_open_files_limit(needed: u64) -> Result<u64, BenchError> {
    let limit = getrlimit(Resource::Nofile);
    // `None` is RLIM_INFINITY.
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )
        .map_err(|e| BenchError::Io {
            what: format!("raising the open-files soft limit to the hard limit {hard}"),
            source: e.into(),
        })?;
    }
    if needed > hard {
        return Err(BenchError::FileLimit { needed, hard });
    }
    Ok(hard)
}

/// A prefix for this run's user names, so that runs against one server do
/// not collide: `c`, 8 random hex digits, `-`.
fn run_prefix() -> String {
    let mut bytes = [0u8; 4];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("c{hex}-")
}

/// Waits until the server is quiet: its resident memory (for a started
/// server) and, given `http`, its directory's latest epoch have not moved
/// for [`SETTLE_QUIET`], or [`SETTLE_LIMIT`] has passed.
async fn settle(
    server: &ServerUnderTest,
    http: Option<&reqwest::Client>,
) -> Result<(), BenchError> {
    let started = Instant::now();
    let mut last_change = Instant::now();
    let mut reference = (server.usage()?.map(|u| u.rss_bytes), None);
    if let Some(http) = http {
        reference.1 = directory_epoch(http, server.url()).await?;
    }
    while started.elapsed() < SETTLE_LIMIT {
        tokio::time::sleep(SETTLE_POLL).await;
        let rss = server.usage()?.map(|u| u.rss_bytes);
        let epoch = match http {
            Some(http) => directory_epoch(http, server.url()).await?,
            None => None,
        };
        let rss_moved = match (reference.0, rss) {
            (Some(before), Some(now)) => {
                let moved = before.abs_diff(now);
                moved > SETTLE_BYTES && moved as f64 > before as f64 * SETTLE_FRACTION
            }
            _ => false,
        };
        if rss_moved || epoch != reference.1 {
            reference = (rss, epoch);
            last_change = Instant::now();
        } else if last_change.elapsed() >= SETTLE_QUIET {
            return Ok(());
        }
    }
    Ok(())
}

/// The directory's latest published epoch; `None` before the first.
async fn directory_epoch(http: &reqwest::Client, base: &str) -> Result<Option<u64>, BenchError> {
    let path = "/v1/directory/head";
    let response = http.get(format!("{base}{path}")).send().await?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let body = response.bytes().await?;
    if !status.is_success() {
        return Err(BenchError::Status {
            method: "GET".to_owned(),
            path: path.to_owned(),
            status: status.as_u16(),
            code: "-".to_owned(),
        });
    }
    // Only to see that epochs have stopped coming: the head's signature
    // is not checked.
    let head: HeadWithCosignatures = serde_json::from_slice(&body)?;
    let head: DirectoryHead = serde_json::from_slice(&head.head.head)?;
    Ok(Some(head.epoch))
}

/// Pings every session and waits for its pong, then closes it, with
/// `parallel` sessions at a time; returns how many answered.
async fn check_and_close(sessions: &mut [Session], parallel: usize) -> usize {
    futures_util::stream::iter(sessions.iter_mut().enumerate())
        .map(|(i, session)| async move {
            let live = tokio::time::timeout(SESSION_DEADLINE, ping(session, i))
                .await
                .unwrap_or(false);
            let _ = tokio::time::timeout(SESSION_DEADLINE, close(session)).await;
            live
        })
        .buffer_unordered(parallel)
        .filter(|live| std::future::ready(*live))
        .count()
        .await
}

/// Whether `session` answers a ping carrying `i`.
async fn ping(session: &mut Session, i: usize) -> bool {
    let payload = i.to_be_bytes().to_vec();
    if session
        .send(Message::Ping(payload.clone().into()))
        .await
        .is_err()
    {
        return false;
    }
    while let Some(message) = session.next().await {
        match message {
            Ok(Message::Pong(echo)) => return echo.as_ref() == payload.as_slice(),
            Ok(Message::Close(_)) | Err(_) => return false,
            Ok(_) => {}
        }
    }
    false
}

/// Closes `session` and reads until the server has closed it too.
async fn close(session: &mut Session) {
    if session.close(None).await.is_err() {
        return;
    }
    while let Some(Ok(_)) = session.next().await {}
}

fn per_second(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { count / seconds } else { 0.0 }
}

impl fmt::Display for ConnectionsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIB: f64 = 1024.0 * 1024.0;
        writeln!(f, "idle push sessions           {:>12}", self.connections)?;
        writeln!(
            f,
            "registration                 {:>12.1} accounts/s ({:.1} s, then {:.1} s to settle)",
            self.register_per_s, self.register_s, self.settle_s
        )?;
        writeln!(
            f,
            "opening                      {:>12.1} sessions/s ({:.2} s)",
            self.open_per_s, self.open_s
        )?;
        match self.open_cpu_s {
            Some(cpu) => writeln!(f, "server CPU while opening     {cpu:>12.2} s")?,
            None => writeln!(
                f,
                "server CPU while opening              n/a (server given by URL)"
            )?,
        }
        match (
            self.baseline_rss_bytes,
            self.rss_bytes,
            self.rss_bytes_per_connection,
        ) {
            (Some(baseline), Some(rss), Some(per)) => {
                writeln!(
                    f,
                    "server RSS before sessions   {:>12.1} MiB",
                    baseline as f64 / MIB
                )?;
                writeln!(
                    f,
                    "server RSS with sessions     {:>12.1} MiB",
                    rss as f64 / MIB
                )?;
                if let Some(hwm) = self.hwm_bytes {
                    writeln!(
                        f,
                        "server peak RSS              {:>12.1} MiB",
                        hwm as f64 / MIB
                    )?;
                }
                let verdict = if per <= TARGET_BYTES_PER_CONNECTION {
                    "within"
                } else {
                    "ABOVE"
                };
                writeln!(
                    f,
                    "server RSS per session       {:>12.1} KiB ({verdict} the 64 KiB target)",
                    per / 1024.0
                )?;
            }
            _ => writeln!(
                f,
                "server RSS                            n/a (server given by URL)"
            )?,
        }
        write!(f, "live at the end              {:>12}", self.live)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn run_prefixes_make_valid_distinct_names() {
        let (a, b) = (run_prefix(), run_prefix());
        assert_ne!(a, b);
        let name = format!("{a}{:06}", 123_456);
        assert!(name.parse::<rempart_proto::UserName>().is_ok(), "{name}");
    }

    #[test]
    fn the_file_limit_can_be_raised_to_what_is_allowed() {
        let soft = raise_open_files_limit(16).unwrap();
        assert!(soft >= 16);
        assert!(
            matches!(
                raise_open_files_limit(u64::MAX),
                Err(BenchError::FileLimit { .. })
            ) || soft == u64::MAX
        );
    }
}
