//! `rempart-bench first-contact`: what waiting for the witnesses adds to a
//! first message to a new contact.
//!
//! A key new to a device is used only under a directory head that carries
//! the witness quorum, so a first message to a new contact may wait for a
//! witness to cosign the head its contact's proof is against. Two servers
//! run in this process, each with its own temporary data directory and the
//! server's default epoch interval ([`DEFAULT_EPOCH_INTERVAL`]):
//!
//! - the **witnessed** one is followed by a live witness
//!   (`rempart_witness::Witness`, stepping every [`WITNESS_POLL`], the
//!   witness binary's default poll), and Alice's account on it requires that
//!   witness;
//! - the **baseline** one has no witness, and Alice's account on it requires
//!   none.
//!
//! Then, [`FirstContactOptions::iterations`] times and on each server in
//! turn, a new contact registers and the directory publishes it (untimed:
//! the same wait with or without witnesses), and Alice sends it a first
//! message: `Client::send_text`, which looks the contact up, proves its
//! device list against the latest head, waits for the witness's
//! cosignature of that head (on the witnessed server), claims a
//! KeyPackage, founds the conversation and sends. Each round restarts the
//! witness's polling at a phase of its own, spread evenly over one poll.
//! The figures on each server are the median, the mean and the longest time of that
//! call; the added delay is the difference of the medians, and the ratio
//! their quotient.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rempart_client::{Client, ClientError};
use rempart_proto::{IdError, PublicKey, UserName};
use rempart_server::{
    DEFAULT_EPOCH_INTERVAL, RateLimits, Server, ServerConfig, ServerError, WitnessPolicy,
};
use rempart_witness::{Witness, WitnessError};
use serde::Serialize;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// How often the live witness steps: the witness binary's default poll.
pub const WITNESS_POLL: Duration = Duration::from_secs(1);

/// The first message.
const TEXT: &str = "Hello! Got your number from Sam.";

/// How much work one run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstContactOptions {
    /// First messages timed on each server.
    pub iterations: usize,
}

impl FirstContactOptions {
    /// The full run: 11 first messages on each server.
    pub fn full() -> Self {
        Self { iterations: 11 }
    }

    /// A quick run: 3 on each.
    pub fn quick() -> Self {
        Self { iterations: 3 }
    }
}

/// What the run measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FirstContactReport {
    /// Median time of a first message on the witnessed server, in ms.
    pub witnessed_ms: f64,
    /// Median time of a first message on the baseline server, in ms.
    pub baseline_ms: f64,
    /// Mean time of a first message on the witnessed server, in ms.
    pub witnessed_mean_ms: f64,
    /// Mean time of a first message on the baseline server, in ms.
    pub baseline_mean_ms: f64,
    /// Longest first message on the witnessed server, in ms.
    pub witnessed_max_ms: f64,
    /// Longest first message on the baseline server, in ms.
    pub baseline_max_ms: f64,
    /// `witnessed_ms - baseline_ms`.
    pub added_delay_ms: f64,
    /// `witnessed_ms / baseline_ms`.
    pub ratio: f64,
    /// First messages timed on each server.
    pub iterations: u64,
    /// The witness's poll interval, in ms.
    pub witness_poll_ms: f64,
    /// The servers' directory epoch interval, in ms.
    pub epoch_interval_ms: f64,
}

impl fmt::Display for FirstContactReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "first message to a new contact, median of {} (epochs every {:.0} ms, witness polling every {:.0} ms):",
            self.iterations, self.epoch_interval_ms, self.witness_poll_ms
        )?;
        writeln!(
            f,
            "  with a witness required: {:.0} ms (mean {:.0} ms, longest {:.0} ms)",
            self.witnessed_ms, self.witnessed_mean_ms, self.witnessed_max_ms
        )?;
        writeln!(
            f,
            "  without a witness:       {:.0} ms (mean {:.0} ms, longest {:.0} ms)",
            self.baseline_ms, self.baseline_mean_ms, self.baseline_max_ms
        )?;
        write!(
            f,
            "  added delay: {:.0} ms (ratio {:.2})",
            self.added_delay_ms, self.ratio
        )
    }
}

