//! Request nonces: each device may use a nonce once.

use rempart_server::store::StoreError;

use crate::support::{Db, NOW, assert_err, register, together};

/// A nonce is refused the second time for the same device, whatever the
/// timestamp, and is free for other devices.
pub async fn replay(store: Db) {
    let alice = register(&store, "alice", 2).await;
    let (a0, a1) = (alice.id(0), alice.id(1));
    let consume =
        |device, nonce: &str, timestamp| store.consume_nonce(device, nonce.to_owned(), timestamp);
    consume(a0, "n1", NOW).await.unwrap();
    assert_err!(consume(a0, "n1", NOW).await, StoreError::ReplayedNonce);
    assert_err!(consume(a0, "n1", NOW + 1).await, StoreError::ReplayedNonce);
    consume(a1, "n1", NOW).await.unwrap();
    assert_err!(consume(a1, "n1", NOW).await, StoreError::ReplayedNonce);
    consume(a0, "n2", NOW).await.unwrap();
}

/// Concurrent uses of one nonce by one device: exactly one is accepted.
pub async fn concurrent_double_use(store: Db) {
    const USES: usize = 10;
    let alice = register(&store, "alice", 1).await;
    let device = alice.id(0);
    let results = together(USES, |_| {
        let store = store.clone();
        async move { store.consume_nonce(device, "race".to_owned(), NOW).await }
    })
    .await;
    let mut accepted = 0;
    for result in results {
        match result {
            Ok(()) => accepted += 1,
            Err(StoreError::ReplayedNonce) => {}
            Err(other) => panic!("expected ReplayedNonce, got {other:?}"),
        }
    }
    assert_eq!(accepted, 1);
}
