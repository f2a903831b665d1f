//! Device-linking rendezvous: how a new device, which has no account yet,
//! and an existing device of the account exchange what they need to link.
//!
//! The existing device shows a one-time code and opens a link whose id is
//! derived from it (`POST /v1/links`, signed). The new device, which knows
//! the code, posts a sealed request without authenticating
//! (`PUT /v1/links/{link}/request`); the creating device reads it
//! (`GET /v1/links/{link}`, signed) and posts a sealed response
//! (`PUT /v1/links/{link}/response`, signed), which the new device fetches
//! (`GET /v1/links/{link}/response`, no authentication). Fetching the
//! response deletes the link.
//!
//! The server only relays the sealed bytes; it cannot read them, and what
//! the new device learns is worthless unless the account key then signs a
//! device list naming it. A link lives [`LINK_TTL_SECS`] seconds at most, and
//! each part is at most [`MAX_LINK_PAYLOAD_BYTES`] and can be posted once, so
//! the endpoints open to anyone cannot store more than that per link that a
//! registered device opened.
//!
//! [`LINK_TTL_SECS`]: rempart_proto::limits::LINK_TTL_SECS

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rempart_proto::LinkId;
use rempart_proto::api::{ErrorBody, LinkCreate, LinkState};
use rempart_proto::limits::MAX_LINK_PAYLOAD_BYTES;

use crate::AppState;
use crate::auth::{SignedRequest, body_error, unix_now};
use crate::delivery::parse_id;
use crate::error::ApiError;

/// Opens a link rendezvous for the signing device.
#[utoipa::path(
    post,
    path = "/v1/links",
    tag = "links",
    request_body = LinkCreate,
    responses(
        (status = 201, description = "The link is open for LINK_TTL_SECS seconds"),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 409, description = "A link with this id is open (`link_used`): pick another code", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    request: SignedRequest,
) -> Result<StatusCode, ApiError> {
    let LinkCreate { link } = request.json()?;
    state
        .store
        .create_link(request.device, link, unix_now())
        .await?;
    Ok(StatusCode::CREATED)
}

/// Posts the new device's sealed request. No authentication: the new device
/// has no account yet. A link takes one request.
#[utoipa::path(
    put,
    path = "/v1/links/{link}/request",
    tag = "links",
    params(("link" = String, Path, description = "The link id")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The sealed request"),
    responses(
        (status = 204, description = "The request is stored"),
        (status = 400, description = "Empty payload or malformed id", body = ErrorBody),
        (status = 404, description = "No such link, or it expired", body = ErrorBody),
        (status = 409, description = "A request was already posted (`link_used`)", body = ErrorBody),
        (status = 413, description = "The payload is too large", body = ErrorBody),
    )
)]
pub(crate) async fn put_request(
    State(state): State<AppState>,
    Path(link): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let link = parse_id::<LinkId>(&link)?;
    let body = body.map_err(|rejection| body_error(rejection, payload_limit(&state)))?;
    check_payload(&body)?;
    state
        .store
        .put_link_request(link, body.to_vec(), unix_now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reads the sealed request, for the device that opened the link.
#[utoipa::path(
    get,
    path = "/v1/links/{link}",
    tag = "links",
    params(("link" = String, Path, description = "The link id")),
    responses(
        (status = 200, description = "The sealed request, once posted", body = LinkState),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 403, description = "The device did not open the link", body = ErrorBody),
        (status = 404, description = "No such link, or it expired", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn read_request(
    State(state): State<AppState>,
    Path(link): Path<String>,
    request: SignedRequest,
) -> Result<Json<LinkState>, ApiError> {
    let link = parse_id::<LinkId>(&link)?;
    let sealed = state
        .store
        .link_request(request.device, link, unix_now())
        .await?;
    Ok(Json(LinkState { sealed }))
}

/// Posts the sealed response, by the device that opened the link, once.
#[utoipa::path(
    put,
    path = "/v1/links/{link}/response",
    tag = "links",
    params(("link" = String, Path, description = "The link id")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The sealed response"),
    responses(
        (status = 204, description = "The response is stored"),
        (status = 400, description = "Empty payload or malformed id", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 403, description = "The device did not open the link", body = ErrorBody),
        (status = 404, description = "No such link, or it expired", body = ErrorBody),
        (status = 409, description = "A response was already posted (`link_used`)", body = ErrorBody),
        (status = 413, description = "The payload is too large", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn put_response(
    State(state): State<AppState>,
    Path(link): Path<String>,
    request: SignedRequest,
) -> Result<StatusCode, ApiError> {
    let link = parse_id::<LinkId>(&link)?;
    check_payload(&request.body)?;
    state
        .store
        .put_link_response(request.device, link, request.body.to_vec(), unix_now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Fetches the sealed response. No authentication. Once it returns a
/// response, the link is deleted: later calls answer 404.
#[utoipa::path(
    get,
    path = "/v1/links/{link}/response",
    tag = "links",
    params(("link" = String, Path, description = "The link id")),
    responses(
        (status = 200, description = "The sealed response, once posted (the link is then deleted)", body = LinkState),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 404, description = "No such link, it expired, or its response was fetched", body = ErrorBody),
    )
)]
pub(crate) async fn take_response(
    State(state): State<AppState>,
    Path(link): Path<String>,
) -> Result<Json<LinkState>, ApiError> {
    let link = parse_id::<LinkId>(&link)?;
    let sealed = state.store.take_link_response(link, unix_now()).await?;
    Ok(Json(LinkState { sealed }))
}

/// The body limit of the unauthenticated request upload: the payload limit,
/// or the server's body limit if lower.
pub(crate) fn payload_limit(state: &AppState) -> usize {
    state.max_body_bytes.min(MAX_LINK_PAYLOAD_BYTES)
}

fn check_payload(sealed: &[u8]) -> Result<(), ApiError> {
    if sealed.is_empty() {
        return Err(ApiError::BadRequest("the sealed payload is empty".into()));
    }
    if sealed.len() > MAX_LINK_PAYLOAD_BYTES {
        return Err(ApiError::PayloadTooLarge {
            what: "the sealed payload",
            limit: MAX_LINK_PAYLOAD_BYTES,
        });
    }
    Ok(())
}
