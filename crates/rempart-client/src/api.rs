//! The server's HTTP API, as seen from a device: every call is signed with
//! the device key ([`rempart_proto::auth`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rempart_proto::api::{
    self, Acked, Appended, ClaimRequest, ClaimedKeyPackages, CommitUpload, DeviceListAccepted,
    ErrorBody, InboxAck, InboxPage, KeyPackageStatus, KeyPackageUpload, KnownVersion, LinkCreate,
    LinkState, LogPage, RegisterRequest, RegisterResponse,
};
use rempart_proto::auth::RequestAuth;
use rempart_proto::directory::{
    self as kt, AuditResponse, DirectoryInfo, HeadWithCosignatures, HistoryResponse,
    LookupsRequest, LookupsResponse,
};
use rempart_proto::mail::{
    MAIL_CERTIFICATES_PATH, MAIL_HISTORY_PATH, MAIL_LOOKUP_PATH, MailAddress,
    MailCertificateUpload, MailLookupRequest, MailLookupResponse,
};
use rempart_proto::{DeviceId, GroupId, LinkId, MessageId, SignedDeviceList, UserName};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ClientError;
use crate::keys::DeviceKey;

/// The URL of the server of [`ServerApi::offline`], which no request
/// reaches (`.invalid` is reserved by RFC 2606).
#[cfg(feature = "bench")]
const OFFLINE_SERVER: &str = "http://offline.invalid";

/// The device credentials a request is signed with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signer<'a> {
    pub device: DeviceId,
    pub key: &'a DeviceKey,
}

/// Result of appending a commit or message to a group's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendOutcome {
    /// Accepted at this position.
    Accepted(Appended),
    /// Built or encrypted in a stale epoch; the group is at `current_epoch`.
    Stale { current_epoch: u64 },
}

/// A thin HTTP client for one server, which may run as several nodes.
///
/// With several node URLs, requests go to the node that last answered; when
/// a node cannot be reached, or answers 503 (its database is unavailable),
/// the same request goes to the next one. A request is signed afresh (new
/// nonce) for each node it is sent to.
#[derive(Debug, Clone)]
pub(crate) struct ServerApi {
    /// The server as configured: node URLs separated by commas.
    spec: String,
    nodes: Arc<[String]>,
    /// Index in `nodes` of the node to try first.
    preferred: Arc<AtomicUsize>,
    http: reqwest::Client,
    /// Built by [`ServerApi::offline`]: no request leaves the process.
    #[cfg(feature = "bench")]
    offline: bool,
}

enum Body {
    Empty,
    Json(Vec<u8>),
    Bytes(Vec<u8>),
}

