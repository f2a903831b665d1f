//! Pruning what has expired.

use rempart_proto::LinkId;
use rempart_proto::limits::{LINK_TTL_SECS, MAX_CLOCK_SKEW_SECS};
use rempart_server::store::{Pruned, StoreError};

use crate::support::{Db, NOW, assert_err, register};

/// `prune(now)` deletes nonces too old for their requests to pass the
/// clock-skew check (so they may be used again) and expired links, keeps
/// the rest, and counts what it deleted.
pub async fn prune(store: Db) {
    let alice = register(&store, "alice", 1).await;
    let device = alice.id(0);
    let nonces = [
        ("expired", NOW - 2 * MAX_CLOCK_SKEW_SECS - 1),
        ("within skew", NOW - MAX_CLOCK_SKEW_SECS),
        ("current", NOW),
    ];
    for (nonce, timestamp) in nonces {
        store
            .consume_nonce(device, nonce.to_owned(), timestamp)
            .await
            .unwrap();
    }
    let (expired, live) = (LinkId::random(), LinkId::random());
    store
        .create_link(device, expired, NOW - LINK_TTL_SECS)
        .await
        .unwrap();
    store
        .create_link(device, live, NOW - LINK_TTL_SECS + 1)
        .await
        .unwrap();

    assert_eq!(
        store.prune(NOW).await.unwrap(),
        Pruned {
            nonces: 1,
            links: 1
        }
    );
    assert_eq!(store.prune(NOW).await.unwrap(), Pruned::default());

    store
        .consume_nonce(device, "expired".to_owned(), NOW)
        .await
        .unwrap();
    for nonce in ["within skew", "current"] {
        assert_err!(
            store.consume_nonce(device, nonce.to_owned(), NOW).await,
            StoreError::ReplayedNonce
        );
    }
    assert_eq!(store.link_request(device, live, NOW).await.unwrap(), None);
    assert_err!(
        store.link_request(device, expired, NOW).await,
        StoreError::UnknownLink
    );
}
