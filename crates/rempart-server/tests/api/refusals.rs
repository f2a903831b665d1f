//! Every refusal answers its status and error code, and changes nothing.

use rempart_proto::api::{self, KeyPackageStatus, KeyPackageUpload, error_code};
use rempart_proto::limits::{MAX_BODY_BYTES, MAX_MESSAGE_BYTES};
use rempart_proto::{GroupId, MessageId};

use crate::support::{Account, Device, TestServer, commit_upload, create_group, now, ok, refused};

fn upload_body(count: usize) -> Vec<u8> {
    let upload = KeyPackageUpload {
        one_time: (0..count).map(|i| format!("kp {i}").into_bytes()).collect(),
        last_resort: None,
    };
    serde_json::to_vec(&upload).unwrap()
}

async fn registered(server: &TestServer, name: &str) -> Account {
    let account = Account::new(name, 1);
    server.register(&account).await;
    account
}

#[tokio::test]
async fn missing_or_bad_signatures_are_refused() {
    let server = TestServer::start().await;
    let alice = registered(&server, "alice").await;
    let body = upload_body(3);
    let path = api::KEYPACKAGES_PATH;

    let response = server.raw("POST", path, &[], body.clone()).await;
    refused(response, 401, error_code::UNAUTHENTICATED).await;

    // Signed over another body.
    let headers = alice.device().sign("POST", path, &upload_body(1), now());
    let response = server.raw("POST", path, &headers, body.clone()).await;
    refused(response, 401, error_code::BAD_SIGNATURE).await;

    // Signed by another key under alice's device id.
    let forger = Device {
        id: alice.device().id,
        key: Device::new().key,
    };
    let response = server.call(&forger, "POST", path, body.clone()).await;
    refused(response, 401, error_code::BAD_SIGNATURE).await;

    // The query is signed too.
    let signed_path = api::inbox_path(0, 500);
    let headers = alice.device().sign("GET", &signed_path, b"", now());
    let response = server
        .raw("GET", &api::inbox_path(1, 500), &headers, Vec::new())
        .await;
    refused(response, 401, error_code::BAD_SIGNATURE).await;

    assert_eq!(
        server.key_package_status(alice.device()).await,
        KeyPackageStatus {
            one_time: 0,
            last_resort: false,
            claimed: 0,
        }
    );
}

#[tokio::test]
async fn an_unknown_device_is_refused() {
    let server = TestServer::start().await;
    let alice = registered(&server, "alice").await;
    let stranger = Device::new();
    let group = GroupId::random();
    let response = server
        .commit(&stranger, &group, &commit_upload(0, &[], None))
        .await;
    refused(response, 401, error_code::UNKNOWN_DEVICE).await;
    // The group was not created.
    let response = server
        .commit(alice.device(), &group, &commit_upload(1, &[], None))
        .await;
    refused(response, 404, error_code::NOT_FOUND).await;
}

#[tokio::test]
async fn a_replayed_request_is_refused() {
    let server = TestServer::start().await;
    let alice = registered(&server, "alice").await;
    let body = upload_body(2);
    let headers = alice
        .device()
        .sign("POST", api::KEYPACKAGES_PATH, &body, now());
    let first: KeyPackageStatus = ok(server
        .raw("POST", api::KEYPACKAGES_PATH, &headers, body.clone())
        .await)
    .await;
    assert_eq!(first.one_time, 2);
    let replay = server
        .raw("POST", api::KEYPACKAGES_PATH, &headers, body)
        .await;
    refused(replay, 401, error_code::REPLAYED_NONCE).await;
    assert_eq!(server.key_package_status(alice.device()).await.one_time, 2);
}

#[tokio::test]
async fn timestamps_beyond_the_skew_are_refused() {
    let server = TestServer::start().await;
    let alice = registered(&server, "alice").await;
    let body = upload_body(1);
    for offset in [-301, 301] {
        let headers = alice
            .device()
            .sign("POST", api::KEYPACKAGES_PATH, &body, now() + offset);
        let response = server
            .raw("POST", api::KEYPACKAGES_PATH, &headers, body.clone())
            .await;
        refused(response, 401, error_code::CLOCK_SKEW).await;
    }
    assert_eq!(server.key_package_status(alice.device()).await.one_time, 0);

    // Well inside the limit, the same request passes.
    let headers = alice
        .device()
        .sign("POST", api::KEYPACKAGES_PATH, &body, now() - 250);
    let status: KeyPackageStatus = ok(server
        .raw("POST", api::KEYPACKAGES_PATH, &headers, body)
        .await)
    .await;
    assert_eq!(status.one_time, 1);
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    let server = TestServer::start().await;
    let alice = registered(&server, "alice").await;
    let group = create_group(&server, alice.device(), &[]).await;

    let too_big = vec![7u8; MAX_BODY_BYTES + 1];
    let response = server
        .send_message(alice.device(), &group, &MessageId::random(), &too_big)
        .await;
    refused(response, 413, error_code::PAYLOAD_TOO_LARGE).await;

    // Within the body limit but above the message limit.
    let response = server
        .send_message(
            alice.device(),
            &group,
            &MessageId::random(),
            &too_big[..MAX_MESSAGE_BYTES + 1],
        )
        .await;
    refused(response, 413, error_code::PAYLOAD_TOO_LARGE).await;

    // Any route, signed or not.
    let response = server.raw("GET", "/health", &[], too_big).await;
    refused(response, 413, error_code::PAYLOAD_TOO_LARGE).await;

    let log = server.log(alice.device(), &group).await;
    assert_eq!(log.last_seq, 1);
}

#[tokio::test]
async fn non_members_can_neither_read_nor_write() {
    let server = TestServer::start().await;
    let alice = registered(&server, "alice").await;
    let mallory = registered(&server, "mallory").await;
    let group = create_group(&server, alice.device(), &[]).await;

    let response = server.read_log(mallory.device(), &group, 0).await;
    refused(response, 403, error_code::FORBIDDEN).await;
    let response = server
        .send_message(mallory.device(), &group, &MessageId::random(), b"hi")
        .await;
    refused(response, 403, error_code::FORBIDDEN).await;
    // Nor add itself with a commit.
    let response = server
        .commit(
            mallory.device(),
            &group,
            &commit_upload(1, &[mallory.device()], None),
        )
        .await;
    refused(response, 403, error_code::FORBIDDEN).await;

    let log = server.log(alice.device(), &group).await;
    assert_eq!((log.last_seq, log.epoch), (1, 1));
    let response = server.read_log(mallory.device(), &group, 0).await;
    refused(response, 403, error_code::FORBIDDEN).await;

    let response = server.read_log(alice.device(), &GroupId::random(), 0).await;
    refused(response, 404, error_code::NOT_FOUND).await;
}
