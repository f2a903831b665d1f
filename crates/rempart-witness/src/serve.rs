//! The witness's own HTTP endpoints, all public and read-only:
//!
//! | method | path | answer |
//! |---|---|---|
//! | `GET` | `/v1/witness` | [`WitnessInfo`] |
//! | `GET` | `/v1/cosignatures/{epoch}` | the witness's [`Cosignature`] of that epoch (404 if none) |
//! | `GET` | `/v1/evidence` | every [`Evidence`] pair kept, oldest first |
//!
//! Errors are an [`ErrorBody`]; internal failures are logged, not returned.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rempart_proto::PublicKey;
use rempart_proto::api::ErrorBody;
use rempart_proto::directory::Cosignature;
use rempart_proto::local::error_chain;
use serde::{Deserialize, Serialize};

use crate::{Evidence, Witness, WitnessError};

/// `GET`: who the witness is and how far it verified ([`WitnessInfo`]).
pub const WITNESS_PATH: &str = "/v1/witness";
/// `GET`: every [`Evidence`] pair the witness kept.
pub const EVIDENCE_PATH: &str = "/v1/evidence";

/// `GET`: the witness's cosignature of `epoch`.
pub fn cosignature_path(epoch: u64) -> String {
    format!("/v1/cosignatures/{epoch}")
}

/// `GET /v1/witness`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessInfo {
    /// The witness's public key, base64 (what `rempart init --witness`
    /// takes).
    pub witness_key: PublicKey,
    /// The server id of the directory it follows, once pinned.
    pub server_id: Option<String>,
    /// The directory key it pinned.
    pub directory_key: Option<PublicKey>,
    /// The last epoch it verified and cosigned.
    pub verified_epoch: Option<u64>,
}

/// The witness's endpoints over `witness`.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route(WITNESS_PATH, get(info))
        .route("/v1/cosignatures/{epoch}", get(cosignature))
        .route(EVIDENCE_PATH, get(evidence))
        .with_state(witness)
}

async fn info(State(witness): State<Arc<Witness>>) -> Result<Json<WitnessInfo>, ApiError> {
    Ok(Json(witness.info().await?))
}

async fn cosignature(
    State(witness): State<Arc<Witness>>,
    Path(epoch): Path<String>,
) -> Result<Json<Cosignature>, ApiError> {
    let epoch: u64 = epoch
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{epoch:?} is not an epoch number")))?;
    witness
        .cosignature(epoch)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("this witness has not cosigned epoch {epoch}")))
}

async fn evidence(State(witness): State<Arc<Witness>>) -> Result<Json<Vec<Evidence>>, ApiError> {
    Ok(Json(witness.evidence().await?))
}

/// An endpoint's failure.
#[derive(Debug)]
enum ApiError {
    /// 400.
    BadRequest(String),
    /// 404.
    NotFound(String),
    /// 500; the cause is logged.
    Internal(WitnessError),
}

impl From<WitnessError> for ApiError {
    fn from(error: WitnessError) -> Self {
        Self::Internal(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, message) = match self {
            Self::BadRequest(message) => (StatusCode::BAD_REQUEST, "bad_request", message),
            Self::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", message),
            Self::Internal(error) => {
                tracing::error!(error = %error_chain(&error), "witness endpoint failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_owned(),
                )
            }
        };
        let body = ErrorBody {
            error: error.to_owned(),
            message,
            current_epoch: None,
            retry_after_secs: None,
        };
        (status, Json(body)).into_response()
    }
}
