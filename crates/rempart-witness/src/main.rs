//! `rempart-witness`: follows a Rempart server's key-transparency directory,
//! verifies and cosigns each epoch, until SIGINT or SIGTERM.
//!
//! `rempart-witness --server URL --data DIR [--listen ADDR] [--poll 1s]`
//! steps every poll interval (see the library docs for what a step checks).
//! With `--listen` it serves its cosignatures and evidence, and prints
//! `witness listening on ADDR` on stdout once ready. Once it holds evidence
//! of misbehaviour it cosigns nothing more for that server: it stops
//! following (and exits, unless it serves) until an operator has looked.
//!
//! `rempart-witness key --data DIR` prints the witness's public key (base64,
//! what `rempart init --witness KEY` takes), creating it if there is none.
//!
//! Logs go to stderr (filter with `RUST_LOG`, default `info`).

use std::future::Future;
use std::io::{self, IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rempart_proto::local::{error_chain, parse_nonzero_duration};
use rempart_witness::{StepOutcome, Witness, WitnessError, router, witness_key};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// Rempart witness: checks that a server's key-transparency directory only
/// grows and never shows two versions of one epoch, and cosigns each epoch
/// it verified.
#[derive(Debug, Parser)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Base URL of the Rempart server to witness.
    #[arg(long, value_name = "URL", required = true)]
    server: Option<String>,
    /// Directory holding the witness key and state (created with mode 0700).
    #[arg(long, value_name = "DIR", required = true)]
    data: Option<PathBuf>,
    /// Serve cosignatures and evidence on this address (port 0 picks a
    /// free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// How often to check for new epochs (e.g. 200ms, 1s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_nonzero_duration)]
    poll: Duration,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the witness's public key, creating it if the data directory
    /// has none.
    Key {
        /// Directory holding the witness key.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
    },
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
    let result = match args.command {
        Some(Command::Key { data }) => print_key(data),
        None => match (args.server, args.data) {
            (Some(server), Some(data)) => tokio::runtime::Runtime::new()
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error>)
                .and_then(|runtime| runtime.block_on(run(server, data, args.listen, args.poll))),
            // clap requires both without a subcommand.
            _ => Err("--server URL and --data DIR are required".into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rempart-witness: {}", error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn print_key(data: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let key = witness_key(&data)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{}", String::from(key))?;
    stdout.flush()?;
    Ok(())
}

async fn run(
    server: String,
    data: PathBuf,
    listen: Option<SocketAddr>,
    poll: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = shutdown_signal()?;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let witness = Arc::new(Witness::open(&server, &data)?);
    tracing::info!(server, witness_key = %String::from(witness.public_key()), "witness started");
    let serving = match listen {
        Some(listen) => {
            let listener = tokio::net::TcpListener::bind(listen).await?;
            let addr = listener.local_addr()?;
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "witness listening on {addr}")?;
            stdout.flush()?;
            drop(stdout);
            tracing::info!(%addr, "serving");
            let stopped = stopped.clone();
            Some(tokio::spawn(
                axum::serve(listener, router(Arc::clone(&witness)))
                    .with_graceful_shutdown(stop_requested(stopped))
                    .into_future(),
            ))
        }
        None => None,
    };
    let halted = follow(&witness, poll, stopped.clone()).await;
    match serving {
        Some(serving) => {
            // A halted witness keeps serving its evidence until stopped.
            serving.await??;
        }
        None => {
            if let Some(error) = halted {
                return Err(error.into());
            }
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Steps every `poll` until stopped (returns `None`) or halted by evidence
/// of misbehaviour (returns the error).
async fn follow(
    witness: &Witness,
    poll: Duration,
    mut stopped: watch::Receiver<bool>,
) -> Option<WitnessError> {
    loop {
        // A step cut short leaves nothing half-done: what it verified is
        // recorded in one transaction, and posts are retried.
        let step = tokio::select! {
            step = witness.step() => step,
            _ = stopped.wait_for(|stop| *stop) => return None,
        };
        let again = match step {
            // More epochs may be waiting if it was far behind.
            Ok(StepOutcome::Cosigned { .. }) => true,
            Ok(StepOutcome::NothingPublished | StepOutcome::UpToDate { .. }) => false,
            // Logged at error level by the step itself.
            Err(WitnessError::Misbehaved(_)) => false,
            Err(error @ WitnessError::Halted { .. }) => {
                tracing::error!(error = %error_chain(&error), "witness halted");
                return Some(error);
            }
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "step failed; retrying at the next poll");
                false
            }
        };
        if !again {
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stopped.wait_for(|stop| *stop) => return None,
            }
        }
    }
}

async fn stop_requested(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
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
