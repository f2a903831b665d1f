//! Groups and several devices per person, against a real server: every
//! membership change is a member's commit, seen by everyone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rempart_client::{Client, ClientError, Event};
use rempart_testkit::TestServer;
use tempfile::TempDir;

use rempart_testkit::{account, alerts, name, t, texts};

fn users_of(client: &Client, group: &str) -> Vec<String> {
    let mut users: Vec<String> = client
        .group_members(group)
        .unwrap()
        .into_iter()
        .map(|m| m.user.to_string())
        .collect();
    users.dedup();
    users
}

#[tokio::test]
async fn group_chat_with_add_remove_and_leave() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    let mut carol = account(&server, &homes.path().join("carol"), "carol").await;
    let mut dave = account(&server, &homes.path().join("dave"), "dave").await;

    alice
        .create_group("team", &[name("bob"), name("carol")])
        .await
        .unwrap();
    for member in [&mut bob, &mut carol] {
        let events = member.sync().await.unwrap();
        assert!(alerts(&events).is_empty(), "{events:?}");
        assert!(events.iter().any(|e| matches!(e,
            Event::MemberAdded { conversation, sender, .. } if conversation == "team" && sender.as_str() == "alice")));
    }
    assert_eq!(users_of(&carol, "team"), ["alice", "bob", "carol"]);

    alice.send_to_group("team", "hello team").await.unwrap();
    bob.send_to_group("team", "hi from bob").await.unwrap();
    assert_eq!(
        texts(&carol.sync().await.unwrap()),
        [
            t("team", "alice", "hello team"),
            t("team", "bob", "hi from bob")
        ]
    );

    // Alice adds Dave: everyone sees who did it. Alice catches up first,
    // and sees what she had not synced yet.
    let caught_up = alice.add_member("team", &name("dave")).await.unwrap();
    assert_eq!(texts(&caught_up), [t("team", "bob", "hi from bob")]);
    let events = bob.sync().await.unwrap();
    assert!(events.iter().any(|e| matches!(e,
        Event::MemberAdded { sender, user, .. } if sender.as_str() == "alice" && user.as_str() == "dave")), "{events:?}");
    assert!(texts(&events).iter().all(|(_, s, _)| s != "dave"));
    let events = dave.sync().await.unwrap();
    assert!(
        events.iter().any(
            |e| matches!(e, Event::MemberAdded { conversation, .. } if conversation == "team")
        )
    );
    dave.send_to_group("team", "dave here").await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [t("team", "dave", "dave here")]
    );

    // Bob removes Carol: she is told, by whom, cannot read what follows,
    // and keeps the conversation as ended history.
    carol.sync().await.unwrap();
    bob.sync().await.unwrap();
    bob.remove_member("team", &name("carol")).await.unwrap();
    let events = dave.sync().await.unwrap();
    assert!(events.iter().any(|e| matches!(e,
        Event::MemberRemoved { sender, user, .. } if sender.as_str() == "bob" && user.as_str() == "carol")), "{events:?}");
    alice.sync().await.unwrap();
    alice
        .send_to_group("team", "carol must not read this")
        .await
        .unwrap();
    let events = carol.sync().await.unwrap();
    assert!(texts(&events).is_empty(), "{events:?}");
    assert!(events.iter().any(|e| matches!(e,
        Event::MemberRemoved { sender, user, .. } if sender.as_str() == "bob" && user.as_str() == "carol")), "{events:?}");
    assert!(!events.iter().any(Event::is_alert), "{events:?}");
    match carol.send_to_group("team", "still here?").await {
        Err(ClientError::Removed { conversation, by }) => {
            assert_eq!((conversation.as_str(), by.as_str()), ("team", "bob"));
        }
        other => panic!("expected a removal error, got {other:?}"),
    }
    let listed = carol.conversations().unwrap();
    let team = listed.iter().find(|c| c.name == "team").unwrap();
    assert!(team.ended, "{listed:?}");
    assert_eq!(team.ended_by.as_ref().map(|u| u.as_str()), Some("bob"));
    // Ended: the next syncs read nothing more and say nothing more.
    assert!(carol.sync().await.unwrap().is_empty());

    // Dave leaves; the next member to sync commits it, and the others see
    // that Dave did it.
    dave.leave_group("team").await.unwrap();
    alice.sync().await.unwrap();
    let events = bob.sync().await.unwrap();
    assert!(events.iter().any(|e| matches!(e,
        Event::MemberRemoved { sender, user, .. } if sender.as_str() == "dave" && user.as_str() == "dave")), "{events:?}");
    assert_eq!(users_of(&alice, "team"), ["alice", "bob"]);
    assert_eq!(users_of(&bob, "team"), ["alice", "bob"]);
    bob.send_to_group("team", "just us").await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [t("team", "bob", "just us")]
    );
    assert!(texts(&dave.sync().await.unwrap()).is_empty());
}

