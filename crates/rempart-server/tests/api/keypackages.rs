use std::collections::HashSet;
use std::sync::Arc;

use rempart_proto::api::{
    self, ClaimedKeyPackages, KeyPackageStatus, KeyPackageUpload, error_code,
};
use rempart_proto::limits::MAX_KEY_PACKAGES_PER_UPLOAD;

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
            last_resort: true
        }
    );

    let mut seen = HashSet::new();
    for _ in 0..5 {
        let claimed = claim(&server, bob.device(), &alice).await;
        assert_eq!(claimed.packages.len(), 1);
        let package = &claimed.packages[0];
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
            last_resort: true
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
    assert_eq!(
        server.key_package_status(alice.device()).await,
        KeyPackageStatus {
            one_time: 0,
            last_resort: false
        }
    );
}
