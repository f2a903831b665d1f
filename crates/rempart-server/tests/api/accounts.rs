use rempart_proto::api::{self, DeviceListAccepted, KeyPackageUpload, RegisterResponse};
use rempart_proto::api::{ClaimedKeyPackages, error_code};
use reqwest::StatusCode;

use crate::support::{Account, Device, TestServer, ok, refused};

#[tokio::test]
async fn register_then_anyone_fetches_the_device_list() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 2);
    let list = alice.signed_list(1);
    let response = server.try_register(&alice, &list).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let registered: RegisterResponse = response.json().await.unwrap();
    assert_eq!(registered.user, alice.user);

    let fetched = server.device_list(&alice.user).await.unwrap();
    assert_eq!(fetched, list, "the list is served byte for byte as signed");
    let verified = fetched.verify_for(&alice.user).unwrap();
    assert_eq!(verified.devices.len(), 2);

    let nobody = "nobody".parse().unwrap();
    assert_eq!(
        server.device_list(&nobody).await,
        Err(StatusCode::NOT_FOUND)
    );
}

#[tokio::test]
async fn a_taken_name_is_refused_and_the_first_account_stays() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    let list = alice.signed_list(1);
    assert_eq!(
        server.try_register(&alice, &list).await.status(),
        StatusCode::CREATED
    );
    let impostor = Account::new("alice", 1);
    refused(
        server
            .try_register(&impostor, &impostor.signed_list(1))
            .await,
        409,
        error_code::NAME_TAKEN,
    )
    .await;
    assert_eq!(server.device_list(&alice.user).await.unwrap(), list);
}

#[tokio::test]
async fn invalid_user_names_are_refused() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    let mut body = serde_json::json!({
        "user": "Alice!",
        "device_list": alice.signed_list(1),
    });
    let response = server
        .call_json(alice.device(), "POST", api::ACCOUNTS_PATH, &body)
        .await;
    refused(response, 400, error_code::INVALID_USER_NAME).await;

    body["user"] = "alice".into();
    body["device_list"] = serde_json::json!("not a list");
    let response = server
        .call_json(alice.device(), "POST", api::ACCOUNTS_PATH, &body)
        .await;
    refused(response, 400, error_code::BAD_REQUEST).await;

    let response = reqwest::get(format!("{}/v1/accounts/Alice!/devices", server.url))
        .await
        .unwrap();
    refused(response, 400, error_code::INVALID_USER_NAME).await;
    assert_eq!(
        server.device_list(&alice.user).await,
        Err(StatusCode::NOT_FOUND)
    );
}

#[tokio::test]
async fn device_lists_that_do_not_verify_are_refused() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);

    let mut forged = alice.signed_list(1);
    forged.signature[0] ^= 1;
    refused(
        server.try_register(&alice, &forged).await,
        400,
        error_code::INVALID_DEVICE_LIST,
    )
    .await;

    let bob = Account::new("bob", 1);
    refused(
        server.try_register(&alice, &bob.signed_list(1)).await,
        400,
        error_code::INVALID_DEVICE_LIST,
    )
    .await;

    refused(
        server.try_register(&alice, &alice.signed_list(2)).await,
        400,
        error_code::INVALID_DEVICE_LIST,
    )
    .await;

    // Signed by a device that is not in the list.
    let stranger = Device::new();
    let request = serde_json::json!({ "user": "alice", "device_list": alice.signed_list(1) });
    refused(
        server
            .call_json(&stranger, "POST", api::ACCOUNTS_PATH, &request)
            .await,
        401,
        error_code::UNKNOWN_DEVICE,
    )
    .await;

    assert_eq!(
        server.device_list(&alice.user).await,
        Err(StatusCode::NOT_FOUND)
    );
}

#[tokio::test]
async fn a_device_id_registered_elsewhere_is_refused() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let mut bob = Account::new("bob", 1);
    bob.devices.push(Device {
        id: alice.device().id,
        key: Device::new().key,
    });
    refused(
        server.try_register(&bob, &bob.signed_list(1)).await,
        409,
        error_code::INVALID_DEVICE_LIST,
    )
    .await;
    assert_eq!(
        server.device_list(&bob.user).await,
        Err(StatusCode::NOT_FOUND)
    );
}

