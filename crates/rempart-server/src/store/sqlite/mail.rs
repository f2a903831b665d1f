//! Mail addresses and the accounts' OpenPGP certificates.

use rempart_proto::limits::MAX_MAIL_CERTIFICATES_PER_ACCOUNT;
use rempart_proto::mail::{Fingerprint, MailAddress};
use rempart_proto::{DeviceList, UserName};
use rusqlite::{Connection, OptionalExtension as _, params};

use crate::store::StoreError;

/// Gives `list`'s user every address the list binds that no account holds
/// yet; one another account holds is [`StoreError::MailAddressTaken`].
/// Runs in the caller's transaction, beside the list's own write.
pub(super) fn claim_addresses(conn: &Connection, list: &DeviceList) -> Result<(), StoreError> {
    let mut claim = conn.prepare_cached(
        "INSERT INTO mail_addresses (address, user_name) VALUES (?1, ?2)
         ON CONFLICT (address) DO NOTHING",
    )?;
    let mut holder =
        conn.prepare_cached("SELECT user_name FROM mail_addresses WHERE address = ?1")?;
    for binding in &list.mail {
        claim.execute(params![binding.address.as_str(), list.user.as_str()])?;
        let held: String = holder.query_row([binding.address.as_str()], |row| row.get(0))?;
        if held != list.user.as_str() {
            return Err(StoreError::MailAddressTaken(binding.address.clone()));
        }
    }
    Ok(())
}

pub(super) fn put_certificate(
    conn: &Connection,
    user: &UserName,
    fingerprint: &Fingerprint,
    certificate: &[u8],
) -> Result<(), StoreError> {
    let owner: Option<String> = conn
        .query_row(
            "SELECT user_name FROM mail_certificates WHERE fingerprint = ?1",
            [fingerprint.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    match owner {
        Some(owner) if owner != user.as_str() => {
            return Err(StoreError::MailCertificateTaken(fingerprint.clone()));
        }
        Some(_) => {}
        None => {
            let held: i64 = conn.query_row(
                "SELECT count(*) FROM mail_certificates WHERE user_name = ?1",
                [user.as_str()],
                |row| row.get(0),
            )?;
            if usize::try_from(held).unwrap_or(usize::MAX) >= MAX_MAIL_CERTIFICATES_PER_ACCOUNT {
                return Err(StoreError::TooManyMailCertificates);
            }
        }
    }
    conn.execute(
        "INSERT INTO mail_certificates (fingerprint, user_name, certificate) VALUES (?1, ?2, ?3)
         ON CONFLICT (fingerprint) DO UPDATE SET certificate = excluded.certificate",
        params![fingerprint.as_str(), user.as_str(), certificate],
    )?;
    Ok(())
}

pub(super) fn certificate(
    conn: &Connection,
    user: &UserName,
    fingerprint: &Fingerprint,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT certificate FROM mail_certificates WHERE fingerprint = ?1 AND user_name = ?2",
            params![fingerprint.as_str(), user.as_str()],
            |row| row.get(0),
        )
        .optional()?)
}

pub(super) fn holder(
    conn: &Connection,
    address: &MailAddress,
) -> Result<Option<UserName>, StoreError> {
    let held: Option<String> = conn
        .query_row(
            "SELECT user_name FROM mail_addresses WHERE address = ?1",
            [address.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    held.map(|user| {
        user.parse()
            .map_err(|_| StoreError::Corrupt(format!("the holder of {address}")))
    })
    .transpose()
}
