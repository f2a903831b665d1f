//! Whether the PostgreSQL trials can run, and a fresh schema for each.
//!
//! The database is the test kit's ([`rempart_testkit::postgres`]): named by
//! `REMPART_TEST_POSTGRES`, or the local default. The harness calls
//! [`probe`] once before it builds its trials and marks its PostgreSQL
//! trials ignored when the answer is [`Availability::Unreachable`] and not
//! `required`; each trial runs in [`with_schema`], which gives it a schema
//! of its own and drops it afterwards.

use std::future::Future;

use rempart_server::Database;
use rempart_testkit::postgres::{self as testkit, TestSchema};

/// Whether PostgreSQL tests can run.
#[derive(Debug, Clone)]
pub enum Availability {
    /// A database answered.
    Reachable,
    /// None answered.
    Unreachable {
        /// What a trial that runs anyway fails with.
        message: String,
        /// Whether `REMPART_REQUIRE_POSTGRES=1` asks the trials to fail
        /// rather than be skipped.
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

/// Tries the database once, on a runtime of its own, and prints one line if
/// the PostgreSQL tests will be skipped or fail for want of a database.
pub fn probe() -> Availability {
    let tried = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| runtime.block_on(TestSchema::try_create()));
    let Err(why) = tried else {
        return Availability::Reachable;
    };
    let url = testkit::base_url();
    // Shown as the server shows it: without a password.
    let shown = url
        .parse::<Database>()
        .map_or_else(|_| "the configured database".to_owned(), |d| d.to_string());
    let required = testkit::required();
    if required {
        println!(
            "postgres: FAILING, no PostgreSQL at {shown}: {why} ({}=1)",
            testkit::REQUIRE_VAR
        );
    } else {
        println!(
            "postgres: SKIPPED, no PostgreSQL at {shown}: {why} \
             (set {}, or {}=1 to fail instead)",
            testkit::URL_VAR,
            testkit::REQUIRE_VAR
        );
    }
    Availability::Unreachable {
        message: format!("no PostgreSQL at {shown}: {why}"),
        required,
    }
}

/// Runs `test` with the URL of a new schema, then drops the schema whether
/// `test` passed or panicked; a panic of `test` is passed on once the
/// schema is gone.
pub async fn with_schema<F, T>(test: F) -> Result<(), String>
where
    F: FnOnce(String) -> T,
    T: Future<Output = ()> + Send + 'static,
{
    let schema = TestSchema::try_create().await?;
    // On a task of its own, so that a panic ends the test, not the cleanup.
    let outcome = tokio::spawn(test(schema.url())).await;
    // Dropping the schema blocks on its own runtime: off this one.
    let _ = tokio::task::spawn_blocking(move || drop(schema)).await;
    match outcome {
        Ok(()) => Ok(()),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(format!("the test task was cancelled: {error}")),
    }
}
