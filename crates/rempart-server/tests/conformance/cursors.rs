//! Reading a group's log by cursor.

use rempart_proto::api::LogEntry;
use rempart_proto::{DeviceId, GroupId, MessageId};

use crate::support::{Db, create_group, register, together};

/// Every entry of a group's log, read in pages of `limit`, checking that
/// each page is at most `limit` long and continues the log without a gap
/// or a repeat from where the last one stopped.
/// Also returns how many non-empty pages that took.
async fn read_all(
    store: &Db,
    group: GroupId,
    reader: DeviceId,
    limit: u32,
) -> (Vec<LogEntry>, usize) {
    let (mut entries, mut pages) = (Vec::<LogEntry>::new(), 0);
    loop {
        let after = entries.last().map_or(0, |e| e.seq);
        let page = store.read_log(group, reader, after, limit).await.unwrap();
        assert!(page.entries.len() <= limit as usize);
        if page.entries.is_empty() {
            return (entries, pages);
        }
        let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
        let next: Vec<u64> = (after + 1..).take(seqs.len()).collect();
        assert_eq!(seqs, next, "the page after {after} continues the log");
        pages += 1;
        entries.extend(page.entries);
    }
}

/// Pages after a cursor cover the log exactly once, in order.
pub async fn pages_cover_the_log_once(store: Db) {
    const MESSAGES: u64 = 24;
    let alice = register(&store, "alice", 1).await;
    let a0 = alice.id(0);
    let group = create_group(&store, a0, &[]).await;
    let mut sent = Vec::new();
    for i in 0..MESSAGES {
        let (id, data) = (MessageId::random(), format!("message {i}").into_bytes());
        let outcome = store
            .append_message(group, a0, id, 1, data.clone())
            .await
            .unwrap();
        assert_eq!(outcome.appended.seq, i + 2);
        sent.push((id, data));
    }

    let (entries, pages) = read_all(&store, group, a0, 7).await;
    assert_eq!(pages, 4, "7 + 7 + 7 + 4 entries");
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=MESSAGES + 1).collect::<Vec<_>>());
    let received: Vec<_> = entries[1..]
        .iter()
        .map(|e| (e.message_id, e.data.clone()))
        .collect();
    assert_eq!(received, sent);

    let page = store.read_log(group, a0, 10, 1).await.unwrap();
    let seqs: Vec<u64> = page.entries.iter().map(|e| e.seq).collect();
    assert_eq!(
        (seqs, page.last_seq, page.epoch),
        (vec![11], MESSAGES + 1, 1)
    );
    for after in [MESSAGES + 1, 1_000] {
        let page = store.read_log(group, a0, after, 100).await.unwrap();
        assert!(page.entries.is_empty(), "{:?}", page.entries);
        assert_eq!(page.last_seq, MESSAGES + 1);
    }
}

/// Members appending at once get consecutive, distinct seqs, and each
/// sender's messages stay in the order it sent them.
pub async fn concurrent_appends_have_gap_free_seqs(store: Db) {
    const SENDERS: usize = 4;
    const EACH: usize = 10;
    let alice = register(&store, "alice", SENDERS).await;
    let group = create_group(&store, alice.id(0), &alice.ids()[1..]).await;

    let sent = together(SENDERS, |i| {
        let (store, sender) = (store.clone(), alice.id(i));
        async move {
            let mut seqs = Vec::new();
            for j in 0..EACH {
                let data = format!("{i}:{j}").into_bytes();
                let outcome = store
                    .append_message(group, sender, MessageId::random(), 1, data)
                    .await
                    .unwrap();
                assert!(outcome.fresh);
                seqs.push(outcome.appended.seq);
            }
            seqs
        }
    })
    .await;
    let total = (SENDERS * EACH) as u64 + 1;
    let mut all: Vec<u64> = sent.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (2..=total).collect::<Vec<_>>());

    let (entries, _) = read_all(&store, group, alice.id(0), 9).await;
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    for (i, seqs) in sent.iter().enumerate() {
        let logged: Vec<Vec<u8>> = entries
            .iter()
            .filter(|e| e.sender == alice.id(i) && e.seq > 1)
            .map(|e| e.data.clone())
            .collect();
        let expected: Vec<Vec<u8>> = (0..EACH).map(|j| format!("{i}:{j}").into_bytes()).collect();
        assert_eq!(logged, expected, "sender {i}");
        assert!(seqs.is_sorted(), "sender {i}: {seqs:?}");
    }
}