#[tokio::test]
async fn a_device_list_update_adds_and_removes_devices() {
    let server = TestServer::start().await;
    let mut alice = Account::new("alice", 2);
    server.register(&alice).await;
    let removed = alice.devices.remove(1);
    server
        .upload(
            &removed,
            &KeyPackageUpload {
                one_time: vec![b"removed kp".to_vec()],
                last_resort: Some(b"removed last resort".to_vec()),
            },
        )
        .await;
    alice.devices.push(Device::new());
    let path = api::devices_path(&alice.user);

    let v2 = alice.signed_list(2);
    let accepted: DeviceListAccepted =
        ok(server.call_json(alice.device(), "PUT", &path, &v2).await).await;
    assert_eq!(accepted.version, 2);
    assert_eq!(server.device_list(&alice.user).await.unwrap(), v2);

    // The removed device can no longer authenticate, and its packages are gone.
    refused(
        server
            .call(&removed, "GET", api::KEYPACKAGES_PATH, Vec::new())
            .await,
        401,
        error_code::UNKNOWN_DEVICE,
    )
    .await;
    let claimed: ClaimedKeyPackages = ok(server
        .call(
            alice.device(),
            "POST",
            &api::claim_path(&alice.user),
            Vec::new(),
        )
        .await)
    .await;
    assert!(claimed.packages.is_empty());
    // The added device can.
    assert_eq!(
        server.key_package_status(&alice.devices[1]).await.one_time,
        0
    );

    // Same version again: a conflict; nothing changes.
    let again = alice.signed_list(2);
    refused(
        server.call_json(alice.device(), "PUT", &path, &again).await,
        409,
        error_code::INVALID_DEVICE_LIST,
    )
    .await;

    // Another account key: refused even with a higher version.
    let mut hijack = Account::new("alice", 0);
    hijack.devices.push(Device::new());
    refused(
        server
            .call_json(alice.device(), "PUT", &path, &hijack.signed_list(3))
            .await,
        400,
        error_code::INVALID_DEVICE_LIST,
    )
    .await;

    // Another user's device may not replace alice's list.
    let bob = Account::new("bob", 1);
    server.register(&bob).await;
    refused(
        server
            .call_json(bob.device(), "PUT", &path, &alice.signed_list(3))
            .await,
        403,
        error_code::FORBIDDEN,
    )
    .await;
    assert_eq!(server.device_list(&alice.user).await.unwrap(), v2);
}

#[tokio::test]
async fn health_and_openapi() {
    let server = TestServer::start().await;
    let health: serde_json::Value = reqwest::get(format!("{}/health", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, serde_json::json!({ "status": "ok" }));

    let doc: serde_json::Value = reqwest::get(format!("{}/openapi.json", server.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/health", "get"),
        ("/v1/accounts", "post"),
        ("/v1/accounts/{user}/devices", "get"),
        ("/v1/accounts/{user}/devices", "put"),
        ("/v1/keypackages", "post"),
        ("/v1/keypackages", "get"),
        ("/v1/accounts/{user}/keypackages/claim", "post"),
        ("/v1/groups/{group}/commits", "post"),
        ("/v1/groups/{group}/messages/{message_id}", "put"),
        ("/v1/groups/{group}/log", "get"),
        ("/v1/inbox", "get"),
        ("/v1/inbox/ack", "post"),
        ("/v1/ws", "get"),
        ("/v1/directory/lookups", "post"),
        ("/v1/directory/heads", "get"),
        ("/v1/keypackages/claim", "post"),
        ("/v1/links", "post"),
        ("/v1/links/{link}/request", "put"),
        ("/v1/links/{link}", "get"),
        ("/v1/links/{link}/response", "put"),
        ("/v1/links/{link}/response", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is missing"
        );
    }
    let log_params = paths["/v1/groups/{group}/log"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let after = log_params.iter().find(|p| p["name"] == "after").unwrap();
    assert_eq!(after["in"], "query");
    assert!(doc["components"]["securitySchemes"]["signed_request"].is_object());
    // The endpoints a new device uses before it has an account need no signature.
    for (path, method) in [
        ("/v1/directory/lookups", "post"),
        ("/v1/links/{link}/request", "put"),
        ("/v1/links/{link}/response", "get"),
    ] {
        assert!(paths[path][method]["security"].is_null(), "{method} {path}");
    }
    assert!(paths["/v1/links/{link}"]["get"]["security"].is_array());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}
