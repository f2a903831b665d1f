//! The NATS JetStream reference on the NATS server at `REMPART_NATS_URL`
//! (default `nats://127.0.0.1:4222`); skipped, with a line saying so, when
//! none answers there.
//!
//! The ignored test is the reference run recorded in BENCHMARKS.md:
//! `cargo test --release -p rempart-bench --test nats -- --nocapture --ignored`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rempart_bench::nats::{NatsWorkload, Receiving, reference, reference_receiving};

fn url() -> String {
    std::env::var("REMPART_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Checks what a run of a tiny workload gives, receiving as `receiving`
/// says; prints a line starting with `SKIPPED` when no server answers.
async fn tiny_workload_gives_consistent_figures(receiving: Receiving) {
    let workload = NatsWorkload {
        url: url(),
        devices: 4,
        group_size: 2,
        message_bytes: 256,
        duration: Duration::from_secs(1),
    };
    let figures = match receiving {
        Receiving::StreamConsumers => reference(&workload).await,
        Receiving::Subscriptions => reference_receiving(&workload, receiving).await,
    };
    let Some(figures) = figures.unwrap() else {
        println!("SKIPPED: no NATS server answers at {}", workload.url);
        return;
    };
    println!("{receiving:?}: {figures:?}");
    assert!(figures.acked > 0);
    assert!(figures.delivered > 0);
    assert!(figures.delivered <= figures.acked * (workload.group_size as u64 - 1));
    assert!(figures.msgs_per_s.is_finite() && figures.msgs_per_s > 0.0);
    for latency in [figures.p50_ms, figures.p99_ms, figures.max_ms] {
        assert!(latency.is_finite() && latency >= 0.0, "{figures:?}");
    }
    assert!(figures.p50_ms <= figures.p99_ms, "{figures:?}");
    assert!(figures.p99_ms <= figures.max_ms, "{figures:?}");
    assert!(figures.durability.contains("file storage"), "{figures:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tiny_workload_received_from_the_stream_gives_consistent_figures() {
    tiny_workload_gives_consistent_figures(Receiving::StreamConsumers).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tiny_workload_received_by_subscriptions_gives_consistent_figures() {
    tiny_workload_gives_consistent_figures(Receiving::Subscriptions).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_reported_as_none() {
    // Port 1 on the loopback: nothing listens there, the connection is refused.
    let workload = NatsWorkload {
        url: "nats://127.0.0.1:1".to_owned(),
        devices: 2,
        group_size: 2,
        message_bytes: 64,
        duration: Duration::from_millis(100),
    };
    assert_eq!(reference(&workload).await.unwrap(), None);
}

/// The delivery benchmark's workload: 1,000 devices in groups of 2,
/// 256-byte messages, 10 s; once with each way of receiving.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "two 10 s benchmark runs; run them in release with --nocapture"]
async fn reference_run() {
    let workload = NatsWorkload {
        url: url(),
        devices: 1_000,
        group_size: 2,
        message_bytes: 256,
        duration: Duration::from_secs(10),
    };
    println!(
        "NATS JetStream reference: {} devices in groups of {}, {}-byte messages, {:?}",
        workload.devices, workload.group_size, workload.message_bytes, workload.duration
    );
    for receiving in [Receiving::StreamConsumers, Receiving::Subscriptions] {
        let Some(figures) = reference_receiving(&workload, receiving).await.unwrap() else {
            println!("SKIPPED: no NATS server answers at {}", workload.url);
            return;
        };
        println!(
            "{receiving:?}: {:.0} acknowledged publishes/s ({} acked, {} deliveries); \
             latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            figures.msgs_per_s,
            figures.acked,
            figures.delivered,
            figures.p50_ms,
            figures.p99_ms,
            figures.max_ms
        );
        println!("durability: {}", figures.durability);
        assert!(figures.acked > 0);
    }
}
