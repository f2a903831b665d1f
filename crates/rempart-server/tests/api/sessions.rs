//! Sends on an authenticated WebSocket session: no signature per message,
//! the same rules as the signed upload, an answer only once durable.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rempart_proto::api::{self, Appended, EntryKind, PushEvent, SessionRequest, error_code};
use rempart_proto::limits::{MAX_MESSAGE_BYTES, MAX_SESSION_FRAME_BYTES, MAX_SESSION_IN_FLIGHT};
use rempart_proto::{GroupId, MessageId};
use tokio_tungstenite::tungstenite::Message;

use crate::push::{DEADLINE, Socket, next_event, subscribe};
use crate::support::{Account, TestServer, commit_upload, now, ok};

async fn send(socket: &mut Socket, request: &SessionRequest) {
    let text = serde_json::to_string(request).unwrap();
    socket.send(Message::text(text)).await.unwrap();
}

fn message(
    id: u64,
    group: GroupId,
    message_id: MessageId,
    epoch: u64,
    data: &[u8],
) -> SessionRequest {
    SessionRequest::Send {
        id,
        group,
        message_id,
        epoch,
        data: data.to_vec(),
    }
}

/// Alice and Bob registered, in a new group Alice created (epoch 1).
async fn pair(server: &TestServer) -> (Account, Account, GroupId) {
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    server.register(&alice).await;
    server.register(&bob).await;
    let group = GroupId::random();
    let upload = commit_upload(0, &[bob.device()], Some(b"welcome"));
    let _: Appended = ok(server.commit(alice.device(), &group, &upload).await).await;
    (alice, bob, group)
}

#[tokio::test]
async fn a_message_sent_on_a_session_is_stored_pushed_and_idempotent() {
    let server = TestServer::start().await;
    let (alice, bob, group) = pair(&server).await;
    let mut alice_session = subscribe(&server, alice.device()).await;
    let mut bob_session = subscribe(&server, bob.device()).await;

    let message_id = MessageId::random();
    send(
        &mut alice_session,
        &message(7, group, message_id, 1, b"hi bob"),
    )
    .await;
    let appended = Appended { seq: 2, epoch: 1 };
    assert_eq!(
        next_event(&mut alice_session).await,
        PushEvent::Sent { id: 7, appended }
    );
    let PushEvent::Group {
        group: pushed,
        seq: 2,
        entry: Some(entry),
    } = next_event(&mut bob_session).await
    else {
        panic!("Bob was not pushed the message");
    };
    assert_eq!(pushed, group);
    assert_eq!(
        (
            entry.kind,
            entry.sender,
            entry.message_id,
            entry.data.as_slice()
        ),
        (
            EntryKind::Application,
            alice.device().id,
            message_id,
            &b"hi bob"[..]
        )
    );

    // A retry (the answer was lost) lands where the first did, once.
    send(
        &mut alice_session,
        &message(8, group, message_id, 1, b"hi bob"),
    )
    .await;
    assert_eq!(
        next_event(&mut alice_session).await,
        PushEvent::Sent { id: 8, appended }
    );
    let log = server.log(bob.device(), &group).await;
    assert_eq!(log.last_seq, 2);
    assert_eq!(log.entries[1], entry);
    // Reusing the id for other content is refused.
    send(
        &mut alice_session,
        &message(9, group, message_id, 1, b"other"),
    )
    .await;
    let PushEvent::Refused {
        id: 9,
        status: 409,
        error,
    } = next_event(&mut alice_session).await
    else {
        panic!("a reused message id was not refused");
    };
    assert_eq!(error.error, error_code::DUPLICATE_MESSAGE_ID);
}

