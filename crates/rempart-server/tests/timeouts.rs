//! The server against slow and silent clients: a connection that sends half
//! a request head and stalls is closed once the header-read timeout passes,
//! and the server goes on serving others.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rempart_server::{Server, ServerConfig};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A guard against a hang, not a measure: far longer than the timeout.
const PATIENCE: Duration = Duration::from_secs(60);

/// A server on a fresh data directory, configured by `configure`.
struct Running {
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), rempart_server::ServerError>>,
    _data: TempDir,
}

impl Running {
    async fn start(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let data = TempDir::new().unwrap();
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), data.path().into());
        configure(&mut config);
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop,
            task,
            _data: data,
        }
    }

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn connections_that_send_half_a_request_head_are_closed() {
    let server = Running::start(|config| config.header_read_timeout = Duration::from_secs(1)).await;
    let addr = server.addr;

    // Twenty connections, each stalled in the middle of its headers.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: rempart\r\nX-Half")
            .await
            .unwrap();
        stalled.push(stream);
    }
    for mut stream in stalled {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
            .await
            .expect("a stalled connection was never closed");
        // Closed, with at most an error answer: never a served request.
        if closed.is_ok() {
            let answer = String::from_utf8_lossy(&rest);
            assert!(!answer.contains(" 200 "), "{answer}");
        }
    }

    // Others are still served.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: rempart\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    server.stop().await;
}

#[tokio::test]
async fn bodies_stalled_short_of_their_length_are_cut_off() {
    let server = Running::start(|config| {
        config.body_read_allowance = Duration::from_secs(1);
        config.min_body_rate = 1 << 30;
    })
    .await;
    let addr = server.addr;

    // Twenty requests declaring 1,000,000 bytes, stalled after 100.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"POST /v1/accounts HTTP/1.1\r\nHost: rempart\r\nContent-Length: 1000000\r\n\r\n",
            )
            .await
            .unwrap();
        stream.write_all(&[b'{'; 100]).await.unwrap();
        stalled.push(stream);
    }
    for mut stream in stalled {
        let mut answer = Vec::new();
        let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
            .await
            .expect("a stalled body was never cut off");
        if closed.is_ok() {
            let answer = String::from_utf8_lossy(&answer);
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
                "{answer}"
            );
        }
    }
    server.stop().await;
}

/// The HTTP/2 client preface and an empty SETTINGS frame: a connection
/// that then says nothing more.
const HTTP2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn a_silent_http2_connection_is_closed() {
    // HTTP/2 has no wait for a request head: only the idle timeout ends a
    // connection that opened and fell silent.
    let server = Running::start(|config| {
        config.header_read_timeout = Duration::from_secs(600);
        config.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(HTTP2_PREFACE).await.unwrap();
        silent.push(stream);
    }
    for mut stream in silent {
        let mut frames = Vec::new();
        tokio::time::timeout(PATIENCE, stream.read_to_end(&mut frames))
            .await
            .expect("a silent connection was never closed")
            .unwrap();
        // The server said its SETTINGS, then GOAWAY (frame type 7).
        assert!(frames.len() >= 9, "{frames:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_a_freed_slot_serves_again() {
    let server = Running::start(|config| {
        config.header_read_timeout = Duration::from_secs(600);
        config.max_connections = 3;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Served once one is accepted: a request on a held connection answers.
    let health = b"GET /health HTTP/1.1\r\nHost: rempart\r\n\r\n";
    held[0].write_all(health).await.unwrap();
    let mut answer = [0; 12];
    held[0].read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");

    // A fourth: accepted, then closed with nothing said.
    for _ in 0..5 {
        let mut extra = TcpStream::connect(server.addr).await.unwrap();
        let _ = extra.write_all(health).await;
        let mut said = Vec::new();
        let read = tokio::time::timeout(PATIENCE, extra.read_to_end(&mut said))
            .await
            .expect("a connection over the cap was kept open");
        assert!(read.is_err() || said.is_empty(), "{said:?}");
    }

    // One held connection closes: its slot serves a new one.
    drop(held.pop());
    let served = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut stream = TcpStream::connect(server.addr).await.unwrap();
            let close = b"GET /health HTTP/1.1\r\nHost: rempart\r\nConnection: close\r\n\r\n";
            if stream.write_all(close).await.is_err() {
                continue;
            }
            let mut answer = Vec::new();
            if stream.read_to_end(&mut answer).await.is_ok() && !answer.is_empty() {
                break String::from_utf8_lossy(&answer).into_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the freed slot never served");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn a_stranger_s_body_is_refused_before_it_is_read() {
    use ed25519_dalek::SigningKey;
    use rempart_proto::DeviceId;
    use rempart_proto::auth::RequestAuth;

    let server = Running::start(|_| {}).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // A hundred uploads declaring 1,000,000 bytes: without auth headers,
    // or signed by a device the server does not know. Each is answered 401
    // after 100 bytes of its body: the rest is never waited for.
    for i in 0..100 {
        let mut head = String::from(
            "POST /v1/keypackages HTTP/1.1\r\nHost: rempart\r\nContent-Length: 1000000\r\n",
        );
        if i % 2 == 1 {
            let key = SigningKey::from_bytes(&[i as u8; 32]);
            let auth = RequestAuth::sign(
                &key,
                DeviceId::random(),
                "POST",
                "/v1/keypackages",
                b"",
                now,
            );
            for (name, value) in auth.headers() {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str("\r\n");
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&[b'{'; 100]).await.unwrap();
        let mut answer = [0; 12];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut answer))
            .await
            .expect("the server waited for the body")
            .unwrap();
        assert_eq!(
            &answer,
            b"HTTP/1.1 401",
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    server.stop().await;
}