impl ServerApi {
    /// A client for the server at `spec`: one base URL
    /// (`http://host:port`), or the URLs of its nodes separated by commas.
    pub fn new(spec: &str) -> Result<Self, ClientError> {
        let nodes = spec
            .split(',')
            .map(|node| parse_node(node.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Network {
                url: spec.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            spec: nodes.join(","),
            nodes: nodes.into(),
            preferred: Arc::new(AtomicUsize::new(0)),
            http,
            #[cfg(feature = "bench")]
            offline: false,
        })
    }

    /// A client of no server, for benchmarks of the engine's local work
    /// (`bench` feature): every request fails without leaving the process,
    /// except device-list lookups, answered as a server holding nothing
    /// newer than the versions the device already verified answers them.
    #[cfg(feature = "bench")]
    pub fn offline() -> Result<Self, ClientError> {
        let mut api = Self::new(OFFLINE_SERVER)?;
        api.offline = true;
        Ok(api)
    }

    /// The server as configured (node URLs separated by commas).
    pub fn base(&self) -> &str {
        &self.spec
    }

    pub async fn register(
        &self,
        signer: Signer<'_>,
        user: &UserName,
        device_list: &SignedDeviceList,
        invitation: Option<&str>,
    ) -> Result<RegisterResponse, ClientError> {
        let body = RegisterRequest {
            user: user.clone(),
            device_list: device_list.clone(),
            invitation: invitation.map(str::to_owned),
        };
        self.call(Some(signer), Method::POST, api::ACCOUNTS_PATH, json(&body)?)
            .await
    }

    /// The published device lists newer than `users`' known versions, with
    /// their lookup proofs.
    pub async fn lookups(&self, users: Vec<KnownVersion>) -> Result<LookupsResponse, ClientError> {
        #[cfg(feature = "bench")]
        if self.offline {
            return Ok(LookupsResponse {
                head: None,
                lookups: Vec::new(),
                pending: Vec::new(),
                unknown: Vec::new(),
            });
        }
        let body = LookupsRequest { users };
        self.call(None, Method::POST, kt::LOOKUPS_PATH, json(&body)?)
            .await
    }

    /// `user`'s complete key history with its proof.
    pub async fn history(&self, user: &UserName) -> Result<HistoryResponse, ClientError> {
        self.call(None, Method::GET, &kt::history_path(user), Body::Empty)
            .await
    }

    /// The heads of epochs `from..=to`.
    pub async fn heads(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<HeadWithCosignatures>, ClientError> {
        self.call(None, Method::GET, &kt::heads_path(from, to), Body::Empty)
            .await
    }

    /// The append-only proof from epoch `from` to epoch `to`.
    pub async fn audit(&self, from: u64, to: u64) -> Result<AuditResponse, ClientError> {
        self.call(None, Method::GET, &kt::audit_path(from, to), Body::Empty)
            .await
    }

    pub async fn put_device_list(
        &self,
        signer: Signer<'_>,
        user: &UserName,
        list: &SignedDeviceList,
    ) -> Result<DeviceListAccepted, ClientError> {
        self.call(
            Some(signer),
            Method::PUT,
            &api::devices_path(user),
            json(list)?,
        )
        .await
    }

    /// Keeps one of this account's OpenPGP certificates on the server.
    pub async fn put_mail_certificate(
        &self,
        signer: Signer<'_>,
        upload: &MailCertificateUpload,
    ) -> Result<(), ClientError> {
        self.request_empty(
            Some(signer),
            Method::POST,
            MAIL_CERTIFICATES_PATH,
            json(upload)?,
        )
        .await
    }

    /// Who holds `address`, with the directory's proofs and the certificate.
    pub async fn mail_lookup(
        &self,
        address: &MailAddress,
    ) -> Result<MailLookupResponse, ClientError> {
        let body = MailLookupRequest {
            address: address.clone(),
        };
        self.call(None, Method::POST, MAIL_LOOKUP_PATH, json(&body)?)
            .await
    }

    /// The complete key history of `address`'s directory label.
    pub async fn mail_history(
        &self,
        address: &MailAddress,
    ) -> Result<HistoryResponse, ClientError> {
        let body = MailLookupRequest {
            address: address.clone(),
        };
        self.call(None, Method::POST, MAIL_HISTORY_PATH, json(&body)?)
            .await
    }

    pub async fn directory_info(&self) -> Result<DirectoryInfo, ClientError> {
        self.call(None, Method::GET, kt::DIRECTORY_PATH, Body::Empty)
            .await
    }

    /// The latest signed head, or `None` before the first epoch.
    pub async fn latest_head(&self) -> Result<Option<HeadWithCosignatures>, ClientError> {
        match self
            .call(None, Method::GET, kt::HEAD_PATH, Body::Empty)
            .await
        {
            Ok(head) => Ok(Some(head)),
            Err(ClientError::Server { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn upload_key_packages(
        &self,
        signer: Signer<'_>,
        upload: &KeyPackageUpload,
    ) -> Result<KeyPackageStatus, ClientError> {
        self.call(
            Some(signer),
            Method::POST,
            api::KEYPACKAGES_PATH,
            json(upload)?,
        )
        .await
    }

    pub async fn key_package_status(
        &self,
        signer: Signer<'_>,
    ) -> Result<KeyPackageStatus, ClientError> {
        self.call(
            Some(signer),
            Method::GET,
            api::KEYPACKAGES_PATH,
            Body::Empty,
        )
        .await
    }

    pub async fn claim_key_packages(
        &self,
        signer: Signer<'_>,
        users: Vec<UserName>,
    ) -> Result<ClaimedKeyPackages, ClientError> {
        let body = json(&ClaimRequest { users })?;
        self.call(Some(signer), Method::POST, api::CLAIM_PATH, body)
            .await
    }

    pub async fn create_link(&self, signer: Signer<'_>, link: LinkId) -> Result<(), ClientError> {
        let body = json(&LinkCreate { link })?;
        self.request_empty(Some(signer), Method::POST, api::LINKS_PATH, body)
            .await
    }

    pub async fn link_state(
        &self,
        signer: Option<Signer<'_>>,
        path: &str,
    ) -> Result<LinkState, ClientError> {
        self.call(signer, Method::GET, path, Body::Empty).await
    }

    pub async fn put_link(
        &self,
        signer: Option<Signer<'_>>,
        path: &str,
        sealed: Vec<u8>,
    ) -> Result<(), ClientError> {
        self.request_empty(signer, Method::PUT, path, Body::Bytes(sealed))
            .await
    }

    async fn request_empty(
        &self,
        signer: Option<Signer<'_>>,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<(), ClientError> {
        match self.request(signer, method, path, body).await? {
            Ok(_) => Ok(()),
            Err((status, body)) => Err(server_error(status, body)),
        }
    }

    pub async fn post_commit(
        &self,
        signer: Signer<'_>,
        group: &GroupId,
        upload: &CommitUpload,
    ) -> Result<AppendOutcome, ClientError> {
        let path = api::commits_path(group);
        self.append(signer, &path, json(upload)?).await
    }

    pub async fn put_message(
        &self,
        signer: Signer<'_>,
        group: &GroupId,
        message_id: &MessageId,
        epoch: u64,
        message: Vec<u8>,
    ) -> Result<AppendOutcome, ClientError> {
        let path = api::message_path(group, message_id, epoch);
        self.append(signer, &path, Body::Bytes(message)).await
    }

    /// A commit or message upload, which the epoch rule may refuse.
    async fn append(
        &self,
        signer: Signer<'_>,
        path: &str,
        body: Body,
    ) -> Result<AppendOutcome, ClientError> {
        let method = match body {
            Body::Bytes(_) => Method::PUT,
            _ => Method::POST,
        };
        match self.request(Some(signer), method, path, body).await? {
            Ok(bytes) => Ok(AppendOutcome::Accepted(decode(&self.spec, &bytes)?)),
            Err((
                StatusCode::CONFLICT,
                ErrorBody {
                    error,
                    current_epoch: Some(current_epoch),
                    ..
                },
            )) if error == api::error_code::STALE_EPOCH => {
                Ok(AppendOutcome::Stale { current_epoch })
            }
            Err((status, body)) => Err(server_error(status, body)),
        }
    }

    pub async fn read_log(
        &self,
        signer: Signer<'_>,
        group: &GroupId,
        after: u64,
    ) -> Result<LogPage, ClientError> {
        let path = api::log_path(group, after, rempart_proto::limits::MAX_PAGE);
        self.call(Some(signer), Method::GET, &path, Body::Empty)
            .await
    }

    pub async fn read_inbox(
        &self,
        signer: Signer<'_>,
        after: u64,
    ) -> Result<InboxPage, ClientError> {
        let path = api::inbox_path(after, rempart_proto::limits::MAX_PAGE);
        self.call(Some(signer), Method::GET, &path, Body::Empty)
            .await
    }

    pub async fn ack_inbox(&self, signer: Signer<'_>, ids: Vec<u64>) -> Result<Acked, ClientError> {
        self.call(
            Some(signer),
            Method::POST,
            api::INBOX_ACK_PATH,
            json(&InboxAck { ids })?,
        )
        .await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        signer: Option<Signer<'_>>,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<T, ClientError> {
        match self.request(signer, method, path, body).await? {
            Ok(bytes) => decode(&self.spec, &bytes),
            Err((status, body)) => Err(server_error(status, body)),
        }
    }

    /// Sends one request, to the preferred node and then to the others
    /// while nodes are unreachable or unavailable. `Ok(Err(..))` is an error
    /// answer from the server.
    async fn request(
        &self,
        signer: Option<Signer<'_>>,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<Result<Vec<u8>, (StatusCode, ErrorBody)>, ClientError> {
        #[cfg(feature = "bench")]
        if self.offline {
            return Err(ClientError::Network {
                url: self.spec.clone(),
                reason: format!("{method} {path}: this bench client has no server"),
            });
        }
        let (content_type, bytes) = match body {
            Body::Empty => (None, Vec::new()),
            Body::Json(b) => (Some("application/json"), b),
            Body::Bytes(b) => (Some("application/octet-stream"), b),
        };
        let first = self.preferred.load(Ordering::Relaxed);
        let count = self.nodes.len();
        let mut attempt = 0;
        let mut waited = false;
        loop {
            let index = (first + attempt) % count;
            let node = &self.nodes[index];
            attempt += 1;
            let last = attempt >= count;
            let sent = self
                .send(node, signer, &method, path, content_type, &bytes)
                .await;
            // A rate limit that lifts soon: wait once, then ask the same
            // node again (signed afresh). A longer one is the caller's.
            if let Ok((StatusCode::TOO_MANY_REQUESTS, answer)) = &sent
                && !waited
                && let Some(wait) = short_rate_wait(answer)
            {
                tracing::info!(
                    node,
                    secs = wait.as_secs(),
                    "rate limited; waiting to retry"
                );
                tokio::time::sleep(wait).await;
                waited = true;
                attempt -= 1;
                continue;
            }
            match sent {
                // The request never reached this node: another may serve it.
                Err(error) if error.is_connect() && !last => {
                    tracing::warn!(node, "server node unreachable; trying the next one");
                }
                Err(error) => return Err(network(node, error)),
                Ok((status, _)) if status == StatusCode::SERVICE_UNAVAILABLE && !last => {
                    tracing::warn!(node, "server node unavailable; trying the next one");
                }
                Ok((status, answer)) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    if status.is_success() {
                        return Ok(Ok(answer));
                    }
                    let body = serde_json::from_slice::<ErrorBody>(&answer).unwrap_or_else(|_| {
                        ErrorBody {
                            error: "unknown".into(),
                            message: format!("unexpected answer ({} bytes)", answer.len()),
                            current_epoch: None,
                            retry_after_secs: None,
                        }
                    });
                    return Ok(Err((status, body)));
                }
            }
        }
    }

    /// Opens this device's authenticated WebSocket session (a signed
    /// upgrade of `GET /v1/ws`), with the preferred node first and then the
    /// others, as requests fail over. The error of the last node tried.
    pub async fn connect_session(&self, signer: Signer<'_>) -> Result<WebSocket, ClientError> {
        let first = self.preferred.load(Ordering::Relaxed);
        let count = self.nodes.len();
        let mut failure = None;
        for attempt in 0..count {
            let index = (first + attempt) % count;
            let node = &self.nodes[index];
            match connect_node(node, signer).await {
                Ok(socket) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(socket);
                }
                Err(reason) => {
                    tracing::warn!(node, %reason, "no live session with this server node");
                    failure = Some(ClientError::Network {
                        url: node.clone(),
                        reason: format!("the live session could not be opened: {reason}"),
                    });
                }
            }
        }
        Err(failure.unwrap_or_else(|| ClientError::Network {
            url: self.spec.clone(),
            reason: "no server node".into(),
        }))
    }

    /// Sends one request to one node; returns its status and body.
    async fn send(
        &self,
        node: &str,
        signer: Option<Signer<'_>>,
        method: &Method,
        path: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<(StatusCode, Vec<u8>), reqwest::Error> {
        let mut request = self.http.request(method.clone(), format!("{node}{path}"));
        if let Some(signer) = signer {
            let auth = RequestAuth::sign(
                signer.key.signing_key(),
                signer.device,
                method.as_str(),
                path,
                bytes,
                unix_now(),
            );
            for (name, value) in auth.headers() {
                request = request.header(name, value);
            }
        }
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        let response = request.body(bytes.to_vec()).send().await?;
        let status = response.status();
        let answer = response.bytes().await?;
        Ok((status, answer.to_vec()))
    }
}

/// This device's WebSocket session with a server node.
pub(crate) type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the signed WebSocket upgrade at `node` (its `http` scheme becomes
/// `ws`, `https` becomes `wss`).
async fn connect_node(node: &str, signer: Signer<'_>) -> Result<WebSocket, String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let url = match node.strip_prefix("https://") {
        Some(rest) => format!("wss://{rest}{}", api::WS_PATH),
        None => format!(
            "ws://{}{}",
            node.trim_start_matches("http://"),
            api::WS_PATH
        ),
    };
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    let auth = RequestAuth::sign(
        signer.key.signing_key(),
        signer.device,
        "GET",
        api::WS_PATH,
        b"",
        unix_now(),
    );
    for (name, value) in auth.headers() {
        let value = HeaderValue::from_str(&value).map_err(|e| e.to_string())?;
        request.headers_mut().insert(name, value);
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(socket)
}

/// Checks one node URL; returns it without a trailing slash.
fn parse_node(node: &str) -> Result<String, ClientError> {
    let node = node.trim_end_matches('/').to_owned();
    let parsed = reqwest::Url::parse(&node).map_err(|e| ClientError::Network {
        url: node.clone(),
        reason: format!("not a valid URL ({e})"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ClientError::Network {
            url: node,
            reason: "the URL must start with http:// or https://".into(),
        });
    }
    Ok(node)
}

fn network(node: &str, e: reqwest::Error) -> ClientError {
    // `without_url` keeps the message short; the URL is reported separately.
    ClientError::Network {
        url: node.to_owned(),
        reason: e.without_url().to_string(),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<Body, ClientError> {
    serde_json::to_vec(value)
        .map(Body::Json)
        .map_err(|e| ClientError::Corrupt(format!("cannot encode request: {e}")))
}

fn decode<T: DeserializeOwned>(base: &str, bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Network {
        url: base.to_owned(),
        reason: format!("unreadable answer: {e}"),
    })
}

/// The longest a request waits for a rate limit to lift before its caller
/// is told (an outbox message then stays queued).
pub(crate) const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);

/// How long a 429 `answer` asks to wait, if it is a `rate_limited` refusal
/// that lifts within [`MAX_RATE_LIMIT_WAIT`].
fn short_rate_wait(answer: &[u8]) -> Option<Duration> {
    let body: ErrorBody = serde_json::from_slice(answer).ok()?;
    let wait = Duration::from_secs(body.retry_after_secs?);
    (body.error == api::error_code::RATE_LIMITED && wait <= MAX_RATE_LIMIT_WAIT).then_some(wait)
}

fn server_error(status: StatusCode, body: ErrorBody) -> ClientError {
    if status == StatusCode::UNAUTHORIZED && body.error == api::error_code::UNKNOWN_DEVICE {
        return ClientError::DeviceUnknown;
    }
    ClientError::Server {
        status: status.as_u16(),
        code: body.error,
        message: body.message,
    }
}

/// Current Unix time in seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
