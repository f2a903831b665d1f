//! The PostgreSQL backend, for several server nodes on one database.
//!
//! Every operation is one transaction on a pooled connection, at PostgreSQL's
//! default isolation (read committed) with explicit row locks where a check
//! guards a write: the account row for device-list changes, the group row
//! for appends, the device row for its inbox counter and KeyPackage uploads,
//! the link row for the parts of a device link. One-time KeyPackages are
//! claimed with `SKIP LOCKED`, so that each is handed out once. A
//! transaction that PostgreSQL aborts for a deadlock or serialization
//! failure runs again (see [`transaction`]). The server's writes
//! are acknowledged only after `COMMIT` returns, with `synchronous_commit`
//! on for every connection whatever the database's default, so an
//! acknowledged write is on disk (and on synchronous standbys).
//!
//! The tables live in the first schema of the connection's `search_path`,
//! which the URL can set (`?options=-c%20search_path%3Dname`); several
//! deployments, or tests, can share one database that way.
//!
//! A database that cannot be reached, or that drops a connection, makes an
//! operation fail with [`StoreError::Unavailable`] (503 with `Retry-After`
//! for clients); the pool replaces broken connections by itself, so the
//! server recovers when the database is back. An operation whose `COMMIT`
//! was cut off is reported unavailable too: it may or may not have
//! committed, and the client's retry with the same message id settles it.

mod accounts;
mod delivery;
mod inbox;
mod keypackages;
mod links;
mod mail;
mod operations;
mod schema;
#[cfg(test)]
mod testing;
mod transaction;

use std::fmt;
use std::time::Duration;

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// Most connections a node keeps to the database.
const MAX_CONNECTIONS: usize = 16;
/// How long an operation waits for a connection (pool full, or database
/// unreachable) before it fails as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL [`Store`](crate::store::Store).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The connection settings, for connections outside the pool (push
    /// across nodes listens on one).
    config: tokio_postgres::Config,
    /// The URL without its password, for logs and `Debug`.
    display: String,
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or key-value
    /// connection string) and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| StoreError::Backend(Box::new(e)))?;
        let display = describe(&config);
        let mut config = config;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let options = match config.get_options() {
            Some(options) => format!("{options} -c synchronous_commit=on"),
            None => "-c synchronous_commit=on".to_owned(),
        };
        config.options(options);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(MAX_CONNECTIONS)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let store = Self {
            pool,
            config,
            display,
        };
        let mut conn = store.conn().await?;
        schema::migrate(&mut conn).await?;
        Ok(store)
    }

    /// A connection from the pool; [`StoreError::Closed`] once the store is
    /// closed.
    pub(crate) async fn conn(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|error| match error {
            PoolError::Closed => StoreError::Closed,
            error => {
                tracing::warn!(%error, "no database connection");
                StoreError::Unavailable
            }
        })
    }

    /// The pool, for the parts of the server that keep their own tables in
    /// this database (the key-transparency directory, push across nodes).
    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The connection settings (with `synchronous_commit` on).
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.display)
            .finish_non_exhaustive()
    }
}

/// `user@host:port/dbname`, never the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or_default(),
        config.get_dbname().unwrap_or_default()
    )
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        if is_unavailable(&error) {
            tracing::warn!(%error, "the database connection failed");
            return Self::Unavailable;
        }
        Self::Backend(Box::new(error))
    }
}

/// Whether the SQL state `code` (as the server sent it, of any length)
/// means the database is out of reach: 08 (connection exception), 57P01
/// to 57P03 (shutdown, crash, cannot connect now), 53300 (too many
/// connections).
fn is_unavailable_state(code: &SqlState) -> bool {
    // A code is five characters; a shorter one has no class.
    let class = code.code().get(..2).unwrap_or_default();
    class == "08"
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
}

/// Whether `error` means the database is (for now) out of reach, rather
/// than that it refused the operation: the connection is gone, or the
/// server is shutting down, starting up or out of connections.
fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => is_unavailable_state(code),
        // No SQL state: unavailable if the socket failed (reset, refused,
        // timed out), not if a value failed to convert.
        None => {
            std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_states_of_any_length_are_judged_without_a_panic() {
        for (code, unavailable) in [
            ("08006", true),
            ("08", true),
            ("57P01", true),
            ("53300", true),
            ("40001", false),
            ("23505", false),
            ("0", false),
            ("", false),
            ("é", false),
            ("aé", false),
        ] {
            assert_eq!(
                is_unavailable_state(&SqlState::from_code(code)),
                unavailable,
                "{code:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_schema_version_no_server_writes_is_refused() {
        let Some(db) = testing::TestDatabase::open("negative_schema_version").await else {
            return;
        };
        let client = db.client().await;
        for version in [-3_i64, schema::LATEST_VERSION + 1] {
            client
                .execute("UPDATE schema_version SET version = $1", &[&version])
                .await
                .unwrap();
            let mut conn = db.store.pool.get().await.unwrap();
            let refused = schema::migrate(&mut conn).await;
            assert!(
                matches!(&refused, Err(StoreError::Corrupt(message)) if message.contains(&version.to_string())),
                "{version}: {refused:?}"
            );
        }
    }
}
