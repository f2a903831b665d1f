use std::collections::HashSet;
use std::sync::Arc;

use rempart_proto::UserName;
use rempart_proto::api::{
    self, ClaimRequest, ClaimedKeyPackage, ClaimedKeyPackages, KeyPackageStatus, KeyPackageUpload,
    error_code,
};
use rempart_proto::limits::{
    MAX_KEY_PACKAGE_BYTES, MAX_KEY_PACKAGES_PER_DEVICE, MAX_KEY_PACKAGES_PER_UPLOAD,
    MAX_USERS_PER_BATCH,
};

use crate::support::{Account, Device, TestServer, ok, refused};

fn packages(device: &Device, count: usize) -> KeyPackageUpload {
    KeyPackageUpload {
        one_time: (0..count)
            .map(|i| format!("{} one-time {i}", device.id).into_bytes())
            .collect(),
        last_resort: Some(format!("{} last resort", device.id).into_bytes()),
    }
}

async fn claim(server: &TestServer, claimer: &Device, owner: &Account) -> ClaimedKeyPackages {
    ok(server
        .call(claimer, "POST", &api::claim_path(&owner.user), Vec::new())
        .await)
    .await
}

async fn claim_batch(
    server: &TestServer,
    claimer: &Device,
    users: &[&UserName],
) -> Vec<ClaimedKeyPackage> {
    let request = ClaimRequest {
        users: users.iter().map(|u| (*u).clone()).collect(),
    };
    let claimed: ClaimedKeyPackages = ok(server
        .call_json(claimer, "POST", api::CLAIM_PATH, &request)
        .await)
    .await;
    claimed.packages
}

/// What a claimed package is: whose, which device's, one-time or last resort,
/// and which of `device`'s uploads it is (checked against the bytes).
fn described(package: &ClaimedKeyPackage) -> (String, rempart_proto::DeviceId, bool) {
    let text = String::from_utf8(package.key_package.clone()).unwrap();
    assert!(
        text.starts_with(&package.device.to_string()),
        "the package of another device was served as {}'s",
        package.device
    );
    assert_eq!(package.last_resort, text.ends_with("last resort"));
    (
        package.user.to_string(),
        package.device,
        package.last_resort,
    )
}

#[tokio::test]
async fn one_time_packages_are_handed_out_once_then_the_last_resort() {
    let server = TestServer::start().await;
    // Alice's second device uploads nothing: claims omit it.
    let alice = Account::new("alice", 2);
    let bob = Account::new("bob", 1);
    server.register(&alice).await;
    server.register(&bob).await;
    let upload = packages(alice.device(), 5);
    let status = server.upload(alice.device(), &upload).await;
    assert_eq!(
        status,
        KeyPackageStatus {
            one_time: 5,
            last_resort: true,
            claimed: 0,
        }
    );

    let mut seen = HashSet::new();
    for _ in 0..5 {
        let claimed = claim(&server, bob.device(), &alice).await;
        assert_eq!(claimed.packages.len(), 1);
        let package = &claimed.packages[0];
        assert_eq!(package.user, alice.user);
        assert_eq!(package.device, alice.device().id);
        assert!(!package.last_resort);
        assert!(upload.one_time.contains(&package.key_package));
        assert!(seen.insert(package.key_package.clone()), "handed out twice");
    }
    for _ in 0..2 {
        let claimed = claim(&server, bob.device(), &alice).await;
        assert_eq!(claimed.packages.len(), 1);
        assert!(claimed.packages[0].last_resort);
        assert_eq!(
            Some(&claimed.packages[0].key_package),
            upload.last_resort.as_ref()
        );
    }
    assert_eq!(
        server.key_package_status(alice.device()).await,
        KeyPackageStatus {
            one_time: 0,
            last_resort: true,
            claimed: 5,
        }
    );

    let nobody = Account::new("nobody", 1);
    let response = server
        .call(
            bob.device(),
            "POST",
            &api::claim_path(&nobody.user),
            Vec::new(),
        )
        .await;
    refused(response, 404, error_code::NOT_FOUND).await;
}

