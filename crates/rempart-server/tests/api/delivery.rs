use rempart_proto::api::{
    self, Acked, Appended, EntryKind, InboxAck, InboxKind, InboxPage, LogPage, error_code,
};
use rempart_proto::{DeviceId, GroupId, MessageId};

use crate::support::{Account, Device, TestServer, commit_upload, ok, refused};

async fn inbox(server: &TestServer, device: &Device) -> InboxPage {
    ok(server
        .call(device, "GET", &api::inbox_path(0, 500), Vec::new())
        .await)
    .await
}

async fn ack(server: &TestServer, device: &Device, ids: Vec<u64>) -> u64 {
    let acked: Acked = ok(server
        .call_json(device, "POST", api::INBOX_ACK_PATH, &InboxAck { ids })
        .await)
    .await;
    acked.deleted
}

async fn two_accounts(server: &TestServer) -> (Account, Account) {
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 1);
    server.register(&alice).await;
    server.register(&bob).await;
    (alice, bob)
}

#[tokio::test]
async fn a_commit_creates_the_group_and_welcomes_the_added_device() {
    let server = TestServer::start().await;
    let (alice, bob) = two_accounts(&server).await;
    let group = GroupId::random();
    let upload = commit_upload(0, &[bob.device()], Some(b"welcome for bob"));
    let appended: Appended = ok(server.commit(alice.device(), &group, &upload).await).await;
    assert_eq!(appended, Appended { seq: 1, epoch: 1 });

    // A retry of the same upload returns the first result and stores nothing.
    let retried: Appended = ok(server.commit(alice.device(), &group, &upload).await).await;
    assert_eq!(retried, appended);

    let items = inbox(&server, bob.device()).await.items;
    assert_eq!(items.len(), 1, "one Welcome, despite the retry");
    let welcome = &items[0];
    assert_eq!(welcome.kind, InboxKind::Welcome);
    assert_eq!(welcome.group, group);
    assert_eq!(welcome.sender, alice.device().id);
    assert_eq!(welcome.data, b"welcome for bob");

    // Only the owner's ack deletes it.
    assert_eq!(ack(&server, alice.device(), vec![welcome.id]).await, 0);
    assert_eq!(inbox(&server, bob.device()).await.items.len(), 1);
    assert_eq!(ack(&server, bob.device(), vec![welcome.id]).await, 1);
    assert!(inbox(&server, bob.device()).await.items.is_empty());

    // Both members read the log.
    for reader in [alice.device(), bob.device()] {
        let log = server.log(reader, &group).await;
        assert_eq!((log.epoch, log.last_seq), (1, 1));
        let entry = &log.entries[0];
        assert_eq!(entry.kind, EntryKind::Commit);
        assert_eq!(entry.epoch, 0, "a commit records the epoch it was built on");
        assert_eq!(entry.sender, alice.device().id);
        assert_eq!(entry.message_id, upload.message_id);
        assert_eq!(entry.data, upload.commit);
    }
}

