//! Device-linking rendezvous.

use rempart_proto::LinkId;
use rempart_proto::limits::LINK_TTL_SECS;
use rempart_server::store::StoreError;

use crate::support::{Db, NOW, assert_err, register};

/// A link takes one request and one response, shows the request only to
/// its creator, and hands the response out once.
pub async fn lifecycle(store: Db) {
    let alice = register(&store, "alice", 1).await;
    let bob = register(&store, "bob", 1).await;
    let (a0, b0) = (alice.id(0), bob.id(0));
    let link = LinkId::random();

    store.create_link(a0, link, NOW).await.unwrap();
    for creator in [a0, b0] {
        assert_err!(
            store.create_link(creator, link, NOW + 1).await,
            StoreError::LinkExists
        );
    }
    assert_eq!(store.link_request(a0, link, NOW).await.unwrap(), None);
    assert_eq!(store.take_link_response(link, NOW).await.unwrap(), None);

    store
        .put_link_request(link, b"request".to_vec(), NOW + 1)
        .await
        .unwrap();
    assert_err!(
        store
            .put_link_request(link, b"other".to_vec(), NOW + 1)
            .await,
        StoreError::LinkUsed("request")
    );
    assert_err!(
        store.link_request(b0, link, NOW + 1).await,
        StoreError::NotLinkCreator { device } if device == b0
    );
    assert_eq!(
        store.link_request(a0, link, NOW + 1).await.unwrap(),
        Some(b"request".to_vec())
    );

    assert_err!(
        store
            .put_link_response(b0, link, b"forged".to_vec(), NOW + 2)
            .await,
        StoreError::NotLinkCreator { device } if device == b0
    );
    store
        .put_link_response(a0, link, b"response".to_vec(), NOW + 2)
        .await
        .unwrap();
    assert_err!(
        store
            .put_link_response(a0, link, b"other".to_vec(), NOW + 2)
            .await,
        StoreError::LinkUsed("response")
    );
    assert_eq!(
        store.take_link_response(link, NOW + 3).await.unwrap(),
        Some(b"response".to_vec())
    );
    assert_err!(
        store.take_link_response(link, NOW + 3).await,
        StoreError::UnknownLink
    );
    assert_err!(
        store.link_request(a0, link, NOW + 3).await,
        StoreError::UnknownLink
    );
    // The completed link's id is free again.
    store.create_link(b0, link, NOW + 4).await.unwrap();

    let unknown = LinkId::random();
    assert_err!(
        store.put_link_request(unknown, b"r".to_vec(), NOW).await,
        StoreError::UnknownLink
    );
    assert_err!(
        store.link_request(a0, unknown, NOW).await,
        StoreError::UnknownLink
    );
    assert_err!(
        store
            .put_link_response(a0, unknown, b"r".to_vec(), NOW)
            .await,
        StoreError::UnknownLink
    );
    assert_err!(
        store.take_link_response(unknown, NOW).await,
        StoreError::UnknownLink
    );
}

/// A link lives for `LINK_TTL_SECS` from its creation: in its last second
/// it works, from then on it is absent and its id may be opened again.
pub async fn expiry(store: Db) {
    let alice = register(&store, "alice", 1).await;
    let bob = register(&store, "bob", 1).await;
    let (a0, b0) = (alice.id(0), bob.id(0));
    let link = LinkId::random();
    store.create_link(a0, link, NOW).await.unwrap();

    let last_second = NOW + LINK_TTL_SECS - 1;
    assert_err!(
        store.create_link(b0, link, last_second).await,
        StoreError::LinkExists
    );
    store
        .put_link_request(link, b"request".to_vec(), last_second)
        .await
        .unwrap();
    assert_eq!(
        store.link_request(a0, link, last_second).await.unwrap(),
        Some(b"request".to_vec())
    );
    store
        .put_link_response(a0, link, b"response".to_vec(), last_second)
        .await
        .unwrap();

    let expired = NOW + LINK_TTL_SECS;
    assert_err!(
        store.link_request(a0, link, expired).await,
        StoreError::UnknownLink
    );
    assert_err!(
        store
            .put_link_request(link, b"again".to_vec(), expired)
            .await,
        StoreError::UnknownLink
    );
    assert_err!(
        store
            .put_link_response(a0, link, b"again".to_vec(), expired)
            .await,
        StoreError::UnknownLink
    );
    assert_err!(
        store.take_link_response(link, expired).await,
        StoreError::UnknownLink
    );

    // Opened again by another device: a new link, nothing carried over.
    store.create_link(b0, link, expired).await.unwrap();
    assert_eq!(store.link_request(b0, link, expired).await.unwrap(), None);
    assert_eq!(store.take_link_response(link, expired).await.unwrap(), None);
    assert_err!(
        store.link_request(a0, link, expired).await,
        StoreError::NotLinkCreator { device } if device == a0
    );
}
