//! KeyPackages: one-time packages handed out once, and a last-resort one.

use rempart_proto::api::{ClaimedKeyPackage, KeyPackageStatus, KeyPackageUpload};
use rempart_proto::limits::MAX_KEY_PACKAGES_PER_DEVICE;
use rempart_proto::{DeviceId, UserName};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::from_sql;
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
    Ok(KeyPackageStatus {
        one_time: one_time_count(conn, device)?,
        last_resort,
    })
}

pub(super) fn claim(
    conn: &Connection,
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
    let devices: Vec<DeviceId> = conn
        .prepare("SELECT device_id FROM devices WHERE user_name = ?1 ORDER BY device_id")?
        .query_map([user.as_str()], |row| Ok(DeviceId::from_bytes(row.get(0)?)))?
        .collect::<Result<_, _>>()?;
    let mut claimed = Vec::with_capacity(devices.len());
    for device in devices {
        let one_time: Option<Vec<u8>> = conn
            .query_row(
                "DELETE FROM key_packages WHERE id = (
                     SELECT id FROM key_packages WHERE device_id = ?1 ORDER BY id LIMIT 1
                 ) RETURNING data",
                [device.as_bytes()],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(key_package) = one_time {
            claimed.push(ClaimedKeyPackage {
                device,
                key_package,
                last_resort: false,
            });
            continue;
        }
        let last_resort: Option<Vec<u8>> = conn
            .query_row(
                "SELECT data FROM last_resort WHERE device_id = ?1",
                [device.as_bytes()],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(key_package) = last_resort {
            claimed.push(ClaimedKeyPackage {
                device,
                key_package,
                last_resort: true,
            });
        }
    }
    Ok(claimed)
}

fn one_time_count(conn: &Connection, device: DeviceId) -> Result<u64, StoreError> {
    let count = conn.query_row(
        "SELECT count(*) FROM key_packages WHERE device_id = ?1",
        [device.as_bytes()],
        |row| row.get(0),
    )?;
    from_sql(count, "KeyPackage count")
}
