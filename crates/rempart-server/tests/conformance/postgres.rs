//! A fresh PostgreSQL schema per test, or one line saying why the
//! PostgreSQL tests are skipped.
//!
//! The database is named by `REMPART_TEST_POSTGRES` (a `postgres://` URL or
//! a key-value connection string), [`DEFAULT_URL`] if unset. A test binary
//! calls [`probe`] once before it builds its trials, marks its PostgreSQL
//! trials ignored when the answer is [`Availability::Unreachable`] and not
//! `required`, and runs each trial in [`with_schema`], which gives it a
//! schema of its own and drops it afterwards. Other test files can include
//! this module with `#[path = "conformance/postgres.rs"] mod postgres;`.

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// The variable naming the test database.
pub const URL_VAR: &str = "REMPART_TEST_POSTGRES";
/// Set to `1` to fail instead of skipping when no PostgreSQL answers.
pub const REQUIRE_VAR: &str = "REMPART_REQUIRE_POSTGRES";
/// The test database when [`URL_VAR`] is unset.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// How long a connection attempt may take before the database counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether PostgreSQL tests can run.
#[derive(Debug, Clone)]
pub enum Availability {
    /// A database answered at this URL.
    Reachable(String),
    /// None answered.
    Unreachable {
        /// What a trial that runs anyway fails with.
        message: String,
        /// Whether [`REQUIRE_VAR`] asks the trials to fail rather than be
        /// skipped.
        required: bool,
    },
}

impl Availability {
    /// Whether the PostgreSQL trials should be marked ignored.
    pub fn skipped(&self) -> bool {
        matches!(
            self,
            Self::Unreachable {
                required: false,
                ..
            }
        )
    }
}

/// Connects once to the database named by the environment, on a runtime of
/// its own, and prints one line if the PostgreSQL tests will be skipped or
/// fail for want of a database.
pub fn probe() -> Availability {
    let url = std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_owned());
    let connected = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| reason(&e))
        .and_then(|runtime| runtime.block_on(connect(&url)).map(drop));
    let Err(why) = connected else {
        return Availability::Reachable(url);
    };
    let shown = redact(&url);
    let required = std::env::var(REQUIRE_VAR).is_ok_and(|value| value == "1");
    if required {
        println!("postgres: FAILING, no PostgreSQL at {shown}: {why} ({REQUIRE_VAR}=1)");
    } else {
        println!(
            "postgres: SKIPPED, no PostgreSQL at {shown}: {why} \
             (set {URL_VAR}, or {REQUIRE_VAR}=1 to fail instead)"
        );
    }
    Availability::Unreachable {
        message: format!("no PostgreSQL at {shown}: {why}"),
        required,
    }
}

/// Runs `test` with the URL of a new schema `<prefix>_<random>` of the
/// database at `url`, in which the URL's connections work, then drops the
/// schema whether `test` passed or panicked; a panic of `test` is passed on
/// once the schema is gone. `prefix` must be a lowercase SQL identifier.
pub async fn with_schema<F, T>(url: &str, prefix: &str, test: F) -> Result<(), String>
where
    F: FnOnce(String) -> T,
    T: Future<Output = ()> + Send + 'static,
{
    let client = connect(url).await?;
    let schema = format!("{prefix}_{:016x}", rand::random::<u64>());
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .map_err(|e| format!("cannot create schema {schema}: {}", reason(&e)))?;
    // On a task of its own, so that a panic ends the test, not the cleanup.
    let outcome = tokio::spawn(test(schema_url(url, &schema))).await;
    let dropped = client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .map_err(|e| format!("cannot drop schema {schema}: {}", reason(&e)));
    match outcome {
        Ok(()) => dropped,
        Err(error) if error.is_panic() => {
            if let Err(message) = dropped {
                eprintln!("{message}");
            }
            std::panic::resume_unwind(error.into_panic())
        }
        Err(error) => Err(format!("the test task was cancelled: {error}")),
    }
}

/// `url` with `schema` as the first schema of every connection's
/// `search_path`.
fn schema_url(url: &str, schema: &str) -> String {
    if url.contains("://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}options=-c%20search_path%3D{schema}")
    } else {
        format!("{url} options='-c search_path={schema}'")
    }
}

/// A connection to `url`, its driver running on the current runtime.
async fn connect(url: &str) -> Result<Client, String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|e| reason(&e))?;
    config.connect_timeout(CONNECT_TIMEOUT);
    let (client, connection) = config.connect(NoTls).await.map_err(|e| reason(&e))?;
    tokio::spawn(async move {
        // A broken connection shows as errors of the client's queries.
        let _ = connection.await;
    });
    Ok(client)
}

/// `error` and its sources, outermost first: tokio-postgres puts the useful
/// part ("connection refused", "database does not exist") in the source.
fn reason(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// `url` without its password, for printing.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let user = authority
            .rsplit_once('@')
            .and_then(|(userinfo, host)| Some((userinfo.split_once(':')?.0, host)));
        return match user {
            Some((user, host)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        };
    }
    url.split_whitespace()
        .map(|pair| match pair.split_once('=') {
            Some(("password", _)) => "password=***",
            _ => pair,
        })
        .collect::<Vec<_>>()
        .join(" ")
}
