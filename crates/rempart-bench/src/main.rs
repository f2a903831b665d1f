//! `rempart-bench`: runs one of Rempart's benchmarks and prints its figures.

use std::error::Error;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use std::time::Duration;

use rempart_bench::catch_up::{self, CatchUpOptions};
use rempart_bench::connections::{self, ConnectionsOptions};
use rempart_bench::delivery::{self, DeliveryOptions};
use rempart_bench::directory::{self, DirectoryOptions, StoreKind};
use rempart_bench::fanout::{self, FanoutOptions};
use rempart_bench::first_contact::{self, FirstContactOptions};
use rempart_bench::server::ServerUnderTest;

/// Rempart's benchmarks. Figures go to stdout; see BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Smaller sizes: every subcommand finishes in under a minute.
    #[arg(long, global = true)]
    quick: bool,
    /// Print one JSON object, every figure a number, instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    benchmark: Benchmark,
}

#[derive(Debug, Subcommand)]
enum Benchmark {
    /// The key-transparency directory: akd's publish rate on the server's
    /// SQLite store and on akd's in-memory store, lookup proof size and
    /// verification time, memory with every user in.
    Directory(DirectoryArgs),
    /// Messages per second acknowledged durably and send-to-member latency,
    /// with devices on their WebSocket sessions; the storage ceiling in the
    /// same run; optionally the same workload through NATS JetStream.
    Delivery(DeliveryArgs),
    /// The server's CPU time per message as the group grows from 2 to
    /// 10,000 members.
    Fanout(FanoutArgs),
    /// Idle push sessions: the server's memory per open WebSocket session,
    /// how fast sessions open and the server's CPU time doing it.
    Connections(ConnectionsArgs),
    /// What waiting for the witnesses adds to a first message to a new
    /// contact: a server followed by a live witness against one without.
    FirstContact(FirstContactArgs),
    /// The client engine: a device's catch-up on a backlog of messages, and
    /// the memory of `rempart listen` with many conversations (needs the
    /// `rempart` and `rempart-server` binaries beside this one).
    CatchUp(CatchUpArgs),
}

#[derive(Debug, Args)]
struct CatchUpArgs {
    /// Messages in the backlog [default: 10000, 1000 with --quick].
    #[arg(long)]
    messages: Option<usize>,
    /// Conversations of the live client [default: 100, 10 with --quick].
    #[arg(long)]
    conversations: Option<usize>,
}

#[derive(Debug, Args)]
struct FirstContactArgs {
    /// First messages timed on each server; the median is reported
    /// [default: 11, 3 with --quick].
    #[arg(long)]
    iterations: Option<usize>,
}

#[derive(Debug, Args)]
struct DeliveryArgs {
    /// Connected devices [default: 1000].
    #[arg(long)]
    devices: Option<usize>,
    /// Devices per group [default: 2].
    #[arg(long)]
    group_size: Option<usize>,
    /// Bytes per message [default: 256].
    #[arg(long)]
    bytes: Option<usize>,
    /// Seconds of sending [default: 10, 3 with --quick].
    #[arg(long)]
    seconds: Option<u64>,
    /// Messages each device keeps in flight [default: 8].
    #[arg(long)]
    in_flight: Option<usize>,
    /// Use the server at this URL instead of starting one.
    #[arg(long)]
    server: Option<String>,
    /// Also run the workload through this reference relay.
    #[arg(long, value_enum)]
    peer: Option<Peer>,
    /// Also run this many real client engines, live, against the same
    /// server (end-to-end mode: real MLS, real stores).
    #[arg(long, value_name = "DEVICES")]
    end_to_end: Option<usize>,
    /// Where NATS listens, for `--peer nats`.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
}

/// A reference relay for `delivery --peer`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Peer {
    /// NATS with a file-backed JetStream stream.
    Nats,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    /// Group sizes, comma-separated [default: 2,100,1000,10000].
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Messages per group size [default: 20000, 5000 with --quick].
    #[arg(long)]
    messages: Option<usize>,
    /// Use the server at this URL (on this machine) instead of starting one.
    #[arg(long)]
    server: Option<String>,
}

#[derive(Debug, Args)]
struct ConnectionsArgs {
    /// Sessions to open, each by a device of its own new account [default:
    /// 10000, 1000 with --quick].
    #[arg(long)]
    connections: Option<usize>,
    /// WebSocket upgrades in flight at a time while opening [default: 64].
    #[arg(long)]
    parallel: Option<usize>,
    /// Use the server already running at this URL (no memory or CPU
    /// figures) instead of starting `rempart-server` from beside this
    /// binary.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
}

