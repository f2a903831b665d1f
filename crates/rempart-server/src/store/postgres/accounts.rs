//! Accounts, devices and request nonces.
//!
//! A device-list change holds its account's row lock from its first read to
//! its commit, so concurrent changes of one account take turns and each
//! checks the version the previous one stored.

use std::collections::HashSet;

use deadpool_postgres::{Client, Transaction};
use rempart_proto::directory::directory_value;
use rempart_proto::limits::MAX_CLOCK_SKEW_SECS;
use rempart_proto::{DeviceEntry, DeviceId, PublicKey, SignedDeviceList, UserName};

use super::transaction::{device_ids, fixed, from_sql, to_sql};
use crate::store::{AccountSignedDeviceList, DeviceRecord, StoreError};

/// Records that `invitation` (a code's SHA-256) admitted `user`; one
/// recorded before is [`StoreError::InvitationUsed`].
pub(super) async fn spend_invitation(
    tx: &Transaction<'_>,
    invitation: &[u8; 32],
    user: &UserName,
) -> Result<(), StoreError> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO invitations_used (code_hash, user_name, used_at)
             VALUES ($1, $2, extract(epoch FROM now())::bigint)
             ON CONFLICT (code_hash) DO NOTHING",
        )
        .await?;
    let spent = tx
        .execute(&insert, &[&invitation.as_slice(), &user.as_str()])
        .await?;
    if spent == 0 {
        return Err(StoreError::InvitationUsed);
    }
    Ok(())
}

/// [`Store::register`](crate::store::Store::register): the account, its
/// devices and the directory update, or nothing.
pub(super) async fn register(
    tx: &Transaction<'_>,
    verified: &AccountSignedDeviceList,
) -> Result<(), StoreError> {
    let list = verified.list();
    let insert = tx
        .prepare_cached(
            "INSERT INTO accounts (user_name, account_key, device_list, list_signature, version)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_name) DO NOTHING",
        )
        .await?;
    // A concurrent registration of the name makes this wait for its outcome.
    let inserted = tx
        .execute(
            &insert,
            &[
                &list.user.as_str(),
                &list.account_key.as_bytes().as_slice(),
                &verified.signed().list,
                &verified.signed().signature,
                &to_sql(list.version, "device list version")?,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(StoreError::NameTaken(list.user.clone()));
    }
    let devices: Vec<&DeviceEntry> = list.devices.iter().collect();
    insert_devices(tx, &list.user, &devices).await?;
    super::mail::claim_addresses(tx, list).await?;
    queue_directory_update(tx, verified).await
}

/// The user's current signed device list, if the user exists.
pub(super) async fn device_list(
    conn: &Client,
    user: &UserName,
) -> Result<Option<SignedDeviceList>, StoreError> {
    let query = conn
        .prepare_cached("SELECT device_list, list_signature FROM accounts WHERE user_name = $1")
        .await?;
    conn.query_opt(&query, &[&user.as_str()])
        .await?
        .map(|row| {
            Ok(SignedDeviceList {
                list: row.try_get(0)?,
                signature: row.try_get(1)?,
            })
        })
        .transpose()
}

/// [`Store::replace_device_list`](crate::store::Store::replace_device_list),
/// under the account's row lock.
pub(super) async fn replace_device_list(
    tx: &Transaction<'_>,
    signer: DeviceId,
    verified: &AccountSignedDeviceList,
) -> Result<Vec<DeviceId>, StoreError> {
    let list = verified.list();
    let user = &list.user;
    let lock = tx
        .prepare_cached(
            "SELECT account_key, version FROM accounts WHERE user_name = $1 FOR NO KEY UPDATE",
        )
        .await?;
    let account = tx
        .query_opt(&lock, &[&user.as_str()])
        .await?
        .ok_or_else(|| StoreError::UnknownUser(user.clone()))?;
    let account_key: &[u8] = account.try_get(0)?;
    let stored = from_sql(account.try_get(1)?, "device list version")?;

    // Read after the lock is held, so that a change that committed while
    // this one waited is seen.
    let query = tx
        .prepare_cached(
            "SELECT device_id, signature_key FROM devices WHERE user_name = $1
             ORDER BY device_id",
        )
        .await?;
    let mut current = Vec::new();
    for row in tx.query(&query, &[&user.as_str()]).await? {
        let id = DeviceId::from_bytes(fixed(&row, 0, "device id")?);
        let key: Vec<u8> = row.try_get(1)?;
        current.push((id, key));
    }
    if !current.iter().any(|(id, _)| *id == signer) {
        return Err(StoreError::NotOwnDevice {
            device: signer,
            user: user.clone(),
        });
    }
    if account_key != list.account_key.as_bytes() {
        return Err(StoreError::AccountKeyChanged);
    }
    if list.version <= stored {
        return Err(StoreError::StaleDeviceList {
            stored,
            found: list.version,
        });
    }

    let update = tx
        .prepare_cached(
            "UPDATE accounts SET device_list = $2, list_signature = $3, version = $4
             WHERE user_name = $1",
        )
        .await?;
    tx.execute(
        &update,
        &[
            &user.as_str(),
            &verified.signed().list,
            &verified.signed().signature,
            &to_sql(list.version, "device list version")?,
        ],
    )
    .await?;
    super::mail::claim_addresses(tx, list).await?;
    queue_directory_update(tx, verified).await?;

    let removed: Vec<DeviceId> = current
        .iter()
        .filter(|(id, _)| list.device(id).is_none())
        .map(|(id, _)| *id)
        .collect();
    if !removed.is_empty() {
        // Cascades to their KeyPackages, inboxes and links.
        let delete = tx
            .prepare_cached("DELETE FROM devices WHERE device_id = ANY($1)")
            .await?;
        tx.execute(&delete, &[&device_ids(&removed)]).await?;
    }
    let mut added = Vec::new();
    let mut rekeyed = Vec::new();
    for device in &list.devices {
        match current.iter().find(|(id, _)| *id == device.id) {
            None => added.push(device),
            Some((_, key)) if key == device.signature_key.as_bytes() => {}
            Some(_) => rekeyed.push(device),
        }
    }
    insert_devices(tx, user, &added).await?;
    if !rekeyed.is_empty() {
        // A new key for a known id: its KeyPackages name the old key.
        let rekey = tx
            .prepare_cached(
                "WITH new AS (
                     SELECT * FROM unnest($1::bytea[], $2::bytea[]) AS new (device_id, key)
                 ),
                 one_time AS (
                     DELETE FROM key_packages WHERE device_id IN (SELECT device_id FROM new)
                 ),
                 last_resort AS (
                     DELETE FROM last_resort WHERE device_id IN (SELECT device_id FROM new)
                 )
                 UPDATE devices SET signature_key = new.key
                 FROM new WHERE devices.device_id = new.device_id",
            )
            .await?;
        let ids: Vec<&[u8]> = rekeyed.iter().map(|d| d.id.as_bytes().as_slice()).collect();
        let keys: Vec<&[u8]> = rekeyed
            .iter()
            .map(|d| d.signature_key.as_bytes().as_slice())
            .collect();
        tx.execute(&rekey, &[&ids, &keys]).await?;
    }
    Ok(removed)
}

