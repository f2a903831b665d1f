//! Mail identity: the accounts' OpenPGP certificates, and who holds an
//! address.
//!
//! The server keeps each certificate under its fingerprint, and answers a
//! lookup of an address with its holder, the holder's current device list
//! (which binds the address to a fingerprint), the directory's proofs that
//! the address and the user are both published with that list, and the
//! certificate. Clients check all of it; the server only stores and serves.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use rempart_proto::DeviceList;
use rempart_proto::api::ErrorBody;
use rempart_proto::directory::HistoryResponse;
use rempart_proto::limits::MAX_MAIL_CERTIFICATE_BYTES;
use rempart_proto::mail::{
    MailCertificateUpload, MailLookupRequest, MailLookupResponse, certificate_fits,
};

use crate::AppState;
use crate::auth::{SignedRequest, body_error, parse_json};
use crate::directory::endpoints::{directory, found};
use crate::error::ApiError;

/// Keeps one of the signing account's OpenPGP certificates, served to
/// whoever looks up an address its device list binds to it.
#[utoipa::path(
    post,
    path = "/v1/mail/certificates",
    tag = "mail",
    request_body = MailCertificateUpload,
    responses(
        (status = 204, description = "The certificate is kept"),
        (status = 400, description = "Empty certificate, or the account holds too many", body = ErrorBody),
        (status = 401, description = "Request authentication refused", body = ErrorBody),
        (status = 409, description = "Another account holds this fingerprint", body = ErrorBody),
        (status = 413, description = "The certificate is too large", body = ErrorBody),
    ),
    security(("signed_request" = []))
)]
pub(crate) async fn upload_certificate(
    State(state): State<AppState>,
    request: SignedRequest,
) -> Result<axum::http::StatusCode, ApiError> {
    let upload: MailCertificateUpload = request.json()?;
    if upload.certificate.len() > MAX_MAIL_CERTIFICATE_BYTES {
        return Err(ApiError::PayloadTooLarge {
            what: "a certificate",
            limit: MAX_MAIL_CERTIFICATE_BYTES,
        });
    }
    if !certificate_fits(&upload.certificate) {
        return Err(ApiError::BadRequest("the certificate is empty".into()));
    }
    state
        .store
        .put_mail_certificate(request.user, upload.fingerprint, upload.certificate)
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Who holds a mail address: the user, the user's current device list
/// binding the address, the directory's lookup proofs of the address and of
/// the user at one epoch, and the bound certificate.
#[utoipa::path(
    post,
    path = "/v1/mail/lookup",
    tag = "mail",
    request_body = MailLookupRequest,
    responses(
        (status = 200, description = "The holder, proofs and certificate", body = MailLookupResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 404, description = "No account holds the address, or it is not published yet", body = ErrorBody),
    )
)]
pub(crate) async fn lookup(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MailLookupResponse>, ApiError> {
    let body = body.map_err(|rejection| body_error(rejection, state.max_body_bytes))?;
    let MailLookupRequest { address } = parse_json(&body)?;
    let Some(user) = state.store.mail_holder(&address).await? else {
        return Err(ApiError::NotFound(format!(
            "no account on this server holds {address}"
        )));
    };
    let mut answer = found(directory(&state)?.mail_lookup(&address, &user).await?)?;
    let fingerprint = serde_json::from_slice::<DeviceList>(&answer.device_list.list)
        .ok()
        .and_then(|list| list.mail_fingerprint(&address).cloned())
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{user}'s current device list does not bind {address}"
            ))
        })?;
    answer.certificate = state
        .store
        .mail_certificate(&user, &fingerprint)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{user} has not uploaded the certificate {fingerprint}"
            ))
        })?;
    Ok(Json(answer))
}

/// The complete key history of a mail address's directory label: every
/// device list it was published with, and the akd history proof. What the
/// address's owner checks, so that a binding made and undone between two
/// of its checks is still seen.
#[utoipa::path(
    post,
    path = "/v1/mail/history",
    tag = "mail",
    request_body = MailLookupRequest,
    responses(
        (status = 200, description = "The proof, its head and every device list, oldest first", body = HistoryResponse),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 404, description = "The address is not in the directory", body = ErrorBody),
    )
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<HistoryResponse>, ApiError> {
    let body = body.map_err(|rejection| body_error(rejection, state.max_body_bytes))?;
    let MailLookupRequest { address } = parse_json(&body)?;
    found(directory(&state)?.mail_history(&address).await?).map(Json)
}
