//! Accounts, devices and request nonces.

use rempart_proto::limits::MAX_CLOCK_SKEW_SECS;
use rempart_proto::{DeviceId, PublicKey, SignedDeviceList, UserName};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::{from_sql, to_sql};
use crate::store::{AccountSignedDeviceList, DeviceRecord, StoreError};

/// Records that `invitation` (a code's SHA-256) admitted `user`; one
/// recorded before is [`StoreError::InvitationUsed`].
pub(super) fn spend_invitation(
    conn: &Connection,
    invitation: &[u8; 32],
    user: &UserName,
) -> Result<(), StoreError> {
    let spent = conn.execute(
        "INSERT INTO invitations_used (code_hash, user_name, used_at)
         VALUES (?1, ?2, unixepoch()) ON CONFLICT (code_hash) DO NOTHING",
        params![invitation.as_slice(), user.as_str()],
    )?;
    if spent == 0 {
        return Err(StoreError::InvitationUsed);
    }
    Ok(())
}

pub(super) fn register(
    conn: &Connection,
    verified: &AccountSignedDeviceList,
) -> Result<(), StoreError> {
    let list = verified.list();
    let taken: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE user_name = ?1)",
        [list.user.as_str()],
        |row| row.get(0),
    )?;
    if taken {
        return Err(StoreError::NameTaken(list.user.clone()));
    }
    conn.execute(
        "INSERT INTO accounts (user_name, account_key, device_list, list_signature, version)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            list.user.as_str(),
            list.account_key.as_bytes(),
            verified.signed().list,
            verified.signed().signature,
            to_sql(list.version, "device list version")?,
        ],
    )?;
    for device in &list.devices {
        insert_device(conn, &list.user, device.id, &device.signature_key)?;
    }
    super::mail::claim_addresses(conn, list)?;
    crate::directory::queue::enqueue(conn, verified)?;
    Ok(())
}

pub(super) fn device_list(
    conn: &Connection,
    user: &UserName,
) -> Result<Option<SignedDeviceList>, StoreError> {
    let list = conn
        .query_row(
            "SELECT device_list, list_signature FROM accounts WHERE user_name = ?1",
            [user.as_str()],
            |row| {
                Ok(SignedDeviceList {
                    list: row.get(0)?,
                    signature: row.get(1)?,
                })
            },
        )
        .optional()?;
    Ok(list)
}

