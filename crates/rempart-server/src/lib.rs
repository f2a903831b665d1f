//! The Rempart server: delivery service, accounts, KeyPackages and push.
//!
//! # What the server holds
//!
//! The server is an untrusted relay. It stores:
//!
//! - each account's device list exactly as the client signed it with its
//!   account key, and each device's Ed25519 public key (to check request
//!   signatures);
//! - opaque MLS bytes: KeyPackages, commits, Welcomes and application
//!   messages, all of which are public or encrypted end to end (a Welcome is
//!   stored once however many devices it adds);
//! - the ordering metadata it needs to deliver them: group ids, epochs,
//!   sequence numbers, sender device ids, client-chosen message ids, and the
//!   devices it counts as group members;
//! - for device linking, for [`LINK_TTL_SECS`](rempart_proto::limits::LINK_TTL_SECS)
//!   at most: a rendezvous id, the device that opened it, and the sealed
//!   request and response the two devices exchange, which it cannot read;
//! - recently used request nonces, to refuse replays;
//! - the key-transparency directory's state ([`directory`]): user names,
//!   the hashes of their device lists by epoch, and akd's tree over them,
//!   all of it meant to be public; every device list it accepted, the signed
//!   epoch heads and witness cosignatures.
//!
//! Its only secrets are the directory's two keys (the head-signing key and
//! akd's VRF key), each in its own mode-0600 file of the data directory,
//! never in the database and never logged. It holds no user's private key,
//! password, token or plaintext, and it never logs a request body.
//!
//! # Delivery model
//!
//! Every request from a device is signed by that device's key
//! ([`rempart_proto::auth`]); there are no sessions or bearer tokens. Each
//! conversation is an MLS group with one append-only log on the server. A
//! commit is accepted only if it is built on the group's current epoch, so
//! concurrent commits are ordered first-writer-wins and the loser gets a
//! `stale_epoch` conflict; an application message is written once and read
//! by every member by cursor. Welcomes go to per-device inboxes. Device lists
//! and KeyPackages can be fetched or claimed for many users in one request. A
//! write is acknowledged only after it is durable (see [`store`]): on SQLite,
//! writes are group-committed by a single writer; on PostgreSQL, each is a
//! transaction committed with `synchronous_commit` on, and an unreachable
//! database gives 503 with `Retry-After`. Message ids make retries
//! idempotent. Push notifications over a WebSocket tell devices when to read;
//! polling works without them.
//!
//! # Several nodes
//!
//! On PostgreSQL ([`Database::Postgres`]), any number of server processes
//! may share one database: every node serves every user, push notices cross
//! nodes through PostgreSQL's `LISTEN`/`NOTIFY`, request nonces are shared,
//! and one node at a time (chosen by an advisory lock) publishes directory
//! epochs. Every node needs the same directory keys.
//!
//! ```
//! use std::net::SocketAddr;
//!
//! use rempart_server::{Server, ServerConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = tempfile::tempdir()?;
//! let config = ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), data.path().join("db"));
//! let server = Server::bind(config).await?;
//! println!("listening on {}", server.local_addr());
//! // Serve until the future resolves; here, stop at once.
//! server.run(async {}).await?;
//! # Ok(())
//! # }
//! ```

mod accounts;
mod auth;
mod body_deadline;
mod database;
mod delivery;
pub mod directory;
mod error;
mod idle;
mod inbox;
mod invitations;
mod keypackages;
mod links;
mod mail;
mod openapi;
mod push;
mod rate;
mod relay;
pub mod store;

use std::fs::DirBuilder;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::{fmt, io};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use rempart_proto::api::{self, Health};
use rempart_proto::directory as kt;
use rempart_proto::limits::MAX_BODY_BYTES;
use rempart_proto::mail::{MAIL_CERTIFICATES_PATH, MAIL_HISTORY_PATH, MAIL_LOOKUP_PATH};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_http::trace::TraceLayer;

