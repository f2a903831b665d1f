//! A process's memory, as Linux reports it in `/proc/PID/status`: this
//! process's, or another's (e.g. the server under test).

use std::io;

/// Resident memory of a process, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Resident set size now (`VmRSS`).
    pub rss_bytes: u64,
    /// Highest resident set size so far (`VmHWM`).
    pub hwm_bytes: u64,
}

impl MemoryUsage {
    /// Reads this process's `VmRSS` and `VmHWM`.
    pub fn current() -> io::Result<Self> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        Self::parse(&status)
    }

    /// Reads the `VmRSS` and `VmHWM` of process `pid`.
    pub fn of_process(pid: u32) -> io::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Self::parse(&status)
    }

    /// The two figures in the text of a `/proc/PID/status` file.
    pub fn parse(status: &str) -> io::Result<Self> {
        Ok(Self {
            rss_bytes: field_bytes(status, "VmRSS")?,
            hwm_bytes: field_bytes(status, "VmHWM")?,
        })
    }
}

/// The value of a `Name:   1234 kB` line of `status`, in bytes.
fn field_bytes(status: &str, name: &str) -> io::Result<u64> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .ok_or_else(|| invalid(format!("no {name} line in /proc/PID/status")))?;
    let mut words = line.split_whitespace();
    let (Some(number), Some("kB"), None) = (words.next(), words.next(), words.next()) else {
        return Err(invalid(format!(
            "{name} in /proc/PID/status is {line:?}, not a number of kB"
        )));
    };
    let kib: u64 = number
        .parse()
        .map_err(|_| invalid(format!("{name} in /proc/PID/status is {number:?} kB")))?;
    Ok(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_peak_in_kib() {
        let status = "Name:\tbench\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nThreads:\t2\n";
        assert_eq!(
            MemoryUsage::parse(status).unwrap(),
            MemoryUsage {
                rss_bytes: 1024 * 1024,
                hwm_bytes: 2048 * 1024,
            }
        );
    }

    #[test]
    fn refuses_a_missing_or_odd_field() {
        assert!(MemoryUsage::parse("VmRSS:\t1 kB\n").is_err());
        assert!(MemoryUsage::parse("VmRSS:\t1 MB\nVmHWM:\t1 kB\n").is_err());
    }

    #[test]
    fn this_process_has_some() {
        let usage = MemoryUsage::current().unwrap();
        assert!(usage.rss_bytes > 0);
        assert!(usage.hwm_bytes >= usage.rss_bytes);
    }

    #[test]
    fn another_process_has_some() {
        let usage = MemoryUsage::of_process(std::process::id()).unwrap();
        assert!(usage.rss_bytes > 0);
        assert!(MemoryUsage::of_process(u32::MAX).is_err());
    }
}
