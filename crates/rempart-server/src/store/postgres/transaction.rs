//! How an operation runs: on one pooled connection, as one transaction that
//! commits before the operation answers, again from the start when
//! PostgreSQL aborted it for a serialization failure or a deadlock.
//!
//! An operation is a function of a transaction (or, for a single statement,
//! of a connection outside any explicit transaction, where PostgreSQL runs
//! the statement as its own transaction) and of its arguments by reference,
//! so that it can run again on a retry.

use std::future::Future;
use std::pin::Pin;

use deadpool_postgres::{Client, Transaction};
use rempart_proto::DeviceId;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;

use super::PostgresStore;
use crate::store::StoreError;

/// The future of an operation borrowing its transaction and arguments.
pub(super) type Pending<'t, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 't>>;

/// How many times an operation runs before a serialization failure or a
/// deadlock is reported (as [`StoreError::Backend`]).
const ATTEMPTS: u32 = 5;

impl PostgresStore {
    /// Runs `op` in one transaction and commits it.
    pub(super) async fn write<A, T>(
        &self,
        args: &A,
        op: for<'t> fn(&'t Transaction<'t>, &'t A) -> Pending<'t, T>,
    ) -> Result<T, StoreError>
    where
        A: Sync + ?Sized,
    {
        retrying(move || self.write_once(args, op)).await
    }

    /// Runs `op`, one statement or independent reads, on a connection
    /// outside any explicit transaction: no `BEGIN` and `COMMIT` round trips.
    pub(super) async fn run<A, T>(
        &self,
        args: &A,
        op: for<'c> fn(&'c Client, &'c A) -> Pending<'c, T>,
    ) -> Result<T, StoreError>
    where
        A: Sync + ?Sized,
    {
        retrying(move || async move {
            let conn = self.conn().await?;
            op(&conn, args).await
        })
        .await
    }

    async fn write_once<A, T>(
        &self,
        args: &A,
        op: for<'t> fn(&'t Transaction<'t>, &'t A) -> Pending<'t, T>,
    ) -> Result<T, StoreError>
    where
        A: Sync + ?Sized,
    {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // On an error, dropping `tx` rolls it back before the connection
        // serves anything else.
        let value = op(&tx, args).await?;
        tx.commit().await?;
        Ok(value)
    }
}

/// Calls `attempt` until it succeeds, fails for another reason than a
/// serialization failure or deadlock, or has run [`ATTEMPTS`] times.
async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempts = 1;
    loop {
        match attempt().await {
            Err(error) if attempts < ATTEMPTS && is_transient(&error) => {
                tracing::debug!(%error, attempts, "transaction aborted by the database; retrying");
                attempts += 1;
            }
            result => return result,
        }
    }
}

/// Whether PostgreSQL aborted the transaction only because of concurrent
/// ones, so that running it again may succeed.
pub(super) fn is_transient(error: &StoreError) -> bool {
    let StoreError::Backend(error) = error else {
        return false;
    };
    error
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|code| {
            *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        })
}

/// A count, cursor or version as a `bigint`.
pub(super) fn to_sql(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange(what))
}

/// A `bigint` that must not be negative.
pub(super) fn from_sql(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {what}")))
}

/// Column `index` of `row`, a `bytea` of exactly `N` bytes (an identifier).
pub(super) fn fixed<const N: usize>(
    row: &Row,
    index: usize,
    what: &str,
) -> Result<[u8; N], StoreError> {
    let bytes: &[u8] = row.try_get(index)?;
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} of {} bytes", bytes.len())))
}

/// Device ids as a `bytea[]` parameter.
pub(super) fn device_ids(ids: &[DeviceId]) -> Vec<&[u8]> {
    ids.iter().map(|id| id.as_bytes().as_slice()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::store::Store as _;
    use crate::store::postgres::testing::TestDatabase;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deadlock_is_transient_a_constraint_violation_is_not() {
        let Some(db) = TestDatabase::open("tx_deadlock").await else {
            return;
        };
        let (a, b) = (db.client().await, db.client().await);
        a.batch_execute("CREATE TABLE pair (id int PRIMARY KEY); INSERT INTO pair VALUES (1), (2)")
            .await
            .unwrap();
        a.batch_execute("BEGIN; UPDATE pair SET id = id WHERE id = 1")
            .await
            .unwrap();
        b.batch_execute("BEGIN; UPDATE pair SET id = id WHERE id = 2")
            .await
            .unwrap();
        // Each now waits for the other: PostgreSQL aborts one of them.
        let (first, second) = tokio::join!(
            a.batch_execute("UPDATE pair SET id = id WHERE id = 2"),
            b.batch_execute("UPDATE pair SET id = id WHERE id = 1"),
        );
        let error = match (first, second) {
            (Err(error), Ok(())) | (Ok(()), Err(error)) => error,
            other => panic!("expected exactly one deadlock victim, got {other:?}"),
        };
        assert!(is_transient(&StoreError::from(error)));

        a.batch_execute("ROLLBACK").await.unwrap();
        b.batch_execute("ROLLBACK").await.unwrap();
        let duplicate = a
            .batch_execute("INSERT INTO pair VALUES (1)")
            .await
            .unwrap_err();
        assert!(!is_transient(&StoreError::from(duplicate)));
        assert!(!is_transient(&StoreError::ReplayedNonce));
    }

    #[tokio::test]
    async fn a_closed_store_refuses_operations() {
        let Some(db) = TestDatabase::open("tx_closed").await else {
            return;
        };
        let device = db.device("alice").await;
        db.store.close().await;
        assert!(matches!(
            db.store.consume_nonce(device, "n".into(), 0).await,
            Err(StoreError::Closed)
        ));
        assert!(matches!(db.store.prune(0).await, Err(StoreError::Closed)));
    }
}
