//! Test support shared by Rempart's test suites: a server in process or as a
//! process, signed raw requests, and peers built by hand to misbehave in ways
//! the real client never would. Test-only: never a dependency of a release
//! binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ed25519_dalek::SigningKey;
use openmls::prelude::{BasicCredential, CredentialWithKey, KeyPackage, tls_codec::Serialize as _};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use rempart_proto::api::{KeyPackageUpload, RegisterRequest};
use rempart_proto::auth::RequestAuth;
use rempart_proto::{DeviceEntry, DeviceId, DeviceList, PublicKey, SignedDeviceList, UserName};
use rempart_server::{Server, ServerConfig};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A server running in this process on 127.0.0.1 with a fresh data dir.
#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    data: TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl TestServer {
    /// Starts a server (call from inside a tokio runtime).
    pub async fn start() -> Self {
        let data = TempDir::new().unwrap();
        let server = Server::bind(ServerConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            data.path().to_owned(),
        ))
        .await
        .unwrap();
        let url = format!("http://{}", server.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self {
            url,
            data,
            stop: Some(stop),
        }
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A `rempart-server` process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `rempart-server --listen LISTEN --data DATA` and waits for its
    /// `listening on ADDR` line.
    pub fn start(binary: &Path, listen: &str, data: &Path) -> Self {
        let mut child = Command::new(binary)
            .args(["--listen", listen, "--data"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGTERM and waits; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap().success()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a binary built beside the running test's own binaries
/// (`target/<profile>/NAME`), e.g. `rempart-server` from another crate.
pub fn sibling_binary(beside: &Path, name: &str) -> PathBuf {
    let path = beside.with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo test --workspace` does)",
        path.display()
    );
    path
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A device driven by hand: signs raw requests with its key.
#[derive(Debug)]
pub struct RawDevice {
    /// Server URL.
    pub url: String,
    /// Device id.
    pub device: DeviceId,
    /// Device key.
    pub key: SigningKey,
    http: reqwest::Client,
}

impl RawDevice {
    /// Sends a request signed by this device; returns status and body.
    pub async fn send(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        let auth = RequestAuth::sign(&self.key, self.device, method, path, &body, now());
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{}", self.url, path));
        for (h, v) in auth.headers() {
            request = request.header(h, v);
        }
        let response = request
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }
}

/// Registers `user` by hand with one device, and uploads one KeyPackage that
/// names that device but is signed by a key that is NOT in the account-signed
/// device list: what a malicious server substituting KeyPackages, or a
/// malicious peer, would hand out.
pub async fn register_with_foreign_key_package(url: &str, user: &str) -> RawDevice {
    let user: UserName = user.parse().unwrap();
    let account = SigningKey::from_bytes(&[11; 32]);
    let device = RawDevice {
        url: url.to_owned(),
        device: DeviceId::random(),
        key: SigningKey::from_bytes(&[12; 32]),
        http: reqwest::Client::new(),
    };
    let list = DeviceList {
        user: user.clone(),
        account_key: PublicKey::new(account.verifying_key()),
        version: 1,
        timestamp: now(),
        devices: vec![DeviceEntry {
            id: device.device,
            signature_key: PublicKey::new(device.key.verifying_key()),
        }],
    };
    let register = RegisterRequest {
        user: user.clone(),
        device_list: SignedDeviceList::sign(&list, &account).unwrap(),
    };
    let (status, _) = device
        .send(
            "POST",
            "/v1/accounts",
            serde_json::to_vec(&register).unwrap(),
        )
        .await;
    assert!((200..300).contains(&status), "register: {status}");

    let provider = OpenMlsRustCrypto::default();
    let foreign = SignatureKeyPair::new(openmls::prelude::SignatureScheme::ED25519).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(format!("{user}/{}", device.device).into_bytes()).into(),
        signature_key: foreign.public().into(),
    };
    let bundle = KeyPackage::builder()
        .build(
            openmls::prelude::Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
            &provider,
            &foreign,
            credential,
        )
        .unwrap();
    let bytes = bundle.key_package().tls_serialize_detached().unwrap();
    let upload = KeyPackageUpload {
        one_time: vec![bytes.clone()],
        last_resort: Some(bytes),
    };
    let (status, _) = device
        .send(
            "POST",
            "/v1/keypackages",
            serde_json::to_vec(&upload).unwrap(),
        )
        .await;
    assert!((200..300).contains(&status), "upload: {status}");
    device
}
