//! KeyPackages: uploads, the per-device limit, and claims.

use rempart_proto::api::{ClaimedKeyPackage, KeyPackageStatus};
use rempart_proto::limits::MAX_KEY_PACKAGES_PER_DEVICE;
use rempart_proto::{DeviceId, UserName};
use rempart_server::store::StoreError;

use crate::support::{Account, Db, assert_err, key_packages, one_time, register, together};

/// A claimed package as `(user, device, bytes, last_resort)`.
type Claim = (UserName, DeviceId, Vec<u8>, bool);

/// The claims in a canonical order, to compare them whatever order the
/// store hands them out in.
fn claims(claimed: Vec<ClaimedKeyPackage>) -> Vec<Claim> {
    let mut claims: Vec<Claim> = claimed
        .into_iter()
        .map(|c| (c.user, c.device, c.key_package, c.last_resort))
        .collect();
    claims.sort();
    claims
}

/// The claim of `bytes` from device `device` of `account`.
fn claim(account: &Account, device: usize, bytes: Vec<u8>, last_resort: bool) -> Claim {
    (account.user.clone(), account.id(device), bytes, last_resort)
}

/// The bytes of the last-resort KeyPackage of [`key_packages`].
fn last_resort(tag: &str) -> Vec<u8> {
    format!("{tag} last resort").into_bytes()
}

/// A [`KeyPackageStatus`], briefly.
fn status(one_time: u64, last_resort: bool) -> KeyPackageStatus {
    claimed_status(one_time, last_resort, 0)
}

/// A [`KeyPackageStatus`] of a device `claimed` of whose one-time packages
/// were claimed.
fn claimed_status(one_time: u64, last_resort: bool, claimed: u64) -> KeyPackageStatus {
    KeyPackageStatus {
        one_time,
        last_resort,
        claimed,
    }
}

/// Uploads add one-time packages and replace the last-resort one; an upload
/// that would exceed the limit stores nothing.
pub async fn upload_and_limit(store: Db) {
    let alice = register(&store, "alice", 1).await;
    let device = alice.id(0);
    assert_eq!(
        store.key_package_status(device).await.unwrap(),
        status(0, false)
    );
    let upload = |tag: &str, count, with_last_resort| {
        store.upload_key_packages(device, key_packages(tag, count, with_last_resort))
    };
    assert_eq!(upload("a", 3, false).await.unwrap(), status(3, false));
    assert_eq!(upload("b", 2, true).await.unwrap(), status(5, true));
    assert_eq!(upload("c", 0, true).await.unwrap(), status(5, true));
    assert_eq!(
        store.key_package_status(device).await.unwrap(),
        status(5, true)
    );

    let max = MAX_KEY_PACKAGES_PER_DEVICE as u64;
    let room = MAX_KEY_PACKAGES_PER_DEVICE - 5;
    assert_err!(
        upload("d", room + 1, true).await,
        StoreError::TooManyKeyPackages { would_hold } if would_hold == max + 1
    );
    assert_eq!(
        store.key_package_status(device).await.unwrap(),
        status(5, true)
    );
    assert_eq!(upload("e", room, false).await.unwrap(), status(max, true));
    assert_err!(
        upload("f", 1, false).await,
        StoreError::TooManyKeyPackages { would_hold } if would_hold == max + 1
    );
    assert_eq!(
        store.key_package_status(device).await.unwrap(),
        status(max, true)
    );
}

/// A claim takes each other device's oldest one-time package, once, and
/// falls back to the last-resort one, which stays.
pub async fn claim_order_and_last_resort(store: Db) {
    let alice = register(&store, "alice", 1).await;
    let bob = register(&store, "bob", 2).await;
    store
        .upload_key_packages(bob.id(0), key_packages("b0", 2, true))
        .await
        .unwrap();
    for tag in ["b1 replaced", "b1"] {
        store
            .upload_key_packages(bob.id(1), key_packages(tag, 0, true))
            .await
            .unwrap();
    }

    let claimer = alice.id(0);
    let b1 = claim(&bob, 1, last_resort("b1"), true);
    for b0 in [
        claim(&bob, 0, one_time("b0", 0), false),
        claim(&bob, 0, one_time("b0", 1), false),
        claim(&bob, 0, last_resort("b0"), true),
        claim(&bob, 0, last_resort("b0"), true),
    ] {
        let claimed = store.claim_key_packages(claimer, &bob.user).await.unwrap();
        assert_eq!(claims(claimed), claims_of([b0, b1.clone()]));
    }
    // Only one-time packages count as claimed.
    for (device, claimed) in bob.ids().into_iter().zip([2, 0]) {
        assert_eq!(
            store.key_package_status(device).await.unwrap(),
            claimed_status(0, true, claimed)
        );
    }

    // The claimer's own device is left out; a user without packages gives
    // nothing; an unknown user is an error.
    let claimed = store
        .claim_key_packages(bob.id(0), &bob.user)
        .await
        .unwrap();
    assert_eq!(claims(claimed), vec![b1]);
    let claimed = store
        .claim_key_packages(bob.id(0), &alice.user)
        .await
        .unwrap();
    assert!(claimed.is_empty(), "{claimed:?}");
    let nobody: UserName = "nobody".parse().unwrap();
    assert_err!(
        store.claim_key_packages(claimer, &nobody).await,
        StoreError::UnknownUser(user) if user == nobody
    );
}

