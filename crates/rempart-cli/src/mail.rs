//! `rempart mail send`, `reply`, `sync`, `list` and `read`.
//!
//! The security state of a message (encrypted or not, signed by which
//! certificate, from which source) is printed on lines of its own before
//! the message's content, never inside it, and the content printed to a
//! terminal has its control characters replaced, so that a message cannot
//! write over the status or drive the terminal.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use rempart_client::ClientError;
use rempart_client::mail::mailbox::{INBOX, MailMessage, MailSummary};
use rempart_client::mail::send::{Outgoing, Sent};
use serde_json::json;

use crate::{Output, open};

/// The largest text read from standard input, in bytes.
const MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub(crate) enum MailboxCommand {
    /// Send a mail, signed and encrypted (PGP/MIME) to every recipient and
    /// to you, with the subject inside the encryption. A recipient without
    /// a certificate is refused and nothing is sent, unless
    /// --allow-unencrypted.
    Send {
        /// A recipient (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',', required_unless_present_any = ["cc", "bcc"])]
        to: Vec<String>,
        /// A copy recipient (repeat, or separate with commas).
        #[arg(long, value_delimiter = ',')]
        cc: Vec<String>,
        /// A hidden recipient, sent a copy encrypted to them alone (repeat,
        /// or separate with commas).
        #[arg(long, value_delimiter = ',')]
        bcc: Vec<String>,
        /// The subject.
        #[arg(long)]
        subject: String,
        /// The sender [default: the only address with a mailbox set up].
        #[arg(long)]
        from: Option<String>,
        /// For this message only: send it in the clear to the recipients
        /// without a certificate (the others still get it encrypted). The
        /// sent copy is marked so.
        #[arg(long)]
        allow_unencrypted: bool,
        /// The text, or `-` (the default) to read it from standard input.
        body: Option<String>,
    },
    /// Answer a kept message: to its sender, `Re:` its subject, in its
    /// thread.
    Reply {
        /// The message's number (`rempart mail list`).
        id: i64,
        /// For this message only: send it in the clear if the recipient has
        /// no certificate.
        #[arg(long)]
        allow_unencrypted: bool,
        /// The text, or `-` (the default) to read it from standard input.
        body: Option<String>,
    },
    /// Fetch the new mail of a folder over IMAP; each message is decrypted
    /// and verified here and kept in this device's store.
    Sync {
        /// The address [default: the only one with a mailbox set up].
        #[arg(long)]
        address: Option<String>,
        /// The IMAP folder.
        #[arg(long, default_value = INBOX)]
        folder: String,
    },
    /// List the kept mail of a folder, threads together, each with its
    /// security state.
    List {
        /// The folder (`INBOX`, `Sent` for what this device sent, or one
        /// synced).
        #[arg(long, default_value = INBOX)]
        folder: String,
    },
    /// Show a kept message: its security state, then its text.
    Read {
        /// The message's number (`rempart mail list`).
        id: i64,
    },
}

/// `text` with its control characters (but line ends and tabs) replaced,
/// for a terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// The text given, or standard input for `-` or none.
fn body_text(body: Option<String>) -> Result<String, ClientError> {
    match body.as_deref() {
        Some(text) if text != "-" => Ok(text.to_owned()),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .lock()
                .take(MAX_BODY_BYTES)
                .read_to_string(&mut text)
                .map_err(|source| ClientError::Io {
                    path: PathBuf::from("stdin"),
                    source,
                })?;
            Ok(text)
        }
    }
}

fn date(unix: Option<i64>) -> String {
    unix.and_then(|t| u64::try_from(t).ok())
        .map(|t| httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t)))
        .unwrap_or_else(|| "(no date)".into())
}

/// The security state of a message, in words.
fn status(summary: &MailSummary) -> String {
    if let Some(problem) = &summary.problem {
        return format!("NOT READ: {problem}");
    }
    let mut said = if summary.encrypted {
        "encrypted".to_owned()
    } else if summary.sent_in_clear_to.is_empty() {
        "NOT ENCRYPTED".to_owned()
    } else {
        format!("NOT ENCRYPTED for {}", summary.sent_in_clear_to.join(", "))
    };
    match (&summary.signed_by, summary.assurance) {
        (Some(fingerprint), Some(assurance)) => said.push_str(&format!(
            ", signed by {fingerprint} ({})",
            assurance.as_str()
        )),
        (Some(fingerprint), None) => said.push_str(&format!(", signed by {fingerprint}")),
        (None, _) => said.push_str(", NOT SIGNED by a known key"),
    }
    said
}

