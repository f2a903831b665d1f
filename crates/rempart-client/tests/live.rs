//! The engine running live against a real server: pushes over the device's
//! WebSocket session bring messages without any `sync` call, a restart of
//! the server loses and repeats nothing, and sends go out while the event
//! stream runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rempart_client::session::{Live, SessionState};
use rempart_client::{DeliveryState, Event};
use rempart_testkit::{TestServer, account, name, t, texts};
use tempfile::TempDir;

/// A guard against a hang, not a measure: generous on any machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// The next `n` messages the live session reports (other events skipped).
async fn messages(live: &mut Live, n: usize) -> Vec<(String, String, String)> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let event = tokio::time::timeout(PATIENCE, live.next_event())
            .await
            .expect("the live session went quiet")
            .expect("the live session stopped");
        seen.extend(texts(std::slice::from_ref(&event)));
        assert!(!event.is_alert(), "{event:?}");
    }
    seen
}

/// Waits until the session says it is `state`.
async fn until(live: &Live, state: SessionState) {
    tokio::time::timeout(PATIENCE, async {
        while live.state() != state {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the session never became {state:?}"));
}

/// Waits until the session says it is live.
async fn until_live(live: &Live) {
    until(live, SessionState::Live).await;
}

#[tokio::test]
async fn a_listening_device_receives_five_messages_with_no_sync() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let bob = account(&server, &homes.path().join("bob"), "bob").await;
    let mut live = Live::start(bob).unwrap();
    until_live(&live).await;
    for i in 1..=5 {
        alice
            .send_text(&name("bob"), &format!("message {i}"))
            .await
            .unwrap();
    }
    let expected: Vec<_> = (1..=5)
        .map(|i| t("alice", "alice", &format!("message {i}")))
        .collect();
    assert_eq!(messages(&mut live, 5).await, expected);

    // Bob answers while the stream runs.
    live.send_text(&name("alice"), "got them all")
        .await
        .unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [t("bob", "bob", "got them all")]
    );
    let bob = live.stop().await.unwrap();
    assert_eq!(bob.user().as_str(), "bob");
}

#[tokio::test]
async fn a_server_restart_loses_and_repeats_nothing() {
    let mut server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let bob = account(&server, &homes.path().join("bob"), "bob").await;
    let mut live = Live::start(bob).unwrap();
    until_live(&live).await;
    alice.send_text(&name("bob"), "before").await.unwrap();
    assert_eq!(
        messages(&mut live, 1).await,
        [t("alice", "alice", "before")]
    );

    // The server stops and starts again on its own data: the session drops,
    // and the listener comes back by itself.
    let data = server.snapshot();
    server.restart_from(data.path()).await;
    for i in 1..=3 {
        alice
            .send_text(&name("bob"), &format!("after {i}"))
            .await
            .unwrap();
    }
    let expected: Vec<_> = (1..=3)
        .map(|i| t("alice", "alice", &format!("after {i}")))
        .collect();
    assert_eq!(messages(&mut live, 3).await, expected);
    until_live(&live).await;
    // Nothing more comes: no message twice.
    alice.send_text(&name("bob"), "last").await.unwrap();
    assert_eq!(messages(&mut live, 1).await, [t("alice", "alice", "last")]);
    live.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_session_it_polls_and_still_delivers() {
    let server = TestServer::start().await;
    // The test proxy forwards requests but cannot carry a WebSocket upgrade.
    let proxy = rempart_testkit::Proxy::start(&server.url).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let bob =
        rempart_client::Client::create_account(&homes.path().join("bob"), &proxy.url, name("bob"))
            .await
            .unwrap();
    let mut live = Live::start(bob).unwrap();
    until(&live, SessionState::Polling).await;
    alice.send_text(&name("bob"), "polled").await.unwrap();
    assert_eq!(
        messages(&mut live, 1).await,
        [t("alice", "alice", "polled")]
    );
    assert_eq!(live.state(), SessionState::Polling);
    live.stop().await.unwrap();
}

/// The next event the live session reports that `pick` keeps.
async fn next_such<T>(live: &mut Live, pick: impl Fn(&Event) -> Option<T>) -> T {
    loop {
        let event = tokio::time::timeout(PATIENCE, live.next_event())
            .await
            .expect("the live session went quiet")
            .expect("the live session stopped");
        assert!(!event.is_alert(), "{event:?}");
        if let Some(picked) = pick(&event) {
            return picked;
        }
    }
}

#[tokio::test]
async fn a_text_written_while_the_server_is_away_is_queued_then_sent_by_the_session() {
    let server = TestServer::start().await;
    let proxy = rempart_testkit::Proxy::start(&server.url).await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let bob =
        rempart_client::Client::create_account(&homes.path().join("bob"), &proxy.url, name("bob"))
            .await
            .unwrap();
    let mut live = Live::start(bob).unwrap();
    alice.send_text(&name("bob"), "hello").await.unwrap();
    assert_eq!(messages(&mut live, 1).await, [t("alice", "alice", "hello")]);

    // The server is away: every request answered 503, none reaching it.
    proxy.refuse(|_, _| Some((503, br#"{"error":"unavailable","message":"away"}"#.to_vec())));
    let sent = live.send_text(&name("alice"), "while away").await.unwrap();
    assert_eq!(sent.state, DeliveryState::Queued);
    let queued = next_such(&mut live, |e| match e {
        Event::MessageQueued { message_id, .. } => Some(*message_id),
        _ => None,
    })
    .await;
    assert_eq!(queued, sent.id);

    // Back: the session's next catch-up sends it, and says so.
    proxy.honest();
    let delivered = next_such(&mut live, |e| match e {
        Event::MessageSent { message_id, .. } => Some(*message_id),
        _ => None,
    })
    .await;
    assert_eq!(delivered, sent.id);
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [t("bob", "bob", "while away")]
    );
    assert!(texts(&alice.sync().await.unwrap()).is_empty());
    live.stop().await.unwrap();
}

#[tokio::test]
async fn a_thousand_messages_all_arrive_in_order() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let bob = account(&server, &homes.path().join("bob"), "bob").await;
    let mut live = Live::start(bob).unwrap();
    until_live(&live).await;
    const COUNT: usize = 1000;
    // Sent while Bob's session takes them in, on its own thread.
    for i in 0..COUNT {
        alice
            .send_text(&name("bob"), &format!("{i:04}"))
            .await
            .unwrap();
    }
    let seen = messages(&mut live, COUNT).await;
    let expected: Vec<_> = (0..COUNT)
        .map(|i| t("alice", "alice", &format!("{i:04}")))
        .collect();
    assert_eq!(seen, expected);
    live.stop().await.unwrap();
}

#[tokio::test]
async fn the_listener_fails_over_when_its_node_dies() {
    let Some(schema) = rempart_testkit::postgres::TestSchema::create("live_failover").await else {
        return;
    };
    let database: rempart_server::Database = schema.url().parse().unwrap();
    let node_a = TestServer::start_node(database.clone(), None).await;
    let node_b = TestServer::start_node(database, Some(node_a.data_dir())).await;
    let homes = TempDir::new().unwrap();
    let both = format!("{},{}", node_a.url, node_b.url);
    let bob = rempart_client::Client::create_account(&homes.path().join("bob"), &both, name("bob"))
        .await
        .unwrap();
    let mut alice = rempart_client::Client::create_account(
        &homes.path().join("alice"),
        &node_b.url,
        name("alice"),
    )
    .await
    .unwrap();
    let mut live = Live::start(bob).unwrap();
    until_live(&live).await;
    alice.send_text(&name("bob"), "through a").await.unwrap();
    assert_eq!(
        messages(&mut live, 1).await,
        [t("alice", "alice", "through a")]
    );

    // Node A, which Bob's session is on, goes away; B carries on.
    node_a.stop().await;
    alice.send_text(&name("bob"), "through b").await.unwrap();
    assert_eq!(
        messages(&mut live, 1).await,
        [t("alice", "alice", "through b")]
    );
    until_live(&live).await;
    alice.send_text(&name("bob"), "pushed by b").await.unwrap();
    assert_eq!(
        messages(&mut live, 1).await,
        [t("alice", "alice", "pushed by b")]
    );
    live.stop().await.unwrap();
}

#[tokio::test]
async fn two_live_devices_talk_over_their_sessions() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice.create_group("team", &[name("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    let mut alice = Live::start(alice).unwrap();
    let mut bob = Live::start(bob).unwrap();
    until_live(&alice).await;
    until_live(&bob).await;
    for i in 1..=3 {
        alice.send_to_group("team", &format!("a{i}")).await.unwrap();
        bob.send_to_group("team", &format!("b{i}")).await.unwrap();
    }
    let from = |sender: &str| -> Vec<_> {
        (1..=3)
            .map(|i| t("team", sender, &format!("{}{i}", &sender[..1])))
            .collect()
    };
    assert_eq!(messages(&mut bob, 3).await, from("alice"));
    assert_eq!(messages(&mut alice, 3).await, from("bob"));
    alice.stop().await.unwrap();
    bob.stop().await.unwrap();
}

#[tokio::test]
async fn group_operations_run_while_the_stream_runs() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    let mut carol = account(&server, &homes.path().join("carol"), "carol").await;
    let mut alice = Live::start(alice).unwrap();
    until_live(&alice).await;
    alice.create_group("team", &[name("bob")]).await.unwrap();
    alice.add_member("team", &name("carol")).await.unwrap();
    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    bob.send_to_group("team", "hi all").await.unwrap();
    assert_eq!(messages(&mut alice, 1).await, [t("team", "bob", "hi all")]);
    alice.remove_member("team", &name("carol")).await.unwrap();
    alice.send_to_group("team", "just us").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        [t("team", "alice", "just us")]
    );
    // Carol reads what was sent before her removal, and nothing after.
    assert_eq!(
        texts(&carol.sync().await.unwrap()),
        [t("team", "bob", "hi all")]
    );
    alice.leave_group("team").await.unwrap();
    bob.sync().await.unwrap();
    let mut users: Vec<String> = bob
        .group_members("team")
        .unwrap()
        .iter()
        .map(|m| m.user.to_string())
        .collect();
    users.dedup();
    assert_eq!(users, ["bob"]);
    alice.stop().await.unwrap();
}
