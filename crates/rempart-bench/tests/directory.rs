//! Smoke tests of `rempart-bench directory` at tiny sizes: the report has
//! every figure, each a finite number, in process and from the binary. No
//! timing is asserted: figures depend on the machine and its load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use rempart_bench::directory::{DirectoryOptions, measure_in_process};
use serde_json::Value;

/// The keys the JSON report must have.
const KEYS: [&str; 14] = [
    "users",
    "batch",
    "epochs",
    "publish_per_s",
    "inmemory_publish_per_s",
    "ratio_to_inmemory",
    "update_per_s",
    "lookup_ms",
    "lookup_verify_ms",
    "lookup_proof_bytes",
    "rss_bytes",
    "hwm_bytes",
    "inmemory_rss_bytes",
    "db_bytes",
];

fn tiny() -> DirectoryOptions {
    DirectoryOptions {
        users: 50,
        batch: 20,
        update_epochs: 2,
        lookups: 5,
        cache: false,
        cache_mib: None,
    }
}

/// `report` is one JSON object whose values are all finite numbers, with at
/// least [`KEYS`], for the [`tiny`] run.
fn assert_every_figure(report: &Value) {
    let object = report.as_object().expect("a JSON object");
    for (key, value) in object {
        let number = value.as_f64().unwrap_or_else(|| panic!("{key} is {value}"));
        assert!(number.is_finite(), "{key} is {number}");
        assert!(number >= 0.0, "{key} is {number}");
    }
    for key in KEYS {
        assert!(object.contains_key(key), "no {key} in {report}");
    }
    assert_eq!(report["users"], 50);
    assert_eq!(report["batch"], 20);
    assert_eq!(report["epochs"], 3);
    for positive in [
        "publish_per_s",
        "inmemory_publish_per_s",
        "ratio_to_inmemory",
        "lookup_proof_bytes",
        "rss_bytes",
        "inmemory_rss_bytes",
        "db_bytes",
    ] {
        assert!(report[positive].as_f64().unwrap() > 0.0, "{positive} is 0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_in_process_report_every_figure() {
    let report = measure_in_process(&tiny()).await.unwrap();
    assert_every_figure(&serde_json::to_value(&report).unwrap());
    // The table names what it shows.
    let table = report.to_string();
    assert!(table.contains("persistent"), "{table}");
    assert!(table.contains("in-memory"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_variant_reports_every_figure() {
    let options = DirectoryOptions {
        cache: true,
        cache_mib: Some(16),
        ..tiny()
    };
    let report = serde_json::to_value(measure_in_process(&options).await.unwrap()).unwrap();
    assert_every_figure(&report);
    assert_eq!(report["cache"], 1);
    assert_eq!(report["cache_mib"], 16);
}

#[test]
fn the_binary_prints_one_json_object_from_two_child_processes() {
    let output = Command::new(env!("CARGO_BIN_EXE_rempart-bench"))
        .args(["--json", "directory", "--users", "50", "--batch", "20"])
        .args(["--update-epochs", "2", "--lookups", "5"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_every_figure(&report);
}

#[test]
fn impossible_sizes_are_refused_with_the_reason() {
    let output = Command::new(env!("CARGO_BIN_EXE_rempart-bench"))
        .args(["directory", "--users", "10", "--batch", "20"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("batch must not exceed users"), "{stderr}");
    assert!(output.stdout.is_empty());
}
