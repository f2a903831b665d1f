//! Rempart's benchmarks, run by the `rempart-bench` binary.
//!
//! Each subcommand measures one part of the system on this machine and
//! prints its figures, as a table or, with `--json`, as one JSON object
//! whose values are all numbers. `--quick` shrinks every subcommand so that
//! it finishes in under a minute. The figures and the commands that gave
//! them are recorded in `BENCHMARKS.md` at the root of the repository.
//!
//! # `rempart-bench directory`
//!
//! The key-transparency directory ([`directory`]): how fast akd publishes
//! epochs on the server's SQLite storage (`rempart_server::directory::
//! DirectoryStorage`: WAL, `synchronous=FULL`, one group-committing writer)
//! compared with akd's own in-memory store given the same updates in the
//! same epochs; how long a lookup proof takes to generate, how large it is
//! in the protobuf encoding the server serves, and how long a client takes
//! to decode and verify it; and the process's memory once the directory
//! holds every user (100,000 by default). The target is a persistent publish
//! rate of at least half the in-memory one (`ratio_to_inmemory` ≥ 0.5).
//!
//! ```
//! use rempart_bench::directory::{DirectoryOptions, measure_in_process};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = DirectoryOptions {
//!     users: 20,
//!     batch: 10,
//!     update_epochs: 1,
//!     lookups: 2,
//!     cache: false,
//!     cache_mib: None,
//! };
//! let report = measure_in_process(&options).await?;
//! assert_eq!(report.epochs, 2);
//! println!("{report}");
//! # Ok(())
//! # }
//! ```
//!
//! Timings depend on the machine and its load: nothing here asserts one.

pub mod directory;
pub mod memory;
