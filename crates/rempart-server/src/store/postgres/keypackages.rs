//! KeyPackages: one-time packages handed out once, and a last-resort one.
//!
//! A claim deletes the oldest one-time package of each device it serves,
//! skipping packages that a concurrent claim has locked: two claimers never
//! get the same package, and neither waits for the other (one may get the
//! next package, or the last-resort one, while the other's claim is still
//! open).

use deadpool_postgres::{GenericClient, Transaction};
use rempart_proto::api::{ClaimedKeyPackage, KeyPackageStatus, KeyPackageUpload};
use rempart_proto::limits::MAX_KEY_PACKAGES_PER_DEVICE;
use rempart_proto::{DeviceId, UserName};
use tokio_postgres::types::ToSql;

use super::transaction::{fixed, from_sql};
use crate::store::StoreError;

/// Adds one-time KeyPackages of `device` and replaces its last-resort one,
/// within [`MAX_KEY_PACKAGES_PER_DEVICE`].
pub(super) async fn upload(
    tx: &Transaction<'_>,
    device: DeviceId,
    upload: &KeyPackageUpload,
) -> Result<KeyPackageStatus, StoreError> {
    let (lock, count) = tokio::try_join!(
        tx.prepare_cached("SELECT 1 FROM devices WHERE device_id = $1 FOR NO KEY UPDATE"),
        tx.prepare_cached("SELECT count(*) FROM key_packages WHERE device_id = $1"),
    )?;
    let id = device.as_bytes().as_slice();
    // Uploads of one device take turns on its row, so that the limit holds.
    // Sent together, the count still runs after the lock is granted, and
    // sees what an upload that held it stored.
    let params: [&(dyn ToSql + Sync); 1] = [&id];
    let (locked, count) =
        tokio::try_join!(tx.query_opt(&lock, &params), tx.query_one(&count, &params))?;
    if locked.is_none() {
        return Err(StoreError::UnknownDevice(device));
    }
    let would_hold =
        from_sql(count.try_get(0)?, "KeyPackage count")? + upload.one_time.len() as u64;
    if would_hold > MAX_KEY_PACKAGES_PER_DEVICE as u64 {
        return Err(StoreError::TooManyKeyPackages { would_hold });
    }
    if !upload.one_time.is_empty() {
        // Ids in upload order: claims hand out the oldest first.
        let insert = tx
            .prepare_cached(
                "INSERT INTO key_packages (device_id, data)
                 SELECT $1, data FROM unnest($2::bytea[]) WITH ORDINALITY AS new (data, n)
                 ORDER BY n",
            )
            .await?;
        tx.execute(&insert, &[&id, &upload.one_time]).await?;
    }
    if let Some(package) = &upload.last_resort {
        let upsert = tx
            .prepare_cached(
                "INSERT INTO last_resort (device_id, data) VALUES ($1, $2)
                 ON CONFLICT (device_id) DO UPDATE SET data = EXCLUDED.data",
            )
            .await?;
        tx.execute(&upsert, &[&id, package]).await?;
    }
    status(tx, device).await
}

/// How many KeyPackages the server holds for `device`.
pub(super) async fn status(
    conn: &impl GenericClient,
    device: DeviceId,
) -> Result<KeyPackageStatus, StoreError> {
    let query = conn
        .prepare_cached(
            "SELECT (SELECT count(*) FROM key_packages WHERE device_id = $1),
                    EXISTS (SELECT 1 FROM last_resort WHERE device_id = $1),
                    coalesce((SELECT claimed_key_packages FROM devices WHERE device_id = $1), 0)",
        )
        .await?;
    let row = conn
        .query_one(&query, &[&device.as_bytes().as_slice()])
        .await?;
    Ok(KeyPackageStatus {
        one_time: from_sql(row.try_get(0)?, "KeyPackage count")?,
        last_resort: row.try_get(1)?,
        claimed: from_sql(row.try_get(2)?, "claimed KeyPackage count")?,
    })
}

/// Claims for every current device of `user` except `claimer`; fails with
/// [`StoreError::UnknownUser`] if there is no such account.
pub(super) async fn claim(
    tx: &Transaction<'_>,
    claimer: DeviceId,
    user: &UserName,
) -> Result<Vec<ClaimedKeyPackage>, StoreError> {
    let exists = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM accounts WHERE user_name = $1)")
        .await?;
    if !tx.query_one(&exists, &[&user.as_str()]).await?.try_get(0)? {
        return Err(StoreError::UnknownUser(user.clone()));
    }
    claim_batch(tx, claimer, std::slice::from_ref(user)).await
}

