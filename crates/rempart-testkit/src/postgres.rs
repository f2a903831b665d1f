//! A PostgreSQL schema of its own for one test, or a clear skip.
//!
//! Tests that need PostgreSQL call [`TestSchema::create`]. It connects to
//! [`URL_VAR`] (default [`DEFAULT_URL`]) and creates a schema with a random
//! name, dropped again (after its connections are cut) when the
//! [`TestSchema`] is dropped, so runs never collide. When PostgreSQL cannot
//! be reached it prints a line saying the test was skipped and why, and
//! returns `None`; with [`REQUIRE_VAR`]` = 1` (CI sets it) it fails instead,
//! so a missing database can never pass unnoticed.

use std::io::Write as _;
use std::time::Duration;

use rempart_proto::local::error_chain;
use tokio_postgres::NoTls;

/// The variable naming the test database (a `postgres://` URL).
pub const URL_VAR: &str = "REMPART_TEST_POSTGRES";
/// Set to `1` to fail instead of skipping when no PostgreSQL answers.
pub const REQUIRE_VAR: &str = "REMPART_REQUIRE_POSTGRES";
/// Where tests look for PostgreSQL unless [`URL_VAR`] says.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test database's URL.
pub fn base_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.into())
}

/// Whether a missing PostgreSQL must fail the tests rather than skip them.
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1")
}

/// A schema created for one test.
#[derive(Debug)]
pub struct TestSchema {
    base: String,
    name: String,
}

impl TestSchema {
    /// Creates a fresh schema, or says why not and returns `None` (see the
    /// module docs). `test` names the caller in the skip line.
    pub async fn create(test: &str) -> Option<Self> {
        match Self::try_create().await {
            Ok(schema) => Some(schema),
            Err(reason) => {
                let base = base_url();
                assert!(
                    !required(),
                    "{test}: no PostgreSQL at {base}: {reason} ({REQUIRE_VAR}=1)"
                );
                // Straight to stderr: the test harness captures `eprintln!`.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: no PostgreSQL at {base}: {reason} \
                     (set {URL_VAR}, or {REQUIRE_VAR}=1 to fail instead)"
                );
                None
            }
        }
    }

    /// Creates a fresh schema, or says why it could not.
    pub async fn try_create() -> Result<Self, String> {
        let base = base_url();
        let name = format!("t_{:016x}", rand::random::<u64>());
        execute(&base, &format!("CREATE SCHEMA {name}")).await?;
        Ok(Self { base, name })
    }

    /// The URL of the database with this schema as its search path, and
    /// the schema's name as the connections' application name.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}application_name={name}&options=-c%20search_path%3D{name}",
            self.base,
            name = self.name
        )
    }

    /// A new connection to this schema.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = self
            .url()
            .parse::<tokio_postgres::Config>()
            .unwrap()
            .connect(NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `sql` in the test database (outside the schema unless `sql`
    /// names it), e.g. to cut every connection to it.
    pub async fn execute(&self, sql: &str) -> Result<(), String> {
        execute(&self.base, sql).await
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop may run inside or outside a runtime: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            // Connections still open (a server's pool, a lock) would hold
            // the drop up: cut them first.
            let sql = format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE application_name = '{name}' AND pid <> pg_backend_pid();
                 DROP SCHEMA {name} CASCADE"
            );
            runtime.block_on(execute(&base, &sql))
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test schema {}: {error}", self.name);
        }
    }
}

/// Runs `sql` on a fresh connection to `url`.
async fn execute(url: &str, sql: &str) -> Result<(), String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| error_chain(&e))?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await.map_err(|e| error_chain(&e))?;
    let driver = tokio::spawn(connection);
    let result = client.batch_execute(sql).await.map_err(|e| error_chain(&e));
    drop(client);
    let _ = driver.await;
    result
}
