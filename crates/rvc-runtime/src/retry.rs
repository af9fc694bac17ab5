//! Waiting for a dependency at start: retry an operation while its error is transient, with
//! doubling delays (200 ms up to 2 s), until a deadline.
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

const FIRST_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(2);

/// Runs `op` until it succeeds, its error is not `transient`, or retrying would pass `wait`;
/// then returns its last result. `what` names the dependency in the log line of each wait.
pub async fn until_deadline<T, E, F, Fut>(
    what: &str,
    wait: Duration,
    transient: impl Fn(&E) -> bool,
    mut op: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + wait;
    let mut delay = FIRST_DELAY;
    loop {
        match op().await {
            Err(e) if transient(&e) && Instant::now() + delay < deadline => {
                tracing::info!(dependency = what, error = %e, retry_in_ms = delay.as_millis() as u64,
                    "not answering yet; waiting");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_until_success() {
        let calls = AtomicU32::new(0);
        let r: Result<u32, String> = until_deadline(
            "dep",
            Duration::from_secs(10),
            |_| true,
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err(format!("down {n}"))
                } else {
                    Ok(n)
                }
            },
        )
        .await;
        assert_eq!(r, Ok(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_returns_at_once() {
        let calls = AtomicU32::new(0);
        let r: Result<(), String> = until_deadline(
            "dep",
            Duration::from_secs(10),
            |e: &String| e != "fatal",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("fatal".to_owned())
            },
        )
        .await;
        assert_eq!(r, Err("fatal".to_owned()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_with_the_last_error_at_the_deadline() {
        let start = Instant::now();
        let calls = AtomicU32::new(0);
        let r: Result<(), String> = until_deadline(
            "dep",
            Duration::from_secs(5),
            |_| true,
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                Err(format!("down {n}"))
            },
        )
        .await;
        let n = calls.load(Ordering::SeqCst);
        assert_eq!(r, Err(format!("down {}", n - 1)));
        assert!(
            start.elapsed() <= Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // 200 + 400 + 800 + 1600 ms of waits fit in 5 s, the next 2 s would not.
        assert_eq!(n, 5);
    }
}
