//! The history: paging through a conversation's messages, and unread
//! counts that go up on receipt and back to zero on reading.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rempart_client::history::{HistoryError, MessageState};
use rempart_testkit::{TestServer, account, name};
use tempfile::TempDir;

#[tokio::test]
async fn a_thousand_messages_page_back_and_unread_counts_follow_reading() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    const COUNT: usize = 1000;
    for i in 0..COUNT {
        alice
            .send_text(&name("bob"), &format!("{i:04}"))
            .await
            .unwrap();
    }
    bob.sync().await.unwrap();
    let unread = |client: &rempart_client::Client| {
        client
            .conversations()
            .unwrap()
            .iter()
            .find(|c| !c.is_group)
            .map(|c| (c.unread, c.last_activity > 0))
            .unwrap()
    };
    assert_eq!(unread(&bob), (COUNT as u64, true));
    assert_eq!(unread(&alice), (0, true), "what one sends is read");

    // Pages of 300 from the newest back to the first, oldest first each.
    let mut texts = Vec::new();
    let mut before = None;
    loop {
        let page = bob.history("alice", 300, before.as_ref()).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.iter().all(|m| m.state == MessageState::Received));
        assert!(page.iter().all(|m| m.sender.as_str() == "alice"));
        before = Some(page[0].id);
        let mut older: Vec<String> = page.into_iter().map(|m| m.text).collect();
        older.extend(texts);
        texts = older;
    }
    let expected: Vec<String> = (0..COUNT).map(|i| format!("{i:04}")).collect();
    assert_eq!(texts, expected);
    assert_eq!(unread(&bob), (0, true), "reading marks it read");

    // A reply: read by its writer, unread for the other.
    bob.send_text(&name("alice"), "all read").await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(unread(&alice), (1, true));
    let last = alice.history("bob", 1, None).unwrap();
    assert_eq!(
        (last[0].text.as_str(), last[0].state),
        ("all read", MessageState::Received)
    );
    assert_eq!(unread(&alice), (0, true));
    let mine = alice.history("bob", 2, None).unwrap();
    assert_eq!(mine[0].state, MessageState::Sent);

    assert!(matches!(
        alice.history("nobody", 10, None),
        Err(HistoryError::UnknownConversation(_))
    ));
    assert!(matches!(
        alice.history("bob", 0, None),
        Err(HistoryError::BadLimit(0))
    ));
}
