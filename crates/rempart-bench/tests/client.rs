//! Smoke tests of `rempart-bench client` at tiny sizes: the report has every
//! figure of every operation, each a finite positive number, and each ratio
//! is the engine's time over openmls's; in process and from the binary. No
//! timing or ratio bound is asserted: figures depend on the machine and its
//! load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use rempart_bench::client::{ClientOptions, Operation, measure};
use serde_json::Value;

/// `report` is one JSON object of finite positive numbers holding, for
/// every operation at every size of `sizes`, the engine's time, openmls's
/// and their ratio, and the largest ratio as `max_overhead_ratio`.
fn assert_every_figure(report: &Value, sizes: &[usize], iterations: u64) {
    let object = report.as_object().expect("a JSON object");
    for (key, value) in object {
        let number = value.as_f64().unwrap_or_else(|| panic!("{key} is {value}"));
        assert!(number.is_finite(), "{key} is {number}");
        assert!(number > 0.0, "{key} is {number}");
    }
    assert_eq!(report["iterations"], iterations);
    let figure = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("no {key} in {report}"))
    };
    let mut largest: f64 = 0.0;
    for size in sizes {
        for operation in Operation::ALL {
            let op = operation.key();
            let engine = figure(&format!("{op}_ms_{size}"));
            let raw = figure(&format!("raw_{op}_ms_{size}"));
            let ratio = figure(&format!("ratio_{op}_{size}"));
            assert!(
                (ratio - engine / raw).abs() <= 1e-9 * ratio,
                "{op} at {size}"
            );
            largest = largest.max(ratio);
        }
    }
    assert_eq!(figure("max_overhead_ratio"), largest);
    // Nothing else: three figures per operation and size, and the two.
    assert_eq!(object.len(), 2 + 3 * Operation::ALL.len() * sizes.len());
}

#[tokio::test(flavor = "current_thread")]
async fn a_tiny_run_in_process_reports_every_figure() {
    let options = ClientOptions {
        sizes: vec![2],
        iterations: 2,
    };
    let report = measure(&options).await.unwrap();
    assert_eq!(report.figures.len(), Operation::ALL.len());
    assert_every_figure(&serde_json::to_value(&report).unwrap(), &[2], 2);
    // The table names both sides and every operation.
    let table = report.to_string();
    for word in ["engine", "openmls", "sparse"] {
        assert!(table.contains(word), "{table}");
    }
    for operation in Operation::ALL {
        assert!(table.contains(operation.key()), "{table}");
    }
}

#[test]
fn the_binary_prints_one_json_object() {
    let output = Command::new(env!("CARGO_BIN_EXE_rempart-bench"))
        .args(["--json", "client", "--sizes", "2,3", "--iterations", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_every_figure(&report, &[2, 3], 1);
}

#[test]
fn a_group_of_one_is_refused_with_the_reason() {
    let output = Command::new(env!("CARGO_BIN_EXE_rempart-bench"))
        .args(["client", "--sizes", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 2 members"), "{stderr}");
    assert!(output.stdout.is_empty());
}
