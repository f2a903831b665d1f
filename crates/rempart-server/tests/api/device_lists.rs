//! `POST /v1/device-lists`: many users' device lists in one request.

use rempart_proto::UserName;
use rempart_proto::api::{self, DeviceListsRequest, DeviceListsResponse, KnownVersion, error_code};
use rempart_proto::limits::MAX_USERS_PER_BATCH;

use crate::support::{Account, Device, TestServer, ok, refused};

async fn device_lists(server: &TestServer, users: &[(&UserName, u64)]) -> DeviceListsResponse {
    let request = DeviceListsRequest {
        users: users
            .iter()
            .map(|(user, version)| KnownVersion {
                user: (*user).clone(),
                version: *version,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&request).unwrap();
    // No authentication: device lists are public.
    ok(server.unsigned("POST", api::DEVICE_LISTS_PATH, body).await).await
}

#[tokio::test]
async fn only_newer_lists_come_back_and_unknown_users_are_named() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    let mut bob = Account::new("bob", 1);
    let carol = Account::new("carol", 2);
    for account in [&alice, &bob, &carol] {
        server.register(account).await;
    }
    bob.devices.push(Device::new());
    let bob_v2 = bob.signed_list(2);
    let path = api::devices_path(&bob.user);
    ok::<serde_json::Value>(server.call_json(bob.device(), "PUT", &path, &bob_v2).await).await;
    let nobody: UserName = "nobody".parse().unwrap();

    let answer = device_lists(
        &server,
        &[
            (&alice.user, 0),
            (&bob.user, 1),
            (&carol.user, 1),
            (&nobody, 0),
            (&alice.user, 7), // asked twice: the lower version counts
        ],
    )
    .await;
    let alice_v1 = server.device_list(&alice.user).await.unwrap();
    assert_eq!(answer.lists, [alice_v1, bob_v2.clone()]);
    assert_eq!(answer.unknown, [nobody]);

    // Holding the current versions, or newer ones, gets nothing.
    let answer = device_lists(&server, &[(&bob.user, 2), (&alice.user, u64::MAX)]).await;
    assert!(answer.lists.is_empty() && answer.unknown.is_empty());
    let answer = device_lists(&server, &[]).await;
    assert!(answer.lists.is_empty() && answer.unknown.is_empty());
}

#[tokio::test]
async fn a_thousand_users_are_answered_in_request_order() {
    let server = TestServer::start().await;
    let known: Vec<Account> = (0..3)
        .map(|i| Account::new(&format!("known{i}"), 1))
        .collect();
    for account in &known {
        server.register(account).await;
    }
    // More users than one database query takes, known ones spread among them.
    let mut names: Vec<UserName> = (0..1000)
        .map(|i| format!("stranger{i}").parse().unwrap())
        .collect();
    for (account, at) in known.iter().zip([0, 600, 999]) {
        names[at] = account.user.clone();
    }
    let asked: Vec<(&UserName, u64)> = names.iter().map(|n| (n, 0)).collect();
    let answer = device_lists(&server, &asked).await;
    let users: Vec<UserName> = answer
        .lists
        .iter()
        .map(|list| list.verify().unwrap().user)
        .collect();
    let known_names: Vec<UserName> = known.iter().map(|a| a.user.clone()).collect();
    assert_eq!(users, known_names);
    assert_eq!(answer.unknown.len(), 997);
    assert_eq!(answer.unknown[0].as_str(), "stranger1");
    assert_eq!(answer.unknown[996].as_str(), "stranger998");
}

#[tokio::test]
async fn too_many_users_or_a_malformed_body_are_refused() {
    let server = TestServer::start().await;
    let request = DeviceListsRequest {
        users: (0..=MAX_USERS_PER_BATCH)
            .map(|i| KnownVersion {
                user: format!("user{i}").parse().unwrap(),
                version: 0,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&request).unwrap();
    let response = server.unsigned("POST", api::DEVICE_LISTS_PATH, body).await;
    refused(response, 400, error_code::BAD_REQUEST).await;

    let body = br#"{"users":[{"user":"Not A Name","version":0}]}"#.to_vec();
    let response = server.unsigned("POST", api::DEVICE_LISTS_PATH, body).await;
    refused(response, 400, error_code::BAD_REQUEST).await;
}
