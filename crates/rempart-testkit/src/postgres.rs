//! A PostgreSQL schema of its own for one test, or a clear skip.
//!
//! Tests that need PostgreSQL call [`TestSchema::create`]. It connects to
//! `REMPART_TEST_POSTGRES` (default [`DEFAULT_URL`]) and creates a schema
//! with a random name, dropped again when the [`TestSchema`] is dropped, so
//! runs never collide. When PostgreSQL cannot be reached it prints a line
//! saying the test was skipped and why, and returns `None`; with
//! `REMPART_REQUIRE_POSTGRES=1` (CI sets it) it fails instead, so a missing
//! database can never pass unnoticed.

use std::time::Duration;

use tokio_postgres::NoTls;

/// Where tests look for PostgreSQL unless `REMPART_TEST_POSTGRES` says.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

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
        let base = std::env::var("REMPART_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_URL.into());
        let name = format!("t_{:016x}", rand::random::<u64>());
        match execute(&base, &format!("CREATE SCHEMA {name}")).await {
            Ok(()) => Some(Self { base, name }),
            Err(reason) => {
                let required = std::env::var("REMPART_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
                assert!(
                    !required,
                    "{test}: no PostgreSQL at {base}: {reason} (REMPART_REQUIRE_POSTGRES=1)"
                );
                eprintln!(
                    "SKIPPED {test}: no PostgreSQL at {base}: {reason} \
                     (set REMPART_TEST_POSTGRES, or REMPART_REQUIRE_POSTGRES=1 to fail instead)"
                );
                None
            }
        }
    }

    /// The URL of the database with this schema as its search path.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-c%20search_path%3D{}",
            self.base, self.name
        )
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
            runtime.block_on(execute(&base, &format!("DROP SCHEMA {name} CASCADE")))
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test schema {}: {error}", self.name);
        }
    }
}

/// Runs `sql` on a fresh connection to `url`.
async fn execute(url: &str, sql: &str) -> Result<(), String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let result = client.batch_execute(sql).await.map_err(|e| e.to_string());
    drop(client);
    let _ = driver.await;
    result
}
