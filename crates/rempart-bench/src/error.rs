//! What can go wrong while a benchmark drives a server.

use std::io;
use std::path::PathBuf;

/// Why a benchmark run stopped. Failures of the server under test (an
/// unexpected status, a dropped session) are kept apart from failures here
/// (a missing binary, a file limit too low, bad options).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A file or process operation of the benchmark itself failed.
    #[error("{what}: {source}")]
    Io {
        /// What the benchmark was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The `rempart-server` binary is not where the benchmark looks for it.
    #[error(
        "no rempart-server binary at {}: build it with `cargo build --release -p rempart-server` (or give --server URL)",
        path.display()
    )]
    ServerBinaryMissing {
        /// Where it was expected: beside the running executable.
        path: PathBuf,
    },
    /// Another binary of the workspace is not where the benchmark looks
    /// for it.
    #[error(
        "no {name} binary at {}: build it with `cargo build --release --workspace`",
        path.display()
    )]
    BinaryMissing {
        /// The binary.
        name: &'static str,
        /// Where it was expected: beside the running executable.
        path: PathBuf,
    },
    /// The server process did not come up as expected.
    #[error("rempart-server did not start: {reason} (its log: {})", log.display())]
    ServerStart {
        /// What went wrong.
        reason: String,
        /// The file holding the server's stderr.
        log: PathBuf,
    },
    /// An HTTP request could not be sent or its answer not read.
    #[error("HTTP request failed")]
    Http(#[from] reqwest::Error),
    /// The server answered with a status other than the one expected.
    #[error("{method} {path}: expected a 2xx answer, the server answered {status} ({code})")]
    Status {
        /// The request's method.
        method: String,
        /// The request's path and query.
        path: String,
        /// The status received.
        status: u16,
        /// The `error` code of the body, or `-` if the body had none.
        code: String,
    },
    /// A WebSocket session could not be opened or failed.
    #[error("WebSocket")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// A JSON body could not be encoded or decoded.
    #[error("JSON")]
    Json(#[from] serde_json::Error),
    /// A user name the benchmark built (from a prefix and a number) is not
    /// a valid one.
    #[error(transparent)]
    UserName(#[from] rempart_proto::IdError),
    /// A device list the benchmark built could not be signed.
    #[error("could not sign a new account's device list")]
    DeviceList(#[from] rempart_proto::DeviceListError),
    /// This process may not open enough files for the run.
    #[error(
        "{needed} open files are needed but the hard limit is {hard}: raise it (`ulimit -Hn`, as root) or use fewer --connections"
    )]
    FileLimit {
        /// Files the run needs, about.
        needed: u64,
        /// The hard limit on open files (`ulimit -Hn`).
        hard: u64,
    },
    /// The options cannot make a run.
    #[error("{0}")]
    Options(String),
    /// The server under test broke the protocol or lost data.
    #[error("{0}")]
    Protocol(String),
    /// The storage ceiling's SQLite database failed.
    #[error("SQLite")]
    Sqlite(#[from] rusqlite::Error),
    /// The NATS reference run failed.
    #[error("NATS reference")]
    Nats(#[from] crate::nats::NatsError),
    /// Sessions the benchmark opened were no longer live when checked.
    #[error("{lost} of {opened} WebSocket sessions were not live at the end of the run")]
    SessionsLost {
        /// Sessions opened.
        opened: usize,
        /// Sessions that were closed or did not answer a ping.
        lost: usize,
    },
}

impl BenchError {
    /// An [`BenchError::Io`] saying what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for BenchError {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(error))
    }
}
