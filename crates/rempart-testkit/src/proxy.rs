//! A malicious server in front of the real one: a proxy that forwards every
//! request to the real server and lets a test rewrite what comes back, per
//! client (each client under attack talks to its own proxy). Test-only: it
//! is not part of any server build.

use std::sync::{Arc, Mutex};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use rempart_proto::directory::{DirectoryHead, SignedHead};
use tokio::sync::oneshot;

/// What a rewrite sees of one exchange and may change: the request's method
/// and path with query, and the response's status and body.
#[derive(Debug)]
pub struct Exchange {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path and query, e.g. `/v1/directory/head`.
    pub path: String,
    /// The real server's status.
    pub status: u16,
    /// The real server's body.
    pub body: Vec<u8>,
}

type Rewrite = Arc<dyn Fn(&mut Exchange) + Send + Sync>;

/// Given a request's method and path, the status and body to answer it
/// with instead of the server, if any.
type Refusal = Arc<dyn Fn(&str, &str) -> Option<(u16, Vec<u8>)> + Send + Sync>;

/// Where a stalled request is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallAt {
    /// Before it reaches the server: the server never sees it.
    BeforeServer,
    /// After the server answered: the server acted, the client never hears.
    AfterServer,
}

/// Counts requests and may hold one of them for ever.
#[derive(Debug, Default)]
struct Gate {
    /// Requests seen since the last [`Proxy::stall`] or [`Proxy::count`].
    seen: usize,
    /// The request to hold (1 for the first after the reset), and where.
    stall: Option<(usize, StallAt)>,
}

/// A proxy listening on 127.0.0.1 in front of `upstream`.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`: give this to the client under attack.
    pub url: String,
    rewrite: Arc<Mutex<Option<Rewrite>>>,
    refusal: Arc<Mutex<Option<Refusal>>>,
    gate: Arc<Mutex<Gate>>,
    stalled: Arc<tokio::sync::Notify>,
    stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("url", &self.url).finish()
    }
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    rewrite: Arc<Mutex<Option<Rewrite>>>,
    refusal: Arc<Mutex<Option<Refusal>>>,
    gate: Arc<Mutex<Gate>>,
    stalled: Arc<tokio::sync::Notify>,
}

impl Proxy {
    /// Starts an honest proxy to `upstream` (call inside a tokio runtime).
    pub async fn start(upstream: &str) -> Self {
        let rewrite = Arc::new(Mutex::new(None));
        let refusal = Arc::new(Mutex::new(None));
        let gate = Arc::new(Mutex::new(Gate::default()));
        let stalled = Arc::new(tokio::sync::Notify::new());
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            rewrite: rewrite.clone(),
            refusal: refusal.clone(),
            gate: gate.clone(),
            stalled: stalled.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            rewrite,
            refusal,
            gate,
            stalled,
            stop: Some(stop),
        }
    }

    /// From now on, counts requests afresh and holds the `n`-th (from 1)
    /// for ever, at `at`; [`Proxy::stalled`] resolves once it is held.
    pub fn stall(&self, n: usize, at: StallAt) {
        let mut gate = self.gate.lock().unwrap();
        gate.seen = 0;
        gate.stall = Some((n, at));
    }

    /// Resolves once the request named by [`Proxy::stall`] is held.
    pub async fn stalled(&self) {
        self.stalled.notified().await;
    }

    /// Holds nothing any more, and counts requests afresh.
    pub fn release(&self) {
        *self.gate.lock().unwrap() = Gate::default();
    }

    /// Requests seen since the last [`Proxy::stall`] or [`Proxy::release`].
    pub fn requests(&self) -> usize {
        self.gate.lock().unwrap().seen
    }

    /// From now on, every response passes through `rewrite`.
    pub fn rewrite(&self, rewrite: impl Fn(&mut Exchange) + Send + Sync + 'static) {
        *self.rewrite.lock().unwrap() = Some(Arc::new(rewrite));
    }

    /// From now on, a request for which `refuse(method, path)` gives a
    /// status and body is answered with them and never reaches the server.
    pub fn refuse(
        &self,
        refuse: impl Fn(&str, &str) -> Option<(u16, Vec<u8>)> + Send + Sync + 'static,
    ) {
        *self.refusal.lock().unwrap() = Some(Arc::new(refuse));
    }

    /// Back to forwarding honestly.
    pub fn honest(&self) {
        *self.rewrite.lock().unwrap() = None;
        *self.refusal.lock().unwrap() = None;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Whether this request is the one to hold at `at` (counting it once, when
/// it arrives).
fn hold(shared: &Shared, at: StallAt, arriving: bool, number: &mut usize) -> bool {
    let mut gate = shared.gate.lock().unwrap();
    if arriving {
        gate.seen += 1;
        *number = gate.seen;
    }
    gate.stall == Some((*number, at))
}

async fn stall_for_ever(shared: &Shared) -> Response {
    shared.stalled.notify_one();
    std::future::pending::<()>().await;
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let mut number = 0;
    if hold(&shared, StallAt::BeforeServer, true, &mut number) {
        return stall_for_ever(&shared).await;
    }
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let refusal = shared.refusal.lock().unwrap().clone();
    if let Some((status, body)) = refusal.and_then(|refuse| refuse(parts.method.as_str(), &path)) {
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return response;
    }
    let body = to_bytes(body, usize::MAX).await.unwrap();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
    let mut outgoing = shared
        .http
        .request(method, format!("{}{path}", shared.upstream))
        .body(body.to_vec());
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    let Ok(answer) = outgoing.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status().as_u16();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let body = answer.bytes().await.unwrap_or_default().to_vec();
    if hold(&shared, StallAt::AfterServer, false, &mut number) {
        return stall_for_ever(&shared).await;
    }
    let mut exchange = Exchange {
        method: parts.method.to_string(),
        path,
        status,
        body,
    };
    let rewrite = shared.rewrite.lock().unwrap().clone();
    if let Some(rewrite) = rewrite {
        rewrite(&mut exchange);
    }
    let mut response = Response::new(Body::from(exchange.body));
    *response.status_mut() = StatusCode::from_u16(exchange.status).unwrap();
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    } else {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    response
}

/// Signs `head` with the server's directory key from its data directory:
/// what an operator holding that key can serve.
pub fn sign_head(data_dir: &std::path::Path, head: &DirectoryHead) -> SignedHead {
    let seed: [u8; 32] = std::fs::read(data_dir.join("directory.key"))
        .unwrap()
        .try_into()
        .unwrap();
    SignedHead::sign(head, &ed25519_dalek::SigningKey::from_bytes(&seed))
}