/// Why the run failed.
#[derive(Debug, thiserror::Error)]
pub enum FirstContactError {
    /// The options ask for no work.
    #[error("invalid options: {0}")]
    Options(String),
    /// A server could not start or stopped.
    #[error("server")]
    Server(#[from] ServerError),
    /// The witness could not start.
    #[error("witness")]
    Witness(#[from] WitnessError),
    /// The client engine failed.
    #[error("the client engine failed")]
    Engine(#[from] ClientError),
    /// A contact's name is not a valid user name.
    #[error("invalid user name")]
    UserName(#[from] IdError),
    /// A temporary directory could not be made.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A server running in this process until dropped.
struct InProcessServer {
    url: String,
    _data: TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl InProcessServer {
    /// A server that takes the cosignatures of `witnesses`.
    async fn start(witnesses: Vec<PublicKey>) -> Result<Self, FirstContactError> {
        let data = TempDir::new()?;
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = ServerConfig::new(listen, data.path().to_owned());
        config.rate_limits = RateLimits::UNLIMITED;
        config.witnesses = WitnessPolicy::Only(witnesses);
        let server = Server::bind(config).await?;
        let url = format!("http://{}", server.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            url,
            _data: data,
            stop: Some(stop),
        })
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs the benchmark.
pub async fn measure(
    options: &FirstContactOptions,
) -> Result<FirstContactReport, FirstContactError> {
    if options.iterations == 0 {
        return Err(FirstContactError::Options(
            "--iterations must be at least 1".into(),
        ));
    }
    let homes = TempDir::new()?;
    let witness_data = TempDir::new()?;
    let witnessed =
        InProcessServer::start(vec![rempart_witness::witness_key(witness_data.path())?]).await?;
    let baseline = InProcessServer::start(Vec::new()).await?;
    let witness = Arc::new(Witness::open(&witnessed.url, witness_data.path())?);
    let mut follow = follow(&witness);

    let mut alice_witnessed = Client::create_account(
        &homes.path().join("alice-witnessed"),
        &witnessed.url,
        "alice".parse()?,
    )
    .await?;
    alice_witnessed.set_witnesses(&[witness.public_key()], None)?;
    alice_witnessed.check_own_account().await?;
    let mut alice_baseline = Client::create_account(
        &homes.path().join("alice-baseline"),
        &baseline.url,
        "alice".parse()?,
    )
    .await?;

    let mut with = Vec::with_capacity(options.iterations);
    let mut without = Vec::with_capacity(options.iterations);
    for round in 0..options.iterations {
        // Each round restarts the witness's polling at another phase of
        // the server's epochs, spread evenly over one poll, so that the
        // rounds do not all meet the witness at the same point of its
        // cycle.
        follow.abort();
        let phase = WITNESS_POLL.mul_f64(round as f64 / options.iterations as f64);
        tokio::time::sleep(phase).await;
        follow = self::follow(&witness);
        let contact: UserName = format!("contact{round}").parse()?;
        with.push(
            first_message(&mut alice_witnessed, &witnessed.url, homes.path(), &contact).await?,
        );
        without
            .push(first_message(&mut alice_baseline, &baseline.url, homes.path(), &contact).await?);
    }
    follow.abort();

    let witnessed_ms = median_ms(&mut with);
    let baseline_ms = median_ms(&mut without);
    Ok(FirstContactReport {
        witnessed_ms,
        baseline_ms,
        witnessed_mean_ms: mean_ms(&with),
        baseline_mean_ms: mean_ms(&without),
        witnessed_max_ms: max_ms(&with),
        baseline_max_ms: max_ms(&without),
        added_delay_ms: witnessed_ms - baseline_ms,
        ratio: witnessed_ms / baseline_ms,
        iterations: options.iterations as u64,
        witness_poll_ms: WITNESS_POLL.as_secs_f64() * 1000.0,
        epoch_interval_ms: DEFAULT_EPOCH_INTERVAL.as_secs_f64() * 1000.0,
    })
}

/// Steps `witness` now and then every [`WITNESS_POLL`], as the witness
/// binary does, until aborted.
fn follow(witness: &Arc<Witness>) -> tokio::task::JoinHandle<()> {
    let witness = witness.clone();
    tokio::spawn(async move {
        loop {
            // A refusal is the server's misbehaviour, which an honest run
            // does not have; it would show as missing cosignatures.
            let _ = witness.step().await;
            tokio::time::sleep(WITNESS_POLL).await;
        }
    })
}

/// Registers `contact` on the server at `url` and waits until the directory
/// publishes it (untimed), then times `alice`'s first message to it.
async fn first_message(
    alice: &mut Client,
    url: &str,
    homes: &Path,
    contact: &UserName,
) -> Result<Duration, FirstContactError> {
    let home = homes.join(format!("{contact}-{}", url.replace([':', '/', '.'], "")));
    let registered = Client::create_account(&home, url, contact.clone()).await?;
    // Published (its owner requires no witness), so that what is timed is
    // the sender's part alone.
    registered.check_own_account().await?;
    let started = Instant::now();
    alice.send_text(contact, TEXT).await?;
    Ok(started.elapsed())
}

/// The median of `times`, in milliseconds (`times` is not empty).
fn median_ms(times: &mut [Duration]) -> f64 {
    times.sort_unstable();
    times
        .get(times.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The mean of `times`, in milliseconds (`times` is not empty).
fn mean_ms(times: &[Duration]) -> f64 {
    let total: f64 = times.iter().map(Duration::as_secs_f64).sum();
    total * 1000.0 / times.len().max(1) as f64
}

/// The longest of `times`, in milliseconds.
fn max_ms(times: &[Duration]) -> f64 {
    times.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
