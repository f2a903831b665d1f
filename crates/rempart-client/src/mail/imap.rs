//! Receiving mail: new messages of a folder read over IMAP (async-imap),
//! decrypted and verified on this device, and kept in its store.
//!
//! The connection is TLS from the first byte, or plain upgraded with
//! STARTTLS before the login, or plain only to a server on this machine,
//! as the mailbox was set up. Every step has a time limit, so that a server
//! that stops answering cannot hang the client. Nothing is kept while the
//! connection is open: the new messages are fetched, the connection is
//! closed, and each is then read and kept in a transaction with the
//! folder's mark, so that a message is never skipped nor kept twice.
//!
//! Receiving asks the Rempart server nothing: a lookup of each sender would
//! tell its operator who writes to this account. A signature counts under
//! the certificate already held for the sender, or, for a sender with none,
//! under the one of the message's own Autocrypt header, kept then at the
//! lowest assurance; writing back looks the sender up in the directory
//! first, which proves (and so raises) it.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::account::{Endpoint, MailSetup, Security};
use super::mailbox::{Kept, Place};
use super::mime::{self, Opened};
use super::{MailAddress, MailError, MailKeySource, parse_address};
use crate::Client;
use crate::error::ClientError;

/// The largest message fetched, in bytes; a larger one is kept as a
/// problem, without its content.
pub const MAX_MESSAGE_BYTES: u32 = 32 * 1024 * 1024;

/// The most messages one sync fetches; the next sync goes on from there.
pub const MAX_MESSAGES_PER_SYNC: usize = 500;

/// How long one step of the IMAP conversation may take.
const STEP: Duration = Duration::from_secs(60);

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Synced {
    /// The address whose mailbox was read.
    pub address: String,
    /// The folder.
    pub folder: String,
    /// How many new messages were kept.
    pub new: usize,
    /// Whether more are waiting for the next sync.
    pub more: bool,
}

fn imap_error(error: impl std::fmt::Display) -> MailError {
    MailError::Imap(error.to_string())
}

