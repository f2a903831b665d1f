//! The OpenAPI document served at `/openapi.json`.

use axum::Json;
use rempart_proto::auth::HEADER_SIGNATURE;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{accounts, delivery, directory, inbox, keypackages, links, mail, push};

/// The API description, generated from the handlers and the wire types of
/// `rempart-proto`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Rempart server API",
        description = "Delivery service, accounts, KeyPackages, push, device linking and mail identity for Rempart. \
            The server stores public keys, signatures and MLS ciphertext only."
    ),
    paths(
        crate::health,
        accounts::register,
        accounts::device_list,
        accounts::replace_device_list,
        keypackages::upload,
        keypackages::status,
        keypackages::claim,
        keypackages::claim_batch,
        delivery::commit,
        delivery::message,
        delivery::log,
        inbox::read,
        inbox::ack,
        push::subscribe,
        links::create,
        links::put_request,
        links::read_request,
        links::put_response,
        links::take_response,
        directory::endpoints::info,
        directory::endpoints::latest_head,
        directory::endpoints::head,
        directory::endpoints::lookup,
        directory::endpoints::lookups,
        directory::endpoints::heads,
        directory::endpoints::history,
        directory::endpoints::audit,
        directory::endpoints::post_cosignature,
        mail::upload_certificate,
        mail::lookup,
        mail::history,
    ),
    // Frames a device sends on its WebSocket session (no path describes them).
    components(schemas(rempart_proto::api::SessionRequest)),
    modifiers(&SignedRequestScheme),
    tags(
        (name = "accounts", description = "User names and account-signed device lists"),
        (name = "keypackages", description = "MLS KeyPackages for adding offline devices"),
        (name = "delivery", description = "Group logs of MLS commits and messages"),
        (name = "inbox", description = "Per-device Welcome messages"),
        (name = "push", description = "WebSocket sessions: notifications, and application messages sent without a signature each"),
        (name = "links", description = "Device-linking rendezvous: sealed bytes relayed between an existing and a new device"),
        (name = "directory", description = "Key-transparency directory: signed epoch heads, akd proofs (protobuf) and witness cosignatures"),
        (name = "mail", description = "Mail identity: the accounts' OpenPGP certificates, and who holds an address, with directory proofs"),
    )
)]
pub struct ApiDoc;

/// Declares the `signed_request` security scheme that device endpoints use.
struct SignedRequestScheme;

impl Modify for SignedRequestScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "signed_request",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                HEADER_SIGNATURE,
                "Ed25519 signature by the device key over the method, path and query, \
                 body digest, device id, timestamp and nonce, which travel in the \
                 rempart-device, rempart-timestamp and rempart-nonce headers \
                 (see rempart_proto::auth).",
            ))),
        );
    }
}

/// Serves the OpenAPI document.
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
