//! `rempart-bench fanout`: the server's cost of one application message as
//! the group grows.
//!
//! For each group size N, one device sends `messages` messages on its
//! session to a group of N members, keeping a few in flight, while one other
//! member is connected and pushed every message; the rest are offline, as
//! most members of a large group are at any moment (they read by cursor
//! when they connect). The cost is the server process's CPU time per
//! message. Storing a message is one write whatever N, and announcing it
//! costs work per *connected* member only, so the ratio of the cost at
//! 10,000 members to the cost at 2 should stay near 1 (target ≤ 1.5).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use rempart_proto::api::{PushEvent, SessionRequest};
use rempart_proto::{GroupId, MessageId};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::delivery::run_prefix;
use crate::device::{BenchDevice, Session};
use crate::error::BenchError;
use crate::server::ServerUnderTest;

/// What to run.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// Group sizes, in members (at least 2 each).
    pub sizes: Vec<usize>,
    /// Messages sent per group size (after a warm-up of a tenth as many),
    /// in five turns taken by the sizes in order.
    pub messages: usize,
    /// Messages the sender keeps in flight.
    pub in_flight: usize,
    /// Bytes per message.
    pub message_bytes: usize,
    /// A server to use instead of starting one (it must be on this machine
    /// for CPU figures; without a process, there are none).
    pub server: Option<String>,
}

impl FanoutOptions {
    /// Groups of 2, 100, 1,000 and 10,000; 20,000 messages each.
    pub fn full() -> Self {
        Self {
            sizes: vec![2, 100, 1000, 10_000],
            messages: 20_000,
            in_flight: 32,
            message_bytes: 256,
            server: None,
        }
    }

    /// The same sizes, 5,000 messages each.
    pub fn quick() -> Self {
        Self {
            messages: 5000,
            ..Self::full()
        }
    }
}

/// The cost at one group size.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SizeFigures {
    /// Members.
    pub members: usize,
    /// Server CPU time per message, µs.
    pub cpu_us_per_msg: f64,
    /// Messages acknowledged per second (one sender).
    pub msgs_per_s: f64,
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct FanoutReport {
    /// Messages per group size.
    pub messages: usize,
    /// Bytes per message.
    pub message_bytes: usize,
    /// Seconds spent registering every member.
    pub register_seconds: f64,
    /// By group size.
    pub sizes: Vec<SizeFigures>,
    /// Messages pushed to the connected member, over every size.
    pub pushed: u64,
    /// Cost at the largest size over cost at the smallest.
    pub ratio_largest_to_smallest: f64,
}

impl Serialize for FanoutReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // One flat object of numbers: `cpu_us_per_msg_N`, `msgs_per_s_N`,
        // and `ratio_10000_to_2` (named after the sizes measured).
        let mut map = BTreeMap::new();
        map.insert("messages".to_owned(), self.messages as f64);
        map.insert("message_bytes".to_owned(), self.message_bytes as f64);
        map.insert("register_seconds".to_owned(), self.register_seconds);
        map.insert("pushed".to_owned(), self.pushed as f64);
        for size in &self.sizes {
            map.insert(
                format!("cpu_us_per_msg_{}", size.members),
                size.cpu_us_per_msg,
            );
            map.insert(format!("msgs_per_s_{}", size.members), size.msgs_per_s);
        }
        if let (Some(first), Some(last)) = (self.sizes.first(), self.sizes.last()) {
            map.insert(
                format!("ratio_{}_to_{}", last.members, first.members),
                self.ratio_largest_to_smallest,
            );
        }
        map.serialize(serializer)
    }
}

/// Runs the benchmark.
pub async fn measure(options: &FanoutOptions) -> Result<FanoutReport, BenchError> {
    let (Some(&smallest), Some(&largest)) =
        (options.sizes.iter().min(), options.sizes.iter().max())
    else {
        return Err(BenchError::Options("no group size".into()));
    };
    if smallest < 2 || options.message_bytes == 0 || options.messages == 0 {
        return Err(BenchError::Options(
            "groups need 2 members or more, and messages at least one byte".into(),
        ));
    }
    let server = ServerUnderTest::given_or_started(options.server.as_deref())?;
    let http = reqwest::Client::new();
    let registering = Instant::now();
    let members =
        BenchDevice::register_many(&http, server.url(), &run_prefix('f'), largest, 32).await?;
    let register_seconds = registering.elapsed().as_secs_f64();
    let (sender, receiver) = (&members[0], &members[1]);
    let ws = server.ws_url();

    let mut sends = Vec::new();
    for &size in &options.sizes {
        let others = members[1..size].iter().map(|d| d.device);
        let (group, epoch) = sender.create_group(&http, server.url(), others).await?;
        sends.push(Sending {
            group,
            epoch,
            in_flight: options.in_flight,
            data: vec![0x5a; options.message_bytes],
        });
    }
    // Sessions opened once the groups exist, as members that connect.
    let listener = listen(receiver.open_session(&ws).await?);
    let mut session = sender.open_session(&ws).await?;
    for send in &sends {
        send.run(&mut session, options.messages / 10 + 1).await?;
    }
    // The sizes take turns, so that the store's growth over the run weighs
    // on each alike.
    let per_round = options.messages.div_ceil(ROUNDS);
    let mut spent = vec![(0.0f64, 0.0f64); sends.len()];
    for _ in 0..ROUNDS {
        for (send, (cpu, seconds)) in sends.iter().zip(spent.iter_mut()) {
            let before = server.usage()?;
            let start = Instant::now();
            send.run(&mut session, per_round).await?;
            *seconds += start.elapsed().as_secs_f64();
            if let (Some(before), Some(after)) = (before, server.usage()?) {
                *cpu += after.cpu_seconds - before.cpu_seconds;
            }
        }
    }
    let _ = session.close(None).await;
    let pushed = listener.finish().await?;
    let sent = (per_round * ROUNDS) as f64;
    let sizes: Vec<SizeFigures> = options
        .sizes
        .iter()
        .zip(spent)
        .map(|(&members, (cpu, seconds))| SizeFigures {
            members,
            cpu_us_per_msg: cpu * 1e6 / sent,
            msgs_per_s: sent / seconds,
        })
        .collect();
    let cost = |members: usize| {
        sizes
            .iter()
            .find(|s| s.members == members)
            .map_or(0.0, |s| s.cpu_us_per_msg)
    };
    // Too few messages to register any CPU time give no ratio (0).
    let ratio_largest_to_smallest = if cost(smallest) > 0.0 {
        cost(largest) / cost(smallest)
    } else {
        0.0
    };
    Ok(FanoutReport {
        messages: options.messages,
        message_bytes: options.message_bytes,
        register_seconds,
        sizes,
        pushed,
        ratio_largest_to_smallest,
    })
}

