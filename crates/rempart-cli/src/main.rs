//! `rempart`: the command line of the Rempart messenger.
//!
//! Thin by design: every decision is made by `rempart-client`; this file
//! parses arguments, calls the engine and prints what it reports.
//!
//! Exit status: 0 on success, 1 on error, 2 on a usage error, 3 when a
//! security alert was raised.

use std::io::IsTerminal as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};
use rempart_client::history::MessageState;
mod chat;
mod mail;

use rempart_client::at_rest::AtRestError;
use rempart_client::mail::account::{Endpoint, MailSetup, Security};
use rempart_client::session::Live;
use rempart_client::{Client, ClientError, DeliveryState, Event, NewAccount, Passphrase};
use rempart_proto::{DeviceId, PublicKey, UserName};
use serde_json::json;
use zeroize::Zeroizing;

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
    /// Create an account and its first device, or link this device to an
    /// existing account with a code from `rempart device link`.
    #[command(group(ArgGroup::new("how").required(true).args(["name", "link"])))]
    Init {
        /// The server's URL, e.g. http://127.0.0.1:7800; for a server of
        /// several nodes, their URLs separated by commas (requests fail over
        /// to the next node when one is down).
        #[arg(long)]
        server: String,
        /// Your user name: 3 to 32 characters of a-z, 0-9, '.', '_' or '-'.
        #[arg(long)]
        name: Option<UserName>,
        /// A linking code shown by `rempart device link` on your other device.
        #[arg(long)]
        link: Option<String>,
        /// An invitation code, for a server that registers by invitation
        /// only (its operator gives them).
        #[arg(long, value_name = "CODE", conflicts_with = "link")]
        invitation: Option<String>,
        /// Read the passphrase that encrypts this device's store from F
        /// (its whole content but a final line break). Without it,
        /// REMPART_PASSPHRASE_FILE, or else typed twice on the terminal.
        #[arg(long, value_name = "F")]
        passphrase_file: Option<PathBuf>,
        /// Keep this device's store unencrypted (anyone who copies the file
        /// reads every key and message; `whoami` warns).
        #[arg(long, conflicts_with = "passphrase_file")]
        no_passphrase: bool,
        /// Public key of a witness whose cosignature every directory head
        /// needs (repeat for several; see `rempart-witness key`).
        #[arg(long = "witness", value_name = "KEY")]
        witnesses: Vec<PublicKey>,
        /// How many of the witnesses must cosign (default: all).
        #[arg(long)]
        quorum: Option<usize>,
        /// Seconds a directory head may wait for its witnesses' cosignatures
        /// before it is an alert (default 60).
        #[arg(long, value_name = "SECS")]
        witness_grace: Option<u64>,
        /// Seconds to wait for the witnesses' cosignatures of a directory
        /// head that brings new keys (a new contact, device or account key)
        /// before refusing them (default 10).
        #[arg(long, value_name = "SECS")]
        witness_wait: Option<u64>,
    },
    /// Show this account and device.
    Whoami,
    /// Send a message to a user (in your 1:1 conversation) or to a group.
    #[command(group(ArgGroup::new("target").required(true).args(["to", "group"])))]
    Send {
        /// The recipient's user name.
        #[arg(long)]
        to: Option<UserName>,
        /// The group's name.
        #[arg(long)]
        group: Option<String>,
        /// The message.
        text: String,
    },
    /// Fetch and show everything new.
    Sync,
    /// The terminal messenger: your conversations, live (see README).
    Chat,
    /// Show a conversation's messages, oldest first, and mark it read.
    History {
        /// A user name (your 1:1 conversation with them) or a group name.
        conversation: String,
        /// How many messages [default: 50].
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only the messages before this one (its id, from an earlier page).
        #[arg(long, value_name = "ID")]
        before: Option<rempart_proto::MessageId>,
    },
    /// Stay connected and print events as they arrive, until interrupted
    /// (Ctrl-C or SIGTERM).
    Listen,
    /// Show the safety number with a user, or confirm it after comparing.
    Verify {
        /// The contact.
        user: UserName,
        /// The number you compared with the contact (marks them verified).
        #[arg(long)]
        confirm: Option<String>,
    },
    /// Check that the server's key directory only grew since the last audit:
    /// verifies every head's signature and akd's append-only proofs. Exits 0
    /// only if every proof checked.
    Audit,
    /// Show or change when this device rotates its keys in each conversation
    /// (an MLS self-update, for post-compromise security).
    UpdatePolicy {
        /// Seconds between self-updates (default one day).
        #[arg(long)]
        interval: Option<u32>,
        /// Sent messages between self-updates (default 100).
        #[arg(long)]
        after: Option<u32>,
    },
    /// Groups: create, add and remove members, leave, list.
    #[command(subcommand)]
    Group(GroupCommand),
    /// This account's devices: link a new one, list, remove.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// The passphrase that encrypts this device's store.
    #[command(subcommand)]
    Passphrase(PassphraseCommand),
    /// Mail through any IMAP and SMTP mailbox, signed and encrypted with
    /// OpenPGP (PGP/MIME): sending, receiving, reading, and the keys
    /// (this account's and its correspondents').
    #[command(subcommand)]
    Mail(MailCommand),
}

