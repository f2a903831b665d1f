//! Mail addresses and the accounts' OpenPGP certificates.

use deadpool_postgres::{Client, Transaction};
use rempart_proto::limits::MAX_MAIL_CERTIFICATES_PER_ACCOUNT;
use rempart_proto::mail::{Fingerprint, MailAddress};
use rempart_proto::{DeviceList, UserName};

use crate::store::StoreError;

/// Gives `list`'s user every address the list binds that no account holds
/// yet; one another account holds is [`StoreError::MailAddressTaken`].
/// Runs in the caller's transaction: a concurrent claim of the same
/// address waits for this one's outcome.
pub(super) async fn claim_addresses(
    tx: &Transaction<'_>,
    list: &DeviceList,
) -> Result<(), StoreError> {
    let claim = tx
        .prepare_cached(
            "INSERT INTO mail_addresses (address, user_name) VALUES ($1, $2)
             ON CONFLICT (address) DO NOTHING",
        )
        .await?;
    let holder = tx
        .prepare_cached("SELECT user_name FROM mail_addresses WHERE address = $1")
        .await?;
    for binding in &list.mail {
        let address = binding.address.as_str();
        tx.execute(&claim, &[&address, &list.user.as_str()]).await?;
        let held: String = tx.query_one(&holder, &[&address]).await?.try_get(0)?;
        if held != list.user.as_str() {
            return Err(StoreError::MailAddressTaken(binding.address.clone()));
        }
    }
    Ok(())
}

/// [`Store::put_mail_certificate`](crate::store::Store::put_mail_certificate).
pub(super) async fn put_certificate(
    tx: &Transaction<'_>,
    user: &UserName,
    fingerprint: &Fingerprint,
    certificate: &[u8],
) -> Result<(), StoreError> {
    // The account's row lock makes its uploads take turns, so the count
    // below stays true until this one commits.
    let lock = tx
        .prepare_cached("SELECT 1 FROM accounts WHERE user_name = $1 FOR NO KEY UPDATE")
        .await?;
    if tx.query_opt(&lock, &[&user.as_str()]).await?.is_none() {
        return Err(StoreError::UnknownUser(user.clone()));
    }
    let owner = tx
        .prepare_cached("SELECT user_name FROM mail_certificates WHERE fingerprint = $1")
        .await?;
    let owner: Option<String> = tx
        .query_opt(&owner, &[&fingerprint.as_str()])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    match owner {
        Some(owner) if owner != user.as_str() => {
            return Err(StoreError::MailCertificateTaken(fingerprint.clone()));
        }
        Some(_) => {}
        None => {
            let count = tx
                .prepare_cached("SELECT count(*) FROM mail_certificates WHERE user_name = $1")
                .await?;
            let held: i64 = tx.query_one(&count, &[&user.as_str()]).await?.try_get(0)?;
            if usize::try_from(held).unwrap_or(usize::MAX) >= MAX_MAIL_CERTIFICATES_PER_ACCOUNT {
                return Err(StoreError::TooManyMailCertificates);
            }
        }
    }
    let upsert = tx
        .prepare_cached(
            "INSERT INTO mail_certificates (fingerprint, user_name, certificate)
             VALUES ($1, $2, $3)
             ON CONFLICT (fingerprint) DO UPDATE SET certificate = EXCLUDED.certificate
             WHERE mail_certificates.user_name = EXCLUDED.user_name",
        )
        .await?;
    let written = tx
        .execute(
            &upsert,
            &[&fingerprint.as_str(), &user.as_str(), &certificate],
        )
        .await?;
    if written == 0 {
        return Err(StoreError::MailCertificateTaken(fingerprint.clone()));
    }
    Ok(())
}

pub(super) async fn certificate(
    conn: &Client,
    user: &UserName,
    fingerprint: &Fingerprint,
) -> Result<Option<Vec<u8>>, StoreError> {
    let query = conn
        .prepare_cached(
            "SELECT certificate FROM mail_certificates WHERE fingerprint = $1 AND user_name = $2",
        )
        .await?;
    Ok(conn
        .query_opt(&query, &[&fingerprint.as_str(), &user.as_str()])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?)
}

pub(super) async fn holder(
    conn: &Client,
    address: &MailAddress,
) -> Result<Option<UserName>, StoreError> {
    let query = conn
        .prepare_cached("SELECT user_name FROM mail_addresses WHERE address = $1")
        .await?;
    let held: Option<String> = conn
        .query_opt(&query, &[&address.as_str()])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    held.map(|user| {
        user.parse()
            .map_err(|_| StoreError::Corrupt(format!("the holder of {address}")))
    })
    .transpose()
}
