//! Per-device inboxes: Welcome messages waiting for a device that was added
//! to a group. A device reads its own inbox by cursor and acknowledges
//! (deletes) what it has processed.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use rempart_proto::api::{Acked, ErrorBody, InboxAck, InboxPage, PageQuery};

use crate::AppState;
use crate::auth::SignedRequest;
use crate::delivery::page_limit;
use crate::error::ApiError;

/// Reads the signing device's inbox after a cursor.
#[utoipa::path(
    get,
    path = "/v1/inbox",
    tag = "inbox",
    params(
        ("after" = Option<u64>, Query, description = "Return items after this id (default 0)"),
        ("limit" = Option<u32>, Query, description = "At most this many items (default and maximum 500)"),
    ),
    responses(
        (status = 200, description = "Items after the cursor, in id order", body = InboxPage),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn read(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
    request: SignedRequest,
) -> Result<Json<InboxPage>, ApiError> {
    let Query(page) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let items = state
        .store
        .read_inbox(request.device, page.after, page_limit(page.limit))
        .await?;
    Ok(Json(items))
}

/// Deletes items from the signing device's inbox. Ids of other devices'
/// items are ignored.
#[utoipa::path(
    post,
    path = "/v1/inbox/ack",
    tag = "inbox",
    request_body = InboxAck,
    responses(
        (status = 200, description = "How many items were deleted", body = Acked),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn ack(
    State(state): State<AppState>,
    request: SignedRequest,
) -> Result<Json<Acked>, ApiError> {
    let InboxAck { ids } = request.json()?;
    let deleted = state.store.ack_inbox(request.device, ids).await?;
    Ok(Json(Acked { deleted }))
}
