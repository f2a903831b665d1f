//! Every operation of the engine can be cancelled at any of its network
//! steps, its future dropped there, as a user quitting, a connection
//! dropping or a timeout firing would: the store stays consistent, the next
//! call completes, nothing is sent twice and nothing is lost.
//!
//! Alice talks to the real server through a proxy that holds her `n`-th
//! request, either before it reaches the server or after the server
//! answered; the test then drops her operation's future. It does so at
//! every step of each operation, in turn, until the operation has no step
//! left to cancel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;

use rempart_client::{Client, ClientError};
use rempart_testkit::{Proxy, StallAt, TestServer, account, alerts, name, texts};
use tempfile::TempDir;

/// The two places a request is held.
const PLACES: [StallAt; 2] = [StallAt::BeforeServer, StallAt::AfterServer];

/// A real server, and a proxy in front of it for Alice.
struct Scene {
    server: TestServer,
    proxy: Proxy,
    homes: TempDir,
}

impl Scene {
    async fn start() -> Self {
        let server = TestServer::start().await;
        let proxy = Proxy::start(&server.url).await;
        Self {
            server,
            proxy,
            homes: TempDir::new().unwrap(),
        }
    }

    /// Alice, whose every request goes through the proxy.
    async fn alice(&self) -> Client {
        Client::create_account(
            &self.homes.path().join("alice"),
            &self.proxy.url,
            name("alice"),
        )
        .await
        .unwrap()
    }

    /// Someone talking to the server directly.
    async fn direct(&self, user: &str) -> Client {
        account(&self.server, &self.homes.path().join(user), user).await
    }
}

/// Runs `operation` until the proxy holds its `n`-th request at `at`, and
/// drops it there. `true` if it finished before that: it has fewer steps.
async fn cancel_at<T: std::fmt::Debug>(
    proxy: &Proxy,
    n: usize,
    at: StallAt,
    operation: impl Future<Output = Result<T, ClientError>>,
) -> bool {
    proxy.stall(n, at);
    let finished = tokio::select! {
        result = operation => {
            result.unwrap();
            true
        }
        () = proxy.stalled() => false,
    };
    proxy.release();
    finished
}

/// How many times `text` appears among the messages `events` show.
fn count(events: &[rempart_client::Event], text: &str) -> usize {
    texts(events).iter().filter(|(_, _, t)| t == text).count()
}

#[tokio::test]
async fn a_send_cancelled_at_any_step_is_delivered_exactly_once_before_the_next() {
    let scene = Scene::start().await;
    let mut alice = scene.alice().await;
    let mut bob = scene.direct("bob").await;
    alice.send_text(&name("bob"), "hello").await.unwrap();
    assert_eq!(count(&bob.sync().await.unwrap(), "hello"), 1);

    for at in PLACES {
        for n in 1.. {
            let cancelled = format!("{at:?} {n}");
            let finished = cancel_at(
                &scene.proxy,
                n,
                at,
                alice.send_text(&name("bob"), &cancelled),
            )
            .await;
            let next = format!("{cancelled}, next");
            alice.send_text(&name("bob"), &next).await.unwrap();
            let events = bob.sync().await.unwrap();
            assert!(alerts(&events).is_empty(), "{at:?} {n}: {events:?}");
            // It was in the outbox before anything went on the network:
            // the next send delivered it first, once.
            let seen: Vec<String> = texts(&events).into_iter().map(|(_, _, t)| t).collect();
            assert_eq!(seen, [cancelled.clone(), next], "{at:?} {n}");
            // Alice's sync goes on too, with nothing of her own shown back.
            let seen = alice.sync().await.unwrap();
            assert!(alerts(&seen).is_empty(), "{at:?} {n}: {seen:?}");
            if finished {
                break;
            }
        }
    }
}

#[tokio::test]
async fn a_sync_cancelled_at_any_step_loses_no_message() {
    let scene = Scene::start().await;
    let mut alice = scene.alice().await;
    let mut bob = scene.direct("bob").await;
    let mut carol = scene.direct("carol").await;
    bob.create_group("team", &[name("alice"), name("carol")])
        .await
        .unwrap();
    carol.sync().await.unwrap();

    let mut round = 0;
    for at in PLACES {
        for n in 1.. {
            round += 1;
            let text = format!("round {round}");
            bob.send_to_group("team", &text).await.unwrap();
            bob.send_text(&name("alice"), &text).await.unwrap();
            let finished = cancel_at(&scene.proxy, n, at, alice.sync()).await;
            // What the cancelled sync learnt is not lost: the next one says
            // it, once, and nothing twice.
            let events = alice.sync().await.unwrap();
            let events = if finished { Vec::new() } else { events };
            assert!(alerts(&events).is_empty(), "{at:?} {n}: {events:?}");
            assert!(count(&events, &text) <= 2, "{at:?} {n}: {events:?}");
            if finished {
                break;
            }
            assert_eq!(count(&events, &text), 2, "{at:?} {n}: {events:?}");
        }
    }
}

/// The users in `group` as `client` holds it.
fn users(client: &Client, group: &str) -> Vec<String> {
    let mut users: Vec<String> = client
        .group_members(group)
        .unwrap()
        .into_iter()
        .map(|m| m.user.to_string())
        .collect();
    users.dedup();
    users
}

/// How many of `client`'s conversations are named `group` (or, for a name
/// clash, `group#…`).
fn named(client: &Client, group: &str) -> usize {
    client
        .conversations()
        .unwrap()
        .iter()
        .filter(|c| c.name == group || c.name.starts_with(&format!("{group}#")))
        .count()
}