/// One sender's messages to one group.
struct Sending {
    group: GroupId,
    epoch: u64,
    in_flight: usize,
    data: Vec<u8>,
}

impl Sending {
    /// Sends `count` messages, at most `in_flight` unanswered at a time, and
    /// returns once every one is answered as durable.
    async fn run(&self, session: &mut Session, count: usize) -> Result<(), BenchError> {
        let (mut sent, mut answered) = (0usize, 0usize);
        while answered < count {
            while sent < count && sent - answered < self.in_flight {
                sent += 1;
                let request = SessionRequest::Send {
                    id: sent as u64,
                    group: self.group,
                    message_id: MessageId::random(),
                    epoch: self.epoch,
                    data: self.data.clone(),
                };
                session
                    .feed(Message::text(serde_json::to_string(&request)?))
                    .await?;
            }
            session.flush().await?;
            let frame = tokio::time::timeout(ANSWER_TIMEOUT, session.next())
                .await
                .map_err(|_| BenchError::Protocol("no answer from the server".into()))?
                .ok_or_else(|| BenchError::Protocol("the server ended the session".into()))??;
            let Message::Text(text) = frame else {
                continue;
            };
            match serde_json::from_str::<PushEvent>(&text)? {
                PushEvent::Sent { .. } => answered += 1,
                PushEvent::Refused { error, .. } => {
                    return Err(BenchError::Protocol(format!(
                        "a message was refused: {}",
                        error.error
                    )));
                }
                PushEvent::Group { .. } | PushEvent::Inbox => {}
            }
        }
        Ok(())
    }
}

/// Turns the group sizes take, each sending a share of the messages.
const ROUNDS: usize = 5;
/// How long the server may take to answer one message.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The listening member stops once no push came for this long.
const PUSH_IDLE: Duration = Duration::from_millis(500);

/// A connected member counting the group pushes it receives.
struct Listener {
    task: JoinHandle<Result<u64, BenchError>>,
}

fn listen(mut session: Session) -> Listener {
    let task = tokio::spawn(async move {
        let mut pushed = 0u64;
        let mut started = false;
        loop {
            // Wait as long as it takes for the first push, then until the
            // pushes stop.
            let wait = if started { PUSH_IDLE } else { ANSWER_TIMEOUT };
            match tokio::time::timeout(wait, session.next()).await {
                Err(_) => break,
                Ok(None) => break,
                Ok(Some(frame)) => {
                    if let Message::Text(text) = frame?
                        && let PushEvent::Group { .. } = serde_json::from_str(&text)?
                    {
                        pushed += 1;
                        started = true;
                    }
                }
            }
        }
        let _ = session.close(None).await;
        Ok(pushed)
    });
    Listener { task }
}

impl Listener {
    async fn finish(self) -> Result<u64, BenchError> {
        self.task
            .await
            .map_err(|e| BenchError::Protocol(e.to_string()))?
    }
}

impl fmt::Display for FanoutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fanout: {} messages of {} bytes per group size, one sender, one member connected ({} pushed)",
            self.messages, self.message_bytes, self.pushed
        )?;
        writeln!(
            f,
            "  {:>8}  {:>14}  {:>10}",
            "members", "server µs/msg", "msgs/s"
        )?;
        for size in &self.sizes {
            writeln!(
                f,
                "  {:>8}  {:>14.1}  {:>10.0}",
                size.members, size.cpu_us_per_msg, size.msgs_per_s
            )?;
        }
        if let (Some(first), Some(last)) = (self.sizes.first(), self.sizes.last()) {
            writeln!(
                f,
                "  cost({}) / cost({}) = {:.2}",
                last.members, first.members, self.ratio_largest_to_smallest
            )?;
        }
        write!(
            f,
            "  (registering {} members took {:.1} s)",
            self.sizes.iter().map(|s| s.members).max().unwrap_or(0),
            self.register_seconds
        )
    }
}