/// `step`, or an error once [`STEP`] has passed.
async fn within<T, E: std::fmt::Display>(
    what: &str,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, MailError> {
    match tokio::time::timeout(STEP, step).await {
        Ok(result) => result.map_err(|e| MailError::Imap(format!("{what}: {e}"))),
        Err(_) => Err(MailError::Imap(format!(
            "{what}: no answer within {} s",
            STEP.as_secs()
        ))),
    }
}

/// A TLS connector that checks the server's certificate against the
/// Mozilla root store.
fn tls_connector() -> TlsConnector {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls<S: AsyncRead + AsyncWrite + Unpin>(
    endpoint: &Endpoint,
    stream: S,
) -> Result<tokio_rustls::client::TlsStream<S>, MailError> {
    let name = ServerName::try_from(endpoint.host.clone())
        .map_err(|_| MailError::BadEndpoint(endpoint.to_string()))?;
    within("TLS", tls_connector().connect(name, stream)).await
}

/// A fetched message: its UID and bytes, or its size when too large.
enum Fetched {
    Message(u32, Vec<u8>),
    TooLarge(u32, u32),
}

/// Logs in on `client` (its greeting read), reads the messages of
/// `folder` after `mark`, and logs out.
async fn fetch_new<T>(
    client: async_imap::Client<T>,
    setup: &MailSetup,
    folder: &str,
    mark: Option<(u32, u32)>,
) -> Result<(u32, Vec<Fetched>, bool), MailError>
where
    T: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    let mut session = within("login", async move {
        client
            .login(&setup.login, setup.password.as_str())
            .await
            .map_err(|(e, _)| e)
    })
    .await?;
    let mailbox = within("select", session.select(folder)).await?;
    let validity = mailbox
        .uid_validity
        .ok_or_else(|| MailError::Imap(format!("{folder} has no UIDVALIDITY")))?;
    let after = match mark {
        Some((held, last)) if held == validity => last,
        _ => 0,
    };
    let mut fetched = Vec::new();
    let mut more = false;
    if mailbox.exists > 0 {
        let sizes: Vec<(u32, u32)> = within("fetch", async {
            let stream = session
                .uid_fetch(
                    format!("{}:*", after.saturating_add(1)),
                    "(UID RFC822.SIZE)",
                )
                .await?;
            let all: Vec<_> = stream.try_collect().await?;
            Ok::<_, async_imap::error::Error>(
                all.iter()
                    .filter_map(|f| Some((f.uid?, f.size.unwrap_or(0))))
                    .collect(),
            )
        })
        .await?;
        // `N:*` names the last message even when its UID is below N.
        let mut sizes: Vec<(u32, u32)> = sizes.into_iter().filter(|(u, _)| *u > after).collect();
        sizes.sort_unstable();
        more = sizes.len() > MAX_MESSAGES_PER_SYNC;
        sizes.truncate(MAX_MESSAGES_PER_SYNC);
        for (uid, size) in sizes {
            if size > MAX_MESSAGE_BYTES {
                fetched.push(Fetched::TooLarge(uid, size));
                continue;
            }
            let body = within("fetch", async {
                let stream = session.uid_fetch(uid.to_string(), "BODY.PEEK[]").await?;
                let all: Vec<_> = stream.try_collect().await?;
                Ok::<_, async_imap::error::Error>(
                    all.iter()
                        .find(|f| f.uid == Some(uid))
                        .and_then(|f| f.body().map(<[u8]>::to_vec)),
                )
            })
            .await?;
            match body {
                Some(body) if body.len() as u64 <= u64::from(MAX_MESSAGE_BYTES) => {
                    fetched.push(Fetched::Message(uid, body));
                }
                Some(body) => fetched.push(Fetched::TooLarge(
                    uid,
                    u32::try_from(body.len()).unwrap_or(u32::MAX),
                )),
                // Expunged meanwhile: nothing to keep.
                None => {}
            }
        }
    }
    // The messages are in hand: a failed logout loses nothing.
    let _ = tokio::time::timeout(STEP, session.logout()).await;
    Ok((validity, fetched, more))
}

/// Connects to the IMAP server as `setup` says and reads the new messages.
async fn fetch_from_server(
    setup: &MailSetup,
    folder: &str,
    mark: Option<(u32, u32)>,
) -> Result<(u32, Vec<Fetched>, bool), MailError> {
    let endpoint = &setup.imap;
    let tcp = within(
        "connect",
        TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
    )
    .await?;
    match setup.security {
        Security::Tls => {
            let mut client = async_imap::Client::new(tls(endpoint, tcp).await?);
            greeting(&mut client).await?;
            fetch_new(client, setup, folder, mark).await
        }
        Security::Starttls => {
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client).await?;
            within(
                "STARTTLS",
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            // No greeting follows the upgrade.
            let client = async_imap::Client::new(tls(endpoint, client.into_inner()).await?);
            fetch_new(client, setup, folder, mark).await
        }
        Security::PlainOnLoopback => {
            if !endpoint.is_loopback() {
                return Err(MailError::PlainNotLoopback(endpoint.to_string()));
            }
            let mut client = async_imap::Client::new(tcp);
            greeting(&mut client).await?;
            fetch_new(client, setup, folder, mark).await
        }
    }
}

async fn greeting<T>(client: &mut async_imap::Client<T>) -> Result<(), MailError>
where
    T: AsyncRead + AsyncWrite + Unpin + Debug + Send,
{
    within("greeting", client.read_response())
        .await?
        .ok_or_else(|| imap_error("the server closed the connection before its greeting"))?;
    Ok(())
}

impl Client {
    /// Reads the new messages of `folder` in the mailbox of `address` (the
    /// only one set up if `None`) and keeps them, each decrypted and
    /// verified, or with the reason it could not be.
    pub async fn sync_mail(
        &self,
        address: Option<&str>,
        folder: &str,
    ) -> Result<Synced, ClientError> {
        let address = match address {
            Some(address) => parse_address(address)?,
            None => self.only_mailbox()?,
        };
        if folder.is_empty() || folder.contains(['\r', '\n', '"']) {
            return Err(MailError::BadHeader("folder name").into());
        }
        let setup = self.mail_setup(&address)?;
        let mark = self.folder_mark(&address, folder)?;
        let (validity, fetched, more) = fetch_from_server(&setup, folder, mark).await?;
        let mut new = 0;
        for message in fetched {
            let (uid, kept) = match message {
                Fetched::Message(uid, raw) => (uid, self.read_received(&raw)?),
                Fetched::TooLarge(uid, size) => (
                    uid,
                    Kept {
                        opened: Opened::default(),
                        assurance: None,
                        problem: Some(format!(
                            "the message is {size} bytes, over the {MAX_MESSAGE_BYTES} read"
                        )),
                        sent_in_clear_to: Vec::new(),
                        bcc: Vec::new(),
                    },
                ),
            };
            let place = Place {
                address: &address,
                folder,
                uid: Some((validity, uid)),
            };
            self.store.atomic(|| {
                self.keep_mail(&place, &kept)?;
                self.set_folder_mark(&address, folder, (validity, uid))
            })?;
            new += 1;
        }
        if new == 0 {
            let last = match mark {
                Some((held, last)) if held == validity => last,
                _ => 0,
            };
            self.set_folder_mark(&address, folder, (validity, last))?;
        }
        Ok(Synced {
            address: address.to_string(),
            folder: folder.to_owned(),
            new,
            more,
        })
    }

    /// The one address with a mailbox set up.
    pub(crate) fn only_mailbox(&self) -> Result<MailAddress, ClientError> {
        let conn = self.store.conn();
        let mut query = conn.prepare("SELECT address FROM mail_accounts ORDER BY address")?;
        let addresses: Vec<String> = query
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        match addresses.as_slice() {
            [one] => Ok(parse_address(one)?),
            [] => Err(MailError::NotSetUp("any address".into()).into()),
            several => Err(MailError::WhichAddress(several.join(", ")).into()),
        }
    }

    /// Reads a received message: decrypted and verified if it is
    /// encrypted, shown as sent in the clear if it is not, and kept with
    /// the reason (and no text) if it cannot be read.
    fn read_received(&self, raw: &[u8]) -> Result<Kept, ClientError> {
        let (opened, problem) = match self.open_mail(raw) {
            Ok(opened) => (opened, None),
            Err(ClientError::Mail(MailError::NotEncrypted)) => match mime::read_unencrypted(raw) {
                Ok(opened) => (opened, None),
                Err(e) => (Opened::default(), Some(e.to_string())),
            },
            Err(ClientError::Mail(error)) => {
                // Its headers say who and what, outside the encryption;
                // its text is never shown.
                let mut opened = mime::read_unencrypted(raw).unwrap_or_default();
                opened.body = String::new();
                opened.encrypted = true;
                (opened, Some(error.to_string()))
            }
            Err(other) => return Err(other),
        };
        let assurance = self.assurance_of(&opened)?;
        Ok(Kept {
            opened,
            assurance,
            problem,
            sent_in_clear_to: Vec::new(),
            bcc: Vec::new(),
        })
    }

    /// Where the certificate that signed `opened` came from.
    pub(crate) fn assurance_of(
        &self,
        opened: &Opened,
    ) -> Result<Option<MailKeySource>, ClientError> {
        let (Some(from), Some(signer)) = (&opened.from, &opened.signed_by) else {
            return Ok(None);
        };
        if let Some((_, own, _)) = self.own_mail_key(Some(from.as_str()))?
            && own == signer.as_str()
        {
            return Ok(Some(MailKeySource::Own));
        }
        Ok(self
            .contact(from)?
            .filter(|c| c.fingerprint == signer.as_str())
            .map(|c| c.source))
    }
}
