//! The mailbox an address's mail goes through: its IMAP and SMTP servers
//! and credentials, kept in this device's store (encrypted at rest with
//! it).

use std::fmt;
use std::net::IpAddr;

use rusqlite::{OptionalExtension as _, params};
use serde::Serialize;
use zeroize::Zeroizing;

use super::{MailAddress, MailError, parse_address};
use crate::Client;
use crate::api::unix_now;
use crate::error::ClientError;

/// How a connection to a mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, submissions 465).
    Tls,
    /// A plain connection upgraded with STARTTLS before anything is sent.
    Starttls,
    /// No TLS: allowed only to a loopback address, for a server on this
    /// machine.
    PlainOnLoopback,
}

impl Security {
    /// The name used in the store and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Starttls => "starttls",
            Self::PlainOnLoopback => "plain_on_loopback",
        }
    }
}

/// A mail server: host and port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `HOST:PORT` (an IPv6 address in brackets).
    pub fn parse(text: &str) -> Result<Self, MailError> {
        let bad = || MailError::BadEndpoint(text.to_owned());
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port: u16 = port.parse().map_err(|_| bad())?;
        let fine = !host.is_empty()
            && port != 0
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
        if !fine {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// Whether the host is this machine: `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What `rempart mail setup` is given.
pub struct MailSetup {
    /// The address.
    pub address: String,
    /// The IMAP server.
    pub imap: Endpoint,
    /// The SMTP submission server.
    pub smtp: Endpoint,
    /// The login, for both.
    pub login: String,
    /// The password, for both.
    pub password: Zeroizing<String>,
    /// How both connections are protected.
    pub security: Security,
}

impl fmt::Debug for MailSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailSetup")
            .field("address", &self.address)
            .field("imap", &self.imap)
            .field("smtp", &self.smtp)
            .field("login", &self.login)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

/// A mailbox as kept, without its password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailAccount {
    /// The address.
    pub address: String,
    /// The IMAP server.
    pub imap: String,
    /// The SMTP submission server.
    pub smtp: String,
    /// The login.
    pub login: String,
    /// How both connections are protected.
    pub security: Security,
    /// The fingerprint of the address's certificate.
    pub fingerprint: String,
    /// Whether setting up made the certificate.
    pub key_created: bool,
}

/// The mail component's table of mailboxes.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mail_accounts (
    address     TEXT PRIMARY KEY,
    imap_host   TEXT NOT NULL,
    imap_port   INTEGER NOT NULL,
    smtp_host   TEXT NOT NULL,
    smtp_port   INTEGER NOT NULL,
    login       TEXT NOT NULL,
    password    BLOB NOT NULL,
    security    TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
";

impl Client {
    /// Keeps the mailbox of `setup.address` (replacing one kept before),
    /// and makes and publishes the address's certificate if it has none.
    /// A plain connection is refused unless both servers are on loopback.
    pub async fn setup_mail(&self, setup: MailSetup) -> Result<MailAccount, ClientError> {
        let address = parse_address(&setup.address)?;
        if setup.login.is_empty() || setup.login.contains(['\r', '\n']) {
            return Err(MailError::BadHeader("login").into());
        }
        if setup.security == Security::PlainOnLoopback {
            for endpoint in [&setup.imap, &setup.smtp] {
                if !endpoint.is_loopback() {
                    return Err(MailError::PlainNotLoopback(endpoint.to_string()).into());
                }
            }
        }
        let (fingerprint, key_created) = match self.mail_key(Some(address.as_str()))? {
            Some(key) => (key.fingerprint, false),
            None => (
                self.create_mail_key(address.as_str(), false)
                    .await?
                    .fingerprint,
                true,
            ),
        };
        self.store.conn().execute(
            "INSERT OR REPLACE INTO mail_accounts (address, imap_host, imap_port, smtp_host,
                 smtp_port, login, password, security, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                address.as_str(),
                setup.imap.host,
                setup.imap.port,
                setup.smtp.host,
                setup.smtp.port,
                setup.login,
                setup.password.as_bytes(),
                setup.security.as_str(),
                unix_now()
            ],
        )?;
        Ok(MailAccount {
            address: address.to_string(),
            imap: setup.imap.to_string(),
            smtp: setup.smtp.to_string(),
            login: setup.login,
            security: setup.security,
            fingerprint,
            key_created,
        })
    }
}

impl Client {
    /// The mailbox kept for `address`, with its password.
    pub(crate) fn mail_setup(&self, address: &MailAddress) -> Result<MailSetup, ClientError> {
        let row = self
            .store
            .conn()
            .query_row(
                "SELECT imap_host, imap_port, smtp_host, smtp_port, login, password, security
                 FROM mail_accounts WHERE address = ?1",
                [address.as_str()],
                |r| {
                    Ok((
                        (r.get::<_, String>(0)?, r.get::<_, u16>(1)?),
                        (r.get::<_, String>(2)?, r.get::<_, u16>(3)?),
                        r.get::<_, String>(4)?,
                        Zeroizing::new(r.get::<_, Vec<u8>>(5)?),
                        r.get::<_, String>(6)?,
                    ))
                },
            )
            .optional()?;
        let Some(((imap_host, imap_port), (smtp_host, smtp_port), login, password, security)) = row
        else {
            return Err(MailError::NotSetUp(address.to_string()).into());
        };
        let password = std::str::from_utf8(&password)
            .map(|p| Zeroizing::new(p.to_owned()))
            .map_err(|_| ClientError::Corrupt("a stored mail password".into()))?;
        let security = match security.as_str() {
            "tls" => Security::Tls,
            "starttls" => Security::Starttls,
            "plain_on_loopback" => Security::PlainOnLoopback,
            other => {
                return Err(ClientError::Corrupt(format!(
                    "unknown mail connection security {other:?}"
                )));
            }
        };
        Ok(MailSetup {
            address: address.to_string(),
            imap: Endpoint {
                host: imap_host,
                port: imap_port,
            },
            smtp: Endpoint {
                host: smtp_host,
                port: smtp_port,
            },
            login,
            password,
            security,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_know_loopback() {
        let local = Endpoint::parse("127.0.0.1:143").unwrap();
        assert!(local.is_loopback());
        assert_eq!(local.to_string(), "127.0.0.1:143");
        let six = Endpoint::parse("[::1]:587").unwrap();
        assert!(six.is_loopback());
        assert_eq!(six.to_string(), "[::1]:587");
        assert!(Endpoint::parse("localhost:25").unwrap().is_loopback());
        assert!(
            !Endpoint::parse("mail.example.org:993")
                .unwrap()
                .is_loopback()
        );
        for bad in [
            "",
            "host",
            "host:",
            ":25",
            "host:0",
            "host:99999",
            "a b:25",
            "h/x:25",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
