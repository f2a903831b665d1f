//! The API's error responses.
//!
//! Every refusal is an [`ApiError`], answered as a status code and a JSON
//! [`ErrorBody`] with a stable code from [`error_code`]. Server-side failures
//! are logged here and answered with a generic message: internal details never
//! reach the client.

use std::time::Duration;

use axum::Json;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rempart_proto::api::{ErrorBody, error_code};
use rempart_proto::auth::AuthError;
use rempart_proto::local::error_chain;
use rempart_proto::{DeviceId, DeviceListError, IdError};

use crate::directory::DirectoryServiceError;
use crate::rate::Rate;
use crate::store::StoreError;

/// What a 503 answer's `Retry-After` asks for, in seconds.
const RETRY_AFTER_SECS: &str = "1";

/// Whole seconds to wait for `wait`, at least one.
fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A user name in the path or body is not valid.
    #[error(transparent)]
    InvalidUserName(IdError),
    /// The signed-request headers are missing, malformed, stale or do not verify.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The signing device is not registered.
    #[error("device {0} is not registered")]
    UnknownDevice(DeviceId),
    /// A submitted device list is not acceptable.
    #[error("invalid device list: {0}")]
    InvalidDeviceList(#[from] DeviceListError),
    /// A device list is acceptable but not as the account's first one.
    #[error("{0}")]
    NotFirstDeviceList(String),
    /// The endpoint exists but not with this method.
    #[error("this endpoint does not take this method")]
    MethodNotAllowed,
    /// The device may not act on this resource.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing at this path.
    #[error("{0}")]
    NotFound(String),
    /// The body, or a message in it, is larger than allowed.
    #[error("{what} is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// This server registers by invitation only, and none came.
    #[error(
        "this server registers accounts by invitation only: ask its operator for an invitation code and give it to `rempart init --invitation CODE`"
    )]
    InvitationRequired,
    /// The invitation code is not one of this server's.
    #[error(
        "this invitation code is not one of this server's: check it with whoever gave it to you"
    )]
    InvitationUnknown,
    /// The invitations file could not be read.
    #[error("cannot read the invitations file {}", path.display())]
    Invitations {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A rate limit refused the request.
    #[error(
        "too many {what}: the limit is {rate}; try again in {} s",
        retry_secs(*retry_after)
    )]
    RateLimited {
        /// What the limit counts.
        what: &'static str,
        /// The limit.
        rate: Rate,
        /// How long until the request may be made again.
        retry_after: Duration,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key-transparency directory failed.
    #[error(transparent)]
    Directory(#[from] DirectoryServiceError),
}

impl ApiError {
    /// Status, stable code and (for a stale epoch) the group's current epoch.
    fn classify(&self) -> (StatusCode, &'static str, Option<u64>) {
        use StatusCode as S;
        use error_code as c;
        match self {
            Self::BadRequest(_) => (S::BAD_REQUEST, c::BAD_REQUEST, None),
            Self::InvalidUserName(_) => (S::BAD_REQUEST, c::INVALID_USER_NAME, None),
            Self::Auth(AuthError::BadSignature) => (S::UNAUTHORIZED, c::BAD_SIGNATURE, None),
            Self::Auth(AuthError::ClockSkew { .. }) => (S::UNAUTHORIZED, c::CLOCK_SKEW, None),
            Self::Auth(_) => (S::UNAUTHORIZED, c::UNAUTHENTICATED, None),
            Self::UnknownDevice(_) => (S::UNAUTHORIZED, c::UNKNOWN_DEVICE, None),
            Self::InvalidDeviceList(_) | Self::NotFirstDeviceList(_) => {
                (S::BAD_REQUEST, c::INVALID_DEVICE_LIST, None)
            }
            Self::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, c::BAD_REQUEST, None),
            Self::Forbidden(_) => (S::FORBIDDEN, c::FORBIDDEN, None),
            Self::NotFound(_) => (S::NOT_FOUND, c::NOT_FOUND, None),
            Self::PayloadTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, c::PAYLOAD_TOO_LARGE, None),
            Self::RateLimited { .. } => (S::TOO_MANY_REQUESTS, c::RATE_LIMITED, None),
            Self::InvitationRequired => (S::FORBIDDEN, c::INVITATION_REQUIRED, None),
            Self::InvitationUnknown => (S::FORBIDDEN, c::INVITATION_INVALID, None),
            Self::Invitations { .. } => (S::INTERNAL_SERVER_ERROR, c::INTERNAL, None),
            Self::Directory(DirectoryServiceError::Store(StoreError::Unavailable))
            | Self::Directory(DirectoryServiceError::NotReady(_))
            | Self::Store(StoreError::Unavailable) => {
                (S::SERVICE_UNAVAILABLE, c::UNAVAILABLE, None)
            }
            Self::Directory(_) => (S::INTERNAL_SERVER_ERROR, c::INTERNAL, None),
            Self::Store(error) => match error {
                StoreError::NameTaken(_) => (S::CONFLICT, c::NAME_TAKEN, None),
                StoreError::InvitationUsed => (S::FORBIDDEN, c::INVITATION_INVALID, None),
                StoreError::DeviceTaken(_) | StoreError::StaleDeviceList { .. } => {
                    (S::CONFLICT, c::INVALID_DEVICE_LIST, None)
                }
                StoreError::AccountKeyChanged => (S::BAD_REQUEST, c::INVALID_DEVICE_LIST, None),
                StoreError::UnknownUser(_) | StoreError::UnknownGroup(_) => {
                    (S::NOT_FOUND, c::NOT_FOUND, None)
                }
                StoreError::MailAddressTaken(_) | StoreError::MailCertificateTaken(_) => {
                    (S::CONFLICT, c::MAIL_ADDRESS_TAKEN, None)
                }
                StoreError::UnknownDevice(_)
                | StoreError::TooManyKeyPackages { .. }
                | StoreError::TooManyMailCertificates
                | StoreError::OutOfRange(_) => (S::BAD_REQUEST, c::BAD_REQUEST, None),
                StoreError::NotOwnDevice { .. } | StoreError::NotMember { .. } => {
                    (S::FORBIDDEN, c::FORBIDDEN, None)
                }
                StoreError::ReplayedNonce => (S::UNAUTHORIZED, c::REPLAYED_NONCE, None),
                StoreError::StaleEpoch { current } => (S::CONFLICT, c::STALE_EPOCH, Some(*current)),
                StoreError::DuplicateMessageId(_) => (S::CONFLICT, c::DUPLICATE_MESSAGE_ID, None),
                StoreError::LinkExists | StoreError::LinkUsed(_) => {
                    (S::CONFLICT, c::LINK_USED, None)
                }
                StoreError::UnknownLink => (S::NOT_FOUND, c::NOT_FOUND, None),
                StoreError::NotLinkCreator { .. } => (S::FORBIDDEN, c::FORBIDDEN, None),
                StoreError::Corrupt(_)
                | StoreError::CommitFailed
                | StoreError::Closed
                | StoreError::Unavailable
                | StoreError::Backend(_) => (S::INTERNAL_SERVER_ERROR, c::INTERNAL, None),
            },
        }
    }
}

impl ApiError {
    /// The status and body this error is answered with, logged as it is
    /// answered (server errors in full, refusals by code only).
    pub(crate) fn into_parts(self) -> (StatusCode, ErrorBody) {
        let (status, code, current_epoch) = self.classify();
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %error_chain(&self), "request refused for now");
            "the server is unavailable for a moment; retry shortly (retrying a write is safe)"
                .to_owned()
        } else if status.is_server_error() {
            tracing::error!(error = %error_chain(&self), "request failed");
            "the server failed; nothing was stored".to_owned()
        } else {
            tracing::debug!(code, "request refused");
            self.to_string()
        };
        let retry_after_secs = match &self {
            Self::RateLimited { retry_after, .. } => Some(retry_secs(*retry_after)),
            _ => None,
        };
        let body = ErrorBody {
            error: code.to_owned(),
            message,
            current_epoch,
            retry_after_secs,
        };
        (status, body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.into_parts();
        if let Some(secs) = body.retry_after_secs {
            let retry = [(RETRY_AFTER, HeaderValue::from(secs))];
            return (status, retry, Json(body)).into_response();
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let retry = [(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS))];
            return (status, retry, Json(body)).into_response();
        }
        (status, Json(body)).into_response()
    }
}
