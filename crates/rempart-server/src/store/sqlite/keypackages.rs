//! KeyPackages: one-time packages handed out once, and a last-resort one.

use std::collections::{HashMap, HashSet};

use rempart_proto::api::{ClaimedKeyPackage, KeyPackageStatus, KeyPackageUpload};
use rempart_proto::limits::MAX_KEY_PACKAGES_PER_DEVICE;
use rempart_proto::{DeviceId, UserName};
use rusqlite::{Connection, OptionalExtension as _, ToSql, params};

use super::{USERS_PER_QUERY, from_sql};
use crate::store::StoreError;

pub(super) fn upload(
    conn: &Connection,
    device: DeviceId,
    upload: &KeyPackageUpload,
) -> Result<KeyPackageStatus, StoreError> {
    let would_hold = one_time_count(conn, device)? + upload.one_time.len() as u64;
    if would_hold > MAX_KEY_PACKAGES_PER_DEVICE as u64 {
        return Err(StoreError::TooManyKeyPackages { would_hold });
    }
    let mut insert =
        conn.prepare_cached("INSERT INTO key_packages (device_id, data) VALUES (?1, ?2)")?;
    for package in &upload.one_time {
        insert.execute(params![device.as_bytes(), package])?;
    }
    if let Some(package) = &upload.last_resort {
        conn.execute(
            "INSERT INTO last_resort (device_id, data) VALUES (?1, ?2)
             ON CONFLICT (device_id) DO UPDATE SET data = excluded.data",
            params![device.as_bytes(), package],
        )?;
    }
    status(conn, device)
}

pub(super) fn status(conn: &Connection, device: DeviceId) -> Result<KeyPackageStatus, StoreError> {
    let last_resort = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM last_resort WHERE device_id = ?1)",
        [device.as_bytes()],
        |row| row.get(0),
    )?;
    let claimed: i64 = conn
        .query_row(
            "SELECT claimed_key_packages FROM devices WHERE device_id = ?1",
            [device.as_bytes()],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0);
    Ok(KeyPackageStatus {
        one_time: one_time_count(conn, device)?,
        last_resort,
        claimed: from_sql(claimed, "claimed KeyPackage count")?,
    })
}

/// Claims for every current device of `user` except `claimer`; fails with
/// [`StoreError::UnknownUser`] if there is no such account.
pub(super) fn claim(
    conn: &Connection,
    claimer: DeviceId,
    user: &UserName,
) -> Result<Vec<ClaimedKeyPackage>, StoreError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE user_name = ?1)",
        [user.as_str()],
        |row| row.get(0),
    )?;
    if !exists {
        return Err(StoreError::UnknownUser(user.clone()));
    }
    claim_batch(conn, claimer, std::slice::from_ref(user))
}

/// Claims one KeyPackage for every current device of each of `users` except
/// `claimer`: its oldest one-time package, deleted as it is handed out, or
/// else its last-resort one. Unknown users and devices without any package
/// are left out; a user named twice is served once. Packages come in the
/// order of `users`, then by device id.
///
/// A few set-wise statements per [`USERS_PER_QUERY`] users, so that a batch
/// of thousands of users stays a short job for the writer.
pub(super) fn claim_batch(
    conn: &Connection,
    claimer: DeviceId,
    users: &[UserName],
) -> Result<Vec<ClaimedKeyPackage>, StoreError> {
    let mut seen = HashSet::with_capacity(users.len());
    let users: Vec<&UserName> = users.iter().filter(|u| seen.insert(*u)).collect();
    let mut claimed = Vec::new();
    for chunk in users.chunks(USERS_PER_QUERY) {
        claim_chunk(conn, claimer, chunk, &mut claimed)?;
    }
    Ok(claimed)
}

fn claim_chunk(
    conn: &Connection,
    claimer: DeviceId,
    users: &[&UserName],
    claimed: &mut Vec<ClaimedKeyPackage>,
) -> Result<(), StoreError> {
    // ?1 is the claimer, ?2… the users.
    let names = placeholders(2, users.len());
    let claimer_bytes = claimer.as_bytes();
    let user_names: Vec<&str> = users.iter().map(|u| u.as_str()).collect();
    let mut values: Vec<&dyn ToSql> = Vec::with_capacity(users.len() + 1);
    values.push(&claimer_bytes);
    values.extend(user_names.iter().map(|name| name as &dyn ToSql));
    let values = values.as_slice();

    let mut devices: HashMap<String, Vec<DeviceId>> = HashMap::new();
    let mut query = conn.prepare_cached(&format!(
        "SELECT user_name, device_id FROM devices
         WHERE user_name IN ({names}) AND device_id <> ?1
         ORDER BY device_id"
    ))?;
    let mut rows = query.query(values)?;
    while let Some(row) = rows.next()? {
        let user: String = row.get(0)?;
        devices
            .entry(user)
            .or_default()
            .push(DeviceId::from_bytes(row.get(1)?));
    }

    // Read before the one-time packages are taken: a device whose last
    // one-time package goes now must not get its last-resort one too.
    let mut last_resort: HashMap<DeviceId, Vec<u8>> = conn
        .prepare_cached(&format!(
            "SELECT l.device_id, l.data FROM last_resort l
             JOIN devices d ON d.device_id = l.device_id
             WHERE d.user_name IN ({names}) AND d.device_id <> ?1
               AND NOT EXISTS (SELECT 1 FROM key_packages k WHERE k.device_id = l.device_id)"
        ))?
        .query_map(values, |row| {
            Ok((DeviceId::from_bytes(row.get(0)?), row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut one_time: HashMap<DeviceId, Vec<u8>> = conn
        .prepare_cached(&format!(
            "DELETE FROM key_packages WHERE id IN (
                 SELECT min(k.id) FROM key_packages k
                 JOIN devices d ON d.device_id = k.device_id
                 WHERE d.user_name IN ({names}) AND d.device_id <> ?1
                 GROUP BY k.device_id
             ) RETURNING device_id, data"
        ))?
        .query_map(values, |row| {
            Ok((DeviceId::from_bytes(row.get(0)?), row.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut count = conn.prepare_cached(
        "UPDATE devices SET claimed_key_packages = claimed_key_packages + 1 WHERE device_id = ?1",
    )?;
    for device in one_time.keys() {
        count.execute([device.as_bytes()])?;
    }

    for user in users {
        let Some(devices) = devices.get(user.as_str()) else {
            continue;
        };
        for device in devices {
            let (key_package, last_resort) = match one_time.remove(device) {
                Some(package) => (package, false),
                None => match last_resort.remove(device) {
                    Some(package) => (package, true),
                    None => continue,
                },
            };
            claimed.push(ClaimedKeyPackage {
                user: (*user).clone(),
                device: *device,
                key_package,
                last_resort,
            });
        }
    }
    Ok(())
}

/// `?first, ?first+1, …`: `count` numbered SQL parameters.
pub(super) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn one_time_count(conn: &Connection, device: DeviceId) -> Result<u64, StoreError> {
    let count = conn.query_row(
        "SELECT count(*) FROM key_packages WHERE device_id = ?1",
        [device.as_bytes()],
        |row| row.get(0),
    )?;
    from_sql(count, "KeyPackage count")
}