#[tokio::test]
async fn concurrent_claims_never_share_a_one_time_package() {
    let server = Arc::new(TestServer::start().await);
    let alice = Arc::new(Account::new("alice", 1));
    let bob = Arc::new(Account::new("bob", 1));
    server.register(&alice).await;
    server.register(&bob).await;
    server
        .upload(alice.device(), &packages(alice.device(), 10))
        .await;

    let claims: Vec<_> = (0..30)
        .map(|_| {
            let (server, alice, bob) = (server.clone(), alice.clone(), bob.clone());
            tokio::spawn(async move { claim(&server, bob.device(), &alice).await })
        })
        .collect();
    let mut one_time = HashSet::new();
    let mut last_resort = 0;
    for claimed in claims {
        let claimed = claimed.await.unwrap();
        assert_eq!(claimed.packages.len(), 1);
        let package = claimed.packages.into_iter().next().unwrap();
        if package.last_resort {
            last_resort += 1;
        } else {
            assert!(one_time.insert(package.key_package), "handed out twice");
        }
    }
    assert_eq!((one_time.len(), last_resort), (10, 20));
}

#[tokio::test]
async fn upload_limits() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    server.register(&alice).await;
    let too_many = packages(alice.device(), MAX_KEY_PACKAGES_PER_UPLOAD + 1);
    let response = server
        .call_json(alice.device(), "POST", api::KEYPACKAGES_PATH, &too_many)
        .await;
    refused(response, 400, error_code::BAD_REQUEST).await;
    let empty = KeyPackageUpload {
        one_time: vec![Vec::new()],
        last_resort: None,
    };
    let response = server
        .call_json(alice.device(), "POST", api::KEYPACKAGES_PATH, &empty)
        .await;
    refused(response, 400, error_code::BAD_REQUEST).await;
    // A package larger than the ciphersuite needs, one-time or last-resort.
    for upload in [
        KeyPackageUpload {
            one_time: vec![vec![7; MAX_KEY_PACKAGE_BYTES + 1]],
            last_resort: None,
        },
        KeyPackageUpload {
            one_time: Vec::new(),
            last_resort: Some(vec![7; MAX_KEY_PACKAGE_BYTES + 1]),
        },
    ] {
        let response = server
            .call_json(alice.device(), "POST", api::KEYPACKAGES_PATH, &upload)
            .await;
        refused(response, 413, error_code::PAYLOAD_TOO_LARGE).await;
    }
    assert_eq!(
        server.key_package_status(alice.device()).await,
        KeyPackageStatus {
            one_time: 0,
            last_resort: false,
            claimed: 0,
        }
    );
    // The most a device may hold, in full-size packages: then no more.
    let full = KeyPackageUpload {
        one_time: vec![vec![7; MAX_KEY_PACKAGE_BYTES]; MAX_KEY_PACKAGES_PER_DEVICE],
        last_resort: Some(vec![7; MAX_KEY_PACKAGE_BYTES]),
    };
    server.upload(alice.device(), &full).await;
    let one_more = packages(alice.device(), 1);
    let response = server
        .call_json(alice.device(), "POST", api::KEYPACKAGES_PATH, &one_more)
        .await;
    refused(response, 400, error_code::BAD_REQUEST).await;
}

#[tokio::test]
async fn a_claim_never_hands_the_claiming_device_its_own_package() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 2);
    server.register(&alice).await;
    for device in &alice.devices {
        server.upload(device, &packages(device, 1)).await;
    }
    let claimed = claim(&server, alice.device(), &alice).await;
    let devices: Vec<_> = claimed.packages.iter().map(|p| p.device).collect();
    assert_eq!(devices, [alice.devices[1].id]);
    assert_eq!(server.key_package_status(alice.device()).await.one_time, 1);
}