/// Claims one KeyPackage for every current device of each of `users` except
/// `claimer`: its oldest one-time package not being claimed concurrently,
/// deleted as it is handed out, or else its last-resort one. Unknown users
/// and devices without any package are left out; a user named twice is
/// served once. Packages come in the order of `users`, then by device id.
///
/// One statement, whatever the number of users.
pub(super) async fn claim_batch(
    conn: &impl GenericClient,
    claimer: DeviceId,
    users: &[UserName],
) -> Result<Vec<ClaimedKeyPackage>, StoreError> {
    let query = conn
        .prepare_cached(
            "WITH asked AS (
                 SELECT name, min(n) AS n
                 FROM unnest($2::text[]) WITH ORDINALITY AS asked (name, n)
                 GROUP BY name
             ),
             targets AS (
                 SELECT d.device_id, d.user_name, asked.n
                 FROM devices d JOIN asked ON d.user_name = asked.name
                 WHERE d.device_id <> $1
             ),
             taken AS (
                 DELETE FROM key_packages WHERE id IN (
                     SELECT oldest.id FROM targets CROSS JOIN LATERAL (
                         SELECT k.id FROM key_packages k
                         WHERE k.device_id = targets.device_id
                         ORDER BY k.id LIMIT 1
                         FOR UPDATE SKIP LOCKED
                     ) oldest
                 )
                 RETURNING device_id, data
             ),
             counted AS (
                 UPDATE devices SET claimed_key_packages = claimed_key_packages + 1
                 WHERE device_id IN (SELECT device_id FROM taken)
             )
             SELECT t.user_name, t.device_id, coalesce(taken.data, l.data), taken.data IS NULL
             FROM targets t
             LEFT JOIN taken ON taken.device_id = t.device_id
             LEFT JOIN last_resort l ON taken.data IS NULL AND l.device_id = t.device_id
             WHERE taken.data IS NOT NULL OR l.data IS NOT NULL
             ORDER BY t.n, t.device_id",
        )
        .await?;
    let names: Vec<&str> = users.iter().map(UserName::as_str).collect();
    let rows = conn
        .query(&query, &[&claimer.as_bytes().as_slice(), &names])
        .await?;
    rows.iter()
        .map(|row| {
            let user: &str = row.try_get(0)?;
            Ok(ClaimedKeyPackage {
                user: user
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("user name {user:?}")))?,
                device: DeviceId::from_bytes(fixed(row, 1, "device id")?),
                key_package: row.try_get(2)?,
                last_resort: row.try_get(3)?,
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::Store as _;
    use crate::store::postgres::testing::{TestDatabase, backend_pid};

    fn one_time(count: usize, tag: u8) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| vec![tag, i as u8, (i >> 8) as u8])
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claimers_never_get_the_same_one_time_package() {
        let Some(db) = TestDatabase::open("kp_claims").await else {
            return;
        };
        let bob = db.device("bob").await;
        let uploaded = one_time(10, 1);
        let upload = KeyPackageUpload {
            one_time: uploaded.clone(),
            last_resort: Some(b"last resort".to_vec()),
        };
        db.store.upload_key_packages(bob, upload).await.unwrap();
        let user: UserName = "bob".parse().unwrap();

        let claims: Vec<_> = (0..20)
            .map(|i| {
                let (store, user) = (db.store.clone(), user.clone());
                tokio::spawn(async move {
                    let claimer = DeviceId::random();
                    if i % 2 == 0 {
                        store.claim_key_packages(claimer, &user).await
                    } else {
                        store
                            .claim_key_packages_batch(claimer, vec![user.clone(), user])
                            .await
                    }
                })
            })
            .collect();
        let mut handed_out = Vec::new();
        let mut last_resorts = 0;
        for claim in claims {
            let claimed = claim.await.unwrap().unwrap();
            assert_eq!(claimed.len(), 1, "one package for bob's one device");
            let package = claimed.into_iter().next().unwrap();
            assert_eq!(package.device, bob);
            if package.last_resort {
                assert_eq!(package.key_package, b"last resort");
                last_resorts += 1;
            } else {
                handed_out.push(package.key_package);
            }
        }
        handed_out.sort();
        assert_eq!(handed_out, uploaded, "each one-time package exactly once");
        assert_eq!(last_resorts, 10);
        let status = db.store.key_package_status(bob).await.unwrap();
        assert_eq!(status.one_time, 0);
        assert!(status.last_resort);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_uploads_of_a_device_respect_the_limit_together() {
        let Some(db) = TestDatabase::open("kp_limit").await else {
            return;
        };
        let bob = db.device("bob").await;
        let half = MAX_KEY_PACKAGES_PER_DEVICE / 2 + 1;

        let mut conn = db.store.conn().await.unwrap();
        let tx = conn.transaction().await.unwrap();
        let holder = backend_pid(&tx).await;
        let first = KeyPackageUpload {
            one_time: one_time(half, 1),
            last_resort: None,
        };
        upload(&tx, bob, &first).await.unwrap();

        let store = db.store.clone();
        let second = tokio::spawn(async move {
            let upload = KeyPackageUpload {
                one_time: one_time(half, 2),
                last_resort: None,
            };
            store.upload_key_packages(bob, upload).await
        });
        assert!(
            db.blocked_by(holder, &second).await,
            "the second upload did not wait for the first"
        );
        tx.commit().await.unwrap();
        match second.await.unwrap() {
            Err(StoreError::TooManyKeyPackages { would_hold }) => {
                assert_eq!(would_hold, 2 * half as u64);
            }
            other => panic!("expected TooManyKeyPackages, got {other:?}"),
        }
        let status = db.store.key_package_status(bob).await.unwrap();
        assert_eq!(status.one_time, half as u64);
    }

    #[tokio::test]
    async fn an_upload_for_an_unregistered_device_is_refused() {
        let Some(db) = TestDatabase::open("kp_unknown").await else {
            return;
        };
        let device = DeviceId::random();
        let upload = KeyPackageUpload {
            one_time: one_time(1, 1),
            last_resort: None,
        };
        assert!(matches!(
            db.store.upload_key_packages(device, upload).await,
            Err(StoreError::UnknownDevice(d)) if d == device
        ));
    }
}
