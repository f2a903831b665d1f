//! A server on a real socket, and devices that sign their own requests.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use rand::rngs::OsRng;
use rempart_proto::api::{
    self, Appended, CommitUpload, ErrorBody, KeyPackageStatus, KeyPackageUpload, LogPage,
    RegisterRequest,
};
use rempart_proto::auth::RequestAuth;
use rempart_proto::{DeviceEntry, DeviceId, DeviceList, GroupId, MessageId, PublicKey};
use rempart_proto::{SignedDeviceList, UserName};
use rempart_server::{Database, RateLimits, Server, ServerConfig, ServerError, WitnessPolicy};
use reqwest::{Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server and an HTTP client for it.
pub struct TestServer {
    pub url: String,
    /// The data directory the server runs over.
    pub data_dir: PathBuf,
    http: reqwest::Client,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
    _data: Option<TempDir>,
}

impl TestServer {
    /// A server over a fresh data directory.
    pub async fn start() -> Self {
        let data = TempDir::new().unwrap();
        let mut server = Self::start_in(&data.path().join("data")).await;
        server._data = Some(data);
        server
    }

    /// A server over `data_dir`, which the caller keeps.
    pub async fn start_in(data_dir: &Path) -> Self {
        Self::start_in_every(data_dir, rempart_server::DEFAULT_EPOCH_INTERVAL).await
    }

    /// A server over `data_dir` whose directory publishes every `epoch_interval`.
    pub async fn start_in_every(data_dir: &Path, epoch_interval: Duration) -> Self {
        Self::start_on(None, data_dir, epoch_interval).await
    }

    /// A server over `database` (its SQLite file in `data_dir` if `None`)
    /// with its keys in `data_dir`.
    pub async fn start_on(
        database: Option<Database>,
        data_dir: &Path,
        epoch_interval: Duration,
    ) -> Self {
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), PathBuf::from(data_dir));
        config.epoch_interval = epoch_interval;
        config.database = database;
        // Many accounts from one address: the limits are tested with
        // their own configuration (`limits.rs`).
        config.rate_limits = RateLimits::UNLIMITED;
        // Cosignatures by keys made in the tests; the allow-list is tested
        // with its own configuration.
        config.witnesses = WitnessPolicy::AnyVerifying;
        Self::start_with(config).await
    }

    /// A server over a fresh data directory that pings silent push
    /// sessions every `interval`.
    pub async fn start_pinging(interval: Duration) -> Self {
        let data = TempDir::new().unwrap();
        let mut config =
            ServerConfig::new("127.0.0.1:0".parse().unwrap(), data.path().join("data"));
        config.session_ping_interval = interval;
        config.rate_limits = RateLimits::UNLIMITED;
        let mut server = Self::start_with(config).await;
        server._data = Some(data);
        server
    }

    /// A server over a fresh data directory with these rate limits.
    pub async fn start_limited(limits: RateLimits) -> Self {
        let data = TempDir::new().unwrap();
        let mut config =
            ServerConfig::new("127.0.0.1:0".parse().unwrap(), data.path().join("data"));
        config.rate_limits = limits;
        let mut server = Self::start_with(config).await;
        server._data = Some(data);
        server
    }

    /// A server as `config` says.
    pub async fn start_with(config: ServerConfig) -> Self {
        let data_dir = config.data_dir.clone();
        let server = Server::bind(config).await.unwrap();
        let url = format!("http://{}", server.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self {
            url,
            data_dir,
            http: reqwest::Client::new(),
            stop,
            task,
            _data: None,
        }
    }

    /// Shuts the server down gracefully and waits until it has stopped.
    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }

    /// Sends a request with the given headers, exactly as given.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
    ) -> Response {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.body(body).send().await.unwrap()
    }

    /// Sends a request without authentication headers.
    pub async fn unsigned(&self, method: &str, path: &str, body: Vec<u8>) -> Response {
        self.raw(method, path, &[], body).await
    }

    /// A connection to the server's database, to look at what it stores.
    pub fn database(&self) -> rusqlite::Connection {
        let conn =
            rusqlite::Connection::open(self.data_dir.join(rempart_server::DATABASE_FILE)).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn
    }

    /// Sends a request signed by `device` now.
    pub async fn call(&self, device: &Device, method: &str, path: &str, body: Vec<u8>) -> Response {
        let headers = device.sign(method, path, &body, now());
        self.raw(method, path, &headers, body).await
    }

    /// Sends a JSON body signed by `device` now.
    pub async fn call_json(
        &self,
        device: &Device,
        method: &str,
        path: &str,
        body: &impl Serialize,
    ) -> Response {
        self.call(device, method, path, serde_json::to_vec(body).unwrap())
            .await
    }

    /// Registers `account` (signed by its first device) and checks the answer.
    pub async fn register(&self, account: &Account) {
        let response = self.try_register(account, &account.signed_list(1)).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    /// Sends a registration of `account` with `list`, signed by its first device.
    pub async fn try_register(&self, account: &Account, list: &SignedDeviceList) -> Response {
        let request = RegisterRequest {
            user: account.user.clone(),
            device_list: list.clone(),
            invitation: None,
        };
        self.call_json(&account.devices[0], "POST", api::ACCOUNTS_PATH, &request)
            .await
    }

    /// The user's device list, or the error status.
    pub async fn device_list(&self, user: &UserName) -> Result<SignedDeviceList, StatusCode> {
        let response = self
            .http
            .get(format!("{}{}", self.url, api::devices_path(user)))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::OK {
            Ok(response.json().await.unwrap())
        } else {
            Err(response.status())
        }
    }

    pub async fn upload(&self, device: &Device, upload: &KeyPackageUpload) -> KeyPackageStatus {
        ok(self
            .call_json(device, "POST", api::KEYPACKAGES_PATH, upload)
            .await)
        .await
    }

    pub async fn key_package_status(&self, device: &Device) -> KeyPackageStatus {
        ok(self
            .call(device, "GET", api::KEYPACKAGES_PATH, Vec::new())
            .await)
        .await
    }

    pub async fn commit(
        &self,
        device: &Device,
        group: &GroupId,
        upload: &CommitUpload,
    ) -> Response {
        self.call_json(device, "POST", &api::commits_path(group), upload)
            .await
    }

    pub async fn send_message(
        &self,
        device: &Device,
        group: &GroupId,
        message_id: &MessageId,
        data: &[u8],
    ) -> Response {
        // Encrypted "now": in the group's current epoch, as a caught-up
        // member would. Non-members and unknown groups get epoch 0.
        let response = self.read_log(device, group, 1 << 62).await;
        let epoch = if response.status().is_success() {
            response.json::<LogPage>().await.unwrap().epoch
        } else {
            0
        };
        self.send_message_at(device, group, message_id, epoch, data)
            .await
    }

    /// Sends a message claiming to be encrypted in `epoch`.
    pub async fn send_message_at(
        &self,
        device: &Device,
        group: &GroupId,
        message_id: &MessageId,
        epoch: u64,
        data: &[u8],
    ) -> Response {
        let path = api::message_path(group, message_id, epoch);
        self.call(device, "PUT", &path, data.to_vec()).await
    }

    pub async fn read_log(&self, device: &Device, group: &GroupId, after: u64) -> Response {
        self.call(device, "GET", &api::log_path(group, after, 500), Vec::new())
            .await
    }

    /// The whole log, read by a member.
    pub async fn log(&self, device: &Device, group: &GroupId) -> LogPage {
        ok(self.read_log(device, group, 0).await).await
    }
}

