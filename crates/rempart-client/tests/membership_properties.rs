//! Property test of the membership model: random sequences of add, remove,
//! send, update and sync across members end with every current member
//! agreeing on roster and epoch, and having decrypted every message sent
//! while it was a member.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rempart_client::{Client, Event};
use rempart_proto::UserName;
use rempart_testkit::TestServer;
use tempfile::TempDir;

const USERS: usize = 4;
const GROUP: &str = "p";

#[derive(Debug, Clone)]
enum Op {
    Send(usize),
    Add(usize, usize),
    Remove(usize, usize),
    Update(usize),
    Sync(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let user = 0..USERS;
    prop_oneof![
        3 => user.clone().prop_map(Op::Send),
        2 => (user.clone(), user.clone()).prop_map(|(a, b)| Op::Add(a, b)),
        1 => (user.clone(), user.clone()).prop_map(|(a, b)| Op::Remove(a, b)),
        1 => user.clone().prop_map(Op::Update),
        2 => user.prop_map(Op::Sync),
    ]
}

fn user(i: usize) -> UserName {
    format!("user{i}").parse().unwrap()
}

/// What the test expects: who is in, and since which "generation" (a user
/// removed and added again starts a new one).
struct Model {
    generation: Vec<u32>,
    members: BTreeSet<usize>,
    /// Text → (sender, generation of each member when it was sent).
    sent: Vec<(String, usize, BTreeMap<usize, u32>)>,
    received: Vec<Vec<String>>,
}

impl Model {
    fn record(&mut self, who: usize, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Message { text, .. } => self.received[who].push(text),
                Event::Alert { code, message, .. } => panic!("unexpected alert {code}: {message}"),
                _ => {}
            }
        }
    }
}

async fn run(ops: Vec<Op>) {
    let server = TestServer::start().await;
    let homes = TempDir::new().unwrap();
    let mut clients = Vec::new();
    for i in 0..USERS {
        let home = homes.path().join(format!("u{i}"));
        clients.push(
            Client::create_account(&home, &server.url, user(i))
                .await
                .unwrap(),
        );
    }
    let mut model = Model {
        generation: vec![0; USERS],
        members: BTreeSet::from([0, 1]),
        sent: Vec::new(),
        received: vec![Vec::new(); USERS],
    };
    clients[0].create_group(GROUP, &[user(1)]).await.unwrap();
    let events = clients[1].sync().await.unwrap();
    model.record(1, events);

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Send(i) if model.members.contains(&i) => {
                let text = format!("m{step} from {i}");
                clients[i].send_to_group(GROUP, &text).await.unwrap();
                let generations = model
                    .members
                    .iter()
                    .map(|m| (*m, model.generation[*m]))
                    .collect();
                model.sent.push((text, i, generations));
            }
            Op::Add(i, j) if model.members.contains(&i) && !model.members.contains(&j) => {
                let events = clients[i].add_member(GROUP, &user(j)).await.unwrap();
                model.record(i, events);
                model.members.insert(j);
                model.generation[j] += 1;
                let events = clients[j].sync().await.unwrap();
                model.record(j, events);
            }
            Op::Remove(i, j)
                if i != j && model.members.contains(&i) && model.members.contains(&j) =>
            {
                let events = clients[i].remove_member(GROUP, &user(j)).await.unwrap();
                model.record(i, events);
                model.members.remove(&j);
                let events = clients[j].sync().await.unwrap();
                model.record(j, events);
            }
            Op::Update(i) if model.members.contains(&i) => {
                let events = clients[i].update_group_keys(GROUP).await.unwrap();
                model.record(i, events);
            }
            Op::Sync(i) => {
                let events = clients[i].sync().await.unwrap();
                model.record(i, events);
            }
            _ => {}
        }
    }
    for _ in 0..2 {
        for (i, client) in clients.iter_mut().enumerate() {
            let events = client.sync().await.unwrap();
            model.record(i, events);
        }
    }

    let members: Vec<usize> = model.members.iter().copied().collect();
    let expected_roster: Vec<String> = members.iter().map(|m| user(*m).to_string()).collect();
    let first = &clients[members[0]];
    for &m in &members {
        let roster: Vec<String> = clients[m]
            .group_members(GROUP)
            .unwrap()
            .into_iter()
            .map(|e| e.user.to_string())
            .collect();
        assert_eq!(roster, expected_roster, "roster of user{m}");
        assert_eq!(
            clients[m].group_epoch(GROUP).unwrap(),
            first.group_epoch(GROUP).unwrap()
        );
        assert_eq!(
            clients[m].group_members(GROUP).unwrap(),
            first.group_members(GROUP).unwrap()
        );
        for (text, sender, generations) in &model.sent {
            let member_since_then = generations.get(&m) == Some(&model.generation[m]);
            if *sender != m && member_since_then {
                let count = model.received[m].iter().filter(|t| *t == text).count();
                assert_eq!(count, 1, "user{m} should have read {text:?} exactly once");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn members_agree_and_read_everything(ops in proptest::collection::vec(op(), 1..14)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops));
    }
}