#[tokio::test]
async fn a_session_is_refused_what_a_signed_upload_would_be() {
    let server = TestServer::start().await;
    let (alice, _bob, group) = pair(&server).await;
    let carol = Account::new("carol", 1);
    server.register(&carol).await;
    let mut alice_session = subscribe(&server, alice.device()).await;
    let mut carol_session = subscribe(&server, carol.device()).await;

    let refusal = |event: PushEvent| match event {
        PushEvent::Refused { id, status, error } => (id, status, error.error, error.current_epoch),
        other => panic!("not refused: {other:?}"),
    };
    // Not a member.
    send(
        &mut carol_session,
        &message(1, group, MessageId::random(), 1, b"x"),
    )
    .await;
    assert_eq!(
        refusal(next_event(&mut carol_session).await),
        (1, 403, error_code::FORBIDDEN.to_owned(), None)
    );
    // Encrypted in another epoch than the current one.
    send(
        &mut alice_session,
        &message(2, group, MessageId::random(), 0, b"x"),
    )
    .await;
    assert_eq!(
        refusal(next_event(&mut alice_session).await),
        (2, 409, error_code::STALE_EPOCH.to_owned(), Some(1))
    );
    // Empty, and unknown group.
    send(
        &mut alice_session,
        &message(3, group, MessageId::random(), 1, b""),
    )
    .await;
    assert_eq!(refusal(next_event(&mut alice_session).await).1, 400);
    send(
        &mut alice_session,
        &message(4, GroupId::random(), MessageId::random(), 1, b"x"),
    )
    .await;
    assert_eq!(refusal(next_event(&mut alice_session).await).1, 404);
    // Not a request: answered with the id it carries, or 0.
    alice_session
        .send(Message::text(r#"{"op":"fly","id":5}"#))
        .await
        .unwrap();
    assert_eq!(
        refusal(next_event(&mut alice_session).await),
        (5, 400, error_code::BAD_REQUEST.to_owned(), None)
    );
    alice_session.send(Message::text("{")).await.unwrap();
    assert_eq!(refusal(next_event(&mut alice_session).await).0, 0);
    // Nothing of it was stored.
    assert_eq!(server.log(alice.device(), &group).await.last_seq, 1);

    // Binary frames are not requests: the session ends.
    alice_session
        .send(Message::binary(b"\x00".to_vec()))
        .await
        .unwrap();
    let end = tokio::time::timeout(DEADLINE, alice_session.next())
        .await
        .unwrap();
    assert!(
        matches!(end, Some(Ok(Message::Close(Some(ref frame)))) if u16::from(frame.code) == 1003),
        "{end:?}"
    );
}

#[tokio::test]
async fn pipelined_sends_beyond_the_in_flight_limit_are_all_answered() {
    let server = TestServer::start().await;
    let (alice, bob, group) = pair(&server).await;
    let mut session = subscribe(&server, alice.device()).await;
    let count = MAX_SESSION_IN_FLIGHT as u64 * 2 + 3;
    for id in 1..=count {
        let data = id.to_be_bytes();
        send(
            &mut session,
            &message(id, group, MessageId::random(), 1, &data),
        )
        .await;
    }
    let mut seqs = Vec::new();
    let mut answered = Vec::new();
    while answered.len() < count as usize {
        match next_event(&mut session).await {
            PushEvent::Sent { id, appended } => {
                answered.push(id);
                seqs.push(appended.seq);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    answered.sort_unstable();
    assert_eq!(answered, (1..=count).collect::<Vec<_>>());
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=count + 1).collect::<Vec<_>>());
    // Each answer was durable and is in the log exactly once.
    let mut stored = 0;
    let mut after = 0;
    loop {
        let page: api::LogPage = ok(server.read_log(bob.device(), &group, after).await).await;
        let Some(last) = page.entries.last() else {
            break;
        };
        after = last.seq;
        stored += page.entries.len();
    }
    assert_eq!(stored as u64, count + 1);
}

#[tokio::test]
async fn removing_a_device_ends_its_sessions() {
    let server = TestServer::start().await;
    let mut alice = Account::new("alice", 2);
    server.register(&alice).await;
    let mut second = subscribe(&server, &alice.devices[1]).await;
    alice.devices.truncate(1);
    let list = alice.signed_list(2);
    let response = server
        .call_json(
            alice.device(),
            "PUT",
            &api::devices_path(&alice.user),
            &list,
        )
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    let end = tokio::time::timeout(DEADLINE, second.next()).await.unwrap();
    assert!(matches!(end, Some(Ok(Message::Close(_))) | None), "{end:?}");
}

#[tokio::test]
async fn a_frame_many_times_the_read_buffer_arrives_whole() {
    let server = TestServer::start().await;
    let (alice, bob, group) = pair(&server).await;
    let mut session = subscribe(&server, alice.device()).await;
    // The session reads 4 KiB at a time; the largest message, in a frame
    // of about 1.4 MB, is read whole and stored.
    let large = vec![7u8; MAX_MESSAGE_BYTES];
    send(
        &mut session,
        &message(1, group, MessageId::random(), 1, &large),
    )
    .await;
    assert_eq!(
        next_event(&mut session).await,
        PushEvent::Sent {
            id: 1,
            appended: Appended { seq: 2, epoch: 1 }
        }
    );
    assert_eq!(
        server.log(bob.device(), &group).await.entries[1].data,
        large
    );
    // A frame over the limit ends the session.
    session
        .send(Message::text("x".repeat(MAX_SESSION_FRAME_BYTES + 1)))
        .await
        .unwrap();
    let end = tokio::time::timeout(DEADLINE, session.next())
        .await
        .unwrap();
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
}

/// A push session whose client never answers is pinged, then closed: the
/// client here speaks WebSocket by hand and never sends a pong.
#[tokio::test]
async fn a_silent_push_session_is_pinged_then_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let server = TestServer::start_pinging(Duration::from_millis(300)).await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: rempart\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        api::WS_PATH
    );
    for (name, value) in alice.device().sign("GET", api::WS_PATH, b"", now()) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut received))
        .await
        .expect("the silent session was never closed")
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    let frames = &received[text.find("\r\n\r\n").unwrap() + 4..];
    // A ping (opcode 9), then a close (opcode 8) saying why.
    assert_eq!(frames.first(), Some(&0x89), "{frames:?}");
    assert!(
        frames.windows(18).any(|w| w == b"no answer to pings"),
        "{frames:?}"
    );
}

/// A client that answers pings keeps its session: it is pinged again and
/// again, and still served.
#[tokio::test]
async fn a_push_session_that_answers_pings_stays_open() {
    let server = TestServer::start_pinging(Duration::from_millis(200)).await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let mut socket = subscribe(&server, alice.device()).await;
    let mut pings = 0;
    while pings < 3 {
        let frame = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("no ping came")
            .expect("the session was closed")
            .unwrap();
        match frame {
            Message::Ping(_) => pings += 1,
            other => panic!("unexpected frame {other:?}"),
        }
    }
    // Still served: a request gets its answer.
    socket
        .send(Message::text(r#"{"type":"send","id":7}"#))
        .await
        .unwrap();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("no answer came")
            .expect("the session was closed")
            .unwrap();
        if let Message::Text(text) = frame {
            assert!(text.contains("\"id\":7"), "{text}");
            break;
        }
    }
}
