//! People for tests: accounts on the real client engine, and what their
//! syncs showed.

use std::path::Path;

use crate::TestServer;
use rempart_client::{AlertCode, Client, Event};
use rempart_proto::UserName;

pub fn name(s: &str) -> UserName {
    s.parse().unwrap()
}

/// A new account on `server` stored in `home`.
pub async fn account(server: &TestServer, home: &Path, user: &str) -> Client {
    Client::create_account(home, &server.url, name(user))
        .await
        .unwrap()
}

/// The `(conversation, sender, text)` of each message event.
pub fn texts(events: &[Event]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message {
                conversation,
                sender,
                text,
                ..
            } => Some((conversation.clone(), sender.to_string(), text.clone())),
            _ => None,
        })
        .collect()
}

/// An expected message, as [`texts`] reports it.
pub fn t(conversation: &str, sender: &str, text: &str) -> (String, String, String) {
    (conversation.into(), sender.into(), text.into())
}

/// The codes of the alert events.
pub fn alerts(events: &[Event]) -> Vec<AlertCode> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Alert { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}