#[derive(Debug, Subcommand)]
enum MailCommand {
    #[command(flatten)]
    Mailbox(mail::MailboxCommand),
    /// OpenPGP certificates: this account's, one per mail address, and its
    /// correspondents', each with where it came from.
    #[command(subcommand)]
    Key(MailKeyCommand),
    /// Keep the mailbox an address's mail goes through (IMAP and SMTP
    /// servers, login and password, in this device's encrypted store), and
    /// make and publish the address's certificate if it has none.
    Setup {
        /// The mail address.
        #[arg(long)]
        address: String,
        /// The IMAP server, HOST:PORT.
        #[arg(long)]
        imap: String,
        /// The SMTP submission server, HOST:PORT.
        #[arg(long)]
        smtp: String,
        /// The login, for both servers.
        #[arg(long)]
        login: String,
        /// A file whose first line is the password, for both servers.
        #[arg(long)]
        password_file: PathBuf,
        /// TLS from the first byte (the default).
        #[arg(long, group = "security")]
        tls: bool,
        /// Plain connections upgraded with STARTTLS.
        #[arg(long, group = "security")]
        starttls: bool,
        /// No TLS: only to servers on this machine (a loopback address).
        #[arg(long, group = "security")]
        plain_on_loopback: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MailKeyCommand {
    /// Make an OpenPGP certificate (v4, Ed25519 and Curve25519) for a mail
    /// address and publish it: its fingerprint is bound to the address in
    /// the account-signed device list, which the directory proves. Its
    /// secret key stays in this account's devices' stores.
    Create {
        /// The mail address, e.g. alice@example.org.
        #[arg(long)]
        address: String,
        /// Make a new key in place of the address's current one (kept to
        /// read mail sent to it).
        #[arg(long)]
        replace: bool,
    },
    /// Print a certificate of this account in ASCII armor (for GnuPG).
    Export {
        /// Its mail address [default: the account's only one].
        address: Option<String>,
    },
    /// Import a correspondent's certificate (ASCII armor or binary) for the
    /// addresses its User IDs name, and show its fingerprint.
    Import {
        /// The certificate file.
        file: PathBuf,
    },
    /// Look up the certificate of a Rempart user's address on the server,
    /// accepted only with the directory's proofs.
    Lookup {
        /// The mail address.
        address: String,
    },
    /// Show the certificate kept for an address: its fingerprint and where
    /// it came from (own, proven by the directory, imported, verified).
    Show {
        /// The mail address.
        address: String,
    },
    /// Mark a correspondent's certificate as verified after comparing its
    /// fingerprint with them on another channel; accepts a changed one.
    Verify {
        /// The mail address.
        address: String,
        /// The fingerprint they told you (40 hex digits, spaces allowed).
        fingerprint: String,
    },
}

#[derive(Debug, Subcommand)]
enum PassphraseCommand {
    /// Re-encrypt this device's store under a new passphrase; a plain
    /// store is encrypted in place. The old passphrase comes as for every
    /// command; the new one from --new-passphrase-file F, or typed twice.
    Change {
        /// Read the new passphrase from F.
        #[arg(long, value_name = "F")]
        new_passphrase_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Create a group with all devices of all members.
    Create {
        /// The group's name, the same for every member.
        name: String,
        /// Members, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        members: Vec<UserName>,
    },
    /// Add a user (all of their devices).
    Add {
        /// The group.
        name: String,
        /// The user to add.
        user: UserName,
    },
    /// Remove a user (all of their devices).
    Remove {
        /// The group.
        name: String,
        /// The user to remove.
        user: UserName,
    },
    /// Leave a group with all your devices.
    Leave {
        /// The group.
        name: String,
    },
    /// Show a group's users and devices, with each device's key fingerprint.
    Members {
        /// The group.
        name: String,
    },
    /// List your conversations.
    List,
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Show a one-time code for a new device, then wait until it is linked.
    Link,
    /// List this account's devices.
    List,
    /// Remove a device from this account and from every conversation.
    Remove {
        /// The device to remove.
        device: DeviceId,
    },
}

/// Shown by `whoami` when no witness checks the directory.
const WITNESS_WARNING: &str = "warning: no witness configured: nothing independent checks that the server shows everyone the same directory (`rempart init --witness KEY`)";

/// Shown by `whoami` when the store is not encrypted.
const PLAIN_STORE_WARNING: &str = "warning: this device's store is not encrypted: whoever copies it reads every key and message (it was made with `--no-passphrase`, or by an earlier version)";

/// The variable naming a file that holds the store's passphrase.
const PASSPHRASE_FILE_VAR: &str = "REMPART_PASSPHRASE_FILE";

/// Opens the account in `home`, with its passphrase if its store is
/// encrypted: from the file named by REMPART_PASSPHRASE_FILE, or typed on
/// the terminal.
/// The first line of `path`: a password.
fn read_password(path: &Path) -> Result<Zeroizing<String>, ClientError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| ClientError::Io {
            path: path.to_owned(),
            source,
        })?,
    );
    let line = text.lines().next().unwrap_or_default();
    Ok(Zeroizing::new(line.to_owned()))
}

