use rempart_proto::MessageId;
use rempart_proto::api::{Appended, KeyPackageStatus, KeyPackageUpload};
use tempfile::TempDir;

use crate::support::{Account, TestServer, create_group, ok};

#[tokio::test]
async fn state_survives_a_restart() {
    let data = TempDir::new().unwrap();
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    let list = alice.signed_list(1);

    let server = TestServer::start_in(data.path()).await;
    assert!(
        server
            .try_register(&alice, &list)
            .await
            .status()
            .is_success()
    );
    server.register(&bob).await;
    let upload = KeyPackageUpload {
        one_time: vec![b"kp 1".to_vec(), b"kp 2".to_vec()],
        last_resort: Some(b"kp last".to_vec()),
    };
    server.upload(alice.device(), &upload).await;
    let group = create_group(&server, alice.device(), &[bob.device()]).await;
    let message_id = MessageId::random();
    let sent: Appended = ok(server
        .send_message(alice.device(), &group, &message_id, b"before restart")
        .await)
    .await;
    server.stop().await;

    let server = TestServer::start_in(data.path()).await;
    assert_eq!(server.device_list(&alice.user).await.unwrap(), list);
    assert_eq!(
        server.key_package_status(alice.device()).await,
        KeyPackageStatus {
            one_time: 2,
            last_resort: true,
            claimed: 0,
        }
    );
    let log = server.log(bob.device(), &group).await;
    assert_eq!((log.epoch, log.last_seq), (1, 2));
    assert_eq!(log.entries[1].data, b"before restart");
    // Retries stay idempotent across the restart, and new writes follow on.
    let retried: Appended = ok(server
        .send_message(alice.device(), &group, &message_id, b"before restart")
        .await)
    .await;
    assert_eq!(retried, sent);
    let next: Appended = ok(server
        .send_message(bob.device(), &group, &MessageId::random(), b"after restart")
        .await)
    .await;
    assert_eq!(next.seq, 3);
    server.stop().await;
}