pub use crate::body_deadline::{BODY_READ_ALLOWANCE, MIN_BODY_RATE};
pub use crate::database::{Database, DatabaseError};
pub use crate::directory::WitnessPolicy;
use crate::directory::{DirectoryDb, DirectoryService, DirectoryServiceError};
use crate::error::ApiError;
pub use crate::openapi::ApiDoc;
use crate::push::Hub;
use crate::rate::{Limiter, Source};
pub use crate::rate::{Rate, RateLimits, RateParseError};
use crate::relay::Pushes;
use crate::store::{PostgresStore, SqliteStore, Store, StoreError};

/// Name of the SQLite database file inside the data directory.
pub const DATABASE_FILE: &str = "rempart.sqlite3";

/// How often the key-transparency directory publishes an epoch when there
/// are updates, unless configured otherwise.
pub const DEFAULT_EPOCH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a client has to send a request's head (the request line and
/// headers), from the moment the server waits for it: a connection that
/// sends half a head and stalls is closed then.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may carry nothing either way before it is closed
/// (gracefully: a request in flight finishes first). For HTTP/1.1 the wait
/// for a next request is also a wait for a request head, which
/// [`DEFAULT_HEADER_READ_TIMEOUT`] bounds sooner; this one bounds HTTP/2
/// connections, which have no such wait.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most connections a node holds at once, push sessions included; one
/// more is closed as soon as it is accepted.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

pub use crate::push::DEFAULT_MAX_SESSIONS_PER_DEVICE;

/// How often the server pings a push session that has said nothing; a
/// session silent for two of these is closed.
pub const DEFAULT_SESSION_PING_INTERVAL: Duration = Duration::from_secs(30);

/// How long the server waits, at most, for requests in flight to finish
/// once told to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory holding the directory's keys and, by default, the SQLite
    /// database; created with mode 0700 if missing.
    pub data_dir: PathBuf,
    /// The database; `None` is the SQLite file [`DATABASE_FILE`] in
    /// `data_dir`.
    pub database: Option<Database>,
    /// Largest request body accepted, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// How often the directory publishes pending updates as an epoch (no
    /// epoch when nothing changed). Must not be zero.
    pub epoch_interval: Duration,
    /// How long a client has to send a request's head
    /// ([`DEFAULT_HEADER_READ_TIMEOUT`]). Must not be zero.
    pub header_read_timeout: Duration,
    /// How long a connection may stay silent ([`DEFAULT_IDLE_TIMEOUT`]).
    /// Must not be zero.
    pub idle_timeout: Duration,
    /// Most connections at once ([`DEFAULT_MAX_CONNECTIONS`]). Must not be
    /// zero.
    pub max_connections: usize,
    /// Most push sessions per device
    /// ([`DEFAULT_MAX_SESSIONS_PER_DEVICE`]); a newer one ends the oldest.
    /// Must not be zero.
    pub max_sessions_per_device: usize,
    /// How often a silent push session is pinged
    /// ([`DEFAULT_SESSION_PING_INTERVAL`]); silent for two, it is closed.
    /// Must not be zero.
    pub session_ping_interval: Duration,
    /// The time every request body gets
    /// ([`BODY_READ_ALLOWANCE`]), and the slowest rate it
    /// may arrive at beyond that, in bytes a second
    /// ([`MIN_BODY_RATE`]).
    pub body_read_allowance: Duration,
    /// See `body_read_allowance`. Must not be zero.
    pub min_body_rate: u64,
    /// Whose cosignatures the directory accepts and serves (none by
    /// default: the operator lists its witnesses).
    pub witnesses: WitnessPolicy,
    /// The rate limits ([`RateLimits::DEFAULT`]), per node.
    pub rate_limits: RateLimits,
    /// A file of invitation codes: with one, registration needs one of them
    /// (each admits one account); without, registration is open.
    pub invitations: Option<PathBuf>,
}

impl ServerConfig {
    /// A configuration with the protocol's default body limit.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            database: None,
            max_body_bytes: MAX_BODY_BYTES,
            epoch_interval: DEFAULT_EPOCH_INTERVAL,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_sessions_per_device: DEFAULT_MAX_SESSIONS_PER_DEVICE,
            session_ping_interval: DEFAULT_SESSION_PING_INTERVAL,
            body_read_allowance: body_deadline::BODY_READ_ALLOWANCE,
            min_body_rate: body_deadline::MIN_BODY_RATE,
            witnesses: WitnessPolicy::default(),
            rate_limits: RateLimits::DEFAULT,
            invitations: None,
        }
    }
}

