//! Rate limits: each finding of an abuse run, reproduced, and refused with
//! 429, `Retry-After` and `rate_limited`.

use std::time::Duration;

use rempart_proto::api::{
    self, ClaimRequest, ClaimedKeyPackages, ErrorBody, KeyPackageUpload, LinkCreate, error_code,
};
use rempart_proto::{LinkId, MessageId};
use rempart_server::{Rate, RateLimits};
use reqwest::{Response, StatusCode};

use crate::support::{Account, TestServer, create_group, ok};

/// Checks a 429: its `Retry-After` header, and the same number of seconds
/// in the typed body.
async fn limited(response: Response) -> ErrorBody {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let header: u64 = response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.error, error_code::RATE_LIMITED, "{}", body.message);
    assert_eq!(body.retry_after_secs, Some(header));
    assert!(header >= 1);
    body
}

#[tokio::test]
async fn a_registration_flood_from_one_address_is_limited() {
    // The defaults, as `rempart-server` runs without flags.
    let server = TestServer::start_limited(RateLimits::DEFAULT).await;
    let allowed = RateLimits::DEFAULT.registrations.unwrap().count() as usize;
    let mut created = 0;
    let mut refusal = None;
    for i in 0..100 {
        let account = Account::new(&format!("flood{i}"), 1);
        let response = server.try_register(&account, &account.signed_list(1)).await;
        if response.status() == StatusCode::CREATED {
            created += 1;
        } else {
            refusal = Some(limited(response).await);
        }
    }
    assert_eq!(created, allowed);
    let refusal = refusal.unwrap();
    // One registration comes back every 6 minutes.
    assert!(
        (300..=360).contains(&refusal.retry_after_secs.unwrap()),
        "{refusal:?}"
    );
    assert!(
        refusal.message.contains("registrations"),
        "{}",
        refusal.message
    );
    let accounts: i64 = server
        .database()
        .query_row("SELECT count(*) FROM accounts", [], |row| row.get(0))
        .unwrap();
    assert_eq!(accounts as usize, allowed);
}

fn packages(account: &Account, count: usize) -> KeyPackageUpload {
    KeyPackageUpload {
        one_time: (0..count)
            .map(|i| format!("{} one-time {i}", account.user).into_bytes())
            .collect(),
        last_resort: Some(b"last resort".to_vec()),
    }
}

#[tokio::test]
async fn another_user_cannot_drain_ones_key_packages() {
    let server = TestServer::start_limited(RateLimits::DEFAULT).await;
    let per_user = RateLimits::DEFAULT.claims_of_user.unwrap().count() as usize;
    let alice = Account::new("alice", 1);
    let (mallory, trudy) = (Account::new("mallory", 1), Account::new("trudy", 1));
    for account in [&alice, &mallory, &trudy] {
        server.register(account).await;
    }
    server.upload(alice.device(), &packages(&alice, 20)).await;

    // Mallory claims one at a time, then in batches, as fast as she can.
    let mut one_time = 0;
    for _ in 0..30 {
        let response = server
            .call(
                mallory.device(),
                "POST",
                &api::claim_path(&alice.user),
                Vec::new(),
            )
            .await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited(response).await;
            continue;
        }
        let claimed: ClaimedKeyPackages = ok(response).await;
        one_time += claimed.packages.iter().filter(|p| !p.last_resort).count();
    }
    let batch = ClaimRequest {
        users: vec![alice.user.clone(), alice.user.clone()],
    };
    let response = server
        .call_json(trudy.device(), "POST", api::CLAIM_PATH, &batch)
        .await;
    let refusal = limited(response).await;
    assert!(
        refusal.message.contains("claims of this user"),
        "{}",
        refusal.message
    );
    assert_eq!(one_time, per_user);

    // What is left is Alice's: half her packages, not one fewer.
    let status = server.key_package_status(alice.device()).await;
    assert_eq!(status.one_time as usize, 20 - per_user);
    assert!(status.last_resort);
}

#[tokio::test]
async fn sends_lookups_links_and_device_lists_have_their_limits() {
    let server = TestServer::start_limited(RateLimits {
        sends: Rate::new(3, Duration::from_secs(3600)),
        lookups: Rate::new(3, Duration::from_secs(3600)),
        links: Rate::new(2, Duration::from_secs(3600)),
        device_lists: Rate::new(1, Duration::from_secs(3600)),
        ..RateLimits::UNLIMITED
    })
    .await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;

    // Sends: the group's founding commit and two messages, then a refusal.
    let group = create_group(&server, alice.device(), &[]).await;
    for _ in 0..2 {
        ok::<api::Appended>(
            server
                .send_message(alice.device(), &group, &MessageId::random(), b"hi")
                .await,
        )
        .await;
    }
    let refusal = limited(
        server
            .send_message(alice.device(), &group, &MessageId::random(), b"hi")
            .await,
    )
    .await;
    assert!(
        refusal.message.contains("messages from this device"),
        "{}",
        refusal.message
    );

    // Lookups, per address and whoever asks.
    for _ in 0..3 {
        server.device_list(&alice.user).await.unwrap();
    }
    assert_eq!(
        server.device_list(&alice.user).await,
        Err(StatusCode::TOO_MANY_REQUESTS)
    );

    // Link attempts: opened by a device, or a request put by anyone.
    for _ in 0..2 {
        let body = LinkCreate {
            link: LinkId::random(),
        };
        let response = server
            .call_json(alice.device(), "POST", api::LINKS_PATH, &body)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let path = api::link_request_path(&LinkId::random());
    limited(server.unsigned("PUT", &path, b"sealed".to_vec()).await).await;

    // Device lists: one new version, then a refusal.
    let path = api::devices_path(&alice.user);
    let response = server
        .call_json(alice.device(), "PUT", &path, &alice.signed_list(2))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    limited(
        server
            .call_json(alice.device(), "PUT", &path, &alice.signed_list(3))
            .await,
    )
    .await;
}

#[tokio::test]
async fn what_an_account_sends_is_limited_in_weight_across_its_devices() {
    let server = TestServer::start_limited(RateLimits {
        send_kib: Rate::new(100, Duration::from_secs(3600)),
        ..RateLimits::UNLIMITED
    })
    .await;
    let alice = Account::new("alice", 2);
    server.register(&alice).await;
    let group = create_group(&server, &alice.devices[0], &[&alice.devices[1]]).await;
    let heavy = vec![7; 60 * 1024];
    ok::<api::Appended>(
        server
            .send_message(&alice.devices[0], &group, &MessageId::random(), &heavy)
            .await,
    )
    .await;
    // The account's other device shares the weight.
    let refusal = limited(
        server
            .send_message(&alice.devices[1], &group, &MessageId::random(), &heavy)
            .await,
    )
    .await;
    assert!(
        refusal
            .message
            .contains("KiB of messages from this account"),
        "{}",
        refusal.message
    );
}
