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
use openmls::prelude::{
    BasicCredential, CredentialWithKey, KeyPackage, OpenMlsProvider as _, tls_codec::Serialize as _,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use rempart_proto::api::{KeyPackageUpload, RegisterRequest};
use rempart_proto::auth::RequestAuth;
use rempart_proto::{DeviceEntry, DeviceId, DeviceList, PublicKey, SignedDeviceList, UserName};
use rempart_server::{Database, RateLimits, Server, ServerConfig, WitnessPolicy};
use tempfile::TempDir;
use tokio::sync::oneshot;

mod mailservers;
mod people;
pub mod postgres;
mod proxy;

pub use mailservers::{MailServers, REFUSED};
pub use people::{account, alerts, name, t, texts};
pub use proxy::{Exchange, Proxy, StallAt, sign_head};

/// The directory epoch interval of test servers: short, so that a new
/// account's keys are provable soon after it registers.
pub const TEST_EPOCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// A server running in this process on 127.0.0.1 with a fresh data dir.
#[derive(Debug)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    addr: SocketAddr,
    interval: std::time::Duration,
    data: TempDir,
    database: Option<Database>,
    limits: RateLimits,
    stop: Option<oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<Result<(), rempart_server::ServerError>>>,
}

impl TestServer {
    /// Starts a server publishing directory epochs every
    /// [`TEST_EPOCH_INTERVAL`] (call from inside a tokio runtime).
    pub async fn start() -> Self {
        Self::start_with_epochs(TEST_EPOCH_INTERVAL).await
    }

    /// Starts a server publishing directory epochs every `interval`.
    pub async fn start_with_epochs(interval: std::time::Duration) -> Self {
        // The suites run many accounts from one address; the limits have tests
        // of their own.
        Self::launched(
            TempDir::new().unwrap(),
            interval,
            None,
            RateLimits::UNLIMITED,
        )
        .await
    }

    /// A server on `data`, started.
    async fn launched(
        data: TempDir,
        interval: std::time::Duration,
        database: Option<Database>,
        limits: RateLimits,
    ) -> Self {
        let mut server = Self {
            url: String::new(),
            addr: "127.0.0.1:0".parse().unwrap(),
            interval,
            data,
            database,
            limits,
            stop: None,
            running: None,
        };
        server.launch().await;
        server
    }

    /// Starts a server with these rate limits.
    pub async fn start_limited(limits: RateLimits) -> Self {
        Self::launched(TempDir::new().unwrap(), TEST_EPOCH_INTERVAL, None, limits).await
    }

    /// Starts a server node on `database` (e.g. a PostgreSQL schema other
    /// nodes share), with the directory keys of `keys_from`'s data
    /// directory if given (every node of one server needs the same keys),
    /// else new ones.
    pub async fn start_node(database: Database, keys_from: Option<&Path>) -> Self {
        let data = TempDir::new().unwrap();
        if let Some(keys) = keys_from {
            copy_keys(keys, data.path());
        }
        Self::launched(
            data,
            TEST_EPOCH_INTERVAL,
            Some(database),
            RateLimits::UNLIMITED,
        )
        .await
    }