/// A server with its store open and its socket bound, ready to [`run`](Self::run).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    directory: Arc<DirectoryService>,
    epoch_interval: Duration,
    connections: Connections,
    /// Tasks that run as long as the server (push relay, pruning).
    background: Vec<JoinHandle<()>>,
}

/// How often the server forgets expired nonces and links, where the
/// database does not do it by itself.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

impl Server {
    /// Creates the data directory if needed, opens (or creates) the database
    /// and the directory's keys and binds the listening socket.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let ServerConfig {
            listen,
            data_dir,
            database,
            max_body_bytes,
            epoch_interval,
            header_read_timeout,
            idle_timeout,
            max_connections,
            max_sessions_per_device,
            session_ping_interval,
            body_read_allowance,
            min_body_rate,
            witnesses,
            rate_limits,
            invitations,
        } = config;
        if epoch_interval.is_zero() {
            return Err(ServerError::ZeroEpochInterval);
        }
        if header_read_timeout.is_zero() {
            return Err(ServerError::ZeroTimeout("header read"));
        }
        if idle_timeout.is_zero() {
            return Err(ServerError::ZeroTimeout("idle"));
        }
        if max_connections == 0 || max_sessions_per_device == 0 {
            return Err(ServerError::ZeroConnections);
        }
        if session_ping_interval.is_zero() {
            return Err(ServerError::ZeroTimeout("session ping"));
        }
        if body_read_allowance.is_zero() || min_body_rate == 0 {
            return Err(ServerError::ZeroTimeout("body read"));
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data_dir)
            .map_err(|source| ServerError::DataDir {
                path: data_dir.clone(),
                source,
            })?;
        let database = database.unwrap_or_else(|| Database::Sqlite(data_dir.join(DATABASE_FILE)));
        let opened = open_database(&database)
            .await
            .map_err(|source| ServerError::Store {
                database: database.to_string(),
                source,
            })?;
        let Opened {
            store,
            directory_db,
            pushes,
            background,
        } = opened;
        let stop = |store: Arc<dyn Store>, background: Vec<JoinHandle<()>>| async move {
            background.iter().for_each(JoinHandle::abort);
            store.close().await;
        };
        let directory = match DirectoryService::open(directory_db, &data_dir).await {
            Ok(directory) => Arc::new(directory.accepting(witnesses)),
            Err(source) => {
                stop(store, background).await;
                return Err(ServerError::Directory(source));
            }
        };
        let bound = match TcpListener::bind(listen).await {
            Ok(listener) => listener.local_addr().map(|addr| (listener, addr)),
            Err(error) => Err(error),
        };
        let (listener, local_addr) = match bound {
            Ok(bound) => bound,
            Err(source) => {
                stop(store, background).await;
                return Err(ServerError::Bind {
                    addr: listen,
                    source,
                });
            }
        };
        let mut state = AppState::new(store, max_body_bytes)
            .with_pushes(pushes)
            .with_directory(directory.clone());
        state.session_ping = session_ping_interval;
        state.body_read = (body_read_allowance, min_body_rate);
        state.limits = Limiter::new(&rate_limits);
        state.invitations = invitations.map(Arc::new);
        state
            .pushes
            .hub()
            .limit_sessions_per_device(max_sessions_per_device);
        Ok(Server {
            listener,
            local_addr,
            state,
            directory,
            epoch_interval,
            connections: Connections {
                header_read_timeout,
                idle_timeout,
                most: max_connections,
            },
            background,
        })
    }

    /// The address the server listens on (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then stops accepting connections,
    /// ends push sessions, lets requests in flight finish, stops the
    /// directory's publisher (after a last publish of what is pending) and
    /// closes the store once its queued writes are committed.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            state,
            directory,
            epoch_interval,
            connections,
            background,
            ..
        } = self;
        let (store, hub) = (state.store.clone(), state.pushes.hub().clone());
        let forgetting = tokio::spawn(forget_idle_buckets(state.limits.clone()));
        let (stop_publisher, publisher_stopped) = tokio::sync::oneshot::channel();
        let publisher = tokio::spawn(directory.run_publisher(epoch_interval, publisher_stopped));
        let served = serve(listener, router(state), connections, async move {
            shutdown.await;
            hub.close();
        })
        .await;
        // The publisher may already be gone (it panicked); the queue is
        // durable either way.
        let _ = stop_publisher.send(());
        if publisher.await.is_err() {
            tracing::error!("the directory publisher did not stop cleanly");
        }
        forgetting.abort();
        background.iter().for_each(JoinHandle::abort);
        store.close().await;
        served.map_err(ServerError::Serve)
    }
}

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
struct Connections {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    most: usize,
}

