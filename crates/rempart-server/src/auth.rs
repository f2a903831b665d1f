//! Authentication of signed requests (DESIGN.md §6, [`rempart_proto::auth`]).
//!
//! A device request is accepted only when, in this order: its declared
//! length is within the size limit (413), the four `rempart-*` headers parse
//! (401 `unauthenticated`), the timestamp is within [`MAX_CLOCK_SKEW_SECS`]
//! of the server clock (401 `clock_skew`), the device is registered (401
//! `unknown_device`), the body arrives within the size limit (413), the
//! signature covers the method, the path and query exactly as received and
//! the body (401 `bad_signature`), and the device never used the nonce
//! before (401 `replayed_nonce`). Only then is the nonce recorded; a refused
//! request leaves nothing behind. No body is read for a stranger: a request
//! that does not name a registered device with a current timestamp is
//! refused before its body is buffered.
//!
//! Registration is the one request whose device is not registered yet: its
//! handler takes the key from the submitted device list and calls
//! [`Unverified::verify`] itself.
//!
//! [`MAX_CLOCK_SKEW_SECS`]: rempart_proto::limits::MAX_CLOCK_SKEW_SECS

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use rempart_proto::auth::RequestAuth;
use rempart_proto::{DeviceId, PublicKey, UserName};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;
use crate::store::Store;

/// A request whose body was read and whose auth headers parsed, but whose
/// signature, timestamp and nonce are not checked yet. (No `Debug`: it
/// holds the body, which must never reach a log.)
pub(crate) struct Unverified {
    auth: RequestAuth,
    method: Method,
    path_and_query: String,
    body: Bytes,
}

impl Unverified {
    /// The device the request claims to come from.
    pub(crate) fn device(&self) -> DeviceId {
        self.auth.device
    }

    /// The body, not yet authenticated.
    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }

    /// Checks the timestamp and the signature under `key`, then consumes the
    /// nonce. Returns the authenticated body.
    pub(crate) async fn verify(
        self,
        key: &PublicKey,
        store: &dyn Store,
    ) -> Result<Bytes, ApiError> {
        let Self {
            auth,
            method,
            path_and_query,
            body,
        } = self;
        auth.check_skew(unix_now())?;
        auth.verify(key.verifying_key(), method.as_str(), &path_and_query, &body)?;
        store
            .consume_nonce(auth.device, auth.nonce, auth.timestamp)
            .await?;
        Ok(body)
    }
}

impl Unverified {
    /// Parses the auth headers and checks the timestamp, then reads the
    /// body, unless `check` refuses the claimed device first.
    async fn read(
        req: Request,
        state: &AppState,
        check: impl AsyncFnOnce(DeviceId) -> Result<(), ApiError>,
    ) -> Result<Self, ApiError> {
        let method = req.method().clone();
        let uri = req.uri();
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| uri.path(), |pq| pq.as_str())
            .to_owned();
        let auth = RequestAuth::from_headers(|name| {
            req.headers().get(name).and_then(|v| v.to_str().ok())
        })?;
        auth.check_skew(unix_now())?;
        check(auth.device).await?;
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_error(rejection, state.max_body_bytes))?;
        Ok(Self {
            auth,
            method,
            path_and_query,
            body,
        })
    }
}

impl FromRequest<AppState> for Unverified {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        Self::read(req, state, async |_| Ok(())).await
    }
}

/// A request signed by a registered device, checked for skew and replay.
/// (No `Debug`: it holds the body.)
pub(crate) struct SignedRequest {
    /// The device that signed it.
    pub(crate) device: DeviceId,
    /// The account the device belongs to.
    pub(crate) user: UserName,
    /// The body it signed.
    pub(crate) body: Bytes,
}

impl SignedRequest {
    /// Parses the body as JSON.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.body)
    }
}

impl FromRequest<AppState> for SignedRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let mut known = None;
        let request = Unverified::read(req, state, async |device| {
            known = Some(
                state
                    .store
                    .device(device)
                    .await?
                    .ok_or(ApiError::UnknownDevice(device))?,
            );
            Ok(())
        })
        .await?;
        let device = request.device();
        let record = known.ok_or(ApiError::UnknownDevice(device))?;
        let body = request
            .verify(&record.signature_key, state.store.as_ref())
            .await?;
        Ok(Self {
            device,
            user: record.user,
            body,
        })
    }
}

/// Parses a JSON request body.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// The server clock, in Unix seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The error for a body that could not be read: 413 beyond `limit`.
pub(crate) fn body_error(rejection: BytesRejection, limit: usize) -> ApiError {
    match rejection {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::PayloadTooLarge {
                what: "the request body",
                limit,
            }
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}
