//! `rempart-server`: serves the Rempart API until SIGINT or SIGTERM.
//!
//! Prints `listening on ADDR` on stdout once ready; logs go to stderr
//! (filter with `RUST_LOG`, default `info`).

use std::fmt;
use std::future::Future;
use std::io::{self, IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use rempart_proto::limits::MAX_BODY_BYTES;
use rempart_proto::local::{error_chain, parse_nonzero_duration};
use rempart_server::{
    Database, Rate, RateLimits, RateParseError, Server, ServerConfig, WitnessPolicy,
};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Rempart server: delivery service, accounts, KeyPackages and push. It holds
/// only ciphertext and public keys.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7800")]
    listen: SocketAddr,
    /// Directory holding the directory's keys and, by default, the SQLite
    /// database (created with mode 0700).
    #[arg(long, default_value = "./rempart-data")]
    data: PathBuf,
    /// The database: sqlite:PATH (default: rempart.sqlite3 in --data), or
    /// postgres://USER@HOST/DB for several nodes sharing one database.
    #[arg(
        long,
        env = "REMPART_DATABASE",
        value_name = "URL",
        hide_env_values = true
    )]
    database: Option<Database>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// How often the key-transparency directory publishes an epoch when
    /// something changed (e.g. 200ms, 1s, 2m).
    #[arg(long, default_value = "1s", value_parser = parse_nonzero_duration)]
    epoch_interval: Duration,
    /// How long a client has to send a request's head (request line and
    /// headers) before its connection is closed.
    #[arg(long, default_value = "10s", value_parser = parse_nonzero_duration)]
    header_read_timeout: Duration,
    /// How long a connection may carry nothing before it is closed (HTTP/1.1
    /// connections waiting for a next request are closed sooner, by the
    /// header-read timeout).
    #[arg(long, default_value = "60s", value_parser = parse_nonzero_duration)]
    idle_timeout: Duration,
    /// Most connections at once, push sessions included; beyond, a new
    /// connection is closed as it is accepted.
    #[arg(long, default_value_t = rempart_server::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Most push sessions one device may hold; a newer one ends the oldest.
    #[arg(long, default_value_t = rempart_server::DEFAULT_MAX_SESSIONS_PER_DEVICE)]
    max_sessions_per_device: usize,
    /// How often a silent push session is pinged; one silent for two
    /// intervals is closed.
    #[arg(long, default_value = "30s", value_parser = parse_nonzero_duration)]
    session_ping_interval: Duration,
    /// The time every request body gets to arrive, whatever its length.
    #[arg(long, default_value = "10s", value_parser = parse_nonzero_duration)]
    body_read_allowance: Duration,
    /// The slowest a request body may arrive beyond that allowance, in
    /// bytes a second (a stalled body is cut off).
    #[arg(long, default_value_t = 16 * 1024)]
    min_body_rate: u64,
    /// A witness whose cosignatures the directory accepts and serves (its
    /// public key, base64, as `rempart-witness key` prints it; repeatable).
    /// Without any, no cosignature is taken.
    #[arg(long = "witness", value_name = "KEY")]
    witnesses: Vec<rempart_proto::PublicKey>,
    /// Accounts registered per source address (COUNT/PERIOD, e.g. 10/h,
    /// 600/min, 5/d; `off` for none). IPv6 addresses count by /64.
    #[arg(long, value_name = "RATE", default_value_t = Limit(RateLimits::DEFAULT.registrations))]
    limit_registrations: Limit,
    /// Device lists published per account (each is permanent in the
    /// directory).
    #[arg(long, value_name = "RATE", default_value_t = Limit(RateLimits::DEFAULT.device_lists))]
    limit_device_lists: Limit,
    /// KeyPackages claimed per claiming account (a batch counts each user).
    #[arg(long, value_name = "RATE", default_value_t = Limit(RateLimits::DEFAULT.claims))]
    limit_claims: Limit,
    /// KeyPackage claims of one user by other accounts, per claimed user.
    #[arg(long, value_name = "RATE", default_value_t = Limit(RateLimits::DEFAULT.claims_of_user))]
    limit_claims_of_user: Limit,
    /// Messages and commits per device.
    #[arg(long, value_name = "RATE", default_value_t = Limit(RateLimits::DEFAULT.sends))]
    limit_sends: Limit,
    /// KiB of messages and commits per account.
    #[arg(long, value_name = "RATE", default_value_t = Limit(RateLimits::DEFAULT.send_kib))]
    limit_send_kib: Limit,
    /// Directory lookups and device-list reads per source address.
    #[arg(long, value_name = "RATE", default_value_t = Limit(RateLimits::DEFAULT.lookups))]
    limit_lookups: Limit,
    /// Device-linking attempts per source address.
    #[arg(long, value_name = "RATE", default_value_t = Limit(RateLimits::DEFAULT.links))]
    limit_links: Limit,
    /// Registration by invitation only: FILE lists the codes, one per line,
    /// each admitting one account (re-read at every registration).
    #[arg(long, value_name = "FILE")]
    invitations: Option<PathBuf>,
    /// Turns every rate limit off (benchmarks; never on an open server).
    #[arg(long)]
    no_rate_limits: bool,
}

