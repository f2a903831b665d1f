//! The server under test: a `rempart-server` process the benchmark starts
//! (and whose CPU time and memory it can read), or a server already running
//! elsewhere, given by URL.
//!
//! A started server listens on a free port of 127.0.0.1, keeps its data in a
//! fresh temporary directory and publishes directory epochs every 200 ms.
//! Its stderr (its log) goes to `server.log` in that directory, so that it
//! does not mix with the benchmark's output; the directory is removed when
//! the [`ServerUnderTest`] is dropped, after the process has stopped.

use std::fmt;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use tempfile::TempDir;

use crate::error::BenchError;
use crate::memory::MemoryUsage;

/// The server binary's name, looked for beside the running executable.
const SERVER_BINARY: &str = "rempart-server";
/// The directory epoch interval of a started server.
const EPOCH_INTERVAL: &str = "200ms";
/// The file, in the server's temporary directory, that takes its stderr.
const LOG_FILE: &str = "server.log";
/// How long a stopping server has after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A rempart-server process started by the benchmark, or a server given by
/// URL.
pub struct ServerUnderTest {
    url: String,
    process: Option<Process>,
}

/// A started server: its process and its temporary directory.
struct Process {
    child: Child,
    /// Kept open so that the server never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    data: TempDir,
}

/// CPU time and memory of the server process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessUsage {
    /// User plus system CPU time so far, in seconds (`/proc/PID/stat`).
    pub cpu_seconds: f64,
    /// Resident set size now (`VmRSS`).
    pub rss_bytes: u64,
    /// Highest resident set size so far (`VmHWM`).
    pub hwm_bytes: u64,
}

impl ServerUnderTest {
    /// Starts the `rempart-server` binary found beside the running
    /// executable (`target/<profile>/rempart-server`, also for a test
    /// binary in `target/<profile>/deps`) with `--listen 127.0.0.1:0 --data
    /// <fresh temp dir> --epoch-interval 200ms` plus `extra_args`, and waits
    /// for its `listening on ADDR` line.
    pub fn start(extra_args: &[&str]) -> Result<Self, BenchError> {
        let binary = server_binary()?;
        let data =
            TempDir::new().map_err(BenchError::io("creating the server's data directory"))?;
        let log_path = data.path().join(LOG_FILE);
        let log = File::create(&log_path).map_err(BenchError::io(format!(
            "creating the server log {}",
            log_path.display()
        )))?;
        let mut child = Command::new(&binary)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--epoch-interval",
                EPOCH_INTERVAL,
                // The benchmarks measure the server at full speed, and the
                // connections benchmark opens as many as it is told.
                "--no-rate-limits",
                "--max-connections",
                "1000000",
            ])
            .arg("--data")
            .arg(data.path())
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(BenchError::io(format!("starting {}", binary.display())))?;
        let failed = |reason: String| BenchError::ServerStart {
            reason,
            log: log_path.clone(),
        };
        let Some(stdout) = child.stdout.take() else {
            stop(&mut child);
            return Err(failed("its stdout was not captured".to_owned()));
        };
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        let addr = match read {
            Ok(_) => line.trim().strip_prefix("listening on ").map(str::to_owned),
            Err(_) => None,
        };
        let Some(addr) = addr else {
            stop(&mut child);
            let status = child
                .try_wait()
                .ok()
                .flatten()
                .map_or_else(|| "still running".to_owned(), |s| s.to_string());
            return Err(failed(format!(
                "expected `listening on ADDR` as its first line, read {:?} ({status})",
                line.trim()
            )));
        };
        Ok(Self {
            url: format!("http://{addr}"),
            process: Some(Process {
                child,
                _stdout: stdout,
                data,
            }),
        })
    }

    /// The server at `url` if one is given (`--server`), else a server
    /// started with no extra arguments.
    pub fn given_or_started(url: Option<&str>) -> Result<Self, BenchError> {
        match url {
            Some(url) => Ok(Self::remote(url)),
            None => Self::start(&[]),
        }
    }

    /// A server already running at `url` (e.g. `http://127.0.0.1:7800`),
    /// not started by us: no process figures.
    pub fn remote(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            process: None,
        }
    }

    /// The server's base URL, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The base URL for WebSocket sessions, e.g. `ws://127.0.0.1:PORT`.
    pub fn ws_url(&self) -> String {
        if let Some(rest) = self.url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.url.clone()
        }
    }

    /// The started server's data directory; `None` for a remote server.
    pub fn data_dir(&self) -> Option<&Path> {
        self.process.as_ref().map(|p| p.data.path())
    }

    /// The file holding the started server's stderr; `None` for a remote
    /// server.
    pub fn log_file(&self) -> Option<PathBuf> {
        self.data_dir().map(|data| data.join(LOG_FILE))
    }

    /// The started server's process id; `None` for a remote server.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.child.id())
    }

    /// CPU time (user + system, from `/proc/PID/stat`, in seconds) and
    /// memory (`VmRSS`, `VmHWM` from `/proc/PID/status`) of the started
    /// server; `None` for a remote server.
    pub fn usage(&self) -> Result<Option<ProcessUsage>, BenchError> {
        let Some(pid) = self.pid() else {
            return Ok(None);
        };
        let stat_path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&stat_path)
            .map_err(BenchError::io(format!("reading {stat_path}")))?;
        let cpu_seconds = cpu_seconds(&stat, clock_ticks_per_second())
            .map_err(BenchError::io(format!("parsing {stat_path}")))?;
        let memory = MemoryUsage::of_process(pid)
            .map_err(BenchError::io(format!("reading /proc/{pid}/status")))?;
        Ok(Some(ProcessUsage {
            cpu_seconds,
            rss_bytes: memory.rss_bytes,
            hwm_bytes: memory.hwm_bytes,
        }))
    }
}