#[tokio::test]
async fn a_group_created_by_a_cancelled_call_exists_once() {
    let scene = Scene::start().await;
    let mut alice = scene.alice().await;
    let mut bob = scene.direct("bob").await;
    let mut round = 0;
    for at in PLACES {
        for n in 1.. {
            round += 1;
            let group = format!("created {round}");
            let finished = cancel_at(
                &scene.proxy,
                n,
                at,
                alice.create_group(&group, &[name("bob")]),
            )
            .await;
            // Creating it again settles the cancelled founding first: the
            // group is there once, whichever step the cancel hit.
            match alice.create_group(&group, &[name("bob")]).await {
                Ok(()) => assert!(!finished, "{at:?} {n}: created twice"),
                Err(ClientError::GroupExists(_)) => {}
                Err(e) => panic!("{at:?} {n}: {e}"),
            }
            let events = bob.sync().await.unwrap();
            assert!(alerts(&events).is_empty(), "{at:?} {n}: {events:?}");
            assert_eq!(named(&alice, &group), 1, "{at:?} {n}");
            assert_eq!(named(&bob, &group), 1, "{at:?} {n}");
            alice.send_to_group(&group, "in it").await.unwrap();
            assert_eq!(count(&bob.sync().await.unwrap(), "in it"), 1, "{at:?} {n}");
            if finished {
                break;
            }
        }
    }
}

#[tokio::test]
async fn an_add_or_remove_cancelled_at_any_step_happens_once() {
    let scene = Scene::start().await;
    let mut alice = scene.alice().await;
    let mut bob = scene.direct("bob").await;
    let mut carol = scene.direct("carol").await;
    alice.create_group("team", &[name("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    let mut round = 0;
    for at in PLACES {
        for n in 1.. {
            round += 1;
            let added = cancel_at(
                &scene.proxy,
                n,
                at,
                alice.add_member("team", &name("carol")),
            )
            .await;
            match alice.add_member("team", &name("carol")).await {
                Ok(_) => assert!(!added, "{at:?} {n}: added twice"),
                Err(ClientError::AlreadyMember(..)) => {}
                Err(e) => panic!("{at:?} {n}: {e}"),
            }
            for member in [&mut bob, &mut carol] {
                let events = member.sync().await.unwrap();
                assert!(alerts(&events).is_empty(), "{at:?} {n}: {events:?}");
            }
            for member in [&alice, &bob, &carol] {
                assert_eq!(
                    users(member, "team"),
                    ["alice", "bob", "carol"],
                    "{at:?} {n}"
                );
            }
            let text = format!("with carol {round}");
            alice.send_to_group("team", &text).await.unwrap();
            assert_eq!(count(&carol.sync().await.unwrap(), &text), 1);
            assert_eq!(count(&bob.sync().await.unwrap(), &text), 1);

            let removed = cancel_at(
                &scene.proxy,
                n,
                at,
                alice.remove_member("team", &name("carol")),
            )
            .await;
            match alice.remove_member("team", &name("carol")).await {
                Ok(_) => assert!(!removed, "{at:?} {n}: removed twice"),
                Err(ClientError::NotAMember(..)) => {}
                Err(e) => panic!("{at:?} {n}: {e}"),
            }
            for member in [&mut bob, &mut carol] {
                let events = member.sync().await.unwrap();
                assert!(alerts(&events).is_empty(), "{at:?} {n}: {events:?}");
            }
            assert_eq!(users(&alice, "team"), ["alice", "bob"], "{at:?} {n}");
            assert_eq!(users(&bob, "team"), ["alice", "bob"], "{at:?} {n}");
            assert_eq!(
                alice.group_epoch("team").unwrap(),
                bob.group_epoch("team").unwrap()
            );
            let text = format!("without carol {round}");
            alice.send_to_group("team", &text).await.unwrap();
            assert_eq!(count(&bob.sync().await.unwrap(), &text), 1);
            assert_eq!(count(&carol.sync().await.unwrap(), &text), 0);
            if added && removed {
                break;
            }
        }
    }
}

#[tokio::test]
async fn a_leave_cancelled_at_any_step_takes_effect_once() {
    let scene = Scene::start().await;
    let mut alice = scene.alice().await;
    let mut bob = scene.direct("bob").await;
    let mut round = 0;
    for at in PLACES {
        for n in 1.. {
            round += 1;
            let group = format!("left {round}");
            bob.create_group(&group, &[name("alice")]).await.unwrap();
            alice.sync().await.unwrap();
            let epoch = bob.group_epoch(&group).unwrap();
            let finished = cancel_at(&scene.proxy, n, at, alice.leave_group(&group)).await;
            match alice.leave_group(&group).await {
                Ok(()) => assert!(!finished, "{at:?} {n}: left twice"),
                Err(ClientError::Left(_)) => {}
                Err(e) => panic!("{at:?} {n}: {e}"),
            }
            // Bob's next sync commits her departure, once.
            let events = bob.sync().await.unwrap();
            assert!(alerts(&events).is_empty(), "{at:?} {n}: {events:?}");
            assert_eq!(users(&bob, &group), ["bob"], "{at:?} {n}");
            assert_eq!(bob.group_epoch(&group).unwrap(), epoch + 1, "{at:?} {n}");
            assert!(bob.sync().await.unwrap().is_empty(), "{at:?} {n}");
            assert_eq!(bob.group_epoch(&group).unwrap(), epoch + 1, "{at:?} {n}");
            if finished {
                break;
            }
        }
    }
}
