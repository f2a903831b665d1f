//! KeyPackages: how a device can be added to a group while it is offline.
//!
//! Each device uploads a batch of one-time KeyPackages and one last-resort
//! KeyPackage. A claim hands out, for each device of a user, one one-time
//! package, deleted in the same transaction so it is never handed out twice,
//! or else the last-resort package, flagged so the client can tell. The
//! claiming device never gets its own package: it needs none. A batch claim
//! does the same for up to [`MAX_USERS_PER_BATCH`] users in one transaction.
//! The packages are opaque to the server; it only enforces size and count
//! limits.

use axum::Json;
use axum::extract::{Path, State};
use rempart_proto::api::{
    ClaimRequest, ClaimedKeyPackages, ErrorBody, KeyPackageStatus, KeyPackageUpload,
};
use rempart_proto::limits::{
    MAX_KEY_PACKAGE_BYTES, MAX_KEY_PACKAGES_PER_UPLOAD, MAX_USERS_PER_BATCH,
};

use crate::AppState;
use crate::accounts::parse_user;
use crate::auth::SignedRequest;
use crate::error::ApiError;

/// Stores one-time KeyPackages of the signing device and replaces its
/// last-resort one, if given.
#[utoipa::path(
    post,
    path = "/v1/keypackages",
    tag = "keypackages",
    request_body = KeyPackageUpload,
    responses(
        (status = 200, description = "What the server now holds for the device", body = KeyPackageStatus),
        (status = 400, description = "Empty package, or too many packages", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 413, description = "A package or the body is too large", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn upload(
    State(state): State<AppState>,
    request: SignedRequest,
) -> Result<Json<KeyPackageStatus>, ApiError> {
    let upload: KeyPackageUpload = request.json()?;
    if upload.one_time.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
        return Err(ApiError::BadRequest(format!(
            "{} one-time KeyPackages in one upload, more than the limit of {MAX_KEY_PACKAGES_PER_UPLOAD}",
            upload.one_time.len()
        )));
    }
    for package in upload.one_time.iter().chain(&upload.last_resort) {
        if package.is_empty() {
            return Err(ApiError::BadRequest("a KeyPackage is empty".into()));
        }
        if package.len() > MAX_KEY_PACKAGE_BYTES {
            return Err(ApiError::PayloadTooLarge {
                what: "a KeyPackage",
                limit: MAX_KEY_PACKAGE_BYTES,
            });
        }
    }
    let status = state
        .store
        .upload_key_packages(request.device, upload)
        .await?;
    Ok(Json(status))
}

/// How many KeyPackages the server holds for the signing device.
#[utoipa::path(
    get,
    path = "/v1/keypackages",
    tag = "keypackages",
    responses(
        (status = 200, description = "What the server holds for the device", body = KeyPackageStatus),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    request: SignedRequest,
) -> Result<Json<KeyPackageStatus>, ApiError> {
    Ok(Json(state.store.key_package_status(request.device).await?))
}

/// Claims one KeyPackage for each current device of a user, except the
/// signing device.
#[utoipa::path(
    post,
    path = "/v1/accounts/{user}/keypackages/claim",
    tag = "keypackages",
    params(("user" = String, Path, description = "The user whose devices to claim for")),
    responses(
        (status = 200, description = "One package per device that has one", body = ClaimedKeyPackages),
        (status = 400, description = "Invalid user name", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 429, description = "Too many claims by this account, or of this user (`Retry-After`)", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn claim(
    State(state): State<AppState>,
    Path(user): Path<String>,
    request: SignedRequest,
) -> Result<Json<ClaimedKeyPackages>, ApiError> {
    let user = parse_user(&user)?;
    state.limits.claim(&request.user, [&user])?;
    let packages = state
        .store
        .claim_key_packages(request.device, &user)
        .await?;
    Ok(Json(ClaimedKeyPackages { packages }))
}

/// Claims one KeyPackage for each current device of several users, except
/// the signing device, in one transaction. Unknown users are left out.
#[utoipa::path(
    post,
    path = "/v1/keypackages/claim",
    tag = "keypackages",
    request_body = ClaimRequest,
    responses(
        (status = 200, description = "One package per device that has one, each naming its user", body = ClaimedKeyPackages),
        (status = 400, description = "Malformed body or more users than allowed", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 429, description = "Too many claims by this account, or of one of these users (`Retry-After`)", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn claim_batch(
    State(state): State<AppState>,
    request: SignedRequest,
) -> Result<Json<ClaimedKeyPackages>, ApiError> {
    let ClaimRequest { users } = request.json()?;
    check_batch(users.len())?;
    state.limits.claim(&request.user, &users)?;
    let packages = state
        .store
        .claim_key_packages_batch(request.device, users)
        .await?;
    Ok(Json(ClaimedKeyPackages { packages }))
}

/// Refuses a batch request naming more than [`MAX_USERS_PER_BATCH`] users.
pub(crate) fn check_batch(users: usize) -> Result<(), ApiError> {
    if users > MAX_USERS_PER_BATCH {
        return Err(ApiError::BadRequest(format!(
            "{users} users in one request, more than the limit of {MAX_USERS_PER_BATCH}"
        )));
    }
    Ok(())
}
