//! Registration by invitation, for closed servers.
//!
//! With `rempart-server --invitations FILE`, a new account needs one of the
//! codes listed in FILE (one per line; blank lines and lines starting with
//! `#` are ignored). Each code admits one account: the database records the
//! code's SHA-256 with the account it admitted, in the registration's own
//! transaction, and never the code. The file is read at every registration,
//! so codes are added or withdrawn by editing it, without a restart.

use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::error::ApiError;

/// The SHA-256 of `code` as the database records it.
fn hash(code: &str) -> [u8; 32] {
    Sha256::digest(code.trim().as_bytes()).into()
}

/// The recorded form of `code` if `file` lists it.
pub(crate) async fn admits(file: &Path, code: &str) -> Result<[u8; 32], ApiError> {
    let listed = tokio::fs::read_to_string(file)
        .await
        .map_err(|source| ApiError::Invitations {
            path: file.to_owned(),
            source,
        })?;
    let wanted = hash(code);
    let known = listed
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .any(|line| hash(line) == wanted);
    if code.trim().is_empty() || !known {
        return Err(ApiError::InvitationUnknown);
    }
    Ok(wanted)
}
