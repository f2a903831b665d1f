//! Sending mail: every recipient's copy signed and encrypted, submitted
//! over SMTP to the address's mailbox server.

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};

use super::account::Security;
use super::mime::{Draft, new_message_id};
use super::{MailAddress, MailError, parse_address};
use crate::Client;
use crate::api::unix_now;
use crate::error::ClientError;

/// A mail to send.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The sender: one of this account's addresses, set up.
    pub from: String,
    /// The `To` recipients.
    pub to: Vec<String>,
    /// The `Cc` recipients.
    pub cc: Vec<String>,
    /// The `Bcc` recipients: each gets a copy of its own, encrypted to it
    /// alone (and the sender), and no other copy names them.
    pub bcc: Vec<String>,
    /// The subject (inside the encryption).
    pub subject: String,
    /// The text.
    pub body: String,
}

/// What was sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sent {
    /// The message id.
    pub message_id: String,
    /// How many recipients.
    pub recipients: usize,
    /// How many separately encrypted copies were submitted.
    pub copies: usize,
}

fn smtp_error(error: impl std::fmt::Display) -> MailError {
    MailError::Smtp(error.to_string())
}

fn envelope_address(address: &MailAddress) -> Result<Address, MailError> {
    address
        .as_str()
        .parse()
        .map_err(|_| MailError::BadAddress(address.to_string()))
}

impl Client {
    /// Sends `outgoing`: checks that every recipient has a certificate
    /// (else nothing is sent), seals one copy for the `To` and `Cc`
    /// recipients and one for each `Bcc` recipient, and submits them over
    /// SMTP with the address's mailbox credentials.
    pub async fn send_mail(&self, outgoing: Outgoing) -> Result<Sent, ClientError> {
        let from = parse_address(&outgoing.from)?;
        let parse_all = |list: &[String]| -> Result<Vec<MailAddress>, MailError> {
            list.iter().map(|a| parse_address(a)).collect()
        };
        let (to, cc, bcc) = (
            parse_all(&outgoing.to)?,
            parse_all(&outgoing.cc)?,
            parse_all(&outgoing.bcc)?,
        );
        if to.is_empty() && cc.is_empty() && bcc.is_empty() {
            return Err(MailError::NoCertificates("no recipient".into()).into());
        }
        let mut missing = Vec::new();
        for address in to.iter().chain(&cc).chain(&bcc) {
            if self.usable_certificate(address)?.is_none() {
                missing.push(address.to_string());
            }
        }
        if !missing.is_empty() {
            return Err(MailError::NoCertificates(missing.join(", ")).into());
        }
        let setup = self.mail_setup(&from)?;
        let domain = from
            .as_str()
            .rsplit_once('@')
            .map_or("localhost", |(_, d)| d);
        let draft = Draft {
            from: from.clone(),
            to: to.clone(),
            cc: cc.clone(),
            subject: outgoing.subject,
            body: outgoing.body,
            message_id: new_message_id(domain),
            in_reply_to: None,
            references: Vec::new(),
            date: unix_now(),
        };
        // Every copy is sealed before anything is sent.
        let mut copies = Vec::new();
        let open: Vec<&MailAddress> = to.iter().chain(&cc).collect();
        if !open.is_empty() {
            copies.push((open.clone(), self.seal_mail_for(&draft, &open)?));
        }
        for hidden in &bcc {
            copies.push((vec![hidden], self.seal_mail_for(&draft, &[hidden])?));
        }

        let builder = match setup.security {
            Security::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&setup.smtp.host).map_err(smtp_error)?
            }
            Security::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&setup.smtp.host)
                    .map_err(smtp_error)?
            }
            Security::PlainOnLoopback => {
                if !setup.smtp.is_loopback() {
                    return Err(MailError::PlainNotLoopback(setup.smtp.to_string()).into());
                }
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&setup.smtp.host)
            }
        };
        let transport = builder
            .port(setup.smtp.port)
            .credentials(Credentials::new(
                setup.login.clone(),
                setup.password.to_string(),
            ))
            .build();
        let sender = envelope_address(&from)?;
        for (readers, bytes) in &copies {
            let recipients = readers
                .iter()
                .map(|a| envelope_address(a))
                .collect::<Result<Vec<_>, _>>()?;
            let envelope = Envelope::new(Some(sender.clone()), recipients).map_err(smtp_error)?;
            transport
                .send_raw(&envelope, bytes)
                .await
                .map_err(smtp_error)?;
        }
        Ok(Sent {
            message_id: draft.message_id,
            recipients: to.len() + cc.len() + bcc.len(),
            copies: copies.len(),
        })
    }
}
