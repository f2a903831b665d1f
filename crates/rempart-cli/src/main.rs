//! `rempart`: the command line of the Rempart messenger.
//!
//! Thin by design: every decision is made by `rempart-client`; this file
//! parses arguments, calls the engine and prints what it reports.
//!
//! Exit status: 0 on success, 1 on error, 2 on a usage error, 3 when a
//! security alert was raised.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rempart_client::{Client, ClientError, Event};
use rempart_proto::UserName;
use serde_json::json;

/// End-to-end encrypted messaging whose server cannot read, nor silently add
/// a device or a member.
#[derive(Debug, Parser)]
#[command(name = "rempart", version)]
struct Cli {
    /// Directory holding this device's keys and messages.
    #[arg(long, global = true, env = "REMPART_HOME")]
    home: Option<PathBuf>,
    /// Print one JSON object per line on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an account and this first device on a server.
    Init {
        /// The server's URL, e.g. http://127.0.0.1:7800.
        #[arg(long)]
        server: String,
        /// Your user name: 3 to 32 characters of a-z, 0-9, '.', '_' or '-'.
        #[arg(long)]
        name: UserName,
    },
    /// Show this account and device.
    Whoami,
    /// Send a message to a user (in your 1:1 conversation with them).
    Send {
        /// The recipient's user name.
        #[arg(long)]
        to: UserName,
        /// The message.
        text: String,
    },
    /// Fetch and show everything new.
    Sync,
}

/// Exit status when a security alert was raised.
const EXIT_ALERT: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = Output { json: cli.json };
    match runtime.block_on(run(cli, &out)) {
        Ok(code) => code,
        Err(ClientError::Alert(alert)) => {
            out.event(&Event::from(alert));
            ExitCode::from(EXIT_ALERT)
        }
        Err(e) => {
            eprintln!("error: {}", explain(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, out: &Output) -> Result<ExitCode, ClientError> {
    let home = match cli.home {
        Some(home) => home,
        None => default_home()?,
    };
    match cli.command {
        Command::Init { server, name } => {
            let client = Client::create_account(&home, &server, name).await?;
            let who = client.whoami();
            out.line(
                json!({"kind": "account_created", "user": who.user, "device": who.device,
                       "server": who.server, "account_fingerprint": who.account_fingerprint}),
                format!(
                    "created account {} on {}\ndevice {}\naccount key fingerprint: {}",
                    who.user, who.server, who.device, who.account_fingerprint
                ),
            );
        }
        Command::Whoami => {
            let who = Client::open(&home)?.whoami();
            out.line(
                json!({"kind": "whoami", "user": who.user, "device": who.device, "server": who.server,
                       "account_fingerprint": who.account_fingerprint,
                       "device_fingerprint": who.device_fingerprint}),
                format!(
                    "user: {}\ndevice: {}\nserver: {}\naccount key fingerprint: {}\ndevice key fingerprint: {}",
                    who.user, who.device, who.server, who.account_fingerprint, who.device_fingerprint
                ),
            );
        }
        Command::Send { to, text } => {
            let mut client = Client::open(&home)?;
            let id = client.send_text(&to, &text).await?;
            out.line(
                json!({"kind": "sent", "conversation": to, "message_id": id}),
                format!("sent to {to}"),
            );
        }
        Command::Sync => {
            let mut client = Client::open(&home)?;
            let events = client.sync().await?;
            for event in &events {
                out.event(event);
            }
            if events.iter().any(Event::is_alert) {
                return Ok(ExitCode::from(EXIT_ALERT));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn default_home() -> Result<PathBuf, ClientError> {
    dirs::data_dir()
        .map(|d| d.join("rempart"))
        .ok_or_else(|| ClientError::NoAccount {
            home: PathBuf::from("(no data directory: set --home or REMPART_HOME)"),
        })
}

/// The error's message, with a hint where the engine's own words need one.
fn explain(e: &ClientError) -> String {
    match e {
        ClientError::Network { .. } => format!("{e}\nis the server running, and is the URL right?"),
        _ => e.to_string(),
    }
}

struct Output {
    json: bool,
}

impl Output {
    fn line(&self, json: serde_json::Value, text: String) {
        let mut stdout = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) is not an error worth reporting.
        let _ = if self.json {
            writeln!(stdout, "{json}")
        } else {
            writeln!(stdout, "{text}")
        };
    }

    fn event(&self, event: &Event) {
        let json = serde_json::to_value(event).unwrap_or_else(|_| json!({"kind": "unprintable"}));
        self.line(json, describe(event));
    }
}

fn describe(event: &Event) -> String {
    match event {
        Event::Message {
            conversation,
            sender,
            text,
            ..
        } => format!("[{conversation}] {sender}: {text}"),
        Event::MemberAdded {
            conversation,
            sender,
            user,
            device,
        } => {
            format!("[{conversation}] {sender} added {user} (device {device})")
        }
        Event::MemberRemoved {
            conversation,
            sender,
            user,
            device,
        } => {
            format!("[{conversation}] {sender} removed {user} (device {device})")
        }
        Event::Undecryptable {
            conversation,
            reason,
            ..
        } => {
            format!("[{conversation}] could not read an entry: {reason}")
        }
        Event::Alert { code, message, .. } => format!("SECURITY ALERT [{code}]: {message}"),
    }
}
