//! `rempart-bench`: runs one of Rempart's benchmarks and prints its figures.

use std::error::Error;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rempart_bench::directory::{self, DirectoryOptions, StoreKind};

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
    match &cli.benchmark {
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
    }
}