/// Accepts connections and serves `app` on each, HTTP/1.1 (with upgrades,
/// for the push sessions) or HTTP/2, with hyper's timer running: a request
/// head not complete within the header-read timeout closes its connection,
/// and so does silence for the idle timeout. Beyond `most` connections at
/// once (push sessions included), a new one is closed as it is accepted.
/// Once `shutdown` resolves, stops accepting and gives the connections in
/// flight [`SHUTDOWN_GRACE`] to finish.
async fn serve(
    listener: TcpListener,
    app: Router,
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), io::Error> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::Layer as _;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(connections.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let slots = Arc::new(tokio::sync::Semaphore::new(connections.most));
    let mut full = false;
    // Every connection holds a receiver; all are gone once every
    // connection has ended.
    let (stop, stopping) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, or a connection reset
                        // before it was accepted: wait a little, go on.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    if !std::mem::replace(&mut full, true) {
                        tracing::warn!(most = connections.most, "connection limit reached: closing new connections");
                    }
                    continue;
                };
                if std::mem::replace(&mut full, false) {
                    tracing::info!("below the connection limit again");
                }
                let (io, activity) = idle::Tracked::new(stream, slot);
                let app = Extension(PeerAddr(peer.ip())).layer(app.clone());
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(app))
                    .into_owned();
                let mut stopping = stopping.clone();
                let idle_timeout = connections.idle_timeout;
                tokio::spawn(async move {
                    tokio::pin!(connection);
                    // Once asked to end, a connection gets a grace to finish
                    // what is in flight; HTTP/2's graceful end also waits
                    // for the peer to answer a ping, which a silent peer
                    // never does, so the grace is a deadline.
                    let grace = idle_timeout.min(SHUTDOWN_GRACE);
                    let mut ending: Option<tokio::time::Instant> = None;
                    loop {
                        let deadline = ending.unwrap_or_else(tokio::time::Instant::now);
                        tokio::select! {
                            ended = connection.as_mut() => {
                                if let Err(error) = ended {
                                    tracing::debug!(error = %error, "connection ended");
                                }
                                break;
                            }
                            () = activity.silent_for(idle_timeout), if ending.is_none() => {
                                connection.as_mut().graceful_shutdown();
                                ending = Some(tokio::time::Instant::now() + grace);
                            }
                            _ = stopping.changed(), if ending.is_none() => {
                                connection.as_mut().graceful_shutdown();
                                ending = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
                            }
                            () = tokio::time::sleep_until(deadline), if ending.is_some() => break,
                        }
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    drop(stopping);
    stop.send_replace(());
    if tokio::time::timeout(SHUTDOWN_GRACE, stop.closed())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace");
    }
    Ok(())
}

/// An open database and what runs on it.
struct Opened {
    store: Arc<dyn Store>,
    directory_db: DirectoryDb,
    pushes: Pushes,
    background: Vec<JoinHandle<()>>,
}

async fn open_database(database: &Database) -> Result<Opened, StoreError> {
    match database {
        Database::Sqlite(path) => {
            let sqlite = SqliteStore::open(path.clone()).await?;
            let directory_db = DirectoryDb::Sqlite(sqlite.shared());
            let store: Arc<dyn Store> = Arc::new(sqlite);
            Ok(Opened {
                pushes: Pushes::local(Hub::default(), store.clone()),
                store,
                directory_db,
                background: Vec::new(),
            })
        }
        Database::Postgres(url) => {
            let postgres = PostgresStore::open(url.as_str()).await?;
            let store: Arc<dyn Store> = Arc::new(postgres.clone());
            let (pushes, [forwarder, listener]) =
                Pushes::shared(Hub::default(), store.clone(), &postgres).await?;
            let pruner = tokio::spawn(prune_periodically(store.clone()));
            Ok(Opened {
                store,
                directory_db: DirectoryDb::Postgres(postgres.pool().clone()),
                pushes,
                background: vec![forwarder, listener, pruner],
            })
        }
    }
}

/// Forgets the rate limits' full buckets every [`PRUNE_INTERVAL`].
async fn forget_idle_buckets(limits: Arc<Limiter>) {
    let mut ticks = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        ticks.tick().await;
        limits.forget_idle();
    }
}

