use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rempart_proto::api::{self, Appended, EntryKind, LogEntry, PushEvent};
use rempart_proto::{GroupId, MessageId};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::support::{Account, Device, TestServer, commit_upload, now, ok};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait for a push before declaring it lost.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

pub(crate) async fn subscribe(server: &TestServer, device: &Device) -> Socket {
    let url = format!("{}{}", server.url.replace("http://", "ws://"), api::WS_PATH);
    let mut request = url.into_client_request().unwrap();
    for (name, value) in device.sign("GET", api::WS_PATH, b"", now()) {
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).unwrap());
    }
    let (socket, _) = connect_async(request).await.unwrap();
    socket
}

/// The next push event, within the deadline.
pub(crate) async fn next_event(socket: &mut Socket) -> PushEvent {
    loop {
        let message = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .expect("no push before the deadline")
            .unwrap()
            .unwrap();
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Alice, through `through`, adds Bob to a new group and then sends to it:
/// Bob's push session `socket` (wherever it is) is told of the Welcome and
/// of each append.
pub(crate) async fn members_are_pushed_a_welcome_and_a_message(
    through: &TestServer,
    alice: &Account,
    bob: &Account,
    socket: &mut Socket,
) {
    let group = GroupId::random();
    let upload = commit_upload(0, &[bob.device()], Some(b"welcome"));
    let appended: Appended = ok(through.commit(alice.device(), &group, &upload).await).await;
    let mut events = vec![next_event(socket).await, next_event(socket).await];
    events.sort_by_key(|e| matches!(e, PushEvent::Group { .. }));
    assert_eq!(
        events,
        [
            PushEvent::Inbox,
            PushEvent::Group {
                group,
                seq: appended.seq,
                entry: None,
            }
        ]
    );

    // A small message comes inline, exactly as the log holds it.
    let message_id = MessageId::random();
    let appended: Appended = ok(through
        .send_message(alice.device(), &group, &message_id, b"hello")
        .await)
    .await;
    let entry = LogEntry {
        seq: appended.seq,
        kind: EntryKind::Application,
        epoch: appended.epoch,
        sender: alice.device().id,
        message_id,
        data: b"hello".to_vec(),
    };
    assert_eq!(
        next_event(socket).await,
        PushEvent::Group {
            group,
            seq: appended.seq,
            entry: Some(entry.clone()),
        }
    );
    let log = through.log(bob.device(), &group).await;
    assert_eq!(log.entries.last(), Some(&entry));
}

#[tokio::test]
async fn members_are_told_about_appends_and_welcomes() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    server.register(&alice).await;
    server.register(&bob).await;
    let mut bob_socket = subscribe(&server, bob.device()).await;

    members_are_pushed_a_welcome_and_a_message(&server, &alice, &bob, &mut bob_socket).await;

    // Pings are answered; a close is answered and ends the session.
    bob_socket
        .send(Message::Ping(b"still there?".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(DEADLINE, bob_socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(b"still there?".to_vec().into()));
    bob_socket.close(None).await.unwrap();
    let end = tokio::time::timeout(DEADLINE, bob_socket.next())
        .await
        .unwrap();
    assert!(matches!(end, Some(Ok(Message::Close(_))) | None));
}

#[tokio::test]
async fn an_unsigned_or_badly_signed_upgrade_is_refused() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let url = format!("{}{}", server.url.replace("http://", "ws://"), api::WS_PATH);

    let unsigned = connect_async(url.as_str()).await;
    assert!(
        matches!(&unsigned, Err(Error::Http(response)) if response.status() == 401),
        "{unsigned:?}"
    );

    let mut request = url.into_client_request().unwrap();
    // Signed for another path.
    for (name, value) in alice.device().sign("GET", "/v1/inbox", b"", now()) {
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).unwrap());
    }
    let forged = connect_async(request).await;
    assert!(
        matches!(&forged, Err(Error::Http(response)) if response.status() == 401),
        "{forged:?}"
    );
}

#[tokio::test]
async fn shutdown_closes_push_sessions() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let mut socket = subscribe(&server, alice.device()).await;
    server.stop().await;
    let end = tokio::time::timeout(DEADLINE, socket.next()).await.unwrap();
    assert!(
        matches!(end, Some(Ok(Message::Close(Some(ref frame)))) if u16::from(frame.code) == 1001),
        "{end:?}"
    );
}