/// A device and its signature key.
pub struct Device {
    pub id: DeviceId,
    pub key: SigningKey,
}

impl Device {
    pub fn new() -> Self {
        Self {
            id: DeviceId::random(),
            key: SigningKey::generate(&mut OsRng),
        }
    }

    /// The four auth headers of a request signed at `timestamp`.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        timestamp: i64,
    ) -> Vec<(&'static str, String)> {
        RequestAuth::sign(&self.key, self.id, method, path, body, timestamp)
            .headers()
            .to_vec()
    }

    pub fn entry(&self) -> DeviceEntry {
        DeviceEntry {
            id: self.id,
            signature_key: PublicKey::new(self.key.verifying_key()),
        }
    }
}

/// An account key and its devices.
pub struct Account {
    pub user: UserName,
    pub account_key: SigningKey,
    pub devices: Vec<Device>,
}

impl Account {
    pub fn new(user: &str, devices: usize) -> Self {
        Self {
            user: user.parse().unwrap(),
            account_key: SigningKey::generate(&mut OsRng),
            devices: (0..devices).map(|_| Device::new()).collect(),
        }
    }

    /// The account's device list at `version`, signed by its account key.
    /// The same version gives the same bytes (its timestamp is derived from
    /// the version), so tests can compare what the server serves with it.
    pub fn signed_list(&self, version: u64) -> SignedDeviceList {
        let list = DeviceList {
            user: self.user.clone(),
            account_key: PublicKey::new(self.account_key.verifying_key()),
            version,
            timestamp: 1_700_000_000 + version as i64,
            devices: self.devices.iter().map(Device::entry).collect(),
            mail: Vec::new(),
        };
        SignedDeviceList::sign(&list, &self.account_key).unwrap()
    }

    pub fn device(&self) -> &Device {
        &self.devices[0]
    }
}

/// A commit upload that creates a group or builds on `epoch`.
pub fn commit_upload(epoch: u64, add: &[&Device], welcome: Option<&[u8]>) -> CommitUpload {
    CommitUpload {
        epoch,
        message_id: MessageId::random(),
        commit: format!("commit on epoch {epoch}").into_bytes(),
        welcome: welcome.map(<[u8]>::to_vec),
        add_devices: add.iter().map(|d| d.id).collect(),
        remove_devices: Vec::new(),
    }
}

/// Creates a group with `creator` and adds `members` (Welcome included).
pub async fn create_group(server: &TestServer, creator: &Device, members: &[&Device]) -> GroupId {
    let group = GroupId::random();
    let upload = commit_upload(0, members, Some(b"welcome"));
    let appended: Appended = ok(server.commit(creator, &group, &upload).await).await;
    assert_eq!(appended, Appended { seq: 1, epoch: 1 });
    group
}

/// The body of a 200 answer.
pub async fn ok<T: DeserializeOwned>(response: Response) -> T {
    let status = response.status();
    let body = response.bytes().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Checks an error answer's status and code; returns its body.
pub async fn refused(response: Response, status: u16, code: &str) -> ErrorBody {
    assert_eq!(response.status().as_u16(), status);
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error, code, "{}", body.message);
    body
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}
