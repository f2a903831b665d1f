//! A request body has a deadline: a fixed allowance plus its declared
//! length at a minimum rate. A client that trickles a body (or stalls one
//! byte short of its length) is cut off then, and what it sent is freed,
//! instead of holding a buffer for as long as it likes.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, Bytes, HttpBody};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

/// The time every body gets, whatever its length.
pub const BODY_READ_ALLOWANCE: Duration = Duration::from_secs(10);

/// The slowest a body may arrive beyond [`BODY_READ_ALLOWANCE`], in bytes
/// per second.
pub const MIN_BODY_RATE: u64 = 16 * 1024;

/// How long a body of `declared` bytes (the limit if undeclared) may take,
/// with `allowance` for every body and `min_rate` bytes a second beyond.
pub(crate) fn allowed(
    declared: Option<u64>,
    limit: usize,
    allowance: Duration,
    min_rate: u64,
) -> Duration {
    let bytes = declared.map_or(limit as u64, |d| d.min(limit as u64));
    allowance + Duration::from_secs(bytes / min_rate.max(1))
}

/// The body did not arrive before its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(crate) struct BodyTooSlow;

/// A request body that fails once its deadline passes.
pub(crate) struct Deadlined {
    body: Body,
    deadline: Pin<Box<Sleep>>,
}

impl Deadlined {
    /// `body`, which must have arrived whole within `allowed`.
    pub(crate) fn new(body: Body, allowed: Duration) -> Self {
        Self {
            body,
            deadline: Box::pin(tokio::time::sleep(allowed)),
        }
    }
}

impl HttpBody for Deadlined {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BoxError::from)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTooSlow))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
