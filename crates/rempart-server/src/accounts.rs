//! Accounts: registration and account-signed device lists.
//!
//! The server cannot create or change a device list: it only checks that a
//! submitted list is signed by the account key the user registered with, and
//! that its version moves forward. Clients verify the lists they fetch.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rempart_proto::api::{DeviceListAccepted, ErrorBody, RegisterRequest, RegisterResponse};
use rempart_proto::{SignedDeviceList, UserName};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{SignedRequest, Unverified, parse_json};
use crate::error::ApiError;
use crate::invitations;
use crate::store::AccountSignedDeviceList;

/// Registers a user name with its first device list.
///
/// The request is signed by a device named in that list (the server takes
/// its key from the list); the list must be version 1 and signed by the
/// account key it names.
#[utoipa::path(
    post,
    path = "/v1/accounts",
    tag = "accounts",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The account exists", body = RegisterResponse),
        (status = 400, description = "Invalid user name or device list", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 403, description = "By invitation only: no invitation code, or one unknown or used", body = ErrorBody),
        (status = 409, description = "The name or a device is already registered", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address (`Retry-After`)", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn register(
    State(state): State<AppState>,
    request: Unverified,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    let RegisterRequest {
        user,
        device_list,
        invitation,
    } = parse_register(request.body())?;
    let list = AccountSignedDeviceList::verify(device_list, &user)?;
    if list.list().version != 1 {
        return Err(ApiError::NotFirstDeviceList(format!(
            "a new account's device list must have version 1, not {}",
            list.list().version
        )));
    }
    let device = request.device();
    let key = list
        .list()
        .device(&device)
        .map(|entry| entry.signature_key)
        .ok_or(ApiError::UnknownDevice(device))?;
    request.verify(&key, state.store.as_ref()).await?;
    match &state.invitations {
        None => state.store.register(list).await?,
        Some(file) => {
            let code = invitation.ok_or(ApiError::InvitationRequired)?;
            let spent = invitations::admits(file, &code).await?;
            state.store.register_invited(list, spent).await?;
        }
    }
    Ok((StatusCode::CREATED, Json(RegisterResponse { user })))
}

/// Returns a user's current signed device list. Anyone may ask.
#[utoipa::path(
    get,
    path = "/v1/accounts/{user}/devices",
    tag = "accounts",
    params(("user" = String, Path, description = "The user name")),
    responses(
        (status = 200, description = "The signed device list", body = SignedDeviceList),
        (status = 400, description = "Invalid user name", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub(crate) async fn device_list(
    State(state): State<AppState>,
    Path(user): Path<String>,
) -> Result<Json<SignedDeviceList>, ApiError> {
    let user = parse_user(&user)?;
    let list = state
        .store
        .device_list(&user)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no account named {user}")))?;
    Ok(Json(list))
}

/// Replaces a user's device list, on behalf of one of its current devices.
///
/// The new list must be signed by the registered account key and have a
/// higher version. Removed devices lose their KeyPackages and inbox and can
/// no longer authenticate.
#[utoipa::path(
    put,
    path = "/v1/accounts/{user}/devices",
    tag = "accounts",
    params(("user" = String, Path, description = "The user name")),
    request_body = SignedDeviceList,
    responses(
        (status = 200, description = "The list is stored", body = DeviceListAccepted),
        (status = 400, description = "Invalid list or another account key", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 403, description = "The device is not one of the user's", body = ErrorBody),
        (status = 409, description = "Version not above the stored one, or a device id is taken", body = ErrorBody),
        (status = 429, description = "Too many device lists from this account (`Retry-After`)", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn replace_device_list(
    State(state): State<AppState>,
    Path(user): Path<String>,
    request: SignedRequest,
) -> Result<Json<DeviceListAccepted>, ApiError> {
    let user = parse_user(&user)?;
    if request.user != user {
        return Err(ApiError::Forbidden(format!(
            "device {} is not a device of {user}",
            request.device
        )));
    }
    state.limits.device_list(&user)?;
    let list = AccountSignedDeviceList::verify(request.json()?, &user)?;
    let version = list.list().version;
    let removed = state
        .store
        .replace_device_list(request.device, list)
        .await?;
    for device in removed {
        state.pushes.removed(device);
    }
    Ok(Json(DeviceListAccepted { version }))
}

/// Parses a user name from a path.
pub(crate) fn parse_user(user: &str) -> Result<UserName, ApiError> {
    user.parse().map_err(ApiError::InvalidUserName)
}

/// Parses a registration body, telling an invalid user name apart from other
/// malformed input.
fn parse_register(body: &[u8]) -> Result<RegisterRequest, ApiError> {
    #[derive(Deserialize)]
    struct UserOnly {
        user: String,
    }
    parse_json(body).map_err(|error| {
        match serde_json::from_slice::<UserOnly>(body).map(|u| u.user.parse::<UserName>()) {
            Ok(Err(invalid)) => ApiError::InvalidUserName(invalid),
            _ => error,
        }
    })
}
