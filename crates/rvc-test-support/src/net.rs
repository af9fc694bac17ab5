//! Free loopback ports for servers a test starts as child processes.
//!
//! Binding port 0 and releasing it (the usual trick) races twice when the child binds later:
//! the kernel hands ports from the ephemeral range (32768–60999 on Linux) to every outgoing
//! connection, so a Postgres or Kafka client can take the port in between; and nextest runs
//! tests as parallel processes, so another test may be handed the same port. Both happened in
//! CI (a vector index that could not bind, its clients talking gRPC to the ingest API).
//!
//! So [`free_port`] picks below the ephemeral range, where connect() never lands, and holds a
//! lock file per port for the life of the test process, so no other test process picks it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Ports handed out: below Linux's default ephemeral range, above the well-known services
/// this project runs locally (Postgres 5432, Redis 6379, Prometheus 9090, `make run`'s 9xxx).
const RANGE: std::ops::Range<u16> = 20_000..32_000;

/// Lock files held for the life of this process, by port.
static HELD: Mutex<Vec<(u16, File)>> = Mutex::new(Vec::new());

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("rvc-test-ports")
}

/// A pseudo-random start so parallel test processes spread over the range.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    u64::from(nanos) ^ (u64::from(std::process::id()) << 20)
}

/// A port on 127.0.0.1 that nothing listens on, that no other test process holds, and that
/// this process has not handed out before. Panics (it is test support) when none is found.
pub fn free_port() -> u16 {
    let dir = lock_dir();
    std::fs::create_dir_all(&dir).expect("creating the test port lock directory");
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    let taken: HashSet<u16> = held.iter().map(|(p, _)| *p).collect();
    let span = u64::from(RANGE.end - RANGE.start);
    let start = seed() % span;
    // A stride coprime to the span visits every port once.
    let stride = 7_919;
    for i in 0..span {
        let offset = u16::try_from((start + i * stride) % span).unwrap_or(0);
        let port = RANGE.start + offset;
        if taken.contains(&port) {
            continue;
        }
        let Ok(file) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{port}.lock")))
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // another test process holds it
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue; // something outside the tests listens there
        }
        held.push((port, file));
        return port;
    }
    panic!("no free loopback port in {RANGE:?}");
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_for_port(addr: SocketAddr, timeout: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_outside_the_ephemeral_range_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        for p in ports {
            assert!(RANGE.contains(&p), "{p} outside {RANGE:?}");
            TcpListener::bind(("127.0.0.1", p)).expect("a handed-out port binds");
        }
    }

    #[test]
    fn a_port_held_by_another_holder_is_skipped() {
        let p = free_port();
        // Another process would find the lock taken: a second handle on the same file fails.
        let other = OpenOptions::new()
            .write(true)
            .open(lock_dir().join(format!("{p}.lock")))
            .expect("lock file exists");
        assert!(other.try_lock().is_err(), "the port's lock is held");
    }
}
