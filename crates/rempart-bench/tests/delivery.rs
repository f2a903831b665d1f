//! Smoke tests of `rempart-bench delivery` and `fanout` at tiny sizes, in
//! process, against a `rempart-server` process: every message is
//! acknowledged, stored once and pushed, and the reports hold every figure
//! as a finite number. No timing bound is asserted: figures depend on the
//! machine and its load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rempart_bench::delivery::{self, DeliveryOptions};
use rempart_bench::error::BenchError;
use rempart_bench::fanout::{self, FanoutOptions};

/// Runs `result`'s benchmark, or returns `None` (after saying so) if the
/// server binary is not built.
fn unless_missing<T>(result: Result<T, BenchError>) -> Option<T> {
    match result {
        Ok(report) => Some(report),
        Err(BenchError::ServerBinaryMissing { path }) => {
            println!("SKIPPED: no rempart-server at {}", path.display());
            None
        }
        Err(error) => panic!("the benchmark failed: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_acknowledges_stores_and_pushes_every_message() {
    let options = DeliveryOptions {
        devices: 6,
        group_size: 3,
        duration: Duration::from_millis(500),
        in_flight: 2,
        ..DeliveryOptions::quick()
    };
    let Some(report) = unless_missing(delivery::measure(&options).await) else {
        return;
    };
    assert!(report.acknowledged > 0);
    // Each message reaches the two other members of its group, by push
    // (small messages come inline) or, failing that, by cursor.
    assert!(report.received >= report.acknowledged * 2 - report.not_pushed);
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    for key in [
        "msgs_per_s",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "ceiling_rows_per_s",
        "ratio_to_ceiling",
        "server_cpu_cores",
        "server_rss_bytes",
    ] {
        let value = json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing"));
        assert!(value.is_finite() && value >= 0.0, "{key} = {value}");
    }
    assert!(json["p50_ms"].as_f64() <= json["p99_ms"].as_f64());
    let ratio = report.msgs_per_s / report.ceiling_rows_per_s;
    assert!((report.ratio_to_ceiling - ratio).abs() < 1e-9);
    assert!(report.to_string().contains("msgs/s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_reports_a_cost_per_size_and_their_ratio() {
    let options = FanoutOptions {
        sizes: vec![2, 5],
        messages: 30,
        ..FanoutOptions::quick()
    };
    let Some(report) = unless_missing(fanout::measure(&options).await) else {
        return;
    };
    assert_eq!(
        report.sizes.iter().map(|s| s.members).collect::<Vec<_>>(),
        [2, 5]
    );
    // The connected member is pushed every message of both sizes (and
    // the warm-up's).
    assert!(report.pushed >= 2 * 30, "{report:?}");
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    for key in [
        "cpu_us_per_msg_2",
        "cpu_us_per_msg_5",
        "ratio_5_to_2",
        "msgs_per_s_5",
    ] {
        let value = json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing"));
        assert!(value.is_finite() && value >= 0.0, "{key} = {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_to_end_mode_delivers_through_live_client_engines() {
    let options = DeliveryOptions {
        devices: 2,
        group_size: 2,
        duration: Duration::from_millis(500),
        in_flight: 1,
        end_to_end: Some(2),
        ..DeliveryOptions::quick()
    };
    let Some(report) = unless_missing(delivery::measure(&options).await) else {
        return;
    };
    assert_eq!(report.e2e_devices, Some(2));
    let rate = report.e2e_msgs_per_s.unwrap();
    assert!(rate.is_finite() && rate > 0.0, "{report:?}");
    let (p50, p99) = (report.e2e_p50_ms.unwrap(), report.e2e_p99_ms.unwrap());
    assert!(p50 > 0.0 && p99 >= p50, "{report:?}");
}