/// `rempart mail key …`.
async fn mail_key(
    command: MailKeyCommand,
    home: &Path,
    out: &Output,
) -> Result<Vec<Event>, ClientError> {
    let client = open(home)?;
    let shown = match command {
        MailKeyCommand::Create { address, replace } => {
            let key = client.create_mail_key(&address, replace).await?;
            out.line(
                json!({"kind": "mail_key_created", "address": key.address,
                       "fingerprint": key.fingerprint}),
                format!(
                    "mail key for {}\nfingerprint: {}\npublished: bound in your device list, proven by the directory from its next epoch",
                    key.address, key.fingerprint
                ),
            );
            Vec::new()
        }
        MailKeyCommand::Export { address } => {
            let armored = client.export_mail_key(address.as_deref())?;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(armored.as_bytes())
                .map_err(|source| ClientError::Io {
                    path: PathBuf::from("stdout"),
                    source,
                })?;
            Vec::new()
        }
        MailKeyCommand::Import { file } => {
            let bytes = std::fs::read(&file).map_err(|source| ClientError::Io {
                path: file.clone(),
                source,
            })?;
            client.import_mail_key(&bytes)?
        }
        MailKeyCommand::Lookup { address } => vec![client.lookup_mail_key(&address).await?],
        MailKeyCommand::Show { address } => vec![client.show_mail_key(&address)?],
        MailKeyCommand::Verify {
            address,
            fingerprint,
        } => vec![client.verify_mail_key(&address, &fingerprint)?],
    };
    for info in shown {
        let mut text = format!(
            "{}\nfingerprint: {}\nsource: {}",
            info.address,
            info.fingerprint,
            info.source.as_str()
        );
        if let Some(user) = &info.user {
            text.push_str(&format!("\nrempart user: {user}"));
        }
        if let Some(epoch) = info.proven_at {
            text.push_str(&format!("\nproven at directory epoch {epoch}"));
        }
        if let Some(changed) = &info.changed_to {
            text.push_str(&format!(
                "\nCHANGED: the address now shows {changed}, not used until you verify it"
            ));
        }
        let value = mail::to_value(&info, "mail_key")?;
        out.line(value, text);
    }
    Ok(Vec::new())
}

