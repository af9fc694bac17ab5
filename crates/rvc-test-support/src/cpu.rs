//! Where a bench's CPU went: CPU time (user + system) of this machine's processes, grouped by
//! what they are, read from `/proc/<pid>/stat` (Linux). Take a [`CpuTimes`] before and after a
//! run and subtract: on a 2-core machine where the bench, Postgres and the S3 server share the
//! cores, this says which of them a faster step would have to spend less in.
use std::collections::BTreeMap;
use std::time::Duration;

/// CPU time per process group, summed over its processes alive at the snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuTimes(BTreeMap<&'static str, Duration>);

/// The group of a process by its command name: `postgres`, `s3s-fs`, `redis`, `bench` (this
/// process) or `other`.
fn group(comm: &str, pid: u32) -> &'static str {
    if pid == std::process::id() {
        "bench"
    } else if comm.starts_with("postgres") {
        "postgres"
    } else if comm.starts_with("s3s-fs") {
        "s3s-fs"
    } else if comm.starts_with("redis") {
        "redis"
    } else {
        "other"
    }
}

impl CpuTimes {
    /// Reads every process's CPU time now (processes that exit meanwhile are skipped; a
    /// process that exits between two snapshots takes its time with it).
    pub fn now() -> Self {
        // The kernel reports these in USER_HZ, 100 on every Linux target.
        const TICKS_PER_S: u64 = 100;
        let mut out = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Self(out);
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            // After ") ": state is field 3, utime and stime are fields 14 and 15.
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            let ticks: u64 = [11, 12]
                .iter()
                .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
                .sum();
            *out.entry(group(comm, pid)).or_default() +=
                Duration::from_millis(ticks * 1000 / TICKS_PER_S);
        }
        Self(out)
    }

    /// The CPU time each group spent from `earlier` to `self`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|(g, t)| {
                    (
                        *g,
                        t.saturating_sub(earlier.0.get(g).copied().unwrap_or_default()),
                    )
                })
                .collect(),
        )
    }

    /// One group's CPU time.
    pub fn of(&self, group: &str) -> Duration {
        self.0.get(group).copied().unwrap_or_default()
    }

    /// One group's CPU milliseconds per unit of work (`units` photos, requests, …).
    pub fn ms_per(&self, group: &str, units: usize) -> f64 {
        self.of(group).as_secs_f64() * 1000.0 / units.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_burning_cpu_shows_under_bench() {
        let before = CpuTimes::now();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let spent = CpuTimes::now().since(&before).of("bench");
        assert!(spent >= Duration::from_millis(150), "{spent:?}");
    }
}
