//! Waiting on a condition with a deadline: what tests do instead of sleeping a fixed time.
use std::future::Future;
use std::time::Duration;

/// How often [`wait_until`] looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Checks `condition` every [`POLL`] until it holds (true) or `timeout` has passed (false,
/// after one last check). The caller asserts on the result with a message saying what did
/// not happen.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`wait_until`] that panics with `what` when the deadline passes.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        wait_until(timeout, condition).await,
        "{what}: not within {timeout:?}"
    );
}

/// Checks `f` every [`POLL`] until it gives a value, and returns it; panics with `what` after
/// `timeout`.
pub async fn wait_for_value<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_as_soon_as_the_condition_holds_and_false_at_the_deadline() {
        let n = AtomicU32::new(0);
        assert!(
            wait_until(Duration::from_secs(5), || async {
                n.fetch_add(1, Ordering::SeqCst) >= 2
            })
            .await
        );
        assert_eq!(n.load(Ordering::SeqCst), 3);
        let started = std::time::Instant::now();
        assert!(!wait_until(Duration::from_millis(120), || async { false }).await);
        assert!(started.elapsed() >= Duration::from_millis(120));
    }
}