fn open(home: &Path) -> Result<Client, ClientError> {
    let passphrase = if rempart_client::at_rest::needs_passphrase(home) {
        if let Some(file) = std::env::var_os(PASSPHRASE_FILE_VAR) {
            Some(Passphrase::from_file(Path::new(&file))?)
        } else if std::io::stdin().is_terminal() {
            Some(Passphrase::new(prompt(
                home,
                &format!("passphrase for {}: ", home.display()),
            )?)?)
        } else {
            None
        }
    } else {
        None
    };
    Client::open_with(home, passphrase.as_ref())
}

/// The passphrase for a new store: from `file`, the file named by
/// REMPART_PASSPHRASE_FILE, or typed twice on the terminal.
fn new_passphrase(home: &Path, file: Option<&Path>) -> Result<Passphrase, ClientError> {
    if let Some(file) = file {
        return Ok(Passphrase::from_file(file)?);
    }
    if let Some(file) = std::env::var_os(PASSPHRASE_FILE_VAR) {
        return Ok(Passphrase::from_file(Path::new(&file))?);
    }
    typed_twice(home)
}

/// A new passphrase typed twice on the terminal.
fn typed_twice(home: &Path) -> Result<Passphrase, ClientError> {
    if !std::io::stdin().is_terminal() {
        return Err(AtRestError::PassphraseNeeded.into());
    }
    let first = Passphrase::new(prompt(home, "passphrase for this device's store: ")?)?;
    let again = Passphrase::new(prompt(home, "the same passphrase again: ")?)?;
    if !first.same_as(&again) {
        return Err(AtRestError::PassphrasesDiffer.into());
    }
    Ok(first)
}

/// A line typed on the terminal without echo, wiped when dropped.
fn prompt(home: &Path, question: &str) -> Result<String, ClientError> {
    rpassword::prompt_password(question).map_err(|source| ClientError::Io {
        path: home.to_owned(),
        source,
    })
}

/// Exit status when a security alert was raised.
const EXIT_ALERT: u8 = 3;

