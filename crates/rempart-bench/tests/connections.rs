//! Smoke test of `rempart-bench connections` at a tiny size, in process,
//! against a `rempart-server` process: the report has every figure, each a
//! finite number, and every session was live. No timing or memory bound is
//! asserted: figures depend on the machine and its load.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rempart_bench::connections::{ConnectionsOptions, measure};
use rempart_bench::device::BenchDevice;
use rempart_bench::error::BenchError;
use rempart_bench::server::ServerUnderTest;

/// The keys the JSON report must have for a started server.
const KEYS: [&str; 11] = [
    "connections",
    "register_s",
    "register_per_s",
    "open_s",
    "open_per_s",
    "open_cpu_s",
    "baseline_rss_bytes",
    "rss_bytes",
    "rss_bytes_per_connection",
    "hwm_bytes",
    "live",
];

/// Starts a server, or `None` (after saying so) if its binary is not built.
fn start_server() -> Option<ServerUnderTest> {
    match ServerUnderTest::start(&[]) {
        Ok(server) => Some(server),
        Err(BenchError::ServerBinaryMissing { path }) => {
            println!("SKIPPED: no rempart-server at {}", path.display());
            None
        }
        Err(error) => panic!("cannot start the server: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_sessions_report_every_figure() {
    let Some(server) = start_server() else {
        return;
    };
    let options = ConnectionsOptions {
        connections: 5,
        register_parallel: 2,
        open_parallel: 2,
    };
    let report = measure(&server, &options).await.unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let object = json.as_object().expect("a JSON object");
    for (key, value) in object {
        let number = value.as_f64().unwrap_or_else(|| panic!("{key} is {value}"));
        assert!(number.is_finite(), "{key} is {number}");
    }
    for key in KEYS {
        assert!(object.contains_key(key), "no {key} in {json}");
    }
    assert_eq!(json["connections"], 5);
    assert_eq!(json["live"], 5);
    let table = report.to_string();
    assert!(table.contains("per session"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_server_gets_no_memory_figures() {
    let Some(started) = start_server() else {
        return;
    };
    let remote = ServerUnderTest::remote(started.url());
    let options = ConnectionsOptions {
        connections: 2,
        register_parallel: 2,
        open_parallel: 2,
    };
    let json = serde_json::to_value(measure(&remote, &options).await.unwrap()).unwrap();
    assert_eq!(json["live"], 2);
    assert!(json.get("rss_bytes").is_none(), "{json}");
    assert!(json.get("open_cpu_s").is_none(), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_names_its_status_and_code() {
    let Some(server) = start_server() else {
        return;
    };
    let http = reqwest::Client::new();
    let device = BenchDevice::register(&http, server.url(), "alice".parse().unwrap())
        .await
        .unwrap();
    // The name is taken now.
    let error = BenchDevice::register(&http, server.url(), "alice".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, BenchError::Status { status: 409, code, .. } if code == "name_taken"),
        "{error:?}"
    );
    // A signed request of the registered device is accepted, and its
    // session opens.
    device
        .request(
            &http,
            server.url(),
            reqwest::Method::GET,
            "/v1/inbox?after=0&limit=1",
            Vec::new(),
        )
        .await
        .unwrap();
    device.open_session(&server.ws_url()).await.unwrap();
}
