//! Helpers for the unit tests of this backend: a store in a schema of its
//! own, or a clear skip when there is no PostgreSQL to test against.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::time::Duration;

use rempart_proto::DeviceId;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config, NoTls};

use super::PostgresStore;

/// The database tests use unless `REMPART_TEST_POSTGRES` names another.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A [`PostgresStore`] in a fresh schema, dropped with this value.
pub(crate) struct TestDatabase {
    /// The store, migrated.
    pub(crate) store: PostgresStore,
    url: String,
    schema: String,
}

impl TestDatabase {
    /// A store in a new schema named after `test`, or `None` (after saying
    /// so on stderr) when PostgreSQL cannot be reached, unless
    /// `REMPART_REQUIRE_POSTGRES=1` makes that a failure.
    pub(crate) async fn open(test: &str) -> Option<Self> {
        let url = std::env::var("REMPART_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.into());
        let admin = match connect(&url).await {
            Ok(client) => client,
            Err(error) => {
                let reason = match std::error::Error::source(&error) {
                    Some(source) => format!("{error}: {source}"),
                    None => error.to_string(),
                };
                let required = std::env::var("REMPART_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
                assert!(
                    !required,
                    "no PostgreSQL at {url} ({reason}), and REMPART_REQUIRE_POSTGRES=1"
                );
                // Straight to stderr: the test harness captures `eprintln!`
                // of passing tests, and a skip must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: {test}: no PostgreSQL at {url}: {reason} (set REMPART_TEST_POSTGRES, \
                     or REMPART_REQUIRE_POSTGRES=1 to fail instead)"
                );
                return None;
            }
        };
        let schema = format!("store_{test}_{}", DeviceId::random());
        admin
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        // Named after the schema, so that its sessions can be found.
        let url = format!(
            "{url}{separator}application_name={schema}&options=-c%20search_path%3D{schema}"
        );
        let store = PostgresStore::open(&url).await.unwrap();
        Some(Self { store, url, schema })
    }

    /// A connection of its own to the test's schema, outside the store's
    /// pool.
    pub(crate) async fn client(&self) -> Client {
        connect(&self.url).await.unwrap()
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
        self.store.pool().close();
        let url = std::env::var("REMPART_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.into());
        let schema = self.schema.clone();
        // Drop cannot await: a thread of its own runs the statement on a
        // runtime of its own, whatever runtime (if any) is dropping this.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let admin = connect(&url).await?;
                    // Sessions of the test may still hold locks: a
                    // transaction whose rollback the blocked runtime cannot
                    // send, or one a failed test left open.
                    admin
                        .execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                             WHERE application_name = $1",
                            &[&schema],
                        )
                        .await?;
                    admin
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.schema);
        }
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

/// A client on `url`, its connection driven by a task of the current
/// runtime.
async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config: Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        // Ends when the client is dropped; an error then is of no interest.
        let _ = connection.await;
    });
    Ok(client)
}
