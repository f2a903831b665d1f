//! Several server nodes on one PostgreSQL database, and a database that
//! goes away and comes back. Each test has a schema of its own and says it
//! was skipped when PostgreSQL cannot be reached (`REMPART_REQUIRE_POSTGRES=1`
//! makes that a failure).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rempart_proto::api::{self, Appended};
use rempart_proto::{GroupId, MessageId};
use rempart_server::{DEFAULT_EPOCH_INTERVAL, Database};
use rempart_testkit::copy_keys;
use rempart_testkit::postgres::TestSchema;
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::push::{members_are_pushed_a_welcome_and_a_message, subscribe};
use crate::support::{Account, TestServer, commit_upload, now, ok, refused};

/// Two nodes on one schema, with the same directory keys.
struct TwoNodes {
    a: TestServer,
    b: TestServer,
    _data: TempDir,
    _schema: TestSchema,
}

async fn two_nodes(test: &str) -> Option<TwoNodes> {
    let schema = TestSchema::create(test).await?;
    let database: Database = schema.url().parse().unwrap();
    let data = TempDir::new().unwrap();
    let (dir_a, dir_b) = (data.path().join("a"), data.path().join("b"));
    let a = TestServer::start_on(Some(database.clone()), &dir_a, DEFAULT_EPOCH_INTERVAL).await;
    std::fs::create_dir(&dir_b).unwrap();
    copy_keys(&dir_a, &dir_b);
    let b = TestServer::start_on(Some(database), &dir_b, DEFAULT_EPOCH_INTERVAL).await;
    Some(TwoNodes {
        a,
        b,
        _data: data,
        _schema: schema,
    })
}

#[tokio::test]
async fn a_device_on_one_node_is_pushed_what_arrives_through_the_other() {
    let Some(nodes) =
        two_nodes("a_device_on_one_node_is_pushed_what_arrives_through_the_other").await
    else {
        return;
    };
    let (alice, bob) = (Account::new("alice", 1), Account::new("bob", 1));
    nodes.a.register(&alice).await;
    nodes.b.register(&bob).await;
    let mut bob_on_a = subscribe(&nodes.a, bob.device()).await;

    // Alice works through node B.
    members_are_pushed_a_welcome_and_a_message(&nodes.b, &alice, &bob, &mut bob_on_a).await;
}

#[tokio::test]
async fn a_request_replayed_to_another_node_is_refused() {
    let Some(nodes) = two_nodes("a_request_replayed_to_another_node_is_refused").await else {
        return;
    };
    let alice = Account::new("alice", 1);
    nodes.a.register(&alice).await;
    let headers = alice.device().sign("GET", "/v1/inbox", b"", now());
    let first = nodes.a.raw("GET", "/v1/inbox", &headers, Vec::new()).await;
    assert_eq!(first.status(), 200);
    let replayed = nodes.b.raw("GET", "/v1/inbox", &headers, Vec::new()).await;
    refused(replayed, 401, api::error_code::REPLAYED_NONCE).await;
}

/// A TCP relay to PostgreSQL that can be cut, as a database outage or a
/// network partition would: every open connection is dropped and new ones
/// are closed at once, until it is restored.
struct Relay {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<RelayState>>,
    _accept: JoinHandle<()>,
}

#[derive(Default)]
struct RelayState {
    cut: bool,
    connections: Vec<JoinHandle<()>>,
}

impl Relay {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(RelayState::default()));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                if state.cut {
                    continue; // dropping `client` closes it
                }
                state.connections.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self {
            addr,
            state,
            _accept: accept,
        }
    }

    fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.cut = true;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.state.lock().unwrap().cut = false;
    }
}

#[tokio::test]
async fn while_the_database_is_unreachable_requests_get_503_and_the_server_recovers() {
    let Some(schema) = TestSchema::create(
        "while_the_database_is_unreachable_requests_get_503_and_the_server_recovers",
    )
    .await
    else {
        return;
    };
    let url = schema.url();
    let config: tokio_postgres::Config = url.parse().unwrap();
    let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first().cloned() else {
        panic!("the test database must be reached over TCP: {url}");
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let upstream = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let relay = Relay::start(upstream).await;
    let relayed: Database = url
        .replace(&format!("{host}:{port}"), &relay.addr.to_string())
        .parse()
        .unwrap();
    let data = TempDir::new().unwrap();
    let server = TestServer::start_on(Some(relayed), data.path(), DEFAULT_EPOCH_INTERVAL).await;
    let (alice, bob) = (Account::new("alice", 1), Account::new("bob", 1));
    server.register(&alice).await;
    server.register(&bob).await;
    let group = GroupId::random();
    let upload = commit_upload(0, &[bob.device()], Some(b"welcome"));
    let _: Appended = ok(server.commit(alice.device(), &group, &upload).await).await;

    relay.cut();
    let message = MessageId::random();
    let refused_send = server
        .send_message_at(alice.device(), &group, &message, 1, b"during the outage")
        .await;
    assert_eq!(refused_send.status(), 503);
    assert_eq!(
        refused_send.headers().get("retry-after").unwrap(),
        "1",
        "clients are told when to retry"
    );
    refused(refused_send, 503, api::error_code::UNAVAILABLE).await;

    // Back without a restart: the retry (same message id) is stored once.
    relay.restore();
    let mut answer = None;
    for _ in 0..300 {
        let response = server
            .send_message_at(alice.device(), &group, &message, 1, b"during the outage")
            .await;
        if response.status() != 503 {
            answer = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let appended: Appended = ok(answer.expect("the server did not recover")).await;
    let log = server.log(bob.device(), &group).await;
    let stored: Vec<_> = log
        .entries
        .iter()
        .filter(|entry| entry.message_id == message)
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].seq, appended.seq);
}