/// A registered device's owner and key.
pub(super) async fn device(
    conn: &Client,
    device: DeviceId,
) -> Result<Option<DeviceRecord>, StoreError> {
    let query = conn
        .prepare_cached("SELECT user_name, signature_key FROM devices WHERE device_id = $1")
        .await?;
    let Some(row) = conn
        .query_opt(&query, &[&device.as_bytes().as_slice()])
        .await?
    else {
        return Ok(None);
    };
    let user: &str = row.try_get(0)?;
    let key: &[u8] = row.try_get(1)?;
    Ok(Some(DeviceRecord {
        user: user
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("user name of device {device}")))?,
        signature_key: PublicKey::from_bytes(key)
            .map_err(|_| StoreError::Corrupt(format!("key of device {device}")))?,
    }))
}

/// Records a request nonce of `device`, once.
pub(super) async fn consume_nonce(
    conn: &Client,
    device: DeviceId,
    nonce: &str,
    timestamp: i64,
) -> Result<(), StoreError> {
    let insert = conn
        .prepare_cached(
            "INSERT INTO nonces (device_id, nonce, ts) VALUES ($1, $2, $3)
             ON CONFLICT (device_id, nonce) DO NOTHING",
        )
        .await?;
    let inserted = conn
        .execute(
            &insert,
            &[&device.as_bytes().as_slice(), &nonce, &timestamp],
        )
        .await?;
    if inserted == 0 {
        return Err(StoreError::ReplayedNonce);
    }
    Ok(())
}

/// Forgets nonces old enough that the clock-skew check refuses their
/// requests anyway.
pub(super) async fn prune_nonces(tx: &Transaction<'_>, now: i64) -> Result<u64, StoreError> {
    let horizon = now.saturating_sub(2 * MAX_CLOCK_SKEW_SECS);
    let delete = tx
        .prepare_cached("DELETE FROM nonces WHERE ts < $1")
        .await?;
    Ok(tx.execute(&delete, &[&horizon]).await?)
}

/// Registers `devices` to `user`; fails with [`StoreError::DeviceTaken`]
/// (the first such in `devices`) if an id is registered already.
async fn insert_devices(
    tx: &Transaction<'_>,
    user: &UserName,
    devices: &[&DeviceEntry],
) -> Result<(), StoreError> {
    if devices.is_empty() {
        return Ok(());
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO devices (device_id, user_name, signature_key)
             SELECT device_id, $2, key FROM unnest($1::bytea[], $3::bytea[]) AS new (device_id, key)
             ON CONFLICT (device_id) DO NOTHING
             RETURNING device_id",
        )
        .await?;
    let ids: Vec<&[u8]> = devices.iter().map(|d| d.id.as_bytes().as_slice()).collect();
    let keys: Vec<&[u8]> = devices
        .iter()
        .map(|d| d.signature_key.as_bytes().as_slice())
        .collect();
    let inserted: HashSet<DeviceId> = tx
        .query(&insert, &[&ids, &user.as_str(), &keys])
        .await?
        .iter()
        .map(|row| Ok(DeviceId::from_bytes(fixed(row, 0, "device id")?)))
        .collect::<Result<_, StoreError>>()?;
    match devices.iter().find(|d| !inserted.contains(&d.id)) {
        Some(taken) => Err(StoreError::DeviceTaken(taken.id)),
        None => Ok(()),
    }
}

/// Queues the list's directory value under each of its labels for the
/// next epoch and archives the list under each, in the caller's transaction, as
/// `crate::directory::queue::enqueue` does for SQLite.
async fn queue_directory_update(
    tx: &Transaction<'_>,
    verified: &AccountSignedDeviceList,
) -> Result<(), StoreError> {
    let list = verified.signed();
    let queue = tx
        .prepare_cached(
            "WITH pending AS (
                 INSERT INTO directory_pending (user_name, value) VALUES ($1, $2)
             )
             INSERT INTO directory_device_lists (user_name, value, device_list, list_signature)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_name, value) DO NOTHING",
        )
        .await?;
    let value = directory_value(list);
    for label in crate::directory::queue::labels(verified) {
        tx.execute(
            &queue,
            &[&label, &value.as_slice(), &list.list, &list.signature],
        )
        .await?;
    }
    Ok(())
}