/// How often a waiting link polls the server.
const LINK_POLL: Duration = Duration::from_millis(300);

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
    let events = match cli.command {
        Command::Init {
            server,
            name,
            link,
            invitation,
            passphrase_file,
            no_passphrase,
            witnesses,
            quorum,
            witness_grace,
            witness_wait,
        } => {
            let passphrase = if no_passphrase {
                None
            } else {
                Some(new_passphrase(&home, passphrase_file.as_deref())?)
            };
            let (client, verb) = match (name, link) {
                (Some(name), _) => {
                    let options = NewAccount {
                        invitation: invitation.as_deref(),
                        passphrase: passphrase.as_ref(),
                    };
                    (
                        Client::create_account_with(&home, &server, name, options).await?,
                        "created account",
                    )
                }
                (None, Some(code)) => (
                    Client::link_device_with(&home, &server, &code, LINK_POLL, passphrase.as_ref())
                        .await?,
                    "linked this device to account",
                ),
                (None, None) => unreachable_usage()?,
            };
            client.set_witnesses(&witnesses, quorum)?;
            if let Some(secs) = witness_grace {
                client.set_witness_grace(Duration::from_secs(secs))?;
            }
            if let Some(secs) = witness_wait {
                client.set_witness_wait(Duration::from_secs(secs))?;
            }
            if !witnesses.is_empty() {
                // This device is new key material: proven under a head its
                // witnesses cosigned, or an alert.
                client.check_own_account().await?;
            }
            let who = client.whoami();
            out.line(
                json!({"kind": "account_created", "user": who.user, "device": who.device,
                       "server": who.server, "account_fingerprint": who.account_fingerprint}),
                format!(
                    "{verb} {} on {}\ndevice {}\naccount key fingerprint: {}",
                    who.user, who.server, who.device, who.account_fingerprint
                ),
            );
            Vec::new()
        }
        Command::Whoami => {
            let who = open(&home)?.whoami();
            let witnesses = if who.witness_quorum == 0 {
                WITNESS_WARNING.to_owned()
            } else {
                format!("witness quorum: {}", who.witness_quorum)
            };
            let store = if who.store_encrypted {
                "store: encrypted with a passphrase"
            } else {
                PLAIN_STORE_WARNING
            };
            out.line(
                json!({"kind": "whoami", "user": who.user, "device": who.device, "server": who.server,
                       "account_fingerprint": who.account_fingerprint,
                       "device_fingerprint": who.device_fingerprint,
                       "witness_quorum": who.witness_quorum,
                       "warning": (who.witness_quorum == 0).then_some(WITNESS_WARNING),
                       "store_encrypted": who.store_encrypted,
                       "store_warning": (!who.store_encrypted).then_some(PLAIN_STORE_WARNING)}),
                format!(
                    "user: {}\ndevice: {}\nserver: {}\naccount key fingerprint: {}\ndevice key fingerprint: {}\n{witnesses}\n{store}",
                    who.user, who.device, who.server, who.account_fingerprint, who.device_fingerprint
                ),
            );
            Vec::new()
        }
        Command::Send { to, group, text } => {
            let mut client = open(&home)?;
            let (conversation, outgoing) = match (to, group) {
                (Some(to), _) => {
                    let outgoing = client.send_text(&to, &text).await?;
                    (to.to_string(), outgoing)
                }
                (None, Some(group)) => {
                    let outgoing = client.send_to_group(&group, &text).await?;
                    (group, outgoing)
                }
                (None, None) => unreachable_usage()?,
            };
            let (kind, said) = match outgoing.state {
                DeliveryState::Sent => ("sent", format!("sent to {conversation}")),
                DeliveryState::Queued => (
                    "queued",
                    format!(
                        "queued for {conversation}: the server cannot be reached; the next command that reaches it (or `rempart listen`) sends it"
                    ),
                ),
            };
            out.line(
                json!({"kind": kind, "conversation": conversation, "message_id": outgoing.id,
                       "state": outgoing.state}),
                said,
            );
            Vec::new()
        }
        Command::Sync => open(&home)?.sync().await?,
        Command::Listen => return listen(open(&home)?, out).await,
        Command::Chat => {
            chat::run(open(&home)?).await?;
            Vec::new()
        }
        Command::History {
            conversation,
            limit,
            before,
        } => {
            let client = open(&home)?;
            for m in client.history(&conversation, limit, before.as_ref())? {
                out.line(
                    json!({"kind": "history", "conversation": conversation, "id": m.id,
                           "sender": m.sender, "time": m.time, "text": m.text,
                           "state": m.state, "reason": m.reason}),
                    match (m.state, &m.reason) {
                        (MessageState::Queued, _) => {
                            format!("[{}] {}: {} (queued)", m.time, m.sender, m.text)
                        }
                        (MessageState::Failed, reason) => format!(
                            "[{}] {}: {} (not sent: {})",
                            m.time,
                            m.sender,
                            m.text,
                            reason.as_deref().unwrap_or("refused")
                        ),
                        _ => format!("[{}] {}: {}", m.time, m.sender, m.text),
                    },
                );
            }
            Vec::new()
        }
        Command::Verify { user, confirm } => {
            let client = open(&home)?;
            let number = match confirm {
                Some(typed) => client.confirm_safety_number(&user, &typed).await?,
                None => client.safety_number(&user).await?,
            };
            let mut text = format!("safety number with {user}:\n{}", number.safety_number);
            if number.key_changed {
                text.push_str(&format!(
                    "\n{user}'s account key changed: compare this new number with {user} before confirming it"
                ));
            }
            text.push_str(&format!(
                "\nverified: {}",
                if number.verified { "yes" } else { "no" }
            ));
            out.line(
                json!({"kind": "safety_number", "user": user, "safety_number": number.safety_number,
                       "verified": number.verified, "key_changed": number.key_changed}),
                text,
            );
            if !out.json {
                out.line(json!(null), qr(&number.safety_number));
            }
            Vec::new()
        }
        Command::Audit => {
            let report = open(&home)?.audit().await?;
            let text = if report.proofs_checked == 0 {
                format!(
                    "directory verified to epoch {}: nothing new to audit since epoch {}",
                    report.verified_to_epoch, report.from_epoch
                )
            } else {
                format!(
                    "directory verified append-only from epoch {} to epoch {} ({} heads, {} proofs checked)",
                    report.from_epoch,
                    report.verified_to_epoch,
                    report.heads_checked,
                    report.proofs_checked
                )
            };
            out.line(
                json!({"kind": "audit", "from_epoch": report.from_epoch,
                       "verified_to_epoch": report.verified_to_epoch,
                       "heads_checked": report.heads_checked,
                       "proofs_checked": report.proofs_checked}),
                text,
            );
            Vec::new()
        }
        Command::UpdatePolicy { interval, after } => {
            let client = open(&home)?;
            let mut policy = client.update_policy()?;
            if let Some(interval) = interval.filter(|i| *i > 0) {
                policy.interval_secs = i64::from(interval);
            }
            if let Some(after) = after.filter(|a| *a > 0) {
                policy.after_messages = u64::from(after);
            }
            client.set_update_policy(policy)?;
            out.line(
                json!({"kind": "update_policy", "interval_secs": policy.interval_secs,
                       "after_messages": policy.after_messages}),
                format!(
                    "self-update every {} s or after {} sent messages, checked at each sync",
                    policy.interval_secs, policy.after_messages
                ),
            );
            Vec::new()
        }
        Command::Group(command) => group(command, &home, out).await?,
        Command::Device(command) => device(command, &home, out).await?,
        Command::Mail(MailCommand::Key(command)) => mail_key(command, &home, out).await?,
        Command::Mail(MailCommand::Mailbox(command)) => {
            mail::run(command, &home, out).await?;
            Vec::new()
        }
        Command::Mail(MailCommand::Setup {
            address,
            imap,
            smtp,
            login,
            password_file,
            tls: _,
            starttls,
            plain_on_loopback,
        }) => {
            let security = if plain_on_loopback {
                Security::PlainOnLoopback
            } else if starttls {
                Security::Starttls
            } else {
                Security::Tls
            };
            let setup = MailSetup {
                address,
                imap: Endpoint::parse(&imap)?,
                smtp: Endpoint::parse(&smtp)?,
                login,
                password: read_password(&password_file)?,
                security,
            };
            let account = open(&home)?.setup_mail(setup).await?;
            let mut text = format!(
                "{}: IMAP {}, SMTP {}, as {} ({})\nfingerprint: {}",
                account.address,
                account.imap,
                account.smtp,
                account.login,
                account.security.as_str(),
                account.fingerprint
            );
            if account.key_created {
                text.push_str("\na new mail key was made and published");
            }
            let value = mail::to_value(&account, "mail_setup")?;
            out.line(value, text);
            Vec::new()
        }
        Command::Passphrase(PassphraseCommand::Change {
            new_passphrase_file,
        }) => {
            let client = open(&home)?;
            let new = match new_passphrase_file {
                Some(file) => Passphrase::from_file(&file)?,
                None => typed_twice(&home)?,
            };
            let was_encrypted = client.change_passphrase(&new)?;
            let said = if was_encrypted {
                "passphrase changed: the store is re-encrypted under the new one"
            } else {
                "the plain store was encrypted in place under the passphrase"
            };
            out.line(
                json!({"kind": "passphrase_changed", "was_encrypted": was_encrypted}),
                said.to_owned(),
            );
            Vec::new()
        }
    };
    for event in &events {
        out.event(event);
    }
    if events.iter().any(Event::is_alert) {
        return Ok(ExitCode::from(EXIT_ALERT));
    }
    Ok(ExitCode::SUCCESS)
}

