//! Device-linking rendezvous: sealed bytes relayed between the device that
//! opened a link and a new device without an account.

use rempart_proto::LinkId;
use rempart_proto::api::{self, LinkCreate, LinkState, error_code};
use rempart_proto::limits::{LINK_TTL_SECS, MAX_LINK_PAYLOAD_BYTES};
use reqwest::{Response, StatusCode};

use crate::support::{Account, Device, TestServer, ok, refused};

async fn create(server: &TestServer, device: &Device, link: &LinkId) -> Response {
    let body = LinkCreate { link: *link };
    server
        .call_json(device, "POST", api::LINKS_PATH, &body)
        .await
}

/// The new device posts its request, unauthenticated.
async fn post_request(server: &TestServer, link: &LinkId, sealed: &[u8]) -> Response {
    server
        .unsigned("PUT", &api::link_request_path(link), sealed.to_vec())
        .await
}

/// The creator reads the request.
async fn read_request(server: &TestServer, device: &Device, link: &LinkId) -> Response {
    server
        .call(device, "GET", &api::link_path(link), Vec::new())
        .await
}

async fn post_response(
    server: &TestServer,
    device: &Device,
    link: &LinkId,
    sealed: &[u8],
) -> Response {
    server
        .call(
            device,
            "PUT",
            &api::link_response_path(link),
            sealed.to_vec(),
        )
        .await
}

/// The new device fetches the response, unauthenticated.
async fn fetch_response(server: &TestServer, link: &LinkId) -> Response {
    server
        .unsigned("GET", &api::link_response_path(link), Vec::new())
        .await
}

async fn sealed(response: Response) -> Option<Vec<u8>> {
    ok::<LinkState>(response).await.sealed
}

#[tokio::test]
async fn a_link_relays_one_request_and_one_response_then_is_gone() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let creator = alice.device();
    let link = LinkId::random();

    assert_eq!(
        create(&server, creator, &link).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        sealed(read_request(&server, creator, &link).await).await,
        None
    );
    assert_eq!(sealed(fetch_response(&server, &link).await).await, None);

    let request = b"sealed request from the new device";
    let posted = post_request(&server, &link, request).await;
    assert_eq!(posted.status(), StatusCode::NO_CONTENT);
    // A code works once: a second request, even the same, is refused.
    let again = post_request(&server, &link, b"someone else's request").await;
    refused(again, 409, error_code::LINK_USED).await;
    assert_eq!(
        sealed(read_request(&server, creator, &link).await)
            .await
            .as_deref(),
        Some(&request[..])
    );

    let response = b"sealed response from the creator";
    let posted = post_response(&server, creator, &link, response).await;
    assert_eq!(posted.status(), StatusCode::NO_CONTENT);
    let again = post_response(&server, creator, &link, b"another response").await;
    refused(again, 409, error_code::LINK_USED).await;

    assert_eq!(
        sealed(fetch_response(&server, &link).await)
            .await
            .as_deref(),
        Some(&response[..])
    );
    // Fetching the response closed the link for everyone.
    refused(
        fetch_response(&server, &link).await,
        404,
        error_code::NOT_FOUND,
    )
    .await;
    refused(
        read_request(&server, creator, &link).await,
        404,
        error_code::NOT_FOUND,
    )
    .await;
    refused(
        post_request(&server, &link, b"late").await,
        404,
        error_code::NOT_FOUND,
    )
    .await;
    let late = post_response(&server, creator, &link, b"late").await;
    refused(late, 404, error_code::NOT_FOUND).await;
    assert_eq!(
        server
            .database()
            .query_row("SELECT count(*) FROM links", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn only_the_creating_device_reads_the_request_and_responds() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 2);
    let mallory = Account::new("mallory", 1);
    server.register(&alice).await;
    server.register(&mallory).await;
    let link = LinkId::random();
    assert_eq!(
        create(&server, alice.device(), &link).await.status(),
        StatusCode::CREATED
    );
    post_request(&server, &link, b"request").await;

    // Not another account's device, nor another device of the same account.
    for other in [mallory.device(), &alice.devices[1]] {
        refused(
            read_request(&server, other, &link).await,
            403,
            error_code::FORBIDDEN,
        )
        .await;
        let response = post_response(&server, other, &link, b"forged response").await;
        refused(response, 403, error_code::FORBIDDEN).await;
    }
    assert_eq!(sealed(fetch_response(&server, &link).await).await, None);

    // An unregistered device is not even authenticated.
    let stranger = Device::new();
    refused(
        read_request(&server, &stranger, &link).await,
        401,
        error_code::UNKNOWN_DEVICE,
    )
    .await;
}

