//! The database the directory keeps its state in: the server's own.

use deadpool_postgres::Pool;

use crate::store::SharedDatabase;

/// The server's database, as the directory reaches it.
#[derive(Debug, Clone)]
pub(crate) enum DirectoryDb {
    /// The SQLite store's writer and readers.
    Sqlite(SharedDatabase),
    /// The PostgreSQL store's pool.
    Postgres(Pool),
}