#[tokio::test]
async fn a_welcome_to_three_devices_is_stored_once() {
    let server = TestServer::start().await;
    let alice = Account::new("alice", 1);
    let bob = Account::new("bob", 3);
    server.register(&alice).await;
    server.register(&bob).await;
    let welcome: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    let added: Vec<&Device> = bob.devices.iter().collect();
    let upload = commit_upload(0, &added, Some(&welcome));
    ok::<Appended>(
        server
            .commit(alice.device(), &GroupId::random(), &upload)
            .await,
    )
    .await;

    let db = server.database();
    let stored = |db: &rusqlite::Connection| -> (i64, i64) {
        db.query_row(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM welcomes",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
    };
    assert_eq!(
        stored(&db),
        (1, 50_000),
        "the bytes once, not once per device"
    );

    let mut items = Vec::new();
    for device in &bob.devices {
        let page = inbox(&server, device).await;
        assert_eq!(page.items.len(), 1);
        assert_eq!(
            page.items[0].data, welcome,
            "every device reads the same bytes"
        );
        items.push(page.items[0].id);
    }
    for (i, (device, id)) in bob.devices.iter().zip(items).enumerate() {
        assert_eq!(ack(&server, device, vec![id]).await, 1);
        let left = if i < 2 { (1, 50_000) } else { (0, 0) };
        assert_eq!(stored(&db), left);
    }
}

#[tokio::test]
async fn a_commit_on_a_stale_epoch_is_refused_with_the_current_one() {
    let server = TestServer::start().await;
    let (alice, bob) = two_accounts(&server).await;
    let group = crate::support::create_group(&server, alice.device(), &[bob.device()]).await;

    let response = server
        .commit(bob.device(), &group, &commit_upload(0, &[], None))
        .await;
    let error = refused(response, 409, error_code::STALE_EPOCH).await;
    assert_eq!(error.current_epoch, Some(1));
    let log = server.log(bob.device(), &group).await;
    assert_eq!((log.epoch, log.last_seq), (1, 1));

    // Built on the current epoch, it goes through.
    let appended: Appended = ok(server
        .commit(bob.device(), &group, &commit_upload(1, &[], None))
        .await)
    .await;
    assert_eq!(appended, Appended { seq: 2, epoch: 2 });
}

#[tokio::test]
async fn a_message_encrypted_in_a_stale_epoch_is_refused_with_the_current_one() {
    let server = TestServer::start().await;
    let (alice, bob) = two_accounts(&server).await;
    let group = crate::support::create_group(&server, alice.device(), &[bob.device()]).await;

    let id = MessageId::random();
    let response = server
        .send_message_at(bob.device(), &group, &id, 0, b"sealed in epoch 0")
        .await;
    let error = refused(response, 409, error_code::STALE_EPOCH).await;
    assert_eq!(error.current_epoch, Some(1));
    let log = server.log(bob.device(), &group).await;
    assert_eq!(log.last_seq, 1, "nothing was appended");

    // The same id, encrypted again in the current epoch, goes through.
    let appended: Appended = ok(server
        .send_message_at(bob.device(), &group, &id, 1, b"sealed in epoch 1")
        .await)
    .await;
    assert_eq!(appended, Appended { seq: 2, epoch: 1 });
}

#[tokio::test]
async fn a_commit_adding_an_unknown_device_is_refused() {
    let server = TestServer::start().await;
    let (alice, _bob) = two_accounts(&server).await;
    let group = GroupId::random();
    let ghost = Device::new();
    let response = server
        .commit(
            alice.device(),
            &group,
            &commit_upload(0, &[&ghost], Some(b"w")),
        )
        .await;
    refused(response, 400, error_code::BAD_REQUEST).await;
    // Not even the group was created.
    let response = server.read_log(alice.device(), &group, 0).await;
    refused(response, 404, error_code::NOT_FOUND).await;
}

#[tokio::test]
async fn messages_are_appended_once_and_read_by_cursor() {
    let server = TestServer::start().await;
    let (alice, bob) = two_accounts(&server).await;
    let group = crate::support::create_group(&server, alice.device(), &[bob.device()]).await;

    let ids: Vec<MessageId> = (0..3).map(|_| MessageId::random()).collect();
    for (i, id) in ids.iter().enumerate() {
        let body = format!("ciphertext {i}");
        let appended: Appended = ok(server
            .send_message(alice.device(), &group, id, body.as_bytes())
            .await)
        .await;
        assert_eq!(
            appended,
            Appended {
                seq: i as u64 + 2,
                epoch: 1
            }
        );
    }
    // A retry with the same id and content: same answer, no new entry.
    let retried: Appended = ok(server
        .send_message(alice.device(), &group, &ids[0], b"ciphertext 0")
        .await)
    .await;
    assert_eq!(retried, Appended { seq: 2, epoch: 1 });
    // The same id for other content, or by another device: refused.
    let response = server
        .send_message(alice.device(), &group, &ids[0], b"something else")
        .await;
    refused(response, 409, error_code::DUPLICATE_MESSAGE_ID).await;
    let response = server
        .send_message(bob.device(), &group, &ids[0], b"ciphertext 0")
        .await;
    refused(response, 409, error_code::DUPLICATE_MESSAGE_ID).await;
    let response = server
        .send_message(alice.device(), &group, &MessageId::random(), b"")
        .await;
    refused(response, 400, error_code::BAD_REQUEST).await;

    let path = api::log_path(&group, 0, 2);
    let first: LogPage = ok(server.call(bob.device(), "GET", &path, Vec::new()).await).await;
    let seqs: Vec<u64> = first.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!((first.epoch, first.last_seq), (1, 4));
    let rest: LogPage = ok(server.read_log(bob.device(), &group, 2).await).await;
    let seqs: Vec<u64> = rest.entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [3, 4]);
    let last = &rest.entries[1];
    assert_eq!(last.kind, EntryKind::Application);
    assert_eq!(last.epoch, 1);
    assert_eq!(last.sender, alice.device().id);
    assert_eq!(last.message_id, ids[2]);
    assert_eq!(last.data, b"ciphertext 2");
    let empty: LogPage = ok(server.read_log(bob.device(), &group, 4).await).await;
    assert!(empty.entries.is_empty());
}

#[tokio::test]
async fn a_removed_device_reads_up_to_its_removal_and_can_no_longer_write() {
    let server = TestServer::start().await;
    let (alice, bob) = two_accounts(&server).await;
    let group = crate::support::create_group(&server, alice.device(), &[bob.device()]).await;
    assert_eq!(server.log(bob.device(), &group).await.last_seq, 1);

    let mut remove = commit_upload(1, &[], None);
    remove.remove_devices = vec![bob.device().id];
    let appended: Appended = ok(server.commit(alice.device(), &group, &remove).await).await;
    assert_eq!(appended, Appended { seq: 2, epoch: 2 });

    // Bob reads the commit that removed him, so that he learns of it, and
    // nothing the group does afterwards.
    let response = server
        .send_message(bob.device(), &group, &MessageId::random(), b"still here?")
        .await;
    refused(response, 403, error_code::FORBIDDEN).await;
    let after = MessageId::random();
    ok::<Appended>(
        server
            .send_message(alice.device(), &group, &after, b"after")
            .await,
    )
    .await;
    let page = server.log(bob.device(), &group).await;
    let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
    assert_eq!((page.epoch, page.last_seq, seqs), (2, 2, vec![1, 2]));
    assert_eq!(server.log(alice.device(), &group).await.last_seq, 3);
}

#[tokio::test]
async fn malformed_ids_and_queries_are_bad_requests() {
    let server = TestServer::start().await;
    let (alice, _bob) = two_accounts(&server).await;
    let group = GroupId::random();
    for path in [
        "/v1/groups/not-a-group/log?after=0".to_owned(),
        format!("/v1/groups/{group}/log?after=minus-one"),
        format!("/v1/groups/{group}/messages/{}", DeviceId::random()),
    ] {
        let method = if path.contains("messages") {
            "PUT"
        } else {
            "GET"
        };
        let response = server
            .call(alice.device(), method, &path, b"x".to_vec())
            .await;
        refused(response, 400, error_code::BAD_REQUEST).await;
    }
}