#[tokio::test]
async fn opening_a_link_takes_a_signed_request_and_a_free_id() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    server.register(&alice).await;
    server.register(&bob).await;
    let link = LinkId::random();
    let body = serde_json::to_vec(&LinkCreate { link }).unwrap();
    let response = server.unsigned("POST", api::LINKS_PATH, body).await;
    refused(response, 401, error_code::UNAUTHENTICATED).await;
    // Nothing was opened.
    refused(
        post_request(&server, &link, b"request").await,
        404,
        error_code::NOT_FOUND,
    )
    .await;

    assert_eq!(
        create(&server, alice.device(), &link).await.status(),
        StatusCode::CREATED
    );
    refused(
        create(&server, bob.device(), &link).await,
        409,
        error_code::LINK_USED,
    )
    .await;
    refused(
        create(&server, alice.device(), &link).await,
        409,
        error_code::LINK_USED,
    )
    .await;
    // The link is still alice's.
    assert_eq!(
        sealed(read_request(&server, alice.device(), &link).await).await,
        None
    );
}

#[tokio::test]
async fn unknown_links_and_malformed_ids() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let link = LinkId::random();
    refused(
        post_request(&server, &link, b"request").await,
        404,
        error_code::NOT_FOUND,
    )
    .await;
    refused(
        fetch_response(&server, &link).await,
        404,
        error_code::NOT_FOUND,
    )
    .await;
    refused(
        read_request(&server, alice.device(), &link).await,
        404,
        error_code::NOT_FOUND,
    )
    .await;
    let response = post_response(&server, alice.device(), &link, b"response").await;
    refused(response, 404, error_code::NOT_FOUND).await;

    let response = server
        .unsigned("PUT", "/v1/links/not-a-link/request", b"request".to_vec())
        .await;
    refused(response, 400, error_code::BAD_REQUEST).await;
    let response = server
        .unsigned("GET", "/v1/links/ABCD/response", Vec::new())
        .await;
    refused(response, 400, error_code::BAD_REQUEST).await;
}

#[tokio::test]
async fn payloads_are_bounded_and_a_refused_one_leaves_nothing() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let link = LinkId::random();
    create(&server, alice.device(), &link).await;

    let too_big = vec![1u8; MAX_LINK_PAYLOAD_BYTES + 1];
    refused(
        post_request(&server, &link, &too_big).await,
        413,
        error_code::PAYLOAD_TOO_LARGE,
    )
    .await;
    refused(
        post_request(&server, &link, b"").await,
        400,
        error_code::BAD_REQUEST,
    )
    .await;
    // Neither used the link up: the largest allowed request goes through.
    let largest = vec![2u8; MAX_LINK_PAYLOAD_BYTES];
    let posted = post_request(&server, &link, &largest).await;
    assert_eq!(posted.status(), StatusCode::NO_CONTENT);

    let response = post_response(&server, alice.device(), &link, &too_big).await;
    refused(response, 413, error_code::PAYLOAD_TOO_LARGE).await;
    let response = post_response(&server, alice.device(), &link, b"").await;
    refused(response, 400, error_code::BAD_REQUEST).await;
    assert_eq!(sealed(fetch_response(&server, &link).await).await, None);
    let posted = post_response(&server, alice.device(), &link, &largest).await;
    assert_eq!(posted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        sealed(fetch_response(&server, &link).await).await,
        Some(largest)
    );
}

#[tokio::test]
async fn an_expired_link_is_absent() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let (expired, alive) = (LinkId::random(), LinkId::random());
    for link in [&expired, &alive] {
        create(&server, alice.device(), link).await;
        post_request(&server, link, b"request").await;
        post_response(&server, alice.device(), link, b"response").await;
    }
    // Age one link to its expiry, as if LINK_TTL_SECS had passed.
    let aged = server
        .database()
        .execute(
            "UPDATE links SET created_at = created_at - ?2 WHERE link_id = ?1",
            rusqlite::params![expired.as_bytes(), LINK_TTL_SECS],
        )
        .unwrap();
    assert_eq!(aged, 1);

    refused(
        read_request(&server, alice.device(), &expired).await,
        404,
        error_code::NOT_FOUND,
    )
    .await;
    refused(
        fetch_response(&server, &expired).await,
        404,
        error_code::NOT_FOUND,
    )
    .await;
    let response = post_response(&server, alice.device(), &expired, b"late").await;
    refused(response, 404, error_code::NOT_FOUND).await;
    // Its id is free again.
    assert_eq!(
        create(&server, alice.device(), &expired).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        sealed(read_request(&server, alice.device(), &expired).await).await,
        None
    );

    assert_eq!(
        sealed(fetch_response(&server, &alive).await)
            .await
            .as_deref(),
        Some(&b"response"[..])
    );
}
