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