pub(super) fn replace_device_list(
    conn: &Connection,
    signer: DeviceId,
    verified: &AccountSignedDeviceList,
) -> Result<Vec<DeviceId>, StoreError> {
    let list = verified.list();
    let user = &list.user;
    let (account_key, version): (Vec<u8>, i64) = conn
        .query_row(
            "SELECT account_key, version FROM accounts WHERE user_name = ?1",
            [user.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?
        .ok_or_else(|| StoreError::UnknownUser(user.clone()))?;
    if owner(conn, signer)?.as_ref() != Some(user) {
        return Err(StoreError::NotOwnDevice {
            device: signer,
            user: user.clone(),
        });
    }
    if account_key != list.account_key.as_bytes() {
        return Err(StoreError::AccountKeyChanged);
    }
    let stored = from_sql(version, "device list version")?;
    if list.version <= stored {
        return Err(StoreError::StaleDeviceList {
            stored,
            found: list.version,
        });
    }
    conn.execute(
        "UPDATE accounts SET device_list = ?2, list_signature = ?3, version = ?4
         WHERE user_name = ?1",
        params![
            user.as_str(),
            verified.signed().list,
            verified.signed().signature,
            to_sql(list.version, "device list version")?,
        ],
    )?;
    super::mail::claim_addresses(conn, list)?;
    crate::directory::queue::enqueue(conn, verified)?;

    let current: Vec<(DeviceId, Vec<u8>)> = conn
        .prepare("SELECT device_id, signature_key FROM devices WHERE user_name = ?1")?
        .query_map([user.as_str()], |row| {
            Ok((DeviceId::from_bytes(row.get(0)?), row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut removed = Vec::new();
    for (id, _) in &current {
        if list.device(id).is_none() {
            // Cascades to its KeyPackages and inbox.
            conn.execute("DELETE FROM devices WHERE device_id = ?1", [id.as_bytes()])?;
            removed.push(*id);
        }
    }
    for device in &list.devices {
        match current.iter().find(|(id, _)| *id == device.id) {
            None => insert_device(conn, user, device.id, &device.signature_key)?,
            Some((_, key)) if key == device.signature_key.as_bytes() => {}
            Some(_) => {
                // A new key for a known id: its KeyPackages name the old key.
                conn.execute(
                    "UPDATE devices SET signature_key = ?2 WHERE device_id = ?1",
                    params![device.id.as_bytes(), device.signature_key.as_bytes()],
                )?;
                conn.execute(
                    "DELETE FROM key_packages WHERE device_id = ?1",
                    [device.id.as_bytes()],
                )?;
                conn.execute(
                    "DELETE FROM last_resort WHERE device_id = ?1",
                    [device.id.as_bytes()],
                )?;
            }
        }
    }
    Ok(removed)
}

pub(super) fn device(
    conn: &Connection,
    device: DeviceId,
) -> Result<Option<DeviceRecord>, StoreError> {
    let row: Option<(String, Vec<u8>)> = conn
        .query_row(
            "SELECT user_name, signature_key FROM devices WHERE device_id = ?1",
            [device.as_bytes()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    row.map(|(user, key)| {
        Ok(DeviceRecord {
            user: user
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("user name of device {device}")))?,
            signature_key: PublicKey::from_bytes(&key)
                .map_err(|_| StoreError::Corrupt(format!("key of device {device}")))?,
        })
    })
    .transpose()
}

pub(super) fn consume_nonce(
    conn: &Connection,
    device: DeviceId,
    nonce: &str,
    timestamp: i64,
) -> Result<(), StoreError> {
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO nonces (device_id, nonce, ts) VALUES (?1, ?2, ?3)",
        params![device.as_bytes(), nonce, timestamp],
    )?;
    if inserted == 0 {
        return Err(StoreError::ReplayedNonce);
    }
    Ok(())
}

/// Forgets nonces old enough that the clock-skew check refuses their
/// requests anyway.
pub(super) fn prune_nonces(conn: &Connection, now: i64) -> Result<usize, StoreError> {
    let horizon = now.saturating_sub(2 * MAX_CLOCK_SKEW_SECS);
    Ok(conn.execute("DELETE FROM nonces WHERE ts < ?1", [horizon])?)
}

/// The account a device id is registered to, if any.
fn owner(conn: &Connection, device: DeviceId) -> Result<Option<UserName>, StoreError> {
    let user: Option<String> = conn
        .query_row(
            "SELECT user_name FROM devices WHERE device_id = ?1",
            [device.as_bytes()],
            |row| row.get(0),
        )
        .optional()?;
    user.map(|u| {
        u.parse()
            .map_err(|_| StoreError::Corrupt(format!("user name of device {device}")))
    })
    .transpose()
}

fn insert_device(
    conn: &Connection,
    user: &UserName,
    device: DeviceId,
    key: &PublicKey,
) -> Result<(), StoreError> {
    if owner(conn, device)?.is_some() {
        return Err(StoreError::DeviceTaken(device));
    }
    conn.execute(
        "INSERT INTO devices (device_id, user_name, signature_key) VALUES (?1, ?2, ?3)",
        params![device.as_bytes(), user.as_str(), key.as_bytes()],
    )?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::auth::unix_now;

    #[test]
    fn nonces_are_kept_while_their_requests_could_pass_the_skew_check() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        let device = DeviceId::random();
        let now = unix_now();
        consume_nonce(&conn, device, "expired", now - 2 * MAX_CLOCK_SKEW_SECS - 1).unwrap();
        consume_nonce(&conn, device, "recent", now - MAX_CLOCK_SKEW_SECS).unwrap();
        prune_nonces(&conn, unix_now()).unwrap();
        assert!(consume_nonce(&conn, device, "expired", now).is_ok());
        assert!(matches!(
            consume_nonce(&conn, device, "recent", now),
            Err(StoreError::ReplayedNonce)
        ));
        // Another device may use the same nonce.
        assert!(consume_nonce(&conn, DeviceId::random(), "recent", now).is_ok());
    }
}
