//! `cargo bench -p rempart-bench --bench client`: the client engine's
//! overhead over openmls alone (see [`measure`] for what is measured).
//!
//! A bench target rather than a subcommand of the `rempart-bench` binary:
//! it needs `rempart-client`'s `bench` seams, which trust device lists
//! without proofs, and only dev-dependencies may enable them, so that no
//! binary a user runs (`rempart`, `rempart-server`) is ever built with them.
//!
//! ```sh
//! cargo bench -p rempart-bench --bench client                       # 2, 100 and 1,000 members
//! cargo bench -p rempart-bench --bench client -- --quick --json     # 2 and 100 members
//! cargo bench -p rempart-bench --bench client -- --sizes 2,10 --iterations 3
//! ```

// Its unit tests run in `tests/client.rs`, which includes it too.
#[cfg_attr(test, allow(unused_imports, dead_code))]
mod measure;

use std::process::ExitCode;

use clap::Parser;

use measure::{ClientOptions, measure};

/// The client engine against openmls alone: each MLS operation through
/// rempart-client (its SQLite store, its checks) against raw openmls with
/// in-memory storage, at several group sizes, the server out of both.
#[derive(Debug, Parser)]
struct Cli {
    /// Print one JSON object, every figure a number.
    #[arg(long)]
    json: bool,
    /// Smaller sizes and fewer rounds.
    #[arg(long)]
    quick: bool,
    /// Group sizes in members, comma-separated [default: 2,100,1000; 2,100
    /// with --quick].
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Times each operation is measured at each size; the median is
    /// reported [default: 11, 5 with --quick].
    #[arg(long)]
    iterations: Option<usize>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let defaults = if cli.quick {
        ClientOptions::quick()
    } else {
        ClientOptions::full()
    };
    let options = ClientOptions {
        sizes: cli.sizes.unwrap_or(defaults.sizes),
        iterations: cli.iterations.unwrap_or(defaults.iterations),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("client benchmark: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(measure(&options)) {
        Ok(report) => {
            if cli.json {
                match serde_json::to_string(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("client benchmark: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                println!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            let mut message = format!("client benchmark: {error}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
