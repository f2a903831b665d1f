//! The server's directory endpoints, as the witness calls them. Nothing here
//! trusts what it fetches: it only bounds and decodes it.

use std::time::Duration;

use rempart_proto::api::ErrorBody;
use rempart_proto::directory::{
    AuditResponse, COSIGNATURES_PATH, DIRECTORY_PATH, DirectoryInfo, HEAD_PATH,
    HeadWithCosignatures, PostCosignature, SignedHead, audit_path, head_path, heads_path,
};
use serde::de::DeserializeOwned;

/// Largest response body the witness reads (append-only proofs over many
/// epochs are the big ones).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// How long one request to the server may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest server error message kept in an error.
const MAX_ERROR_MESSAGE_CHARS: usize = 200;

/// Why a request to the server failed. None of these is proof of
/// misbehaviour: the server may be down, or the network in between.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request could not be sent or its answer not read.
    #[error("cannot reach {url}")]
    Unreachable {
        /// What was requested.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{url} answered {status}: {message}")]
    Status {
        /// What was requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message, shortened.
        message: String,
    },
    /// The server left out the head of an epoch it has published.
    #[error("the server did not send the head of epoch {0}")]
    Missing(u64),
    /// The answer is larger than [`MAX_RESPONSE_BYTES`].
    #[error("{url} sent more than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge {
        /// What was requested.
        url: String,
    },
    /// The answer is not the expected JSON.
    #[error("{url} sent something other than the expected JSON")]
    Malformed {
        /// What was requested.
        url: String,
        /// What did not parse.
        #[source]
        source: serde_json::Error,
    },
}

/// A client of one server's directory endpoints.
#[derive(Debug, Clone)]
pub(crate) struct DirectoryClient {
    http: reqwest::Client,
    /// The server's base URL, without a trailing slash.
    base: String,
}

impl DirectoryClient {
    /// A client of the server at `base`.
    pub(crate) fn new(base: &str) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// The server's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `GET /v1/directory`.
    pub(crate) async fn info(&self) -> Result<DirectoryInfo, FetchError> {
        self.get(DIRECTORY_PATH).await
    }

    /// The latest signed head, or `None` if no epoch is published yet.
    pub(crate) async fn latest_head(&self) -> Result<Option<SignedHead>, FetchError> {
        match self.get::<HeadWithCosignatures>(HEAD_PATH).await {
            Ok(latest) => Ok(Some(latest.head)),
            Err(FetchError::Status { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The signed head of `epoch`.
    pub(crate) async fn head(&self, epoch: u64) -> Result<SignedHead, FetchError> {
        let head: HeadWithCosignatures = self.get(&head_path(epoch)).await?;
        Ok(head.head)
    }

    /// The signed heads of epochs `from..=to` (at most
    /// [`MAX_HEADS_PER_REQUEST`](rempart_proto::limits::MAX_HEADS_PER_REQUEST)),
    /// oldest first.
    pub(crate) async fn heads(&self, from: u64, to: u64) -> Result<Vec<SignedHead>, FetchError> {
        let heads: Vec<HeadWithCosignatures> = self.get(&heads_path(from, to)).await?;
        Ok(heads.into_iter().map(|h| h.head).collect())
    }

    /// The append-only proof from `from` to `to`.
    pub(crate) async fn audit(&self, from: u64, to: u64) -> Result<AuditResponse, FetchError> {
        self.get(&audit_path(from, to)).await
    }

    /// Posts a cosignature.
    pub(crate) async fn post_cosignature(&self, post: &PostCosignature) -> Result<(), FetchError> {
        let url = format!("{}{COSIGNATURES_PATH}", self.base);
        let response = self.http.post(&url).json(post).send().await;
        let response = response.map_err(|source| FetchError::Unreachable {
            url: url.clone(),
            source: source.without_url(),
        })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(status_error(url, response).await)
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, FetchError> {
        let url = format!("{}{path}", self.base);
        let response = self.http.get(&url).send().await;
        let response = response.map_err(|source| FetchError::Unreachable {
            url: url.clone(),
            source: source.without_url(),
        })?;
        if !response.status().is_success() {
            return Err(status_error(url, response).await);
        }
        let body = read_bounded(&url, response).await?;
        serde_json::from_slice(&body).map_err(|source| FetchError::Malformed { url, source })
    }
}

/// Reads a body of at most [`MAX_RESPONSE_BYTES`].
async fn read_bounded(url: &str, mut response: reqwest::Response) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: url.to_owned(),
    };
    if response
        .content_length()
        .is_some_and(|length| length > MAX_RESPONSE_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|source| FetchError::Unreachable {
                url: url.to_owned(),
                source: source.without_url(),
            })?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
}

/// The error for a non-success answer, with the server's message if it
/// sent one.
async fn status_error(url: String, response: reqwest::Response) -> FetchError {
    let status = response.status();
    let message = match read_bounded(&url, response).await {
        Ok(body) => serde_json::from_slice::<ErrorBody>(&body)
            .map(|error| error.message)
            .unwrap_or_else(|_| status.canonical_reason().unwrap_or("").to_owned()),
        Err(_) => String::new(),
    };
    FetchError::Status {
        url,
        status: status.as_u16(),
        message: message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect(),
    }
}