impl fmt::Debug for ServerUnderTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerUnderTest")
            .field("url", &self.url)
            .field("pid", &self.pid())
            .field("data_dir", &self.data_dir())
            .finish()
    }
}

impl Drop for ServerUnderTest {
    /// Stops a started server (SIGTERM, then SIGKILL if it has not exited
    /// within a few seconds); its temporary directory goes after it.
    fn drop(&mut self) {
        if let Some(process) = self.process.as_mut() {
            stop(&mut process.child);
        }
    }
}

/// Where the server binary should be: beside the running executable, or
/// beside the directory of a test binary (`target/<profile>/deps`).
fn server_binary() -> Result<PathBuf, BenchError> {
    binary_beside_this_one(SERVER_BINARY)
}

/// The binary `name` built beside the running executable
/// (`target/<profile>/NAME`, also for a test binary in
/// `target/<profile>/deps`).
pub(crate) fn binary_beside_this_one(name: &'static str) -> Result<PathBuf, BenchError> {
    let exe =
        std::env::current_exe().map_err(BenchError::io("finding the running executable's path"))?;
    let mut dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.pop();
    }
    let path = dir.join(name);
    match (path.is_file(), name) {
        (true, _) => Ok(path),
        (false, SERVER_BINARY) => Err(BenchError::ServerBinaryMissing { path }),
        (false, _) => Err(BenchError::BinaryMissing { name, path }),
    }
}

/// Sends SIGTERM to `child` and waits up to [`STOP_GRACE`] for it to exit,
/// then kills it.
fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let signalled = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .is_some_and(|pid| kill_process(pid, Signal::TERM).is_ok());
    if signalled {
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The kernel's clock ticks per second, the unit of `/proc/PID/stat`'s CPU
/// times (`USER_HZ`, 100 on Linux), from the auxiliary vector.
fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// User plus system CPU time, in seconds, from the text of a
/// `/proc/PID/stat` file (fields 14 and 15, in clock ticks).
fn cpu_seconds(stat: &str, ticks_per_second: u64) -> std::io::Result<f64> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    // The command name, field 2, is in parentheses and may hold spaces or
    // parentheses itself: the fields that follow start after the last ')'.
    let (_, after_name) = stat
        .rsplit_once(')')
        .ok_or_else(|| invalid("no ')' closing the command name"))?;
    let mut fields = after_name.split_whitespace();
    // `fields` starts at field 3 (state): utime is field 14, stime 15.
    let mut tick_field = |n: usize| -> std::io::Result<u64> {
        fields
            .nth(n)
            .and_then(|field| field.parse().ok())
            .ok_or_else(|| invalid("utime and stime are not numbers of clock ticks"))
    };
    let user = tick_field(11)?;
    let system = tick_field(0)?;
    if ticks_per_second == 0 {
        return Err(invalid("zero clock ticks per second"));
    }
    Ok(user.saturating_add(system) as f64 / ticks_per_second as f64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime() {
        let stat = "4242 (rempart (odd) name) S 1 4242 4242 0 -1 4194560 3113 0 0 0 \
                    250 50 0 0 20 0 5 0 100 1000 200 18446744073709551615";
        assert_eq!(cpu_seconds(stat, 100).unwrap(), 3.0);
        assert!(cpu_seconds("4242 rempart S 1", 100).is_err());
        assert!(cpu_seconds("4242 (rempart) S 1 2", 100).is_err());
    }

    #[test]
    fn this_process_has_spent_some_cpu() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let seconds = cpu_seconds(&stat, clock_ticks_per_second()).unwrap();
        assert!(seconds.is_finite() && seconds >= 0.0);
    }

    #[test]
    fn a_remote_server_has_no_process_figures() {
        let server = ServerUnderTest::remote("http://127.0.0.1:7800/");
        assert_eq!(server.url(), "http://127.0.0.1:7800");
        assert_eq!(server.ws_url(), "ws://127.0.0.1:7800");
        assert!(server.data_dir().is_none());
        assert!(server.usage().unwrap().is_none());
    }
}
