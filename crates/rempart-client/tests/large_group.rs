//! A group of a thousand members works, and sending to it is one upload and
//! one write on the server whatever its size.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rempart_client::{Client, Event};
use rempart_proto::UserName;
use rempart_testkit::{RawMember, TestServer, server_database};
use tempfile::TempDir;

const MEMBERS: usize = 1_000;

fn log_rows(server: &TestServer) -> i64 {
    let conn = rusqlite::Connection::open(server_database(server.data_dir())).unwrap();
    conn.query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_member_group() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    // A test-only fast path creates the accounts; the protocol is the real one.
    let crowd = RawMember::register_many(&server.url, "member", MEMBERS - 3).await;
    let mut alice = Client::create_account(
        &homes.path().join("alice"),
        &server.url,
        "alice".parse().unwrap(),
    )
    .await
    .unwrap();
    let mut bob = Client::create_account(
        &homes.path().join("bob"),
        &server.url,
        "bob".parse().unwrap(),
    )
    .await
    .unwrap();
    let mut carol = Client::create_account(
        &homes.path().join("carol"),
        &server.url,
        "carol".parse().unwrap(),
    )
    .await
    .unwrap();

    let mut members: Vec<UserName> = crowd.iter().map(|m| m.user.clone()).collect();
    members.push("bob".parse().unwrap());
    members.push("carol".parse().unwrap());
    alice.create_group("everyone", &members).await.unwrap();
    assert_eq!(alice.group_members("everyone").unwrap().len(), MEMBERS);

    bob.sync().await.unwrap();
    carol.sync().await.unwrap();
    assert_eq!(bob.group_members("everyone").unwrap().len(), MEMBERS);

    // One upload, one row, for a thousand recipients.
    let before = log_rows(&server);
    bob.send_to_group("everyone", "hello, all thousand of you")
        .await
        .unwrap();
    assert_eq!(log_rows(&server), before + 1);

    for reader in [&mut alice, &mut carol] {
        let events = reader.sync().await.unwrap();
        let texts: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                Event::Message { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["hello, all thousand of you"], "{events:?}");
    }

    // A membership change in the big group reaches everyone.
    alice
        .remove_member("everyone", &"member0".parse().unwrap())
        .await
        .unwrap();
    let events = carol.sync().await.unwrap();
    assert!(events.iter().any(|e| matches!(e,
        Event::MemberRemoved { user, sender, .. } if user.as_str() == "member0" && sender.as_str() == "alice")));
    assert_eq!(carol.group_members("everyone").unwrap().len(), MEMBERS - 1);
}
