//! The server's check of every signed request: reading the four headers
//! (`RequestAuth::from_headers`) and verifying the device's Ed25519
//! signature over the request (`RequestAuth::verify`, which hashes the
//! body), for a message upload with a 256-byte body.
//!
//! `cargo bench -p rempart-bench --bench request_auth`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use rempart_proto::auth::RequestAuth;
use rempart_proto::{DeviceId, GroupId, MessageId};

/// The body of the signed request: an application message's size.
const BODY_BYTES: usize = 256;

fn request_auth(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let verifying_key = key.verifying_key();
    let path = format!(
        "/v1/groups/{}/messages/{}",
        GroupId::random(),
        MessageId::random()
    );
    let body = vec![0x5a; BODY_BYTES];
    let auth = RequestAuth::sign(&key, DeviceId::random(), "PUT", &path, &body, 1_700_000_000);
    // Measure the path of a request that passes, not an early refusal.
    assert!(
        auth.verify(&verifying_key, "PUT", &path, &body).is_ok(),
        "the benchmark's request must verify"
    );
    let headers = auth.headers();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, value)| value.as_str())
    };

    let mut group = c.benchmark_group("request_auth");
    group.throughput(Throughput::Elements(1));
    group.bench_function("from_headers", |b| {
        b.iter(|| RequestAuth::from_headers(|name| header(black_box(name))))
    });
    group.bench_function("verify_256_byte_body", |b| {
        b.iter(|| {
            black_box(&auth).verify(
                black_box(&verifying_key),
                "PUT",
                black_box(&path),
                black_box(&body),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, request_auth);
criterion_main!(benches);