#[derive(Debug, Args)]
struct DirectoryArgs {
    /// Users in the directory [default: 100000, 10000 with --quick].
    #[arg(long)]
    users: Option<u64>,
    /// Updates per published epoch [default: 1000].
    #[arg(long)]
    batch: Option<u64>,
    /// Epochs of changed values published after the build [default: 10, 3
    /// with --quick].
    #[arg(long)]
    update_epochs: Option<u64>,
    /// Lookup proofs generated and verified [default: 200, 50 with --quick].
    #[arg(long)]
    lookups: Option<u64>,
    /// Give akd's storage manager its record cache (the server runs
    /// without one), for both stores.
    #[arg(long)]
    cache: bool,
    /// Limit that cache to this many MiB (implies --cache) [default: no
    /// limit].
    #[arg(long)]
    cache_mib: Option<u64>,
    /// Measure only this store, in this process, and print its figures as
    /// JSON. Without it each store is measured in a child process of its
    /// own, so that each has its own memory figures.
    #[arg(long, value_enum)]
    store: Option<StoreKind>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            let mut message = format!("rempart-bench: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark `cli` names and returns what to print.
fn run(cli: &Cli) -> Result<String, Box<dyn Error>> {
    let print = |json: String, text: String| if cli.json { json } else { text };
    match &cli.benchmark {
        Benchmark::Delivery(args) => {
            let defaults = if cli.quick {
                DeliveryOptions::quick()
            } else {
                DeliveryOptions::full()
            };
            let options = DeliveryOptions {
                devices: args.devices.unwrap_or(defaults.devices),
                group_size: args.group_size.unwrap_or(defaults.group_size),
                message_bytes: args.bytes.unwrap_or(defaults.message_bytes),
                duration: args.seconds.map_or(defaults.duration, Duration::from_secs),
                in_flight: args.in_flight.unwrap_or(defaults.in_flight),
                server: args.server.clone(),
                nats: args.peer.map(|Peer::Nats| args.nats_url.clone()),
                end_to_end: args.end_to_end,
            };
            let report = tokio::runtime::Runtime::new()?.block_on(delivery::measure(&options))?;
            Ok(print(serde_json::to_string(&report)?, report.to_string()))
        }
        Benchmark::Fanout(args) => {
            let defaults = if cli.quick {
                FanoutOptions::quick()
            } else {
                FanoutOptions::full()
            };
            let options = FanoutOptions {
                sizes: args.sizes.clone().unwrap_or(defaults.sizes),
                messages: args.messages.unwrap_or(defaults.messages),
                server: args.server.clone(),
                ..defaults
            };
            let report = tokio::runtime::Runtime::new()?.block_on(fanout::measure(&options))?;
            Ok(print(serde_json::to_string(&report)?, report.to_string()))
        }
        Benchmark::Directory(args) => {
            let defaults = if cli.quick {
                DirectoryOptions::quick()
            } else {
                DirectoryOptions::full()
            };
            let options = DirectoryOptions {
                users: args.users.unwrap_or(defaults.users),
                batch: args.batch.unwrap_or(defaults.batch),
                update_epochs: args.update_epochs.unwrap_or(defaults.update_epochs),
                lookups: args.lookups.unwrap_or(defaults.lookups),
                cache: args.cache || args.cache_mib.is_some(),
                cache_mib: args.cache_mib,
            };
            if let Some(store) = args.store {
                let runtime = tokio::runtime::Runtime::new()?;
                let figures = runtime.block_on(directory::measure_store(store, &options))?;
                return Ok(serde_json::to_string(&figures)?);
            }
            let report = directory::measure_in_children(&std::env::current_exe()?, &options)?;
            if cli.json {
                Ok(serde_json::to_string(&report)?)
            } else {
                Ok(report.to_string())
            }
        }
        Benchmark::Connections(args) => {
            let defaults = if cli.quick {
                ConnectionsOptions::quick()
            } else {
                ConnectionsOptions::full()
            };
            let options = ConnectionsOptions {
                connections: args.connections.unwrap_or(defaults.connections),
                open_parallel: args.parallel.unwrap_or(defaults.open_parallel),
                ..defaults
            };
            let server = ServerUnderTest::given_or_started(args.server.as_deref())?;
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime.block_on(connections::measure(&server, &options))?;
            if cli.json {
                Ok(serde_json::to_string(&report)?)
            } else {
                Ok(report.to_string())
            }
        }
        Benchmark::CatchUp(args) => {
            let defaults = if cli.quick {
                CatchUpOptions::quick()
            } else {
                CatchUpOptions::full()
            };
            let options = CatchUpOptions {
                messages: args.messages.unwrap_or(defaults.messages),
                conversations: args.conversations.unwrap_or(defaults.conversations),
            };
            let report = tokio::runtime::Runtime::new()?.block_on(catch_up::measure(&options))?;
            Ok(print(serde_json::to_string(&report)?, report.to_string()))
        }
        Benchmark::FirstContact(args) => {
            let defaults = if cli.quick {
                FirstContactOptions::quick()
            } else {
                FirstContactOptions::full()
            };
            let options = FirstContactOptions {
                iterations: args.iterations.unwrap_or(defaults.iterations),
            };
            let report =
                tokio::runtime::Runtime::new()?.block_on(first_contact::measure(&options))?;
            Ok(print(serde_json::to_string(&report)?, report.to_string()))
        }
    }
}