    /// Starts a second server on a copy of another's data (see
    /// [`TestServer::snapshot`]): same directory keys, same accounts and
    /// heads so far, and a life of its own from there, which no witness of
    /// the first server sees (a fork).
    pub async fn start_from(snapshot: &Path) -> Self {
        let data = TempDir::new().unwrap();
        for entry in std::fs::read_dir(snapshot).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, data.path().join(path.file_name().unwrap())).unwrap();
        }
        Self::launched(data, TEST_EPOCH_INTERVAL, None, RateLimits::UNLIMITED).await
    }

    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            running.await.unwrap().unwrap();
        }
    }

    async fn launch(&mut self) {
        let mut config = ServerConfig::new(self.addr, self.data.path().to_owned());
        config.epoch_interval = self.interval;
        config.database = self.database.clone();
        config.rate_limits = self.limits;
        // The suites' witnesses are made after their server: a test server
        // takes any verifying cosignature (the allow-list has its own tests).
        config.witnesses = WitnessPolicy::AnyVerifying;
        let server = Server::bind(config).await.unwrap();
        self.addr = server.local_addr();
        self.url = format!("http://{}", self.addr);
        let (stop, stopped) = oneshot::channel::<()>();
        self.running = Some(tokio::spawn(server.run(async move {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
    }

    /// A consistent copy of the server's data as it is now (its database
    /// and keys), to restart from later with [`TestServer::restart_from`].
    pub fn snapshot(&self) -> TempDir {
        let copy = TempDir::new().unwrap();
        copy_keys(self.data.path(), copy.path());
        let conn = rusqlite::Connection::open(server_database(self.data.path())).unwrap();
        let target = server_database(copy.path());
        conn.execute("VACUUM INTO ?1", [target.to_str().unwrap()])
            .unwrap();
        copy
    }

    /// Stops the server and starts it again, on the same address, from an
    /// older copy of its data: what an operator restoring a backup (or a
    /// server rolling its clients back) does.
    pub async fn restart_from(&mut self, snapshot: &Path) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            running.await.unwrap().unwrap();
        }
        let database = server_database(self.data.path());
        for suffix in ["", "-wal", "-shm"] {
            let mut path = database.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
        for entry in std::fs::read_dir(snapshot).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, self.data.path().join(path.file_name().unwrap())).unwrap();
        }
        self.launch().await;
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

/// Copies the directory's key files (`*.key`) of data directory `from`
/// into `to`.
pub fn copy_keys(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "key") {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
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
    /// Starts `rempart-server --listen LISTEN --data DATA` (with a short
    /// epoch interval) and waits for its `listening on ADDR` line.
    pub fn start(binary: &Path, listen: &str, data: &Path) -> Self {
        Self::start_on(binary, listen, data, None)
    }

    /// [`ServerProcess::start`] with `--database DATABASE` if given.
    pub fn start_on(binary: &Path, listen: &str, data: &Path, database: Option<&str>) -> Self {
        Self::start_with(binary, listen, data, database, &[])
    }

    /// The `rempart-server` beside the binary `rempart` on 127.0.0.1, over a
    /// fresh data directory that lives as long as the returned one, with
    /// `more` arguments.
    pub fn beside(rempart: &Path, more: &[&str]) -> (TempDir, Self) {
        let data = TempDir::new().unwrap();
        let binary = sibling_binary(rempart, "rempart-server");
        let server = Self::start_with(&binary, "127.0.0.1:0", data.path(), None, more);
        (data, server)
    }

    /// [`ServerProcess::start_on`] with more arguments (`--witness KEY`…).
    pub fn start_with(
        binary: &Path,
        listen: &str,
        data: &Path,
        database: Option<&str>,
        more: &[&str],
    ) -> Self {
        let mut command = Command::new(binary);
        command
            .args(["--listen", listen, "--epoch-interval", "100ms", "--data"])
            .arg(data);
        if let Some(database) = database {
            command.args(["--database", database]);
        }
        command.args(more);
        let mut child = command
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
    /// Registers `user` with a fresh random account key and this one new
    /// device, by hand.
    pub async fn register(url: &str, user: &UserName) -> Self {
        let account = SigningKey::generate(&mut rand::rngs::OsRng);
        let device = RawDevice {
            url: url.to_owned(),
            device: DeviceId::random(),
            key: SigningKey::generate(&mut rand::rngs::OsRng),
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
            mail: Vec::new(),
        };
        let register = RegisterRequest {
            user: user.clone(),
            device_list: SignedDeviceList::sign(&list, &account).unwrap(),
            invitation: None,
        };
        let (status, _) = device
            .send(
                "POST",
                "/v1/accounts",
                serde_json::to_vec(&register).unwrap(),
            )
            .await;
        assert!((200..300).contains(&status), "register: {status}");
        device
    }

    /// Uploads `key_package` as this device's one-time and last-resort
    /// KeyPackage.
    pub async fn upload_key_package(&self, key_package: Vec<u8>) {
        let upload = KeyPackageUpload {
            one_time: vec![key_package.clone()],
            last_resort: Some(key_package),
        };
        let (status, _) = self
            .send(
                "POST",
                "/v1/keypackages",
                serde_json::to_vec(&upload).unwrap(),
            )
            .await;
        assert!((200..300).contains(&status), "upload: {status}");
    }

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
    let device = RawDevice::register(url, &user).await;
    let provider = OpenMlsRustCrypto::default();
    let foreign = SignatureKeyPair::new(openmls::prelude::SignatureScheme::ED25519).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(format!("{user}/{}", device.device).into_bytes()).into(),
        signature_key: foreign.public().into(),
    };
    let bundle = KeyPackage::builder()
        .leaf_node_capabilities(rempart_client::protocol::capabilities())
        .build(
            rempart_client::protocol::CIPHERSUITE,
            &provider,
            &foreign,
            credential,
        )
        .unwrap();
    device
        .upload_key_package(bundle.key_package().tls_serialize_detached().unwrap())
        .await;
    device
}

/// Path of the server's database in its data directory.
pub fn server_database(data_dir: &Path) -> PathBuf {
    data_dir.join(rempart_server::DATABASE_FILE)
}

/// The device list the server stores for `user`, read straight from its
/// database.
pub fn stored_device_list(data_dir: &Path, user: &str) -> (SignedDeviceList, u64) {
    let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
    let (list, signature, version): (Vec<u8>, Vec<u8>, i64) = conn
        .query_row(
            "SELECT device_list, list_signature, version FROM accounts WHERE user_name = ?1",
            [user],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    (SignedDeviceList { list, signature }, version as u64)
}

/// Overwrites the device list the server stores for `user` and queues it
/// for the directory's next epoch, as an operator with write access to the
/// database could: the forged list is then published and proven like any
/// other.
pub fn forge_device_list(data_dir: &Path, user: &str, signed: &SignedDeviceList, version: u64) {
    let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
    let changed = conn
        .execute(
            "UPDATE accounts SET device_list = ?2, list_signature = ?3, version = ?4 WHERE user_name = ?1",
            rusqlite::params![user, signed.list, signed.signature, version as i64],
        )
        .unwrap();
    assert_eq!(changed, 1, "no account {user}");
    queue_for_directory(&conn, user, signed);
}

/// Queues `signed` for the directory's next epoch under `user`'s label and
/// the label of each mail address it binds (if it parses), as the server
/// does for a list it accepts.
fn queue_for_directory(conn: &rusqlite::Connection, user: &str, signed: &SignedDeviceList) {
    let value = rempart_proto::directory::directory_value(signed);
    let addresses = serde_json::from_slice::<DeviceList>(&signed.list)
        .map(|list| list.mail)
        .unwrap_or_default();
    let labels = std::iter::once(user.to_owned()).chain(
        addresses
            .iter()
            .map(|binding| rempart_proto::mail::mail_label(&binding.address)),
    );
    for label in labels {
        conn.execute(
            "INSERT INTO directory_pending (user_name, value) VALUES (?1, ?2)",
            rusqlite::params![label, value.as_slice()],
        )
        .unwrap();
        conn.execute(
            "INSERT OR IGNORE INTO directory_device_lists (user_name, value, device_list, list_signature)
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![label, value.as_slice(), signed.list, signed.signature],
        )
        .unwrap();
    }
}

/// The operator gives the mail address `address` to an account of its
/// own, `holder`, made in the database under an account key it holds: a
/// device list binding the address to `certificate` (whose fingerprint is
/// `fingerprint`), the address moved to it, the certificate stored, and all
/// of it queued for the directory's next epoch, as honestly published as
/// any other.
pub fn give_mail_address(
    data_dir: &Path,
    address: &str,
    holder: &str,
    fingerprint: &str,
    certificate: &[u8],
) {
    let account = SigningKey::from_bytes(&[79; 32]);
    let list = DeviceList {
        user: holder.parse().unwrap(),
        account_key: PublicKey::new(account.verifying_key()),
        version: 1,
        timestamp: now(),
        devices: vec![DeviceEntry {
            id: DeviceId::random(),
            signature_key: PublicKey::new(SigningKey::from_bytes(&[80; 32]).verifying_key()),
        }],
        mail: vec![rempart_proto::mail::MailBinding {
            address: rempart_proto::mail::MailAddress::parse(address).unwrap(),
            fingerprint: rempart_proto::mail::Fingerprint::parse(fingerprint).unwrap(),
        }],
    };
    let signed = SignedDeviceList::sign(&list, &account).unwrap();
    let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
    conn.execute(
        "INSERT INTO accounts (user_name, account_key, device_list, list_signature, version)
         VALUES (?1, ?2, ?3, ?4, 1)",
        rusqlite::params![
            holder,
            account.verifying_key().as_bytes().as_slice(),
            signed.list,
            signed.signature
        ],
    )
    .unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO mail_addresses (address, user_name) VALUES (?1, ?2)",
        rusqlite::params![address, holder],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO mail_certificates (fingerprint, user_name, certificate) VALUES (?1, ?2, ?3)",
        rusqlite::params![fingerprint, holder, certificate],
    )
    .unwrap();
    queue_for_directory(&conn, holder, &signed);
}

/// The server shows, beside the valid lookup proof of `user`'s published
/// list, another validly signed list it never published: one under a
/// brand-new account key (a "reset" shown to whoever looks `user` up).
pub fn serve_unpublished_device_list(data_dir: &Path, user: &str) {
    let signed = list_under_new_key(user, 1);
    let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
    let changed = conn
        .execute(
            "UPDATE directory_device_lists SET device_list = ?2, list_signature = ?3
             WHERE user_name = ?1",
            rusqlite::params![user, signed.list, signed.signature],
        )
        .unwrap();
    assert!(changed >= 1, "nothing published for {user}");
}

/// A list for `user` at `version` signed by an account key the server made
/// up (fixed, so that tests are repeatable).
fn list_under_new_key(user: &str, version: u64) -> SignedDeviceList {
    let account = SigningKey::from_bytes(&[77; 32]);
    let list = DeviceList {
        user: user.parse().unwrap(),
        account_key: PublicKey::new(account.verifying_key()),
        version,
        timestamp: now(),
        devices: vec![DeviceEntry {
            id: DeviceId::random(),
            signature_key: PublicKey::new(SigningKey::from_bytes(&[78; 32]).verifying_key()),
        }],
        mail: Vec::new(),
    };
    SignedDeviceList::sign(&list, &account).unwrap()
}

/// The server's attack of adding a ghost device to `user`'s list without
/// the account key: the list gains a device and a version, and keeps the
/// old signature (which no longer matches).
pub fn inject_ghost_device(data_dir: &Path, user: &str) -> DeviceId {
    let (signed, version) = stored_device_list(data_dir, user);
    let mut list: DeviceList = serde_json::from_slice(&signed.list).unwrap();
    let ghost = DeviceId::random();
    list.devices.push(DeviceEntry {
        id: ghost,
        signature_key: PublicKey::new(SigningKey::from_bytes(&[66; 32]).verifying_key()),
    });
    list.version = version + 1;
    let forged = SignedDeviceList {
        list: serde_json::to_vec(&list).unwrap(),
        signature: signed.signature,
    };
    forge_device_list(data_dir, user, &forged, version + 1);
    ghost
}

/// A fake "account reset": `user`'s list replaced by one validly signed
/// under a brand-new account key (what a server holding a new key would
/// show).
pub fn substitute_account_key(data_dir: &Path, user: &str) {
    let (_, version) = stored_device_list(data_dir, user);
    let signed = list_under_new_key(user, version + 1);
    forge_device_list(data_dir, user, &signed, version + 1);
}

/// A group member built directly on openmls, outside the Rempart client:
/// it registers honestly, joins honestly, and can then send commits the
/// real client would never build.
#[derive(Debug)]
pub struct RawMember {
    /// The member's user name.
    pub user: UserName,
    /// Its device, for signed requests.
    pub device: RawDevice,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    group: Option<openmls::prelude::MlsGroup>,
}

impl RawMember {
    /// Registers `user` with one device and uploads a valid KeyPackage.
    pub async fn register(url: &str, user: &str) -> Self {
        Self::register_in(url, user, rempart_client::protocol::CIPHERSUITE).await
    }

    /// Registers like [`RawMember::register`], with its one KeyPackage in
    /// `ciphersuite`: another one than Rempart's is a downgrade.
    pub async fn register_in(
        url: &str,
        user: &str,
        ciphersuite: openmls::prelude::Ciphersuite,
    ) -> Self {
        let user: UserName = user.parse().unwrap();
        let device = RawDevice::register(url, &user).await;
        let signer = SignatureKeyPair::from_raw(
            openmls::prelude::SignatureScheme::ED25519,
            device.key.to_bytes().to_vec(),
            device.key.verifying_key().to_bytes().to_vec(),
        );
        let member = Self {
            user,
            device,
            provider: OpenMlsRustCrypto::default(),
            signer,
            group: None,
        };
        let own = format!("{}/{}", member.user, member.device.device);
        member
            .device
            .upload_key_package(member.key_package_in(ciphersuite, &own, &member.signer))
            .await;
        member
    }

    fn key_package(&self, identity: &str, signer: &SignatureKeyPair) -> Vec<u8> {
        self.key_package_in(rempart_client::protocol::CIPHERSUITE, identity, signer)
    }

    fn key_package_in(
        &self,
        ciphersuite: openmls::prelude::Ciphersuite,
        identity: &str,
        signer: &SignatureKeyPair,
    ) -> Vec<u8> {
        let credential = CredentialWithKey {
            credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
            signature_key: signer.public().into(),
        };
        let capabilities = if ciphersuite == rempart_client::protocol::CIPHERSUITE {
            rempart_client::protocol::capabilities()
        } else {
            openmls::prelude::Capabilities::default()
        };
        KeyPackage::builder()
            .leaf_node_capabilities(capabilities)
            .build(ciphersuite, &self.provider, signer, credential)
            .unwrap()
            .key_package()
            .tls_serialize_detached()
            .unwrap()
    }

    /// Registers `count` members named `{prefix}{i}` (a test-only fast path
    /// for building large groups: no client store, one KeyPackage each).
    pub async fn register_many(url: &str, prefix: &str, count: usize) -> Vec<RawMember> {
        let mut members = Vec::with_capacity(count);
        let names: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
        for chunk in names.chunks(64) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|name| {
                    let (url, name) = (url.to_owned(), name.clone());
                    tokio::spawn(async move { RawMember::register(&url, &name).await })
                })
                .collect();
            for task in tasks {
                members.push(task.await.unwrap());
            }
        }
        members
    }

    /// Joins the group of the first Welcome in its inbox.
    pub async fn join(&mut self) {
        use openmls::prelude::tls_codec::Deserialize as _;
        let (status, body) = self
            .device
            .send("GET", "/v1/inbox?after=0&limit=500", Vec::new())
            .await;
        assert_eq!(status, 200);
        let page: rempart_proto::api::InboxPage = serde_json::from_slice(&body).unwrap();
        let item = page.items.first().expect("no Welcome in the inbox");
        let message = openmls::prelude::MlsMessageIn::tls_deserialize_exact(&item.data).unwrap();
        let openmls::prelude::MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            panic!("not a Welcome");
        };
        let group = openmls::prelude::StagedWelcome::new_from_welcome(
            &self.provider,
            &rempart_client::protocol::join_config(),
            welcome,
            None,
        )
        .unwrap()
        .into_group(&self.provider)
        .unwrap();
        self.group = Some(group);
    }

    /// Commits the addition of a device of its own user that is NOT in its
    /// account-signed device list (a ghost), and uploads the commit with the
    /// right epoch. Returns the HTTP status.
    /// The group's GroupInfo with its ratchet tree, TLS-encoded, as a member
    /// could leak it (Rempart's clients never publish one).
    pub fn leak_group_info(&self) -> Vec<u8> {
        let group = self.group.as_ref().expect("join first");
        group
            .export_group_info(self.provider.crypto(), &self.signer, true)
            .unwrap()
            .tls_serialize_detached()
            .unwrap()
    }

    /// Joins the group of `group_info` by an external commit of its own, as
    /// no member invited it to. Returns the commit, TLS-encoded.
    pub fn external_commit(&mut self, group_info: &[u8]) -> Vec<u8> {
        use openmls::prelude::tls_codec::Deserialize as _;
        let message = openmls::prelude::MlsMessageIn::tls_deserialize_exact(group_info).unwrap();
        let openmls::prelude::MlsMessageBodyIn::GroupInfo(group_info) = message.extract() else {
            panic!("not a GroupInfo");
        };
        let credential = CredentialWithKey {
            credential: BasicCredential::new(
                format!("{}/{}", self.user, self.device.device).into_bytes(),
            )
            .into(),
            signature_key: self.signer.public().into(),
        };
        #[allow(deprecated)]
        let (group, commit, _) = openmls::prelude::MlsGroup::join_by_external_commit(
            &self.provider,
            &self.signer,
            None,
            group_info,
            &rempart_client::protocol::join_config(),
            Some(rempart_client::protocol::capabilities()),
            None,
            &[],
            credential,
        )
        .unwrap();
        self.group = Some(group);
        commit.tls_serialize_detached().unwrap()
    }

    pub async fn commit_ghost_device(&mut self) -> u16 {
        let ghost_signer =
            SignatureKeyPair::new(openmls::prelude::SignatureScheme::ED25519).unwrap();
        let ghost = format!("{}/{}", self.user, DeviceId::random());
        let kp_bytes = self.key_package(&ghost, &ghost_signer);
        use openmls::prelude::tls_codec::Deserialize as _;
        let kp = openmls::prelude::KeyPackageIn::tls_deserialize_exact(&kp_bytes)
            .unwrap()
            .validate(
                self.provider.crypto(),
                openmls::prelude::ProtocolVersion::Mls10,
            )
            .unwrap();
        let group = self.group.as_mut().expect("join first");
        let epoch = group.epoch().as_u64();
        let (commit, _, _) = group
            .add_members(&self.provider, &self.signer, &[kp])
            .unwrap();
        self.upload_commit(epoch, commit.tls_serialize_detached().unwrap())
            .await
    }

    /// The group it joined.
    pub fn group_id(&self) -> rempart_proto::GroupId {
        let group = self.group.as_ref().expect("join first");
        rempart_proto::GroupId::from_bytes(group.group_id().as_slice().try_into().unwrap())
    }

    /// Commits a self-update as an MLS PublicMessage, against the group's
    /// policy of PrivateMessage commits (what mls-rs does by default), and
    /// uploads it with the right epoch. Returns the HTTP status.
    pub async fn commit_update_as_public_message(&mut self) -> u16 {
        let group = self.group.as_mut().expect("join first");
        let plaintext = openmls::prelude::MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .wire_format_policy(openmls::prelude::PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .build();
        group
            .set_configuration(self.provider.storage(), &plaintext)
            .unwrap();
        let epoch = group.epoch().as_u64();
        let bundle = group
            .self_update(&self.provider, &self.signer, Default::default())
            .unwrap();
        let commit = bundle.commit().tls_serialize_detached().unwrap();
        self.upload_commit(epoch, commit).await
    }

    /// Drops its pending commit, goes back to the group's policy, and
    /// commits a self-update as a PrivateMessage, as a standard member
    /// does; uploads it as a commit of server epoch `server_epoch` and
    /// merges it once accepted. Returns the HTTP status.
    pub async fn commit_update_at(&mut self, server_epoch: u64) -> u16 {
        let group = self.group.as_mut().expect("join first");
        group.clear_pending_commit(self.provider.storage()).unwrap();
        group
            .set_configuration(
                self.provider.storage(),
                &rempart_client::protocol::join_config(),
            )
            .unwrap();
        let bundle = group
            .self_update(&self.provider, &self.signer, Default::default())
            .unwrap();
        let commit = bundle.commit().tls_serialize_detached().unwrap();
        let status = self.upload_commit(server_epoch, commit).await;
        if status == 200 {
            let group = self.group.as_mut().expect("joined above");
            group.merge_pending_commit(&self.provider).unwrap();
        }
        status
    }

    /// Commits a self-update and uploads the first half of its bytes, with
    /// the right epoch. Returns the HTTP status.
    pub async fn commit_truncated(&mut self) -> u16 {
        let group = self.group.as_mut().expect("join first");
        let epoch = group.epoch().as_u64();
        let bundle = group
            .self_update(&self.provider, &self.signer, Default::default())
            .unwrap();
        let mut commit = bundle.commit().tls_serialize_detached().unwrap();
        commit.truncate(commit.len() / 2);
        self.upload_commit(epoch, commit).await
    }

    /// Uploads `commit` as a commit of server epoch `epoch`, claiming no
    /// change of membership. Returns the HTTP status.
    async fn upload_commit(&self, epoch: u64, commit: Vec<u8>) -> u16 {
        let upload = rempart_proto::api::CommitUpload {
            epoch,
            message_id: rempart_proto::MessageId::random(),
            commit,
            welcome: None,
            add_devices: Vec::new(),
            remove_devices: Vec::new(),
        };
        let (status, _) = self
            .device
            .send(
                "POST",
                &rempart_proto::api::commits_path(&self.group_id()),
                serde_json::to_vec(&upload).unwrap(),
            )
            .await;
        status
    }
}

