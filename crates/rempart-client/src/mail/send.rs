//! Sending mail: every recipient's copy signed and encrypted, submitted
//! over SMTP to the address's mailbox server.

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};

use super::account::Security;
use super::mailbox::{Kept, Place, SENT};
use super::mime::{self, Draft, Opened, new_message_id};
use super::{MailAddress, MailError, MailKeySource, parse_address};
use crate::Client;
use crate::api::unix_now;
use crate::error::ClientError;

/// A mail to send.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The sender: one of this account's addresses, set up (empty: the
    /// only one set up).
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
    /// Send this message in the clear to the recipients without a
    /// certificate (the others still get it encrypted), instead of
    /// refusing it.
    pub allow_unencrypted: bool,
    /// The id of the message this one answers.
    pub in_reply_to: Option<String>,
    /// The ids of the thread before it, oldest first.
    pub references: Vec<String>,
}

/// What was sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sent {
    /// The message id.
    pub message_id: String,
    /// How many recipients.
    pub recipients: usize,
    /// How many separate copies were submitted.
    pub copies: usize,
    /// The number of the copy kept in the `Sent` folder.
    pub id: i64,
    /// Whether every copy went encrypted.
    pub encrypted: bool,
    /// The recipients it went to in the clear (allowed for this message).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sent_in_clear_to: Vec<String>,
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
    /// Sends `outgoing`: finds every recipient's certificate (else nothing
    /// is sent, unless `allow_unencrypted` lets those without one get it in
    /// the clear), writes one copy for the `To` and `Cc` recipients and one
    /// for each `Bcc` recipient, submits them over SMTP with the address's
    /// mailbox credentials, and keeps a copy in `Sent`.
    pub async fn send_mail(&self, outgoing: Outgoing) -> Result<Sent, ClientError> {
        let from = if outgoing.from.is_empty() {
            self.only_mailbox()?
        } else {
            parse_address(&outgoing.from)?
        };
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
        let setup = self.mail_setup(&from)?;
        let mut in_clear: Vec<MailAddress> = Vec::new();
        for address in to.iter().chain(&cc).chain(&bcc) {
            if !self.find_certificate(address).await? && !in_clear.contains(address) {
                in_clear.push(address.clone());
            }
        }
        if !in_clear.is_empty() && !outgoing.allow_unencrypted {
            return Err(MailError::NoCertificates(
                in_clear
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            )
            .into());
        }
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
            in_reply_to: outgoing.in_reply_to,
            references: outgoing.references,
            date: unix_now(),
        };
        // Every copy is written before anything is sent: one encrypted for
        // the `To` and `Cc` recipients with a certificate, one in the clear
        // for those without (if allowed), and one for each `Bcc` recipient.
        let own = self
            .usable_certificate(&from)?
            .ok_or_else(|| MailError::NoKey(from.to_string()))?;
        let mut copies = Vec::new();
        let (open_clear, open_sealed): (Vec<&MailAddress>, Vec<&MailAddress>) =
            to.iter().chain(&cc).partition(|a| in_clear.contains(a));
        if !open_sealed.is_empty() {
            copies.push((
                open_sealed.clone(),
                self.seal_mail_for(&draft, &open_sealed)?,
            ));
        }
        if !open_clear.is_empty() {
            copies.push((open_clear, mime::plain(&draft, &own)?));
        }
        for hidden in &bcc {
            let bytes = if in_clear.contains(hidden) {
                mime::plain(&draft, &own)?
            } else {
                self.seal_mail_for(&draft, &[hidden])?
            };
            copies.push((vec![hidden], bytes));
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
        let mut delivered: Vec<String> = Vec::new();
        let mut failure = None;
        for (readers, bytes) in &copies {
            let submitted = async {
                let recipients = readers
                    .iter()
                    .map(|a| envelope_address(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let envelope =
                    Envelope::new(Some(sender.clone()), recipients).map_err(smtp_error)?;
                transport
                    .send_raw(&envelope, bytes)
                    .await
                    .map_err(smtp_error)
            }
            .await;
            match submitted {
                Ok(_) => delivered.extend(readers.iter().map(ToString::to_string)),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        // Nothing went: nothing to keep. Part of it went: the sent copy is
        // kept, saying who did not get it.
        let failure = match failure {
            Some(error) if delivered.is_empty() => return Err(error.into()),
            Some(error) => {
                let missed: Vec<String> = to
                    .iter()
                    .chain(&cc)
                    .chain(&bcc)
                    .map(ToString::to_string)
                    .filter(|a| !delivered.contains(a))
                    .collect();
                Some((missed, error.to_string()))
            }
            None => None,
        };
        // The sent copy, marked if any of it went in the clear.
        let sent_in_clear_to: Vec<String> = in_clear.iter().map(ToString::to_string).collect();
        let opened = Opened {
            from: Some(from.clone()),
            subject: draft.subject.clone(),
            body: draft.body.clone(),
            message_id: Some(draft.message_id.clone()),
            in_reply_to: draft.in_reply_to.clone(),
            references: draft.references.clone(),
            to: to.clone(),
            cc: cc.clone(),
            date: Some(draft.date),
            encrypted: in_clear.is_empty(),
            signed_by: Some(super::fingerprint_of(&own)?),
            autocrypt: None,
        };
        let id = self.keep_mail(
            &Place {
                address: &from,
                folder: SENT,
                uid: None,
            },
            &Kept {
                opened,
                assurance: Some(MailKeySource::Own),
                problem: failure
                    .as_ref()
                    .map(|(missed, why)| format!("not sent to {}: {why}", missed.join(", "))),
                sent_in_clear_to: sent_in_clear_to.clone(),
                bcc: bcc.iter().map(ToString::to_string).collect(),
            },
        )?;
        if let Some((missed, reason)) = failure {
            return Err(MailError::PartlySent {
                sent_to: delivered.join(", "),
                missed: missed.join(", "),
                reason,
                id,
            }
            .into());
        }
        Ok(Sent {
            message_id: draft.message_id,
            recipients: to.len() + cc.len() + bcc.len(),
            copies: copies.len(),
            id,
            encrypted: in_clear.is_empty(),
            sent_in_clear_to,
        })
    }

    /// Whether a certificate is at hand for `address`, looked for in the
    /// order of assurance: this account's own; one the user verified; one
    /// the directory proves (looked up now unless the one held is proven);
    /// one imported by hand; one from an Autocrypt header. An address the
    /// directory does not publish falls through to the next; any other
    /// failure of the lookup (an alert above all) stops the sending.
    pub(crate) async fn find_certificate(
        &self,
        address: &MailAddress,
    ) -> Result<bool, ClientError> {
        if self.own_mail_key(Some(address.as_str()))?.is_some() {
            return Ok(true);
        }
        let held = self.contact(address)?.map(|c| c.source);
        if matches!(held, Some(MailKeySource::Verified | MailKeySource::Proven)) {
            return Ok(true);
        }
        match self.lookup_mail_key(address.as_str()).await {
            Ok(_) => {}
            Err(ClientError::Mail(MailError::NotPublished { .. })) => {}
            Err(other) => return Err(other),
        }
        Ok(self.usable_certificate(address)?.is_some())
    }

    /// Answers the kept message `id`: to its sender (or, for a message
    /// this account sent, to its recipients), with `Re:` before its
    /// subject, threaded under it, from the address it was sent to.
    pub async fn reply_mail(
        &self,
        id: i64,
        body: String,
        allow_unencrypted: bool,
    ) -> Result<Sent, ClientError> {
        let original = self.mail_read(id)?;
        let summary = &original.summary;
        let own: Vec<String> = self.own_addresses()?;
        let from_is_own = summary.from.as_ref().is_some_and(|f| own.contains(f));
        let to: Vec<String> = if from_is_own {
            summary.to.clone()
        } else {
            summary.from.iter().cloned().collect()
        };
        if to.is_empty() {
            return Err(MailError::NoCertificates("no recipient".into()).into());
        }
        let from = summary
            .from
            .iter()
            .filter(|_| from_is_own)
            .chain(summary.to.iter())
            .chain(summary.cc.iter())
            .find(|a| own.contains(a))
            .cloned()
            .map_or_else(|| self.only_mailbox().map(|a| a.to_string()), Ok)?;
        let subject = if summary
            .subject
            .get(..3)
            .is_some_and(|start| start.eq_ignore_ascii_case("re:"))
        {
            summary.subject.clone()
        } else {
            format!("Re: {}", summary.subject)
        };
        let mut references = original.references.clone();
        if let Some(id) = &summary.message_id {
            references.push(id.clone());
        }
        self.send_mail(Outgoing {
            from,
            to,
            cc: Vec::new(),
            bcc: Vec::new(),
            subject,
            body,
            allow_unencrypted,
            in_reply_to: summary.message_id.clone(),
            references,
        })
        .await
    }
}
