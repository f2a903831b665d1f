//! Devices driven by the benchmark without the client engine.
//!
//! A [`BenchDevice`] is one registered device: it signs its requests as
//! [`rempart_proto::auth`] says and opens its push session, but runs no MLS
//! (the server treats message bytes as opaque; MLS cost is measured by the
//! `client` benchmark). Each device is the only device of its own account,
//! whose account key signs the account's first device list and is then
//! dropped.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use futures_util::{StreamExt as _, TryStreamExt as _};
use rand::rngs::OsRng;
use rempart_proto::api::{self, Appended, CommitUpload, ErrorBody, RegisterRequest, WS_PATH};
use rempart_proto::auth::RequestAuth;
use rempart_proto::{
    DeviceEntry, DeviceId, DeviceList, GroupId, MessageId, PublicKey, SignedDeviceList, UserName,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::BenchError;

/// A device's push session, as [`BenchDevice::open_session`] opens it.
pub type Session = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A registered device: its user, id and Ed25519 key; signs requests
/// ([`rempart_proto::auth`]). The key is zeroized on drop and never shown.
pub struct BenchDevice {
    /// The account this device is the one device of.
    pub user: UserName,
    /// The device's id.
    pub device: DeviceId,
    key: SigningKey,
}

impl BenchDevice {
    /// Registers a new account `user` with this one device (`POST
    /// /v1/accounts`, signed by the new device) at server `base` (e.g.
    /// `http://127.0.0.1:7800`).
    pub async fn register(
        http: &reqwest::Client,
        base: &str,
        user: UserName,
    ) -> Result<Self, BenchError> {
        let account = SigningKey::generate(&mut OsRng);
        let device = Self {
            user,
            device: DeviceId::random(),
            key: SigningKey::generate(&mut OsRng),
        };
        let list = DeviceList {
            user: device.user.clone(),
            account_key: PublicKey::new(account.verifying_key()),
            version: 1,
            timestamp: unix_now(),
            devices: vec![DeviceEntry {
                id: device.device,
                signature_key: PublicKey::new(device.key.verifying_key()),
            }],
            mail: Vec::new(),
        };
        let register = RegisterRequest {
            user: device.user.clone(),
            device_list: SignedDeviceList::sign(&list, &account)?,
            invitation: None,
        };
        let body = serde_json::to_vec(&register)?;
        device
            .request(http, base, reqwest::Method::POST, "/v1/accounts", body)
            .await?;
        Ok(device)
    }

    /// Registers `count` accounts named `{prefix}{i:06}` (`i` from 0), with
    /// up to `parallel` registrations in flight; returns them in order.
    pub async fn register_many(
        http: &reqwest::Client,
        base: &str,
        prefix: &str,
        count: usize,
        parallel: usize,
    ) -> Result<Vec<Self>, BenchError> {
        let names = (0..count)
            .map(|i| format!("{prefix}{i:06}").parse::<UserName>())
            .collect::<Result<Vec<_>, _>>()?;
        futures_util::stream::iter(names)
            .map(|user| Self::register(http, base, user))
            .buffered(parallel.max(1))
            .try_collect()
            .await
    }

    /// The four `rempart-*` auth headers for a request (method, path with
    /// query, body), with the current time and a fresh nonce.
    pub fn sign(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> [(&'static str, String); 4] {
        RequestAuth::sign(
            &self.key,
            self.device,
            method,
            path_and_query,
            body,
            unix_now(),
        )
        .headers()
    }

    /// Sends a request signed by this device to server `base`; returns the
    /// body of a 2xx answer, [`BenchError::Status`] for any other.
    pub async fn request(
        &self,
        http: &reqwest::Client,
        base: &str,
        method: reqwest::Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, BenchError> {
        let mut request = http.request(method.clone(), format!("{base}{path_and_query}"));
        for (name, value) in self.sign(method.as_str(), path_and_query, &body) {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await?;
        let status = response.status();
        let answer = response.bytes().await?;
        if !status.is_success() {
            let code = serde_json::from_slice::<ErrorBody>(&answer)
                .map_or_else(|_| "-".to_owned(), |body| body.error);
            return Err(BenchError::Status {
                method: method.to_string(),
                path: path_and_query.to_owned(),
                status: status.as_u16(),
                code,
            });
        }
        Ok(answer.to_vec())
    }

    /// Creates a group with a commit on epoch 0 from this device, adding
    /// `others` (the server takes the commit's bytes as opaque). Returns the
    /// group and its epoch after the commit (1).
    pub async fn create_group(
        &self,
        http: &reqwest::Client,
        base: &str,
        others: impl IntoIterator<Item = DeviceId>,
    ) -> Result<(GroupId, u64), BenchError> {
        let group = GroupId::random();
        let upload = CommitUpload {
            epoch: 0,
            message_id: MessageId::random(),
            commit: vec![0; 64],
            welcome: None,
            add_devices: others.into_iter().collect(),
            remove_devices: Vec::new(),
        };
        let body = serde_json::to_vec(&upload)?;
        let path = api::commits_path(&group);
        let answer = self
            .request(http, base, reqwest::Method::POST, &path, body)
            .await?;
        let appended: Appended = serde_json::from_slice(&answer)?;
        Ok((group, appended.epoch))
    }

    /// Opens this device's authenticated push session: a signed upgrade of
    /// `GET /v1/ws` at `ws_base` (e.g. `ws://127.0.0.1:7800`).
    pub async fn open_session(&self, ws_base: &str) -> Result<Session, BenchError> {
        let mut request = format!("{ws_base}{WS_PATH}").into_client_request()?;
        for (name, value) in self.sign("GET", WS_PATH, b"") {
            let value = HeaderValue::from_str(&value)
                .map_err(|e| tokio_tungstenite::tungstenite::Error::HttpFormat(e.into()))?;
            request.headers_mut().insert(name, value);
        }
        let (session, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(session)
    }
}

impl fmt::Debug for BenchDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BenchDevice")
            .field("user", &self.user)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// Unix time in seconds, for signatures and device lists.
fn unix_now() -> i64 {
    // A clock before 1970 signs timestamp 0, which the server refuses as
    // skewed: an error at the server, not a panic here.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