/// `value` as JSON, with its `kind`.
pub(crate) fn to_value<T: serde::Serialize>(
    value: &T,
    kind: &str,
) -> Result<serde_json::Value, ClientError> {
    let mut value = serde_json::to_value(value).map_err(|e| ClientError::Corrupt(e.to_string()))?;
    value["kind"] = json!(kind);
    Ok(value)
}

fn sent_line(sent: &Sent, out: &Output) -> Result<(), ClientError> {
    let mut text = format!(
        "sent to {} recipient(s) in {} copie(s), message {} (kept as {})",
        sent.recipients, sent.copies, sent.message_id, sent.id
    );
    if !sent.sent_in_clear_to.is_empty() {
        text.push_str(&format!(
            "\nNOT ENCRYPTED for {}: they had no certificate",
            sent.sent_in_clear_to.join(", ")
        ));
    }
    out.line(to_value(sent, "mail_sent")?, text);
    Ok(())
}

/// Runs one of the mailbox commands.
pub(crate) async fn run(
    command: MailboxCommand,
    home: &Path,
    out: &Output,
) -> Result<(), ClientError> {
    let client = open(home)?;
    match command {
        MailboxCommand::Send {
            to,
            cc,
            bcc,
            subject,
            from,
            allow_unencrypted,
            body,
        } => {
            let sent = client
                .send_mail(Outgoing {
                    from: from.unwrap_or_default(),
                    to,
                    cc,
                    bcc,
                    subject,
                    body: body_text(body)?,
                    allow_unencrypted,
                    in_reply_to: None,
                    references: Vec::new(),
                })
                .await?;
            sent_line(&sent, out)?;
        }
        MailboxCommand::Reply {
            id,
            allow_unencrypted,
            body,
        } => {
            let sent = client
                .reply_mail(id, body_text(body)?, allow_unencrypted)
                .await?;
            sent_line(&sent, out)?;
        }
        MailboxCommand::Sync { address, folder } => {
            let synced = client.sync_mail(address.as_deref(), &folder).await?;
            let mut text = format!(
                "{} {}: {} new message(s)",
                synced.address, synced.folder, synced.new
            );
            if synced.more {
                text.push_str(", more to fetch at the next sync");
            }
            out.line(to_value(&synced, "mail_sync")?, text);
        }
        MailboxCommand::List { folder } => {
            let mut thread = None;
            for summary in client.mail_list(&folder)? {
                let indent = if thread.as_ref() == Some(&summary.thread) {
                    "    "
                } else {
                    ""
                };
                thread = Some(summary.thread.clone());
                let text = format!(
                    "{indent}{:>5}  {}  {}  {}\n{indent}       [{}]",
                    summary.id,
                    date(summary.date),
                    printable(summary.from.as_deref().unwrap_or("(no sender)")),
                    printable(&summary.subject),
                    status(&summary)
                );
                out.line(to_value(&summary, "mail")?, text);
            }
        }
        MailboxCommand::Read { id } => {
            let message: MailMessage = client.mail_read(id)?;
            let summary = &message.summary;
            let mut text = format!(
                "[{}]\nfrom: {}\nto: {}\n",
                status(summary),
                printable(summary.from.as_deref().unwrap_or("(no sender)")),
                printable(&summary.to.join(", "))
            );
            if !summary.cc.is_empty() {
                text.push_str(&format!("cc: {}\n", printable(&summary.cc.join(", "))));
            }
            if !summary.bcc.is_empty() {
                text.push_str(&format!("bcc: {}\n", printable(&summary.bcc.join(", "))));
            }
            text.push_str(&format!(
                "date: {}\nsubject: {}\n\n{}",
                date(summary.date),
                printable(&summary.subject),
                printable(message.body.as_deref().unwrap_or("(its text is not shown)"))
            ));
            out.line(to_value(&message, "mail")?, text);
        }
    }
    Ok(())
}
