//! The directory's HTTP endpoints. Every read is public; a witness posting a
//! cosignature is authenticated by the cosignature itself.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use rempart_proto::api::ErrorBody;
use rempart_proto::directory::{
    AuditQuery, AuditResponse, DirectoryInfo, HeadWithCosignatures, HeadsQuery, HistoryResponse,
    LookupResponse, LookupsRequest, LookupsResponse, PostCosignature,
};
use rempart_proto::limits::MAX_LOOKUPS_PER_REQUEST;

use super::epochs::{Answer, DirectoryService};
use crate::AppState;
use crate::accounts::parse_user;
use crate::auth::{body_error, parse_json};
use crate::error::ApiError;

/// The directory's server id, head-signing key and VRF public key.
#[utoipa::path(
    get,
    path = "/v1/directory",
    tag = "directory",
    responses((status = 200, description = "Who the directory is", body = DirectoryInfo))
)]
pub(crate) async fn info(State(state): State<AppState>) -> Result<Json<DirectoryInfo>, ApiError> {
    Ok(Json(directory(&state)?.info()))
}

/// The latest signed epoch head and its witness cosignatures.
#[utoipa::path(
    get,
    path = "/v1/directory/head",
    tag = "directory",
    responses(
        (status = 200, description = "The latest head", body = HeadWithCosignatures),
        (status = 404, description = "No epoch is published yet", body = ErrorBody),
    )
)]
pub(crate) async fn latest_head(
    State(state): State<AppState>,
) -> Result<Json<HeadWithCosignatures>, ApiError> {
    found(directory(&state)?.head(None).await?).map(Json)
}

/// The signed head of one epoch and its witness cosignatures.
#[utoipa::path(
    get,
    path = "/v1/directory/heads/{epoch}",
    tag = "directory",
    params(("epoch" = u64, Path, description = "The epoch")),
    responses(
        (status = 200, description = "The head", body = HeadWithCosignatures),
        (status = 400, description = "Not an epoch number", body = ErrorBody),
        (status = 404, description = "The epoch is not published", body = ErrorBody),
    )
)]
pub(crate) async fn head(
    State(state): State<AppState>,
    Path(epoch): Path<String>,
) -> Result<Json<HeadWithCosignatures>, ApiError> {
    let epoch = epoch
        .parse::<u64>()
        .map_err(|_| ApiError::BadRequest(format!("{epoch:?} is not an epoch number")))?;
    found(directory(&state)?.head(Some(epoch)).await?).map(Json)
}

/// The signed heads of a range of epochs with their cosignatures, oldest
/// first.
#[utoipa::path(
    get,
    path = "/v1/directory/heads",
    tag = "directory",
    params(HeadsQuery),
    responses(
        (status = 200, description = "The heads", body = Vec<HeadWithCosignatures>),
        (status = 400, description = "Not 1 <= from <= to <= latest epoch, or too many", body = ErrorBody),
    )
)]
pub(crate) async fn heads(
    State(state): State<AppState>,
    query: Result<Query<HeadsQuery>, QueryRejection>,
) -> Result<Json<Vec<HeadWithCosignatures>>, ApiError> {
    let Query(HeadsQuery { from, to }) =
        query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    found(directory(&state)?.heads(from, to).await?).map(Json)
}

/// A user's current device list with the akd lookup proof (protobuf) at the
/// latest epoch.
#[utoipa::path(
    get,
    path = "/v1/directory/lookup/{user}",
    tag = "directory",
    params(("user" = String, Path, description = "The user name")),
    responses(
        (status = 200, description = "The proof, its head and the device list", body = LookupResponse),
        (status = 400, description = "Invalid user name", body = ErrorBody),
        (status = 404, description = "The user is not in the directory", body = ErrorBody),
    )
)]
pub(crate) async fn lookup(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Json<LookupResponse>, ApiError> {
    let user = parse_user(&user)?;
    found(directory(&state)?.lookup(&user).await?).map(Json)
}

/// The current device lists of several users, each with its akd lookup
/// proof (protobuf), all at the latest epoch. Only lists newer than the
/// version the caller holds are sent; users with an update waiting for the
/// next epoch, and users without an account, are named.
#[utoipa::path(
    post,
    path = "/v1/directory/lookups",
    tag = "directory",
    request_body = LookupsRequest,
    responses(
        (status = 200, description = "The proofs, their head, the pending and unknown users", body = LookupsResponse),
        (status = 400, description = "Malformed body or more users than allowed", body = ErrorBody),
    )
)]
pub(crate) async fn lookups(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LookupsResponse>, ApiError> {
    let body = body.map_err(|rejection| body_error(rejection, state.max_body_bytes))?;
    let LookupsRequest { users } = parse_json(&body)?;
    if users.len() > MAX_LOOKUPS_PER_REQUEST {
        return Err(ApiError::BadRequest(format!(
            "{} users in one lookup request, more than the limit of {MAX_LOOKUPS_PER_REQUEST}",
            users.len()
        )));
    }
    Ok(Json(directory(&state)?.lookups(users).await?))
}

/// A user's complete key history with the akd history proof (protobuf) at
/// the latest epoch.
#[utoipa::path(
    get,
    path = "/v1/directory/history/{user}",
    tag = "directory",
    params(("user" = String, Path, description = "The user name")),
    responses(
        (status = 200, description = "The proof, its head and every device list, oldest first", body = HistoryResponse),
        (status = 400, description = "Invalid user name", body = ErrorBody),
        (status = 404, description = "The user is not in the directory", body = ErrorBody),
    )
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let user = parse_user(&user)?;
    found(directory(&state)?.history(&user).await?).map(Json)
}

/// The akd append-only proof (protobuf) from one epoch to a later one.
#[utoipa::path(
    get,
    path = "/v1/directory/audit",
    tag = "directory",
    params(AuditQuery),
    responses(
        (status = 200, description = "The proof and the two heads", body = AuditResponse),
        (status = 400, description = "Not 1 <= from < to <= latest epoch", body = ErrorBody),
    )
)]
pub(crate) async fn audit(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditResponse>, ApiError> {
    let Query(AuditQuery { from, to }) =
        query.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    found(directory(&state)?.audit(from, to).await?).map(Json)
}

/// Stores a witness's cosignature of an epoch's head. Idempotent: one
/// cosignature per witness key and epoch is kept.
#[utoipa::path(
    post,
    path = "/v1/directory/cosignatures",
    tag = "directory",
    request_body = PostCosignature,
    responses(
        (status = 204, description = "The cosignature is stored"),
        (status = 400, description = "Malformed, or does not verify against that epoch's head", body = ErrorBody),
    )
)]
pub(crate) async fn post_cosignature(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(|rejection| body_error(rejection, state.max_body_bytes))?;
    let post: PostCosignature = parse_json(&body)?;
    found(directory(&state)?.cosign(post).await?)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn directory(state: &AppState) -> Result<&Arc<DirectoryService>, ApiError> {
    state
        .directory
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this server runs no directory".into()))
}

pub(crate) fn found<T>(answer: Answer<T>) -> Result<T, ApiError> {
    match answer {
        Answer::Found(value) => Ok(value),
        Answer::Missing(message) => Err(ApiError::NotFound(message)),
        Answer::Refused(message) => Err(ApiError::BadRequest(message)),
    }
}
