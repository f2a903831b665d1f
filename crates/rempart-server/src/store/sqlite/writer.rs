//! The single writer thread and its group commit.
//!
//! SQLite allows one writer at a time and each durable commit costs an fsync,
//! so one thread owns the write connection. It takes every queued job (up to
//! [`MAX_BATCH`]), runs them in one transaction with a savepoint per job,
//! commits once, and only then answers each job. A job that fails rolls back
//! its own savepoint and gets its own error; the others still commit. No job
//! is answered `Ok` before the commit that holds it is durable.

use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 1000;
/// Most jobs waiting for the writer before senders wait.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;
/// How often the writer runs its maintenance task (e.g. pruning nonces).
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// One write, run by the writer thread inside its own savepoint.
type Job = Box<dyn FnOnce(&Connection) -> Ran + Send>;

/// A job that has run and waits to learn whether its batch committed.
struct Ran {
    succeeded: bool,
    answer: Box<dyn FnOnce(bool) + Send>,
}

enum Command {
    Run(Job),
    Stop,
}

/// Handle to the writer thread.
pub(super) struct Writer {
    commands: mpsc::Sender<Command>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    /// Starts the writer thread over `conn`. `maintenance` runs between
    /// batches, at most once per [`MAINTENANCE_INTERVAL`]: only while writes
    /// keep coming, which is when there is something to maintain.
    pub(super) fn spawn(
        conn: Connection,
        maintenance: fn(&Connection),
    ) -> Result<Self, StoreError> {
        let (commands, queue) = mpsc::channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("rempart-sqlite-writer".into())
            .spawn(move || run(conn, queue, maintenance))
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self {
            commands,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs `work` in the next batch; returns its result once the batch has
    /// committed (or the job's own error, in which case nothing of it stays).
    /// The job may fail with its own error type, as long as the writer's own
    /// failures ([`StoreError::Closed`], [`StoreError::CommitFailed`]) fit in it.
    pub(super) async fn execute<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (queued, answer) = job(work);
        self.commands
            .send(Command::Run(queued))
            .await
            .map_err(|_| StoreError::Closed)?;
        // No answer: the writer dropped the job unrun (its batch failed, or
        // it stopped first), so nothing of it was stored.
        answer.await.map_err(|_| StoreError::CommitFailed)?
    }

    /// Lets the writer finish the jobs queued so far, then waits for it to
    /// close the connection.
    pub(super) async fn stop(&self) {
        // If the writer is already gone there is nothing to stop.
        let _ = self.commands.send(Command::Stop).await;
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the SQLite writer thread did not stop cleanly");
            }
        }
    }
}

/// Wraps `work` as a job and returns the receiver of its answer.
fn job<T, E, F>(work: F) -> (Job, oneshot::Receiver<Result<T, E>>)
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move |conn| {
        let result = work(conn);
        Ran {
            succeeded: result.is_ok(),
            answer: Box::new(move |committed| {
                let result = match result {
                    Ok(_) if !committed => Err(StoreError::CommitFailed.into()),
                    result => result,
                };
                // The caller may have gone away; its write stands regardless.
                let _ = reply.send(result);
            }),
        }
    });
    (job, answer)
}

fn run(mut conn: Connection, mut queue: mpsc::Receiver<Command>, maintenance: fn(&Connection)) {
    let mut last_maintenance = Instant::now();
    let mut stopping = false;
    while !stopping {
        let Some(first) = queue.blocking_recv() else {
            break;
        };
        let mut batch = Vec::new();
        let commands = std::iter::once(first).chain(std::iter::from_fn(|| queue.try_recv().ok()));
        for command in commands {
            match command {
                Command::Run(job) => batch.push(job),
                Command::Stop => {
                    stopping = true;
                    break;
                }
            }
            if batch.len() == MAX_BATCH {
                break;
            }
        }
        run_batch(&mut conn, batch);
        if last_maintenance.elapsed() >= MAINTENANCE_INTERVAL {
            maintenance(&conn);
            last_maintenance = Instant::now();
        }
    }
}

/// Runs `batch` in one transaction and answers every job. Jobs the batch did
/// not reach (because the transaction itself failed) are dropped unrun, which
/// answers their callers with [`StoreError::CommitFailed`].
fn run_batch(conn: &mut Connection, batch: Vec<Job>) {
    if batch.is_empty() {
        return;
    }
    let mut ran = Vec::with_capacity(batch.len());
    let committed = match run_transaction(conn, batch, &mut ran) {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(%error, jobs = ran.len(), "write batch failed to commit");
            false
        }
    };
    for job in ran {
        (job.answer)(committed);
    }
}

fn run_transaction(
    conn: &mut Connection,
    batch: Vec<Job>,
    ran: &mut Vec<Ran>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for job in batch {
        // Savepoint statements are prepared once: a batch runs one per job.
        tx.prepare_cached("SAVEPOINT job")?.execute([])?;
        let outcome = job(&tx);
        let succeeded = outcome.succeeded;
        ran.push(outcome);
        if !succeeded {
            tx.prepare_cached("ROLLBACK TO job")?.execute([])?;
        }
        tx.prepare_cached("RELEASE job")?.execute([])?;
    }
    tx.commit()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn counter() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER UNIQUE)")
            .unwrap();
        conn
    }

    fn insert(value: i64) -> impl FnOnce(&Connection) -> Result<(), StoreError> {
        move |conn| {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [value])
                .map_err(|e| StoreError::Backend(Box::new(e)))?;
            Ok(())
        }
    }

    #[test]
    fn a_failing_job_rolls_back_alone() {
        let mut conn = counter();
        let (first, first_answer) = job(insert(1));
        // Writes 2, then fails on the duplicate 1: its write of 2 must vanish.
        let (second, second_answer) = job(|conn| {
            insert(2)(conn)?;
            insert(1)(conn)
        });
        let (third, third_answer) = job(insert(3));
        run_batch(&mut conn, vec![first, second, third]);
        assert!(first_answer.blocking_recv().unwrap().is_ok());
        assert!(second_answer.blocking_recv().unwrap().is_err());
        assert!(third_answer.blocking_recv().unwrap().is_ok());
        let values: Vec<i64> = conn
            .prepare("SELECT v FROM t ORDER BY v")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(values, [1, 3]);
    }

    #[tokio::test]
    async fn answers_come_after_commit_and_stop_drains_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER UNIQUE)")
            .unwrap();
        let writer = std::sync::Arc::new(Writer::spawn(conn, |_| {}).unwrap());
        let tasks: Vec<_> = (0..50)
            .map(|v| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.execute(insert(v)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        // Every acknowledged write is visible from another connection.
        let reader = Connection::open(&path).unwrap();
        let count: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(count, 50);
        writer.stop().await;
        assert!(matches!(
            writer.execute(insert(99)).await,
            Err(StoreError::Closed)
        ));
    }
}