/// A rate limit as a flag gives it: a rate, or `off`.
#[derive(Debug, Clone, Copy)]
struct Limit(Option<Rate>);

impl FromStr for Limit {
    type Err = RateParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim() == "off" {
            return Ok(Self(None));
        }
        text.parse().map(|rate| Self(Some(rate)))
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(rate) => rate.fmt(f),
            None => f.write_str("off"),
        }
    }
}

impl Args {
    fn rate_limits(&self) -> RateLimits {
        if self.no_rate_limits {
            return RateLimits::UNLIMITED;
        }
        RateLimits {
            registrations: self.limit_registrations.0,
            device_lists: self.limit_device_lists.0,
            claims: self.limit_claims.0,
            claims_of_user: self.limit_claims_of_user.0,
            sends: self.limit_sends.0,
            send_kib: self.limit_send_kib.0,
            lookups: self.limit_lookups.0,
            links: self.limit_links.0,
        }
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            // Help and version go to stdout and are not failures.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
    raise_open_files_limit();
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
        .and_then(|runtime| runtime.block_on(serve(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rempart-server: {}", error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = shutdown_signal()?;
    let rate_limits = args.rate_limits();
    let mut config = ServerConfig::new(args.listen, args.data);
    config.rate_limits = rate_limits;
    config.invitations = args.invitations;
    config.database = args.database;
    config.max_body_bytes = args.max_body_bytes;
    config.epoch_interval = args.epoch_interval;
    config.header_read_timeout = args.header_read_timeout;
    config.idle_timeout = args.idle_timeout;
    config.max_connections = args.max_connections;
    config.max_sessions_per_device = args.max_sessions_per_device;
    config.session_ping_interval = args.session_ping_interval;
    config.body_read_allowance = args.body_read_allowance;
    config.min_body_rate = args.min_body_rate;
    if args.witnesses.is_empty() {
        tracing::warn!(
            "no --witness KEY: the directory takes no cosignatures, and clients that require witnesses will refuse new keys"
        );
    }
    config.witnesses = WitnessPolicy::Only(args.witnesses);
    let server = Server::bind(config).await?;
    let addr = server.local_addr();
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {addr}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, "serving");
    server.run(shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: every connection,
/// and so every idle push session, holds a descriptor, and the usual soft
/// limit of 1024 would cap the server at about a thousand sessions.
fn raise_open_files_limit() {
    let limit = getrlimit(Resource::Nofile);
    let show = |value: Option<u64>| value.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    if limit.current == limit.maximum {
        tracing::info!(limit = %show(limit.current), "open files limit");
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!(
            from = %show(limit.current),
            to = %show(limit.maximum),
            "raised the open files limit to its hard limit"
        ),
        Err(error) => tracing::warn!(
            %error,
            limit = %show(limit.current),
            "could not raise the open files limit"
        ),
    }
}

/// Resolves on the first SIGINT or SIGTERM.
fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    })
}
