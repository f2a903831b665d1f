//! The client engine against a real server on a real socket.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rempart_client::{Client, ClientError, Event};
use rempart_testkit::TestServer;
use tempfile::TempDir;

use rempart_testkit::{account, alerts, name, texts};

#[tokio::test]
async fn two_people_exchange_messages_both_ways() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;

    alice.send_text(&name("bob"), "hello Bob").await.unwrap();
    alice.send_text(&name("bob"), "second").await.unwrap();
    let events = bob.sync().await.unwrap();
    assert!(alerts(&events).is_empty(), "{events:?}");
    assert!(events.iter().any(|e| matches!(e,
        Event::MemberAdded { sender, user, .. } if sender.as_str() == "alice" && user.as_str() == "bob")));
    assert_eq!(
        texts(&events),
        vec![
            ("alice".into(), "alice".into(), "hello Bob".into()),
            ("alice".into(), "alice".into(), "second".into()),
        ]
    );

    bob.send_text(&name("alice"), "hi Alice").await.unwrap();
    let events = alice.sync().await.unwrap();
    assert_eq!(
        texts(&events),
        vec![("bob".into(), "bob".into(), "hi Alice".into())]
    );

    // Nothing is shown twice.
    assert!(bob.sync().await.unwrap().is_empty());
    assert!(alice.sync().await.unwrap().is_empty());

    // State survives reopening the store.
    drop(bob);
    let mut bob = Client::open(&homes.path().join("bob")).unwrap();
    alice.send_text(&name("bob"), "after reopen").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec![("alice".into(), "alice".into(), "after reopen".into())]
    );
}

#[tokio::test]
async fn concurrent_commits_converge_after_a_conflict() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice.send_text(&name("bob"), "start").await.unwrap();
    bob.sync().await.unwrap();

    // Both update their keys from the same epoch at the same time: the server
    // accepts one; the other is refused as stale, fetches, merges, retries.
    let (to_bob, to_alice) = (name("bob"), name("alice"));
    let (a, b) = tokio::join!(alice.update_keys(&to_bob), bob.update_keys(&to_alice));
    a.unwrap();
    b.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();

    alice
        .send_text(&name("bob"), "after updates")
        .await
        .unwrap();
    bob.send_text(&name("alice"), "me too").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec![("alice".into(), "alice".into(), "after updates".into())]
    );
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        vec![("bob".into(), "bob".into(), "me too".into())]
    );
}

#[tokio::test]
async fn a_stale_commit_is_rebuilt_on_the_current_epoch() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice.send_text(&name("bob"), "start").await.unwrap();
    bob.sync().await.unwrap();

    alice.update_keys(&name("bob")).await.unwrap();
    // Bob has not synced: his commit is built on the old epoch, refused with
    // 409, and retried after merging Alice's.
    bob.update_keys(&name("alice")).await.unwrap();
    alice.send_text(&name("bob"), "still here").await.unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        vec![("alice".into(), "alice".into(), "still here".into())]
    );
    bob.send_text(&name("alice"), "yes").await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        vec![("bob".into(), "bob".into(), "yes".into())]
    );
}

#[tokio::test]
async fn errors_say_what_to_do() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let missing = Client::open(&homes.path().join("nobody")).unwrap_err();
    assert!(
        missing.to_string().contains("run `rempart init`"),
        "{missing}"
    );

    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let unknown = alice.send_text(&name("zed"), "hi").await.unwrap_err();
    assert!(
        matches!(unknown, ClientError::UnknownUser(_)),
        "{unknown:?}"
    );

    let taken = Client::create_account(&homes.path().join("alice2"), &server.url, name("alice"))
        .await
        .unwrap_err();
    assert!(
        matches!(&taken, ClientError::Server { status: 409, .. }),
        "{taken:?}"
    );
    // A failed registration leaves nothing behind: the home can be reused.
    assert!(
        !homes
            .path()
            .join("alice2")
            .join(rempart_client::STORE_FILE)
            .exists()
    );
}

#[tokio::test]
async fn requests_fail_over_to_the_next_node_of_the_server() {
    let server = TestServer::start().await;
    // A port nothing listens on: bind one, then free it.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_url = format!("http://{}", down.local_addr().unwrap());
    drop(down);
    let homes = TempDir::new().unwrap();
    let nodes = format!("{down_url},{}", server.url);
    let mut alice = Client::create_account(&homes.path().join("alice"), &nodes, name("alice"))
        .await
        .unwrap();
    assert_eq!(alice.whoami().server, nodes);
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;

    alice
        .send_text(&name("bob"), "through the node that answers")
        .await
        .unwrap();
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        [(
            "alice".into(),
            "alice".into(),
            "through the node that answers".into()
        )]
    );
    bob.send_text(&name("alice"), "and back").await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [("bob".into(), "bob".into(), "and back".into())]
    );

    // With no node left, the error names the last one tried.
    let lost = Client::create_account(&homes.path().join("carol"), &down_url, name("carol"))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&lost, ClientError::Network { url, .. } if *url == down_url),
        "{lost:?}"
    );
}
