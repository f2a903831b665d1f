//! Helpers for the unit tests of this backend: a store in a schema of its
//! own, or a clear skip when there is no PostgreSQL to test against.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use rempart_proto::DeviceId;
use rempart_testkit::postgres::TestSchema;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::PostgresStore;

/// A [`PostgresStore`] in a fresh schema, dropped with this value.
pub(crate) struct TestDatabase {
    /// The store, migrated.
    pub(crate) store: PostgresStore,
    schema: TestSchema,
}

impl TestDatabase {
    /// A store in a new schema, or `None` (after saying so on stderr) when
    /// PostgreSQL cannot be reached, unless `REMPART_REQUIRE_POSTGRES=1`
    /// makes that a failure.
    pub(crate) async fn open(test: &str) -> Option<Self> {
        let schema = TestSchema::create(test).await?;
        let store = PostgresStore::open(&schema.url()).await.unwrap();
        Some(Self { store, schema })
    }

    /// A connection of its own to the test's schema, outside the store's
    /// pool.
    pub(crate) async fn client(&self) -> Client {
        self.schema.client().await
    }

    /// Registers a new device of `user` (and the account if needed), with
    /// placeholder keys: the store does not check them.
    pub(crate) async fn device(&self, user: &str) -> DeviceId {
        let client = self.client().await;
        client
            .execute(
                "INSERT INTO accounts VALUES ($1, '\\x00', '\\x00', '\\x00', 1)
                 ON CONFLICT DO NOTHING",
                &[&user],
            )
            .await
            .unwrap();
        let device = DeviceId::random();
        client
            .execute(
                "INSERT INTO devices (device_id, user_name, signature_key) VALUES ($1, $2, '\\x00')",
                &[&device.as_bytes().as_slice(), &user],
            )
            .await
            .unwrap();
        device
    }

    /// Waits until a session waits for a lock held by the session with
    /// backend pid `holder`: true then, false if `task` finished first.
    pub(crate) async fn blocked_by<T>(&self, holder: i32, task: &JoinHandle<T>) -> bool {
        let client = self.client().await;
        loop {
            let blocked: bool = client
                .query_one(
                    "SELECT EXISTS (
                         SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))
                     )",
                    &[&holder],
                )
                .await
                .unwrap()
                .get(0);
            if blocked {
                return true;
            }
            if task.is_finished() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The number of rows in `table`.
    pub(crate) async fn rows(&self, table: &str) -> i64 {
        self.client()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // The schema, dropped next, cuts whatever connections remain.
        self.store.pool().close();
    }
}

/// The backend process id of the session running `tx`, to find the
/// sessions it blocks.
pub(crate) async fn backend_pid(tx: &deadpool_postgres::Transaction<'_>) -> i32 {
    tx.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}
