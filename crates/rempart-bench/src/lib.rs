//! Rempart's benchmarks, run by the `rempart-bench` binary.
//!
//! Each subcommand measures one part of the system on this machine and
//! prints its figures, as a table or, with `--json`, as one JSON object
//! whose values are all numbers. `--quick` shrinks every subcommand so that
//! it finishes in under a minute. The figures and the commands that gave
//! them are recorded in `BENCHMARKS.md` at the root of the repository.
//!
//! # `rempart-bench delivery` and `fanout`
//!
//! Delivery through a real server ([`delivery`]): devices on their
//! authenticated WebSocket sessions send application messages to their
//! groups and receive the others' as pushes; the figures are messages per
//! second acknowledged durably, the latency from send to receipt at each
//! other member, the server's CPU and memory, and the ratio to the storage
//! ceiling measured in the same run. `--peer nats` runs the same workload
//! through a NATS JetStream stream ([`nats`]). `--end-to-end N` also runs
//! real client engines, live, in the same run ([`end_to_end`]). [`fanout`] measures the
//! server's CPU time per message as the group grows from 2 to 10,000
//! members.
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
//! # `rempart-bench connections`
//!
//! Idle push sessions ([`connections`]): a `rempart-server` process
//! ([`server::ServerUnderTest`]) gets 10,000 accounts of one device each
//! ([`device::BenchDevice`]), then one authenticated WebSocket session per
//! device; the growth of the server's resident memory, divided by the
//! number of sessions, is `rss_bytes_per_connection`. The target is at most
//! 64 KiB per idle session.
//!
//! ```no_run
//! use rempart_bench::connections::{ConnectionsOptions, measure};
//! use rempart_bench::server::ServerUnderTest;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Needs `cargo build -p rempart-server`: the binary must sit beside ours.
//! let server = ServerUnderTest::start(&[])?;
//! let options = ConnectionsOptions { connections: 5, ..ConnectionsOptions::quick() };
//! let report = measure(&server, &options).await?;
//! assert_eq!(report.live, 5);
//! println!("{report}");
//! # Ok(())
//! # }
//! ```
//!
//! # The client engine: `cargo bench --bench client`
//!
//! The client engine's overhead over openmls alone, at 2, 100 and 1,000
//! members, is a bench target (`benches/client`), not a subcommand: it
//! uses `rempart-client`'s `bench` seams, which only a dev-dependency
//! enables, so that no binary a user runs is built with them.
//!
//! # `rempart-bench first-contact`
//!
//! What waiting for the witnesses adds to a first message to a new contact
//! ([`first_contact`]): the same first message timed on a server followed by
//! a live witness, which the sender requires, and on a server without one,
//! in the same run.
//!
//! # `rempart-bench catch-up`
//!
//! The client engine catching up and staying live ([`catch_up`]): a
//! device's `sync` over a backlog of 10,000 messages in one conversation,
//! against the same log read without the engine in the same run; and the
//! resident memory of `rempart listen` with 100 conversations, against one
//! with a single conversation.
//!
//! # Building blocks
//!
//! Benchmarks that drive a server share [`server::ServerUnderTest`] (a
//! server process started for the run, with its CPU time and memory, or a
//! server given by URL), [`device::BenchDevice`] (registered devices that
//! sign requests and open push sessions, without the client engine: the
//! server treats message bytes as opaque) and [`error::BenchError`].
//!
//! Timings depend on the machine and its load: nothing here asserts one.

pub mod catch_up;
pub mod connections;
pub mod delivery;
pub mod device;
pub mod directory;
pub mod end_to_end;
pub mod error;
pub mod fanout;
pub mod first_contact;
pub mod memory;
pub mod nats;
pub mod server;