/// A batch claims for every known user once and leaves unknown ones out.
pub async fn batch_claim(store: Db) {
    let alice = register(&store, "alice", 2).await;
    let bob = register(&store, "bob", 1).await;
    let carol = register(&store, "carol", 1).await;
    for (device, upload) in [
        (alice.id(1), key_packages("a1", 1, false)),
        (bob.id(0), key_packages("b0", 1, true)),
        (carol.id(0), key_packages("c0", 0, true)),
    ] {
        store.upload_key_packages(device, upload).await.unwrap();
    }

    let nobody: UserName = "nobody".parse().unwrap();
    let users = vec![
        bob.user.clone(),
        nobody.clone(),
        carol.user.clone(),
        alice.user.clone(),
        bob.user.clone(),
    ];
    let claimed = store
        .claim_key_packages_batch(alice.id(0), users)
        .await
        .unwrap();
    assert_eq!(
        claims(claimed),
        claims_of([
            claim(&alice, 1, one_time("a1", 0), false),
            claim(&bob, 0, one_time("b0", 0), false),
            claim(&carol, 0, last_resort("c0"), true),
        ])
    );
    assert_eq!(
        store.key_package_status(bob.id(0)).await.unwrap(),
        claimed_status(0, true, 1)
    );
    assert_eq!(
        store.key_package_status(alice.id(1)).await.unwrap(),
        claimed_status(0, false, 1)
    );

    for users in [vec![nobody], Vec::new()] {
        let claimed = store
            .claim_key_packages_batch(alice.id(0), users)
            .await
            .unwrap();
        assert!(claimed.is_empty(), "{claimed:?}");
    }
}

/// Claims racing for fewer one-time packages than claimers: each one-time
/// package goes to exactly one of them, the others get the last-resort one.
pub async fn claim_once_under_concurrency(store: Db) {
    const PACKAGES: usize = 10;
    const CLAIMERS: usize = 20;
    let alice = register(&store, "alice", 1).await;
    let bob = register(&store, "bob", 1).await;
    store
        .upload_key_packages(bob.id(0), key_packages("b0", PACKAGES, true))
        .await
        .unwrap();

    let claimed = together(CLAIMERS, |i| {
        let (store, claimer, user) = (store.clone(), alice.id(0), bob.user.clone());
        async move {
            // Half through the single claim, half through the batch.
            if i % 2 == 0 {
                store.claim_key_packages(claimer, &user).await
            } else {
                store.claim_key_packages_batch(claimer, vec![user]).await
            }
        }
    })
    .await;

    let mut one_time_claimed = Vec::new();
    let mut last_resort_claimed = 0;
    for result in claimed {
        let claimed = claims(result.unwrap());
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        let (user, device, bytes, is_last_resort) = claimed.into_iter().next().unwrap();
        assert_eq!((user, device), (bob.user.clone(), bob.id(0)));
        if is_last_resort {
            assert_eq!(bytes, last_resort("b0"));
            last_resort_claimed += 1;
        } else {
            one_time_claimed.push(bytes);
        }
    }
    one_time_claimed.sort();
    let mut uploaded: Vec<Vec<u8>> = (0..PACKAGES).map(|i| one_time("b0", i)).collect();
    uploaded.sort();
    assert_eq!(one_time_claimed, uploaded, "each one-time package once");
    assert_eq!(last_resort_claimed, CLAIMERS - PACKAGES);
    assert_eq!(
        store.key_package_status(bob.id(0)).await.unwrap(),
        claimed_status(0, true, PACKAGES as u64)
    );
}

/// `expected` in the order of [`claims`].
fn claims_of<const N: usize>(expected: [Claim; N]) -> Vec<Claim> {
    let mut expected = expected.to_vec();
    expected.sort();
    expected
}
