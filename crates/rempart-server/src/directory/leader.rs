//! Which node publishes, when several server nodes share one PostgreSQL
//! database.
//!
//! The publisher is whichever node holds a session-level advisory lock, on a
//! connection of its own taken out of the pool and kept for as long as it
//! leads. The lock's second key is the hash of the connection's schema, so
//! deployments (or tests) in different schemas of one database each elect
//! their own. When the leader's session ends (the node stopped, crashed or
//! lost the database), PostgreSQL releases the lock and the next node that
//! tries takes it.
//!
//! Holding the lock is what makes a node publish, not what makes a publish
//! safe: a node can still believe it leads for a moment after its session
//! ended. The epoch commit's own check in
//! [`DirectoryStorage`](super::DirectoryStorage) keeps two publishers from
//! both committing an epoch.

use std::time::Duration;

use deadpool_postgres::{ClientWrapper, Object, Pool};

use super::db::postgres_connect;
use crate::store::StoreError;

/// The first key of the publisher's advisory lock ("REM" and 2; the
/// schema migration's lock is 1).
const PUBLISHER_LOCK: i32 = 0x5245_4d02;
/// The first key of the advisory lock that serialises nodes opening the
/// directory (3).
const OPENING_LOCK: i32 = 0x5245_4d03;
/// How long taking the lock, or the leader's check that its connection is
/// alive, may take before the node gives up (the lead, for the check).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`PublisherLock::keep_or_take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lead {
    /// This node already led and still does.
    Kept,
    /// This node just took the lead.
    Taken,
    /// This node led, but its lock connection failed: it no longer leads.
    Lost,
    /// Another node leads.
    Follows,
}

/// This node's connection for the publisher lock, and whether it holds the
/// lock on it.
#[derive(Debug)]
pub(super) struct PublisherLock {
    pool: Pool,
    conn: Option<ClientWrapper>,
    held: bool,
}

impl PublisherLock {
    /// Not held yet: the first [`keep_or_take`](Self::keep_or_take) tries.
    pub(super) fn new(pool: Pool) -> Self {
        Self {
            pool,
            conn: None,
            held: false,
        }
    }

    /// Whether this node leads: checks the held lock's connection, or tries
    /// to take the lock.
    pub(super) async fn keep_or_take(&mut self) -> Result<Lead, StoreError> {
        if self.held {
            if self.alive().await {
                return Ok(Lead::Kept);
            }
            self.release();
            return Ok(Lead::Lost);
        }
        let conn = match self.conn.take() {
            Some(conn) if !conn.is_closed() => conn,
            _ => detached(&self.pool).await?,
        };
        let trying = conn.query_one(
            "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))",
            &[&PUBLISHER_LOCK],
        );
        let Ok(row) = tokio::time::timeout(CHECK_TIMEOUT, trying).await else {
            tracing::warn!("the database does not answer the directory publisher's lock");
            return Err(StoreError::Unavailable);
        };
        self.held = row?.try_get(0)?;
        self.conn = Some(conn);
        Ok(if self.held {
            Lead::Taken
        } else {
            Lead::Follows
        })
    }

    /// Whether this node holds the lock (as of the last check).
    pub(super) fn held(&self) -> bool {
        self.held
    }

    /// Gives the lead up: closes the lock's connection, which ends the
    /// session and so releases the lock.
    pub(super) fn release(&mut self) {
        self.held = false;
        self.conn = None;
    }

    /// Whether the lock's connection still answers.
    async fn alive(&self) -> bool {
        let Some(conn) = &self.conn else {
            return false;
        };
        if conn.is_closed() {
            tracing::warn!("the directory publisher's lock connection closed");
            return false;
        }
        match tokio::time::timeout(CHECK_TIMEOUT, conn.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "the directory publisher's lock connection failed");
                false
            }
            Err(_) => {
                tracing::warn!("the directory publisher's lock connection does not answer");
                false
            }
        }
    }
}

/// Held while a node opens its akd directory, so that two nodes starting
/// on an empty database do not both create the directory's first state.
/// Dropping it closes its connection, which releases the lock.
#[derive(Debug)]
pub(super) struct OpeningLock {
    _conn: ClientWrapper,
}

impl OpeningLock {
    /// Waits for the lock.
    pub(super) async fn take(pool: &Pool) -> Result<Self, StoreError> {
        let conn = detached(pool).await?;
        conn.execute(
            "SELECT pg_advisory_lock($1, hashtext(current_schema()))",
            &[&OPENING_LOCK],
        )
        .await?;
        Ok(Self { _conn: conn })
    }
}

/// A connection taken out of the pool for good, so that a session lock on
/// it never goes back to the pool, and is released when it is dropped.
async fn detached(pool: &Pool) -> Result<ClientWrapper, StoreError> {
    let conn: Object = postgres_connect(pool).await?;
    Ok(Object::take(conn))
}
