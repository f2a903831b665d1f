//! The outbox: a message the server refuses is kept as failed, with the
//! reason, in the events and the history, and goes once the user retries
//! it; a message written while the server is out of reach is queued and
//! goes with the next operation that reaches it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rempart_client::history::MessageState;
use rempart_client::outbox::OutboxError;
use rempart_client::{Client, DeliveryState, Event};
use rempart_testkit::{Proxy, TestServer, account, name, texts};
use tempfile::TempDir;

/// An account whose every request goes through `proxy`.
async fn through(proxy: &Proxy, homes: &TempDir, user: &str) -> Client {
    Client::create_account(&homes.path().join(user), &proxy.url, name(user))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_refused_message_is_kept_failed_with_its_reason_until_retried() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    let homes = TempDir::new().unwrap();
    let mut alice = through(&proxy, &homes, "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice.send_text(&name("bob"), "hello").await.unwrap();

    // The server refuses every message upload, storing nothing, as it
    // would from a device it no longer accepts.
    proxy.refuse(|method, path| {
        (method == "PUT" && path.contains("/messages/")).then(|| {
            (
                403,
                br#"{"error":"forbidden","message":"not a member"}"#.to_vec(),
            )
        })
    });
    let refused = alice.send_text(&name("bob"), "refused").await;
    assert!(refused.is_err(), "{refused:?}");
    let page = alice.history("bob", 10, None).unwrap();
    let last = page.last().unwrap();
    assert_eq!(
        (last.text.as_str(), last.state),
        ("refused", MessageState::Failed)
    );
    assert!(
        last.reason.as_deref().unwrap().contains("not a member"),
        "{last:?}"
    );
    let failed = last.id;

    // A failed message is not retried by itself.
    proxy.honest();
    let sent = alice.send_text(&name("bob"), "after").await.unwrap();
    assert_eq!(sent.state, DeliveryState::Sent);
    let seen: Vec<String> = texts(&bob.sync().await.unwrap())
        .into_iter()
        .map(|(_, _, t)| t)
        .collect();
    assert_eq!(seen, ["hello", "after"]);

    // Retried, it goes with the next sync, which reports it.
    assert!(matches!(
        alice.retry_message(&sent.id),
        Err(OutboxError::UnknownMessage(_))
    ));
    alice.retry_message(&failed).unwrap();
    let reported = alice.sync().await.unwrap();
    assert!(
        reported
            .iter()
            .any(|e| matches!(e, Event::MessageSent { message_id, .. } if *message_id == failed)),
        "{reported:?}"
    );
    let seen: Vec<String> = texts(&bob.sync().await.unwrap())
        .into_iter()
        .map(|(_, _, t)| t)
        .collect();
    assert_eq!(seen, ["refused"]);
    let states: Vec<MessageState> = alice
        .history("bob", 10, None)
        .unwrap()
        .iter()
        .map(|m| m.state)
        .collect();
    assert_eq!(states, [MessageState::Sent; 3]);
}

#[tokio::test]
async fn a_message_written_out_of_reach_is_queued_then_sent_by_the_next_sync() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(&server.url).await;
    let homes = TempDir::new().unwrap();
    let mut alice = through(&proxy, &homes, "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice.send_text(&name("bob"), "hello").await.unwrap();
    bob.sync().await.unwrap();

    // The server is out of reach: overloaded, it answers 503 to everything.
    proxy.rewrite(|exchange| exchange.status = 503);
    let queued = alice.send_text(&name("bob"), "while away").await.unwrap();
    assert_eq!(queued.state, DeliveryState::Queued);
    assert!(alice.sync().await.is_err());
    let last = alice.history("bob", 1, None).unwrap().pop().unwrap();
    assert_eq!((last.id, last.state), (queued.id, MessageState::Queued));

    proxy.honest();
    let reported = alice.sync().await.unwrap();
    assert!(
        reported.iter().any(
            |e| matches!(e, Event::MessageSent { message_id, .. } if *message_id == queued.id)
        ),
        "{reported:?}"
    );
    let seen: Vec<String> = texts(&bob.sync().await.unwrap())
        .into_iter()
        .map(|(_, _, t)| t)
        .collect();
    assert_eq!(seen, ["while away"]);
    assert!(texts(&bob.sync().await.unwrap()).is_empty());
}

#[tokio::test]
async fn a_rate_limit_that_lifts_soon_is_waited_for_and_a_longer_one_queues() {
    use std::time::Duration;

    use rempart_server::{Rate, RateLimits};

    // Two sends every 4 s: the first message to Bob (a commit founding the
    // conversation, then the message) takes both, and the next one is
    // told to wait 2 s, which the client does by itself.
    let server = TestServer::start_limited(RateLimits {
        sends: Rate::new(2, Duration::from_secs(4)),
        ..RateLimits::UNLIMITED
    })
    .await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    for text in ["one", "two"] {
        let sent = alice.send_text(&name("bob"), text).await.unwrap();
        assert_eq!(sent.state, DeliveryState::Sent, "{text}");
    }
    let seen: Vec<String> = texts(&bob.sync().await.unwrap())
        .into_iter()
        .map(|(_, _, t)| t)
        .collect();
    assert_eq!(seen, ["one", "two"]);

    // Two sends an hour: the next message would wait half an hour, so it
    // stays queued, and the user is told so.
    let server = TestServer::start_limited(RateLimits {
        sends: Rate::new(2, Duration::from_secs(3600)),
        ..RateLimits::UNLIMITED
    })
    .await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    account(&server, &homes.path().join("bob"), "bob").await;
    alice.send_text(&name("bob"), "one").await.unwrap();
    let queued = alice.send_text(&name("bob"), "two").await.unwrap();
    assert_eq!(queued.state, DeliveryState::Queued);
    let page = alice.history("bob", 10, None).unwrap();
    assert_eq!(page.last().unwrap().state, MessageState::Queued);
}

#[tokio::test]
async fn a_long_rate_limit_is_a_plain_error_that_says_when_to_retry() {
    use std::time::Duration;

    use rempart_server::{Rate, RateLimits};

    let server = TestServer::start_limited(RateLimits {
        registrations: Rate::new(1, Duration::from_secs(3600)),
        ..RateLimits::UNLIMITED
    })
    .await;
    let homes = TempDir::new().unwrap();
    account(&server, &homes.path().join("alice"), "alice").await;
    let refused = Client::create_account(&homes.path().join("bob"), &server.url, name("bob"))
        .await
        .map(|_| ())
        .unwrap_err();
    let said = refused.to_string();
    assert!(
        said.contains("too many registrations from this address")
            && said.contains("the limit is 1/h")
            && said.contains("try again in"),
        "{said}"
    );
}
