//! The delivery service: one append-only log per group.
//!
//! Every conversation is an MLS group whose messages the server stores in a
//! log ordered by `seq`. A commit carries the epoch it was built on and is
//! accepted only if that is the group's current epoch (first writer wins);
//! any other gets 409 `stale_epoch` with the current epoch, so the client
//! fetches, merges and retries. An application message is appended once,
//! whatever the group's size, and every member reads it from the log.
//!
//! The server tracks members only to authorise reads and pushes; it learns
//! them from the `add_devices`/`remove_devices` of signed commit uploads. The
//! MLS roster, which clients check, is the truth.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use rempart_proto::api::{
    Appended, CommitUpload, EntryKind, EpochQuery, ErrorBody, LogEntry, LogPage, PageQuery,
};
use rempart_proto::limits::{
    INLINE_PUSH_BYTES, MAX_DEVICES_PER_COMMIT, MAX_MESSAGE_BYTES, MAX_PAGE,
};
use rempart_proto::{DeviceId, GroupId, MessageId};

use crate::AppState;
use crate::auth::SignedRequest;
use crate::error::ApiError;
use crate::relay::Pushes;
use crate::store::Store;

/// Appends an MLS commit to a group's log and advances its epoch.
///
/// A group that does not exist is created by a commit built on epoch 0, with
/// the committing device as its first member. A retry with the same
/// `message_id` and content returns the first result.
#[utoipa::path(
    post,
    path = "/v1/groups/{group}/commits",
    tag = "delivery",
    params(("group" = String, Path, description = "The group id")),
    request_body = CommitUpload,
    responses(
        (status = 200, description = "Where the commit landed", body = Appended),
        (status = 400, description = "Malformed upload or an added device is unknown", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 403, description = "The device is not a member", body = ErrorBody),
        (status = 404, description = "No such group (and the commit is not built on epoch 0)", body = ErrorBody),
        (status = 409, description = "Stale epoch (with `current_epoch`) or a reused message id", body = ErrorBody),
        (status = 413, description = "The commit or Welcome is too large", body = ErrorBody),
        (status = 429, description = "Too many messages from this device (`Retry-After`)", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn commit(
    State(state): State<AppState>,
    Path(group): Path<String>,
    request: SignedRequest,
) -> Result<Json<Appended>, ApiError> {
    let group = parse_id::<GroupId>(&group)?;
    state
        .limits
        .send(&request.device, &request.user, request.body.len())?;
    let upload: CommitUpload = request.json()?;
    check_message(&upload.commit, "the commit")?;
    if let Some(welcome) = &upload.welcome {
        check_message(welcome, "the Welcome")?;
    }
    if upload.add_devices.len().max(upload.remove_devices.len()) > MAX_DEVICES_PER_COMMIT {
        return Err(ApiError::BadRequest(format!(
            "a commit may add or remove at most {MAX_DEVICES_PER_COMMIT} devices"
        )));
    }
    let outcome = state
        .store
        .append_commit(group, request.device, upload)
        .await?;
    if outcome.fresh {
        state.pushes.committed(
            group,
            request.device,
            outcome.appended.seq,
            outcome.welcomed,
        );
    }
    Ok(Json(outcome.appended))
}

/// Appends an MLS application message to a group's log.
///
/// A retry with the same `message_id` and content returns the first result.
#[utoipa::path(
    put,
    path = "/v1/groups/{group}/messages/{message_id}",
    tag = "delivery",
    params(
        ("group" = String, Path, description = "The group id"),
        ("message_id" = String, Path, description = "The client-chosen message id"),
        EpochQuery,
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The MLS message"),
    responses(
        (status = 200, description = "Where the message landed", body = Appended),
        (status = 400, description = "Empty message or malformed id", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 403, description = "The device is not a member", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "The message id is used for other content, or the message was encrypted in an epoch that is not the current one (`stale_epoch` with `current_epoch`)", body = ErrorBody),
        (status = 413, description = "The message is too large", body = ErrorBody),
        (status = 429, description = "Too many messages from this device (`Retry-After`)", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn message(
    State(state): State<AppState>,
    Path((group, message_id)): Path<(String, String)>,
    query: Result<Query<EpochQuery>, QueryRejection>,
    request: SignedRequest,
) -> Result<Json<Appended>, ApiError> {
    let group = parse_id::<GroupId>(&group)?;
    let message_id = parse_id::<MessageId>(&message_id)?;
    let Query(EpochQuery { epoch }) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid query: {e}")))?;
    state
        .limits
        .send(&request.device, &request.user, request.body.len())?;
    let appended = store_message(
        &*state.store,
        &state.pushes,
        group,
        request.device,
        message_id,
        epoch,
        request.body.to_vec(),
    )
    .await?;
    Ok(Json(appended))
}

/// Checks and appends an application message from `sender` (authenticated
/// by a signed request or by its session) and announces it to the group's
/// members; returns once it is durable.
pub(crate) async fn store_message(
    store: &dyn Store,
    pushes: &Pushes,
    group: GroupId,
    sender: DeviceId,
    message_id: MessageId,
    epoch: u64,
    data: Vec<u8>,
) -> Result<Appended, ApiError> {
    check_message(&data, "the message")?;
    // Small messages travel inside the push notice, so members need no read.
    let inline = (data.len() <= INLINE_PUSH_BYTES).then(|| data.clone());
    let outcome = store
        .append_message(group, sender, message_id, epoch, data)
        .await?;
    if outcome.fresh {
        let appended = outcome.appended;
        let entry = inline.map(|data| LogEntry {
            seq: appended.seq,
            kind: EntryKind::Application,
            epoch: appended.epoch,
            sender,
            message_id,
            data,
        });
        pushes.message(group, sender, appended.seq, entry);
    }
    Ok(outcome.appended)
}

/// Reads a group's log after a cursor.
#[utoipa::path(
    get,
    path = "/v1/groups/{group}/log",
    tag = "delivery",
    params(
        ("group" = String, Path, description = "The group id"),
        ("after" = Option<u64>, Query, description = "Return entries after this seq (default 0)"),
        ("limit" = Option<u32>, Query, description = "At most this many entries (default and maximum 500)"),
    ),
    responses(
        (status = 200, description = "Entries after the cursor, in `seq` order", body = LogPage),
        (status = 400, description = "Malformed id or query", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 403, description = "The device is not a member", body = ErrorBody),
        (status = 404, description = "No such group", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn log(
    State(state): State<AppState>,
    Path(group): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
    request: SignedRequest,
) -> Result<Json<LogPage>, ApiError> {
    let group = parse_id::<GroupId>(&group)?;
    let Query(page) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let log = state
        .store
        .read_log(group, request.device, page.after, page_limit(page.limit))
        .await?;
    Ok(Json(log))
}

/// The number of entries a page may hold: as asked, at most [`MAX_PAGE`].
pub(crate) fn page_limit(limit: Option<u32>) -> u32 {
    limit.map_or(MAX_PAGE, |limit| limit.min(MAX_PAGE))
}

/// Parses an identifier from a path (400 if malformed).
pub(crate) fn parse_id<T: std::str::FromStr<Err = rempart_proto::IdError>>(
    id: &str,
) -> Result<T, ApiError> {
    id.parse()
        .map_err(|e: rempart_proto::IdError| ApiError::BadRequest(e.to_string()))
}

fn check_message(data: &[u8], what: &'static str) -> Result<(), ApiError> {
    if data.is_empty() {
        return Err(ApiError::BadRequest(format!("{what} is empty")));
    }
    if data.len() > MAX_MESSAGE_BYTES {
        return Err(ApiError::PayloadTooLarge {
            what,
            limit: MAX_MESSAGE_BYTES,
        });
    }
    Ok(())
}