/// Calls [`Store::prune`] every [`PRUNE_INTERVAL`].
async fn prune_periodically(store: Arc<dyn Store>) {
    let mut ticks = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        ticks.tick().await;
        match store.prune(auth::unix_now()).await {
            Ok(pruned) => tracing::debug!(?pruned, "pruned expired nonces and links"),
            Err(error) => tracing::warn!(%error, "could not prune expired nonces and links"),
        }
    }
}

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("cannot open the database {database}")]
    Store {
        /// The database (a PostgreSQL URL without its password).
        database: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The key-transparency directory could not start.
    #[error("cannot start the key-transparency directory")]
    Directory(#[source] DirectoryServiceError),
    /// The configured epoch interval is zero.
    #[error("the epoch interval must be longer than zero")]
    ZeroEpochInterval,
    /// A configured timeout is zero.
    #[error("the {0} timeout must be longer than zero")]
    ZeroTimeout(&'static str),
    /// The configured connection or session cap is zero.
    #[error("the connection and session caps must be at least one")]
    ZeroConnections,
    /// Serving connections failed.
    #[error("the server failed")]
    Serve(#[source] io::Error),
}

/// What every request handler shares: the store, the push hub and limits.
#[derive(Clone)]
pub struct AppState {
    store: Arc<dyn Store>,
    pushes: Pushes,
    max_body_bytes: usize,
    directory: Option<Arc<DirectoryService>>,
    /// How often a silent push session is pinged.
    session_ping: Duration,
    /// Every body's allowance and the minimum rate beyond it.
    body_read: (Duration, u64),
    /// The rate limits' buckets.
    limits: Arc<Limiter>,
    /// The invitations file, on a server that registers by invitation.
    invitations: Option<Arc<PathBuf>>,
}

impl AppState {
    /// State over `store`, refusing request bodies above `max_body_bytes`.
    pub fn new(store: Arc<dyn Store>, max_body_bytes: usize) -> Self {
        Self {
            pushes: Pushes::local(Hub::default(), store.clone()),
            store,
            max_body_bytes,
            directory: None,
            session_ping: DEFAULT_SESSION_PING_INTERVAL,
            body_read: (
                body_deadline::BODY_READ_ALLOWANCE,
                body_deadline::MIN_BODY_RATE,
            ),
            limits: Limiter::new(&RateLimits::DEFAULT),
            invitations: None,
        }
    }

    /// Sends push notices through `pushes` (several nodes) instead of
    /// straight to this node's sessions.
    fn with_pushes(mut self, pushes: Pushes) -> Self {
        self.pushes = pushes;
        self
    }

    /// Serves the key-transparency directory's endpoints from `directory`
    /// (without it, they answer 404).
    pub(crate) fn with_directory(mut self, directory: Arc<DirectoryService>) -> Self {
        self.directory = Some(directory);
        self
    }
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// The whole HTTP API (the table in [`rempart_proto::api`]), with the body
/// limit applied to every route.
pub fn router(state: AppState) -> Router {
    // The per-address limits, applied before anything reads the request.
    let by_address = |limit: AddressLimit| {
        middleware::from_fn_with_state((state.clone(), limit), limit_by_address)
    };
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi::document))
        .route(
            api::ACCOUNTS_PATH,
            post(accounts::register).layer(by_address(Limiter::register)),
        )
        .route(
            "/v1/accounts/{user}/devices",
            get(accounts::device_list)
                .layer(by_address(Limiter::lookup))
                .put(accounts::replace_device_list),
        )
        .route(
            api::KEYPACKAGES_PATH,
            post(keypackages::upload).get(keypackages::status),
        )
        .route(
            "/v1/accounts/{user}/keypackages/claim",
            post(keypackages::claim),
        )
        .route(api::CLAIM_PATH, post(keypackages::claim_batch))
        .route(
            api::LINKS_PATH,
            post(links::create).layer(by_address(Limiter::link)),
        )
        .route("/v1/links/{link}", get(links::read_request))
        .route(
            "/v1/links/{link}/request",
            // Read no more than a payload from anyone who asks.
            put(links::put_request)
                .layer(DefaultBodyLimit::max(links::payload_limit(&state)))
                .layer(by_address(Limiter::link)),
        )
        .route(
            "/v1/links/{link}/response",
            put(links::put_response).get(links::take_response),
        )
        .route("/v1/groups/{group}/commits", post(delivery::commit))
        .route(
            "/v1/groups/{group}/messages/{message_id}",
            put(delivery::message),
        )
        .route("/v1/groups/{group}/log", get(delivery::log))
        .route("/v1/inbox", get(inbox::read))
        .route(api::INBOX_ACK_PATH, post(inbox::ack))
        .route(api::WS_PATH, get(push::subscribe))
        .route(kt::DIRECTORY_PATH, get(directory::endpoints::info))
        .route(kt::HEAD_PATH, get(directory::endpoints::latest_head))
        .route(
            "/v1/directory/heads/{epoch}",
            get(directory::endpoints::head),
        )
        .route(
            "/v1/directory/lookup/{user}",
            get(directory::endpoints::lookup).layer(by_address(Limiter::lookup)),
        )
        .route(
            "/v1/directory/history/{user}",
            get(directory::endpoints::history).layer(by_address(Limiter::lookup)),
        )
        .route(kt::HEADS_PATH, get(directory::endpoints::heads))
        .route(
            kt::LOOKUPS_PATH,
            post(directory::endpoints::lookups).layer(by_address(Limiter::lookup)),
        )
        .route(kt::AUDIT_PATH, get(directory::endpoints::audit))
        .route(MAIL_CERTIFICATES_PATH, post(mail::upload_certificate))
        .route(
            MAIL_LOOKUP_PATH,
            post(mail::lookup).layer(by_address(Limiter::lookup)),
        )
        .route(
            MAIL_HISTORY_PATH,
            post(mail::history).layer(by_address(Limiter::lookup)),
        )
        .route(
            kt::COSIGNATURES_PATH,
            post(directory::endpoints::post_cosignature),
        )
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_declared_oversize,
        ))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Says the server is up.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses((status = 200, description = "The server answers", body = Health))
)]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Answers 413 to any request whose `Content-Length` exceeds the limit,
/// before anything reads the body. Bodies without a length are cut at the
/// limit by whatever reads them.
async fn refuse_declared_oversize(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.max_body_bytes as u64) {
        return ApiError::PayloadTooLarge {
            what: "the request body",
            limit: state.max_body_bytes,
        }
        .into_response();
    }
    let (allowance, rate) = state.body_read;
    let allowed = body_deadline::allowed(declared, state.max_body_bytes, allowance, rate);
    let (parts, body) = request.into_parts();
    let body = axum::body::Body::new(body_deadline::Deadlined::new(body, allowed));
    next.run(Request::from_parts(parts, body)).await
}

/// The address a connection comes from, put in each of its requests.
#[derive(Debug, Clone, Copy)]
struct PeerAddr(IpAddr);

/// A per-address limit.
type AddressLimit = fn(&Limiter, Source) -> Result<(), ApiError>;

/// Applies a per-address rate limit (registrations, link attempts,
/// directory reads) to the route it layers, before its handler reads the
/// request.
async fn limit_by_address(
    State((state, limit)): State<(AppState, AddressLimit)>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<PeerAddr>().copied();
    if let Some(PeerAddr(address)) = peer
        && let Err(refused) = limit(&state.limits, Source::of(address))
    {
        return refused.into_response();
    }
    next.run(request).await
}
