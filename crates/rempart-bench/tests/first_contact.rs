//! Smoke test of `rempart-bench first-contact` with one round: every figure
//! is a finite number, the times positive, and the added delay and ratio
//! follow from the medians. No timing bound is asserted: figures depend on
//! the machine and its load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rempart_bench::first_contact::{FirstContactOptions, measure};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_gives_every_figure() {
    let report = measure(&FirstContactOptions { iterations: 1 })
        .await
        .unwrap();
    let json = serde_json::to_value(report).unwrap();
    for (key, value) in json.as_object().unwrap() {
        let number = value.as_f64().unwrap_or_else(|| panic!("{key} is {value}"));
        assert!(number.is_finite(), "{key} is {number}");
    }
    assert_eq!(report.iterations, 1);
    for time in [
        report.witnessed_ms,
        report.baseline_ms,
        report.witnessed_mean_ms,
        report.baseline_mean_ms,
    ] {
        assert!(time > 0.0, "{report:?}");
    }
    assert!((report.added_delay_ms - (report.witnessed_ms - report.baseline_ms)).abs() < 1e-9);
    assert!((report.ratio - report.witnessed_ms / report.baseline_ms).abs() < 1e-9);
    assert!(
        measure(&FirstContactOptions { iterations: 0 })
            .await
            .is_err()
    );
}
