//! End-to-end delivery ([`measure`]): real `rempart-client` engines running
//! live, with real MLS encryption and decryption and their stores, beside
//! the server-only mode of [`crate::delivery`].
//!
//! `devices` accounts are made in pairs on the server under test, each pair
//! with its 1:1 conversation founded by a first message (not timed). Every
//! device then runs live (`rempart_client::session::Live`: its WebSocket
//! session, pushes, catch-up by cursor). For `duration`, the first of each
//! pair sends texts to the second over its session, one at a time; the
//! second takes them in as its session's events. The figures are the texts
//! delivered per second of sending, and the time from the start of a send
//! to its arrival as an event at the other device (p50, p99).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rempart_client::session::{Live, SessionState};
use rempart_client::{Client, Event};
use rempart_proto::UserName;
use serde::Serialize;
use tempfile::TempDir;

use crate::delivery::{percentile_ms, run_prefix};
use crate::error::BenchError;

/// How long receivers keep reading after the senders stopped.
const GRACE: Duration = Duration::from_secs(3);

/// What the end-to-end mode measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EndToEnd {
    /// Devices running live (half of them send).
    pub devices: usize,
    /// Texts sent while sending (each acknowledged by the server).
    pub sent: u64,
    /// Texts that arrived at their recipient as events.
    pub delivered: u64,
    /// Delivered texts per second of sending.
    pub msgs_per_s: f64,
    /// Start of a send to its arrival as an event, median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

fn engine(error: impl std::fmt::Display) -> BenchError {
    BenchError::Protocol(format!("client engine: {error}"))
}

/// Runs the end-to-end mode against the server at `url`.
pub async fn measure(
    url: &str,
    devices: usize,
    duration: Duration,
) -> Result<EndToEnd, BenchError> {
    let pairs = (devices / 2).max(1);
    let homes = TempDir::new().map_err(BenchError::io("creating the engines' homes"))?;
    let prefix = run_prefix('e');
    let mut senders = Vec::with_capacity(pairs);
    let mut receivers = Vec::with_capacity(pairs);
    for pair in 0..pairs {
        let from: UserName = format!("{prefix}a{pair}").parse()?;
        let to: UserName = format!("{prefix}b{pair}").parse()?;
        let mut sender = Client::create_account(&homes.path().join(from.as_str()), url, from)
            .await
            .map_err(engine)?;
        let mut receiver = Client::create_account(&homes.path().join(to.as_str()), url, to.clone())
            .await
            .map_err(engine)?;
        sender.send_text(&to, "hello").await.map_err(engine)?;
        receiver.sync().await.map_err(engine)?;
        senders.push((Live::start(sender).map_err(engine)?, to));
        receivers.push(Live::start(receiver).map_err(engine)?);
    }
    let lives = senders.iter().map(|(live, _)| live).chain(&receivers);
    for live in lives {
        let patience = Instant::now() + Duration::from_secs(30);
        while live.state() != SessionState::Live {
            if Instant::now() > patience {
                return Err(BenchError::Protocol(
                    "a live session never connected".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let start = Instant::now();
    let deadline = start + duration;
    let reading: Vec<_> = receivers
        .into_iter()
        .map(|mut live| {
            tokio::spawn(async move {
                let mut arrived = Vec::new();
                let end = tokio::time::Instant::from_std(deadline + GRACE);
                while let Ok(Some(event)) = tokio::time::timeout_at(end, live.next_event()).await {
                    if let Event::Message { text, .. } = event {
                        arrived.push((text, Instant::now()));
                    }
                }
                let _ = live.stop().await;
                arrived
            })
        })
        .collect();
    let sending: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(pair, (live, to))| {
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let text = format!("{pair}:{n}");
                    let began = Instant::now();
                    live.send_text(&to, &text).await.map_err(engine)?;
                    sent.push((text, began));
                    n += 1;
                }
                let seconds = start.elapsed().as_secs_f64();
                let _ = live.stop().await;
                Ok::<_, BenchError>((sent, seconds))
            })
        })
        .collect();

    let mut began: HashMap<String, Instant> = HashMap::new();
    let mut seconds: f64 = 0.0;
    for task in sending {
        let (sent, took) = task
            .await
            .map_err(|e| BenchError::Protocol(e.to_string()))??;
        seconds = seconds.max(took);
        began.extend(sent);
    }
    let sent = began.len() as u64;
    let mut latencies = Vec::new();
    for task in reading {
        for (text, at) in task
            .await
            .map_err(|e| BenchError::Protocol(e.to_string()))?
        {
            if let Some(start) = began.get(&text) {
                latencies.push(at.saturating_duration_since(*start));
            }
        }
    }
    // Microseconds, as the server-only mode keeps them.
    let mut latencies: Vec<u32> = latencies
        .into_iter()
        .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
        .collect();
    latencies.sort_unstable();
    Ok(EndToEnd {
        devices: pairs * 2,
        sent,
        delivered: latencies.len() as u64,
        msgs_per_s: latencies.len() as f64 / seconds.max(f64::MIN_POSITIVE),
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
    })
}