#[tokio::test]
async fn a_removed_member_added_again_reads_again() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice.create_group("g", &[name("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    alice.remove_member("g", &name("bob")).await.unwrap();
    alice.send_to_group("g", "while bob is out").await.unwrap();
    alice.add_member("g", &name("bob")).await.unwrap();
    alice.send_to_group("g", "welcome back").await.unwrap();
    let events = bob.sync().await.unwrap();
    assert_eq!(
        texts(&events),
        [t("g", "alice", "welcome back")],
        "{events:?}"
    );
}

#[tokio::test]
async fn linked_devices_join_conversations_and_removed_ones_leave() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice
        .send_text(&name("bob"), "before linking")
        .await
        .unwrap();
    bob.sync().await.unwrap();

    let pending = alice.start_link().await.unwrap();
    let code = pending.code().to_owned();
    let laptop_home = homes.path().join("alice-laptop");
    let (linked, laptop) = tokio::join!(
        alice.finish_link(pending, Duration::from_millis(20)),
        Client::link_device(&laptop_home, &server.url, &code, Duration::from_millis(20)),
    );
    let laptop_device = linked.unwrap();
    let mut laptop = laptop.unwrap();
    assert_eq!(laptop.device(), laptop_device);
    assert_eq!(laptop.user().as_str(), "alice");
    assert_eq!(laptop.account_key(), alice.account_key());
    assert_eq!(alice.devices().await.unwrap().len(), 2);

    // The code worked once.
    let again = Client::link_device(
        &homes.path().join("x"),
        &server.url,
        &code,
        Duration::from_millis(20),
    )
    .await;
    assert!(matches!(again, Err(ClientError::LinkExpired)), "{again:?}");

    // Bob's next sync adds the new device to the conversation, and says so.
    let events = bob.sync().await.unwrap();
    assert!(alerts(&events).is_empty(), "{events:?}");
    let events = alice.sync().await.unwrap();
    assert!(alerts(&events).is_empty(), "{events:?}");
    assert!(events.iter().any(|e| matches!(e,
        Event::DeviceAdded { user, device, .. } if user.as_str() == "alice" && *device == laptop_device)), "{events:?}");
    laptop.sync().await.unwrap();
    bob.send_text(&name("alice"), "to both of you")
        .await
        .unwrap();
    assert_eq!(
        texts(&laptop.sync().await.unwrap()),
        [t("bob", "bob", "to both of you")]
    );
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [t("bob", "bob", "to both of you")]
    );

    // What the laptop sends appears on the phone too.
    laptop
        .send_text(&name("bob"), "from the laptop")
        .await
        .unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [t("bob", "alice", "from the laptop")]
    );
    assert_eq!(
        texts(&bob.sync().await.unwrap()),
        [t("alice", "alice", "from the laptop")]
    );

    // Removing the laptop takes it out of every conversation.
    alice.remove_device(laptop_device).await.unwrap();
    let events = bob.sync().await.unwrap();
    assert!(events.iter().any(|e| matches!(e,
        Event::DeviceRemoved { user, device, .. } if user.as_str() == "alice" && *device == laptop_device)), "{events:?}");
    bob.send_text(&name("alice"), "phone only").await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [t("bob", "bob", "phone only")]
    );
    assert!(
        laptop.sync().await.is_err(),
        "a removed device can no longer authenticate"
    );
    assert_eq!(alice.devices().await.unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_commits_never_fork() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    let mut carol = account(&server, &homes.path().join("carol"), "carol").await;
    alice.create_group("c", &[name("bob")]).await.unwrap();
    bob.sync().await.unwrap();

    // Events learnt while resolving a conflict are returned by the call
    // that resolved it: collect them all.
    let (mut seen_by_alice, mut seen_by_bob) = (Vec::new(), Vec::new());
    let mut sent = Vec::new();
    for round in 0..6 {
        let (a, b) = tokio::join!(alice.update_group_keys("c"), bob.update_group_keys("c"));
        seen_by_alice.extend(a.unwrap());
        seen_by_bob.extend(b.unwrap());
        let (a_text, b_text) = (format!("a{round}"), format!("b{round}"));
        let (a, b) = tokio::join!(
            alice.send_to_group("c", &a_text),
            bob.send_to_group("c", &b_text)
        );
        a.unwrap();
        b.unwrap();
        sent.push((a_text, b_text));
        if round == 2 {
            // A membership change racing a key update.
            let carol_name = name("carol");
            let (a, b) = tokio::join!(
                alice.add_member("c", &carol_name),
                bob.update_group_keys("c")
            );
            seen_by_alice.extend(a.unwrap());
            seen_by_bob.extend(b.unwrap());
            carol.sync().await.unwrap();
        }
    }
    seen_by_alice.extend(alice.sync().await.unwrap());
    seen_by_bob.extend(bob.sync().await.unwrap());
    // Each message exactly once (events from different calls interleave,
    // so compare as sorted lists).
    let sorted = |events: &[Event]| {
        let mut v: Vec<String> = texts(events).into_iter().map(|(_, _, t)| t).collect();
        v.sort();
        v
    };
    let (from_bob, from_alice) = (sorted(&seen_by_alice), sorted(&seen_by_bob));
    assert_eq!(
        from_bob,
        sent.iter().map(|(_, b)| b.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        from_alice,
        sent.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>()
    );
    assert!(alerts(&seen_by_alice).is_empty() && alerts(&seen_by_bob).is_empty());
    carol.sync().await.unwrap();
    let rosters: Vec<_> = [&alice, &bob, &carol]
        .iter()
        .map(|c| c.group_members("c").unwrap())
        .collect();
    assert_eq!(rosters[0], rosters[1]);
    assert_eq!(rosters[1], rosters[2]);
    let epochs: Vec<u64> = [&alice, &bob, &carol]
        .iter()
        .map(|c| c.group_epoch("c").unwrap())
        .collect();
    assert_eq!(epochs[0], epochs[1]);
    assert_eq!(epochs[1], epochs[2]);
    alice.send_to_group("c", "final").await.unwrap();
    assert_eq!(
        texts(&carol.sync().await.unwrap()),
        [t("c", "alice", "final")]
    );
}

#[tokio::test]
async fn self_update_follows_the_policy() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    alice.create_group("p", &[name("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    alice
        .set_update_policy(rempart_client::UpdatePolicy {
            interval_secs: 1_000_000,
            after_messages: 3,
        })
        .unwrap();
    let before = alice.group_members("p").unwrap();
    let epoch = alice.group_epoch("p").unwrap();
    for i in 0..2 {
        alice.send_to_group("p", &format!("m{i}")).await.unwrap();
    }
    assert_eq!(alice.group_epoch("p").unwrap(), epoch);
    alice.send_to_group("p", "m2").await.unwrap();
    alice.sync().await.unwrap();
    // The third message made a self-update due, done at the next sync: a new
    // epoch, the same members, and Bob follows.
    assert_eq!(alice.group_epoch("p").unwrap(), epoch + 1);
    let events = bob.sync().await.unwrap();
    assert_eq!(texts(&events).len(), 3);
    assert_eq!(bob.group_epoch("p").unwrap(), epoch + 1);
    assert_eq!(alice.group_members("p").unwrap(), before);
    assert_eq!(alice.update_policy().unwrap().after_messages, 3);
    bob.send_to_group("p", "after update").await.unwrap();
    assert_eq!(
        texts(&alice.sync().await.unwrap()),
        [t("p", "bob", "after update")]
    );
}

#[tokio::test]
async fn a_member_behind_catches_up_before_its_message_goes_out() {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut bob = account(&server, &homes.path().join("bob"), "bob").await;
    let mut carol = account(&server, &homes.path().join("carol"), "carol").await;
    alice.create_group("g", &[name("bob")]).await.unwrap();
    bob.sync().await.unwrap();
    bob.add_member("g", &name("carol")).await.unwrap();
    carol.sync().await.unwrap();

    // Alice has not seen Carol's addition: her message, encrypted in the old
    // epoch, is refused by the server; she catches up and encrypts again, so
    // Carol can read it.
    alice
        .send_to_group("g", "hello whoever is here")
        .await
        .unwrap();
    assert_eq!(
        texts(&carol.sync().await.unwrap()),
        [t("g", "alice", "hello whoever is here")]
    );
    // What Alice learnt while catching up is reported at her next sync.
    let events = alice.sync().await.unwrap();
    assert!(events.iter().any(|e| matches!(e,
        Event::MemberAdded { user, sender, .. } if user.as_str() == "carol" && sender.as_str() == "bob")), "{events:?}");
}

#[tokio::test]
async fn one_time_key_packages_drained_by_another_user_are_told_without_blaming_the_server() {
    use rempart_client::AlertCode;

    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut alice = account(&server, &homes.path().join("alice"), "alice").await;
    let mut mallory = account(&server, &homes.path().join("mallory"), "mallory").await;
    // Each group Mallory founds with Alice claims one of her one-time
    // KeyPackages: twenty of them take all she uploaded, and the next is
    // founded with her last-resort one.
    for i in 0..21 {
        mallory
            .create_group(&format!("drain{i}"), &[name("alice")])
            .await
            .unwrap();
    }
    let events = alice.sync().await.unwrap();
    assert_eq!(alerts(&events), [AlertCode::LastResortUsed], "{events:?}");
    let said = events
        .iter()
        .find_map(|e| match e {
            Event::Alert { message, .. } => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    assert!(
        said.contains("had all been claimed") && !said.contains("withheld them"),
        "{said}"
    );
    let drained: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::KeyPackagesDrained { claimed, .. } => Some(*claimed),
            _ => None,
        })
        .collect();
    assert_eq!(drained, [20]);
    // Told once: the next sync finds a full stock again.
    let events = alice.sync().await.unwrap();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::KeyPackagesDrained { .. })),
        "{events:?}"
    );
}