#[tokio::test]
async fn a_batch_claim_serves_every_device_of_every_named_user() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 2);
    let bob = Account::new("bob", 3);
    let carol = Account::new("carol", 1); // uploads nothing
    for account in [&alice, &bob, &carol] {
        server.register(account).await;
    }
    server
        .upload(&alice.devices[0], &packages(&alice.devices[0], 2))
        .await;
    server
        .upload(&alice.devices[1], &packages(&alice.devices[1], 2))
        .await;
    server
        .upload(&bob.devices[0], &packages(&bob.devices[0], 1))
        .await;
    server
        .upload(&bob.devices[1], &packages(&bob.devices[1], 0))
        .await;
    let mut no_last_resort = packages(&bob.devices[2], 1);
    no_last_resort.last_resort = None;
    server.upload(&bob.devices[2], &no_last_resort).await;

    let nobody: UserName = "nobody".parse().unwrap();
    // Alice's first device claims: it is left out, her other device is not.
    let users = [&alice.user, &bob.user, &carol.user, &nobody, &bob.user];
    let first: Vec<_> = claim_batch(&server, alice.device(), &users)
        .await
        .iter()
        .map(described)
        .collect();
    let mut bob_devices: Vec<_> = bob.devices.iter().map(|d| d.id).collect();
    bob_devices.sort();
    // Bob's second device uploaded no one-time package: its last resort.
    let mut expected = vec![("alice".to_owned(), alice.devices[1].id, false)];
    expected.extend(
        bob_devices
            .iter()
            .map(|&d| ("bob".to_owned(), d, d == bob.devices[1].id)),
    );
    assert_eq!(
        first, expected,
        "in the order asked, bob once, nobody and carol absent"
    );
    assert_eq!(server.key_package_status(alice.device()).await.one_time, 2);

    // Bob's first and third devices are out of one-time packages now: the
    // first falls back to its last resort, the third, without one, is left out.
    let second: Vec<_> = claim_batch(&server, alice.device(), &[&bob.user])
        .await
        .iter()
        .map(described)
        .collect();
    let mut expected: Vec<_> = [bob.devices[0].id, bob.devices[1].id]
        .into_iter()
        .map(|d| ("bob".to_owned(), d, true))
        .collect();
    expected.sort_by_key(|(_, d, _)| *d);
    assert_eq!(second, expected);

    assert!(claim_batch(&server, alice.device(), &[]).await.is_empty());
    assert!(
        claim_batch(&server, alice.device(), &[&nobody])
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn concurrent_batch_claims_never_share_a_one_time_package() {
    let server = Arc::new(TestServer::start().await);
    let alice = Arc::new(Account::new("alice", 1));
    let bob = Arc::new(Account::new("bob", 2));
    let carol = Arc::new(Account::new("carol", 1));
    for account in [&alice, &bob, &carol] {
        server.register(account).await;
    }
    server
        .upload(alice.device(), &packages(alice.device(), 10))
        .await;
    for device in &bob.devices {
        server.upload(device, &packages(device, 10)).await;
    }

    let claims: Vec<_> = (0..30)
        .map(|_| {
            let (server, alice, bob, carol) =
                (server.clone(), alice.clone(), bob.clone(), carol.clone());
            tokio::spawn(async move {
                claim_batch(&server, carol.device(), &[&alice.user, &bob.user]).await
            })
        })
        .collect();
    let mut one_time = HashSet::new();
    let mut last_resort = 0;
    for claimed in claims {
        let claimed = claimed.await.unwrap();
        assert_eq!(claimed.len(), 3, "one package per device");
        for package in claimed {
            described(&package);
            if package.last_resort {
                last_resort += 1;
            } else {
                assert!(one_time.insert(package.key_package), "handed out twice");
            }
        }
    }
    assert_eq!((one_time.len(), last_resort), (30, 60));
}

#[tokio::test]
async fn a_batch_claim_is_signed_and_bounded() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    server.register(&alice).await;
    server.register(&bob).await;
    server
        .upload(bob.device(), &packages(bob.device(), 1))
        .await;

    let request = ClaimRequest {
        users: vec![bob.user.clone()],
    };
    let body = serde_json::to_vec(&request).unwrap();
    let response = server.unsigned("POST", api::CLAIM_PATH, body).await;
    refused(response, 401, error_code::UNAUTHENTICATED).await;

    let too_many = ClaimRequest {
        users: (0..=MAX_USERS_PER_BATCH)
            .map(|i| format!("user{i}").parse().unwrap())
            .collect(),
    };
    let response = server
        .call_json(alice.device(), "POST", api::CLAIM_PATH, &too_many)
        .await;
    refused(response, 400, error_code::BAD_REQUEST).await;
    assert_eq!(server.key_package_status(bob.device()).await.one_time, 1);
}
