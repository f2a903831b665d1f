//! The storage conformance suite: every case runs against each [`Store`]
//! implementation, as `sqlite::<case>` and `postgres::<case>`, on a fresh
//! store and a runtime of its own.
//!
//! SQLite runs in a temporary directory. PostgreSQL runs in a fresh schema
//! of the database named by `REMPART_TEST_POSTGRES` (see [`postgres`]); if
//! none answers, the PostgreSQL trials are ignored with one line saying
//! why, or fail with `REMPART_REQUIRE_POSTGRES=1`.
//!
//! The key-transparency directory's storage (akd's `Database` over the same
//! database) has cases of its own, akd's storage test cases among them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "conformance/accounts.rs"]
mod accounts;
#[path = "conformance/akd_records.rs"]
mod akd_records;
#[path = "conformance/cursors.rs"]
mod cursors;
#[path = "conformance/directory.rs"]
mod directory;
#[path = "conformance/group_log.rs"]
mod group_log;
#[path = "conformance/inbox.rs"]
mod inbox;
#[path = "conformance/keypackages.rs"]
mod keypackages;
#[path = "conformance/links.rs"]
mod links;
#[path = "conformance/nonces.rs"]
mod nonces;
#[path = "conformance/postgres.rs"]
mod postgres;
#[path = "conformance/retention.rs"]
mod retention;
#[path = "conformance/support.rs"]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use rempart_server::directory::DirectoryStorage;
use rempart_server::store::{PostgresStore, SqliteStore};

use crate::postgres::Availability;
use crate::support::Db;

/// One case: it gets a fresh store (or the directory's storage over a fresh
/// database) and panics on any deviation.
#[derive(Clone, Copy)]
enum Case {
    Store(fn(Db) -> CaseFuture),
    Directory(fn(DirectoryStorage) -> CaseFuture),
}
/// What a [`Case`] runs.
type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The table of cases, named `<area>::<case>`.
fn cases() -> Vec<(&'static str, Case)> {
    macro_rules! cases {
        ($($area:ident::$case:ident),* $(,)?) => {
            vec![$((
                concat!(stringify!($area), "::", stringify!($case)),
                Case::Store(|store: Db| -> CaseFuture { Box::pin($area::$case(store)) }),
            )),*]
        };
    }
    macro_rules! directory_cases {
        ($($case:ident),* $(,)?) => {
            vec![$((
                concat!("directory::", stringify!($case)),
                Case::Directory(|storage| -> CaseFuture { Box::pin(directory::$case(storage)) }),
            )),*]
        };
    }
    let mut all = directory_cases![
        akd_storage_test_cases,
        retrieval_flags,
        records_come_back_whole_and_in_the_order_asked,
        batch_reads_span_several_queries,
        an_epoch_commit_must_advance_the_epoch,
        a_failing_batch_leaves_nothing,
    ];
    all.extend(cases![
        accounts::registration,
        accounts::registration_by_invitation,
        accounts::replace_device_list,
        accounts::new_key_for_a_device,
        accounts::mail_addresses_and_certificates,
        keypackages::upload_and_limit,
        keypackages::claim_order_and_last_resort,
        keypackages::batch_claim,
        keypackages::claim_once_under_concurrency,
        group_log::create_and_membership_checks,
        group_log::one_commit_per_epoch_under_concurrency,
        group_log::retries_and_duplicate_message_ids,
        group_log::application_messages,
        group_log::membership_changes_and_welcomes,
        cursors::pages_cover_the_log_once,
        cursors::concurrent_appends_have_gap_free_seqs,
        inbox::read_and_ack,
        inbox::removed_device_loses_its_inbox,
        nonces::replay,
        nonces::concurrent_double_use,
        links::lifecycle,
        links::expiry,
        retention::prune,
    ]);
    all
}

fn main() {
    let args = Arguments::from_args();
    let cases = cases();
    let postgres_wanted = cases.iter().any(|(name, _)| {
        !args.is_filtered_out(&Backend::Postgres.trial(name, Case::Store(noop), None))
    });
    let postgres = postgres_wanted.then(postgres::probe);
    let trials = [Backend::Sqlite, Backend::Postgres]
        .into_iter()
        .flat_map(|backend| {
            let postgres = postgres.as_ref();
            cases
                .iter()
                .map(move |(name, case)| backend.trial(name, *case, postgres))
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// A store implementation under test.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The first part of its trials' names.
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// The trial `<backend>::<name>`, ignored when PostgreSQL is skipped.
    fn trial(self, name: &str, case: Case, postgres: Option<&Availability>) -> Trial {
        let postgres = postgres.cloned();
        let ignored =
            matches!(self, Self::Postgres) && postgres.as_ref().is_some_and(Availability::skipped);
        Trial::test(format!("{}::{name}", self.name()), move || {
            self.run(case, postgres)
        })
        .with_ignored_flag(ignored)
    }

    /// Runs `case` on a fresh store of this backend, on a multi-threaded
    /// runtime so that concurrent cases really interleave.
    fn run(self, case: Case, postgres: Option<Availability>) -> Result<(), Failed> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()?;
        runtime.block_on(self.run_on(case, postgres))
    }

    /// The body of [`Self::run`], on its runtime.
    async fn run_on(self, case: Case, postgres: Option<Availability>) -> Result<(), Failed> {
        match (self, postgres) {
            (Self::Sqlite, _) => {
                let dir = tempfile::tempdir()?;
                let store = SqliteStore::open(dir.path().join("rempart.db")).await?;
                let directory = DirectoryStorage::new(&store);
                run_case(case, Arc::new(store), directory).await;
                Ok(())
            }
            (Self::Postgres, Some(Availability::Reachable)) => {
                postgres::with_schema(|schema_url: String| async move {
                    let store = PostgresStore::open(&schema_url).await.unwrap();
                    let directory = DirectoryStorage::new_postgres(&store);
                    run_case(case, Arc::new(store), directory).await;
                })
                .await?;
                Ok(())
            }
            (Self::Postgres, Some(Availability::Unreachable { message, .. })) => {
                Err(message.into())
            }
            (Self::Postgres, None) => Err("PostgreSQL was not probed".into()),
        }
    }
}

/// Runs `case`, then closes the store as the server does on shutdown.
async fn run_case(case: Case, store: Db, directory: DirectoryStorage) {
    match case {
        Case::Store(case) => case(store.clone()).await,
        Case::Directory(case) => case(directory).await,
    }
    store.close().await;
}

/// A case that checks nothing, to ask the filter about a trial name.
fn noop(_: Db) -> CaseFuture {
    Box::pin(async {})
}