async fn group(
    command: GroupCommand,
    home: &std::path::Path,
    out: &Output,
) -> Result<Vec<Event>, ClientError> {
    let mut client = open(home)?;
    let done = |action: &str, group: &str, user: Option<&UserName>, text: String| {
        out.line(
            json!({"kind": "done", "action": action, "group": group, "user": user}),
            text,
        );
    };
    match command {
        GroupCommand::Create { name, members } => {
            client.create_group(&name, &members).await?;
            let list = members
                .iter()
                .map(UserName::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            done(
                "group_create",
                &name,
                None,
                format!("created group {name} with {list}"),
            );
            Ok(Vec::new())
        }
        GroupCommand::Add { name, user } => {
            let events = client.add_member(&name, &user).await?;
            done(
                "group_add",
                &name,
                Some(&user),
                format!("added {user} to {name}"),
            );
            Ok(events)
        }
        GroupCommand::Remove { name, user } => {
            let events = client.remove_member(&name, &user).await?;
            done(
                "group_remove",
                &name,
                Some(&user),
                format!("removed {user} from {name}"),
            );
            Ok(events)
        }
        GroupCommand::Leave { name } => {
            client.leave_group(&name).await?;
            done("group_leave", &name, None, format!("left {name}"));
            Ok(Vec::new())
        }
        GroupCommand::Members { name } => {
            for m in client.group_members(&name)? {
                out.line(
                    json!({"kind": "member", "group": name, "user": m.user, "device": m.device,
                           "fingerprint": m.fingerprint}),
                    format!("{} {} {}", m.user, m.device, m.fingerprint),
                );
            }
            Ok(Vec::new())
        }
        GroupCommand::List => {
            let me = client.whoami().user;
            for c in client.conversations()? {
                let members: Vec<&str> = c.members.iter().map(UserName::as_str).collect();
                let ended = match &c.ended_by {
                    _ if !c.ended => String::new(),
                    Some(by) if by == &me => " [ended: you left]".to_owned(),
                    Some(by) => format!(" [ended: removed by {by}]"),
                    None => " [ended]".to_owned(),
                };
                let unread = if c.unread > 0 {
                    format!(" ({} unread)", c.unread)
                } else {
                    String::new()
                };
                out.line(
                    json!({"kind": "conversation", "name": c.name, "is_group": c.is_group,
                           "members": c.members, "ended": c.ended, "ended_by": c.ended_by,
                           "unread": c.unread, "last_activity": c.last_activity}),
                    format!(
                        "{} ({}): {}{ended}{unread}",
                        c.name,
                        if c.is_group { "group" } else { "direct" },
                        members.join(", ")
                    ),
                );
            }
            Ok(Vec::new())
        }
    }
}

async fn device(
    command: DeviceCommand,
    home: &std::path::Path,
    out: &Output,
) -> Result<Vec<Event>, ClientError> {
    let mut client = open(home)?;
    match command {
        DeviceCommand::Link => {
            let pending = client.start_link().await?;
            let code = pending.code().to_owned();
            let server = client.whoami().server;
            out.line(
                json!({"code": code}),
                format!("linking code: {code}\non the new device run:\n  rempart init --server {server} --link {code}"),
            );
            let qr = qr(&code);
            if out.json {
                eprintln!("{qr}");
            } else {
                out.line(json!(null), qr);
                out.line(
                    json!(null),
                    "waiting for the new device (the code works once, for 10 minutes)…".into(),
                );
            }
            let device = client.finish_link(pending, LINK_POLL).await?;
            out.line(
                json!({"kind": "device_linked", "device": device}),
                format!(
                    "linked device {device}; your conversations will add it at their next sync"
                ),
            );
            Ok(Vec::new())
        }
        DeviceCommand::List => {
            for d in client.devices().await? {
                out.line(
                    json!({"kind": "device", "device": d.device, "fingerprint": d.fingerprint,
                           "this_device": d.this_device}),
                    format!(
                        "{} {}{}",
                        d.device,
                        d.fingerprint,
                        if d.this_device { " (this device)" } else { "" }
                    ),
                );
            }
            Ok(Vec::new())
        }
        DeviceCommand::Remove { device } => {
            let events = client.remove_device(device).await?;
            out.line(
                json!({"kind": "device_removed", "device": device}),
                format!("removed device {device} from your account and your conversations"),
            );
            Ok(events)
        }
    }
}

/// The code as a terminal QR code (empty if it cannot be drawn).
fn qr(code: &str) -> String {
    qrcode::QrCode::new(code.as_bytes())
        .map(|qr| {
            qr.render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build()
        })
        .unwrap_or_default()
}

/// clap's argument groups make the missing combinations unreachable; this
/// keeps the match total without a panic.
fn unreachable_usage<T>() -> Result<T, ClientError> {
    Err(ClientError::Corrupt("invalid arguments".into()))
}

fn default_home() -> Result<PathBuf, ClientError> {
    dirs::data_dir()
        .map(|d| d.join("rempart"))
        .ok_or_else(|| ClientError::NoAccount {
            home: PathBuf::from("(no data directory: set --home or REMPART_HOME)"),
        })
}

/// Runs the client live and prints each event as it arrives, until SIGINT
/// or SIGTERM (exit 0), or until the session stops.
async fn listen(client: Client, out: &Output) -> Result<ExitCode, ClientError> {
    let mut live = Live::start(client).map_err(|e| ClientError::Io {
        path: PathBuf::from("(live session)"),
        source: std::io::Error::other(e.to_string()),
    })?;
    // Both streams exist before the loop: a signal that arrives while an
    // event is being printed is kept for the next turn, not missed.
    let signals = |kind| {
        tokio::signal::unix::signal(kind).map_err(|source| ClientError::Io {
            path: PathBuf::from("(signals)"),
            source,
        })
    };
    let mut terminate = signals(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = signals(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            event = live.next_event() => match event {
                Some(event) => out.event(&event),
                None => break,
            },
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    // Closing is best effort: the store is consistent at every step.
    let _ = live.stop().await;
    Ok(ExitCode::SUCCESS)
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
            if json.is_null() {
                return;
            }
            writeln!(stdout, "{json}")
        } else {
            writeln!(stdout, "{text}")
        };
        let _ = stdout.flush();
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
        } => format!("[{conversation}] {sender} added {user} (device {device})"),
        Event::MemberRemoved {
            conversation,
            sender,
            user,
            device,
        } if sender == user => format!("[{conversation}] {user} left (device {device})"),
        Event::MemberRemoved {
            conversation,
            sender,
            user,
            device,
        } => format!("[{conversation}] {sender} removed {user} (device {device})"),
        Event::DeviceAdded {
            conversation,
            sender,
            user,
            device,
        } => format!("[{conversation}] {sender} added {user}'s new device {device}"),
        Event::DeviceRemoved {
            conversation,
            sender,
            user,
            device,
        } => format!("[{conversation}] {sender} removed {user}'s device {device}"),
        Event::Undecryptable {
            conversation,
            reason,
            ..
        } => format!("[{conversation}] could not read an entry: {reason}"),
        Event::MessageQueued {
            conversation,
            message_id,
            ..
        } => format!(
            "[{conversation}] message {message_id} queued: the server cannot be reached; it will be sent when it can"
        ),
        Event::MessageSent {
            conversation,
            message_id,
            ..
        } => format!("[{conversation}] message {message_id}, queued earlier, was sent"),
        Event::MessageFailed {
            conversation,
            message_id,
            reason,
            ..
        } => format!("[{conversation}] message {message_id} could not be sent: {reason}"),
        Event::KeyPackagesDrained { claimed, .. } => format!(
            "this device's one-time KeyPackages ran out: the {claimed} it had left on the server were all claimed (by people starting conversations with you, or by someone draining them); new ones are uploaded, and meanwhile you were added with your reusable last-resort one"
        ),
        Event::Alert { code, message, .. } => format!("SECURITY ALERT [{code}]: {message}"),
    }
}