/// The newest directory epoch whose head the server stores.
pub fn latest_head_epoch(data_dir: &Path) -> u64 {
    let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
    let epoch: Option<i64> = conn
        .query_row("SELECT MAX(epoch) FROM directory_heads", [], |r| r.get(0))
        .unwrap();
    epoch.unwrap_or(0) as u64
}

/// The operator puts `address` back with `user`, its genuine holder:
/// the address is `user`'s again, and `user`'s stored device list is queued
/// again under its labels, so that the directory shows the genuine binding
/// once more and only its history keeps what happened in between.
pub fn give_mail_address_back(data_dir: &Path, address: &str, user: &str) {
    let (signed, _) = stored_device_list(data_dir, user);
    let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
    conn.execute(
        "UPDATE mail_addresses SET user_name = ?2 WHERE address = ?1",
        rusqlite::params![address, user],
    )
    .unwrap();
    queue_for_directory(&conn, user, &signed);
}

/// Waits (polling, with a deadline) until the directory has published
/// every update queued so far.
pub async fn wait_until_published(data_dir: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
        let queued: i64 = conn
            .query_row("SELECT count(*) FROM directory_pending", [], |r| r.get(0))
            .unwrap();
        if queued == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{queued} directory updates stay queued"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Waits (polling, with a deadline) until the server has published an epoch
/// at least `epoch`.
pub async fn wait_for_epoch(data_dir: &Path, epoch: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while latest_head_epoch(data_dir) < epoch {
        assert!(
            std::time::Instant::now() < deadline,
            "no epoch {epoch} published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The page of the group log after `after` straight from the server's
/// database, whoever asks: what a server that ignores removals serves.
pub fn stored_log_page(
    data_dir: &Path,
    group: &rempart_proto::GroupId,
    after: u64,
) -> rempart_proto::api::LogPage {
    use rempart_proto::MessageId;
    use rempart_proto::api::{EntryKind, LogEntry, LogPage};
    let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
    let mut query = conn
        .prepare("SELECT seq, kind, epoch, sender, message_id, data FROM log WHERE group_id = ?1 AND seq > ?2 ORDER BY seq")
        .unwrap();
    let entries: Vec<LogEntry> = query
        .query_map(rusqlite::params![group.as_bytes(), after as i64], |row| {
            Ok(LogEntry {
                seq: row.get::<_, i64>(0)? as u64,
                kind: if row.get::<_, String>(1)? == "commit" {
                    EntryKind::Commit
                } else {
                    EntryKind::Application
                },
                epoch: row.get::<_, i64>(2)? as u64,
                sender: DeviceId::from_bytes(row.get(3)?),
                message_id: MessageId::from_bytes(row.get(4)?),
                data: row.get(5)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let (epoch, last_seq): (i64, i64) = conn
        .query_row(
            "SELECT epoch, last_seq FROM groups WHERE group_id = ?1",
            [group.as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    LogPage {
        entries,
        epoch: epoch as u64,
        last_seq: last_seq as u64,
    }
}

/// The server appends an entry of its own making to `group`'s log, as if
/// `sender` had uploaded it; a commit moves the group's epoch counter, as
/// an accepted commit does.
pub fn inject_log_entry(
    data_dir: &Path,
    group: &rempart_proto::GroupId,
    kind: rempart_proto::api::EntryKind,
    sender: DeviceId,
    data: &[u8],
) {
    use rempart_proto::api::EntryKind;
    let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
    let (epoch, last_seq): (i64, i64) = conn
        .query_row(
            "SELECT epoch, last_seq FROM groups WHERE group_id = ?1",
            [group.as_bytes()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let commit = kind == EntryKind::Commit;
    conn.execute(
        "INSERT INTO log (group_id, seq, kind, epoch, sender, message_id, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            group.as_bytes(),
            last_seq + 1,
            if commit { "commit" } else { "application" },
            epoch,
            sender.as_bytes(),
            rempart_proto::MessageId::random().as_bytes(),
            data
        ],
    )
    .unwrap();
    conn.execute(
        "UPDATE groups SET epoch = ?2, last_seq = ?3 WHERE group_id = ?1",
        rusqlite::params![group.as_bytes(), epoch + i64::from(commit), last_seq + 1],
    )
    .unwrap();
}

/// The server withholds every one-time KeyPackage of `user`'s devices, so
/// that a claim gets the last-resort one.
pub fn withhold_one_time_key_packages(data_dir: &Path, user: &str) {
    let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
    let withheld = conn
        .execute(
            "DELETE FROM key_packages WHERE device_id IN
                 (SELECT device_id FROM devices WHERE user_name = ?1)",
            [user],
        )
        .unwrap();
    assert!(withheld > 0, "{user} has no one-time KeyPackage");
}

/// The signed head of `epoch` with its cosignatures, as the server stores it.
pub fn stored_head(data_dir: &Path, epoch: u64) -> rempart_proto::directory::HeadWithCosignatures {
    use rempart_proto::directory::{HeadWithCosignatures, SignedHead};
    let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
    let (head, signature): (Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT head, signature FROM directory_heads WHERE epoch = ?1",
            [epoch as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    HeadWithCosignatures {
        head: SignedHead { head, signature },
        cosignatures: Vec::new(),
    }
}

/// Rewrites the stored head of `epoch` in the server's database with `edit`
/// applied to its bytes and signature.
fn rewrite_head(data_dir: &Path, epoch: u64, edit: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>)) {
    let conn = rusqlite::Connection::open(server_database(data_dir)).unwrap();
    let (mut head, mut signature): (Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT head, signature FROM directory_heads WHERE epoch = ?1",
            [epoch as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    edit(&mut head, &mut signature);
    conn.execute(
        "UPDATE directory_heads SET head = ?2, signature = ?3 WHERE epoch = ?1",
        rusqlite::params![epoch as i64, head, signature],
    )
    .unwrap();
}

/// The server serves a latest head its directory key did not sign.
pub fn forge_unsigned_head(data_dir: &Path) {
    rewrite_head(data_dir, latest_head_epoch(data_dir), |_, signature| {
        signature[0] ^= 1
    });
}

/// The server signs a second, different head for its latest epoch (as a
/// server showing two views would), with its own directory key.
pub fn equivocate_latest_head(data_dir: &Path) {
    equivocate_head(data_dir, latest_head_epoch(data_dir));
}

/// The server signs, with its own directory key, a head for `epoch` with
/// another root hash than the one akd computed, and serves it from then on.
pub fn equivocate_head(data_dir: &Path, epoch: u64) {
    use rempart_proto::directory::DirectoryHead;
    rewrite_head(data_dir, epoch, |head, signature| {
        let mut parsed: DirectoryHead = serde_json::from_slice(head).unwrap();
        parsed.root_hash[0] ^= 0xff;
        let forged = sign_head(data_dir, &parsed);
        *head = forged.head;
        *signature = forged.signature;
    });
}

/// A witness cosigns the server's latest head and posts the cosignature.
pub async fn cosign_latest_head(url: &str, witness: &SigningKey) {
    use rempart_proto::directory::{
        self as kt, Cosignature, HeadWithCosignatures, PostCosignature,
    };
    let http = reqwest::Client::new();
    let latest: HeadWithCosignatures = http
        .get(format!("{url}{}", kt::HEAD_PATH))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let head = latest.head.parse_unverified().unwrap();
    let post = PostCosignature {
        epoch: head.epoch,
        cosignature: Cosignature::sign(witness, &head.server_id, head.epoch, &head.root_hash),
    };
    let response = http
        .post(format!("{url}{}", kt::COSIGNATURES_PATH))
        .json(&post)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// A witness key that cosigns every head the server publishes, checking
/// each about every 50 ms, until dropped: a live witness for tests of the
/// client, which judge only whether a head carries its cosignatures.
#[derive(Debug)]
pub struct Cosigner(tokio::task::JoinHandle<()>);

impl Cosigner {
    /// Starts cosigning `url`'s heads with `witness` (call inside a tokio
    /// runtime).
    pub fn start(url: &str, witness: SigningKey) -> Self {
        use rempart_proto::directory::{
            self as kt, Cosignature, HeadWithCosignatures, PostCosignature,
        };
        use rempart_proto::limits::MAX_HEADS_PER_REQUEST;
        let url = url.to_owned();
        Self(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let get = async |path: String| -> Option<Vec<HeadWithCosignatures>> {
                let response = http.get(format!("{url}{path}")).send().await.ok()?;
                if !response.status().is_success() {
                    return None;
                }
                response.json().await.ok()
            };
            let mut next = 1;
            loop {
                let to = match http.get(format!("{url}{}", kt::HEAD_PATH)).send().await {
                    Ok(response) if response.status().is_success() => response
                        .json::<HeadWithCosignatures>()
                        .await
                        .ok()
                        .and_then(|l| l.head.parse_unverified().ok())
                        .map(|h| h.epoch),
                    _ => None,
                };
                if let Some(to) = to.filter(|to| *to >= next) {
                    let to = to.min(next + MAX_HEADS_PER_REQUEST - 1);
                    for signed in get(kt::heads_path(next, to)).await.unwrap_or_default() {
                        let Ok(head) = signed.head.parse_unverified() else {
                            continue;
                        };
                        let post = PostCosignature {
                            epoch: head.epoch,
                            cosignature: Cosignature::sign(
                                &witness,
                                &head.server_id,
                                head.epoch,
                                &head.root_hash,
                            ),
                        };
                        let posted = http
                            .post(format!("{url}{}", kt::COSIGNATURES_PATH))
                            .json(&post)
                            .send()
                            .await;
                        if posted.is_ok_and(|r| r.status().is_success()) {
                            next = next.max(head.epoch + 1);
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }))
    }
}

impl Drop for Cosigner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A file holding a passphrase, for the `rempart` processes of a test run
/// (`REMPART_PASSPHRASE_FILE`): their stores are encrypted, as users' are.
pub fn passphrase_file() -> &'static Path {
    static FILE: std::sync::OnceLock<(TempDir, PathBuf)> = std::sync::OnceLock::new();
    &FILE
        .get_or_init(|| {
            let dir = TempDir::new().unwrap();
            let path = dir.path().join("passphrase");
            std::fs::write(&path, "a test passphrase, not a secret\n").unwrap();
            (dir, path)
        })
        .1
}

/// Checks that a command succeeded, showing what it said otherwise.
pub fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks that a command failed with exit status 1, saying `said` on
/// stderr.
pub fn failed_saying(out: &std::process::Output, said: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(said), "{said:?} not in {stderr:?}");
}

/// Runs GnuPG (Debian's `gnupg`; `.ci/run` installs it) on the keyring in
/// `home`, in batch mode with no passphrase, feeding it `stdin`.
pub fn gpg(home: &Path, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("GnuPG (apt-get install gnupg)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `data` signed by `signer` and encrypted to `recipient` by GnuPG with
/// the keyring in `home`, in ASCII armor.
pub fn gpg_sign_encrypt(home: &Path, signer: &str, recipient: &str, data: &[u8]) -> String {
    let encrypted = gpg(
        home,
        &[
            "--trust-model",
            "always",
            "--armor",
            "--sign",
            "--local-user",
            signer,
            "--encrypt",
            "--recipient",
            recipient,
        ],
        data,
    );
    assert!(encrypted.status.success(), "{encrypted:?}");
    String::from_utf8(encrypted.stdout).unwrap()
}

/// A PGP/MIME message (RFC 3156) from `from` to `to` around `armored`, as
/// another mail program writes it, with the header lines `headers` (each
/// ending in CRLF: its Message-ID, an Autocrypt header...).
pub fn pgp_mime(from: &str, to: &str, headers: &str, armored: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: ...\r\nMIME-Version: 1.0\r\n{headers}\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --b\r\nContent-Type: application/octet-stream\r\n\r\n{armored}\r\n--b--\r\n"
    )
}

/// An `Autocrypt` header line (Level 1) giving `certificate` (binary) for
/// `address`, folded, ending in CRLF.
pub fn autocrypt_header(address: &str, certificate: &[u8]) -> String {
    use base64::Engine as _;
    let keydata = base64::engine::general_purpose::STANDARD.encode(certificate);
    let folded: Vec<&str> = keydata
        .as_bytes()
        .chunks(72)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "Autocrypt: addr={address}; keydata=\r\n {}\r\n",
        folded.join("\r\n ")
    )
}
