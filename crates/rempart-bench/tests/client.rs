//! Smoke tests of the client benchmark (`cargo bench --bench client`) at
//! tiny sizes: the report has every figure of every operation, each a finite
//! positive number, and each ratio is the engine's time over openmls's. No
//! timing or ratio bound is asserted: figures depend on the machine and its
//! load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../benches/client/measure.rs"]
mod measure;

use measure::{ClientOptions, Operation, measure};
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
    let mut largest_at_rest: f64 = 0.0;
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
            let sealed = figure(&format!("sealed_{op}_ms_{size}"));
            let at_rest = figure(&format!("at_rest_ratio_{op}_{size}"));
            assert!(
                (at_rest - sealed / engine).abs() <= 1e-9 * at_rest,
                "{op} at {size}"
            );
            largest_at_rest = largest_at_rest.max(at_rest);
        }
    }
    assert_eq!(figure("max_overhead_ratio"), largest);
    assert_eq!(figure("max_at_rest_ratio"), largest_at_rest);
    // Nothing else: five figures per operation and size, and the three.
    assert_eq!(object.len(), 3 + 5 * Operation::ALL.len() * sizes.len());
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
    for word in ["engine", "openmls", "sparse", "encrypted", "at rest"] {
        assert!(table.contains(word), "{table}");
    }
    for operation in Operation::ALL {
        assert!(table.contains(operation.key()), "{table}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_group_of_one_is_refused_with_the_reason() {
    let options = ClientOptions {
        sizes: vec![1],
        iterations: 1,
    };
    let refused = measure(&options).await.unwrap_err();
    assert!(
        refused.to_string().contains("at least 2 members"),
        "{refused}"
    );
}
