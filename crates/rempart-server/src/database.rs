//! Which database a server runs on, as given by `--database URL`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The server's database.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file (`sqlite:PATH`): the embedded default, for one node.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://…` or `postgresql://…`), which
    /// several server nodes may share. Its tables live in the first schema
    /// of the connection's `search_path` (settable in the URL with
    /// `?options=-c%20search_path%3DNAME`).
    Postgres(PostgresUrl),
}

/// A PostgreSQL connection URL. It may hold a password, so neither
/// `Debug` nor `Display` shows it whole.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// The URL as given, password included: for connecting only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PostgresUrl {
    /// The URL with any password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.0;
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (credentials, host) = match authority.rsplit_once('@') {
            Some((credentials, host)) => (Some(credentials), host),
            None => (None, authority),
        };
        let tail = redact_query_password(tail);
        match credentials.map(|c| c.split_once(':').map_or(c, |(user, _)| user)) {
            Some(user) if credentials.is_some_and(|c| c.contains(':')) => {
                write!(f, "{scheme}://{user}:***@{host}{tail}")
            }
            Some(user) => write!(f, "{scheme}://{user}@{host}{tail}"),
            None => write!(f, "{scheme}://{host}{tail}"),
        }
    }
}

/// `tail` (path and query) with the value of a `password=` parameter hidden.
fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::Postgres(url) => url.fmt(f),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({self})")
    }
}

/// Why a `--database` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseError {
    /// The URL's scheme is not one the server knows.
    #[error("expected sqlite:PATH, postgres://… or postgresql://…")]
    UnknownScheme,
    /// `sqlite:` without a path.
    #[error("sqlite: needs a file path, e.g. sqlite:./rempart-data/rempart.sqlite3")]
    EmptyPath,
}

impl FromStr for Database {
    type Err = DatabaseError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(DatabaseError::EmptyPath);
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(PostgresUrl(url.to_owned())));
        }
        Err(DatabaseError::UnknownScheme)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(
            "sqlite:/var/lib/rempart/db".parse::<Database>().unwrap(),
            Database::Sqlite("/var/lib/rempart/db".into())
        );
        assert_eq!(
            "sqlite://rel/db".parse::<Database>().unwrap(),
            Database::Sqlite("rel/db".into())
        );
        assert!(matches!(
            "postgresql://h/db".parse::<Database>().unwrap(),
            Database::Postgres(_)
        ));
        assert_eq!("sqlite:".parse::<Database>(), Err(DatabaseError::EmptyPath));
        assert_eq!(
            "mysql://h/db".parse::<Database>(),
            Err(DatabaseError::UnknownScheme)
        );
    }

    #[test]
    fn a_password_never_shows() {
        for (url, shown) in [
            (
                "postgres://rempart:s3cret@db:5432/rempart",
                "postgres://rempart:***@db:5432/rempart",
            ),
            (
                "postgres://rempart@db/rempart?password=s3cret&sslmode=disable",
                "postgres://rempart@db/rempart?password=***&sslmode=disable",
            ),
            ("postgres://db/rempart", "postgres://db/rempart"),
        ] {
            let database: Database = url.parse().unwrap();
            assert_eq!(database.to_string(), shown);
            assert!(!format!("{database:?}").contains("s3cret"));
        }
    }
}
