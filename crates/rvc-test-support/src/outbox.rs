//! Driving the outbox in tests: real workers with a step that does nothing.
use deadpool_postgres::Pool;
use rvc_domain::OutboxKind;
use rvc_outbox::testing::NoopStep;
use rvc_outbox::{Outbox, Worker, WorkerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs real outbox workers (a [`NoopStep`] per kind, in this process) until no kind has
/// claimable work; panics when they never run out (20 rounds).
pub async fn drain_with_noop_steps(pool: &Pool) {
    let cancel = CancellationToken::new();
    for _ in 0..20 {
        let mut claimed = 0;
        for kind in OutboxKind::ALL {
            let worker = Worker::new(
                Outbox::new(
                    pool.clone(),
                    format!("test-{kind}"),
                    rvc_store::pipeline::hooks(),
                ),
                Arc::new(NoopStep {
                    kind: *kind,
                    sleep: Duration::ZERO,
                    log: false,
                    owner: "test".into(),
                }),
                WorkerConfig::default(),
            );
            claimed += worker.run_once(&cancel).await.unwrap().claimed;
        }
        if claimed == 0 {
            return;
        }
    }
    panic!("workers never ran out of work");
}

/// Worker settings for tests: small batches, short leases and backoff, fast polling.
pub fn fast_worker_config() -> WorkerConfig {
    WorkerConfig {
        batch_size: 16,
        concurrency: 4,
        lease: Duration::from_secs(10),
        poll_interval: Duration::from_millis(50),
        backoff: rvc_outbox::Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        shutdown_grace: Duration::from_secs(5),
        retry_window: Duration::from_secs(3600),
    }
}

/// Runs `w` batch by batch until no row of its kind is pending or leased (retries
/// included); panics after `timeout`.
pub async fn drain<S: rvc_outbox::Step>(w: &Worker<S>, db: &crate::TestDb, timeout: Duration) {
    let stop = CancellationToken::new();
    let deadline = std::time::Instant::now() + timeout;
    let open_sql = format!(
        "SELECT count(*) FROM outbox WHERE kind = '{}' AND state IN ('pending', 'leased')",
        w.kind().as_str()
    );
    loop {
        let r = w.run_once(&stop).await.unwrap();
        if r.claimed == 0 {
            if db.count(&open_sql).await == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} rows still open after {timeout:?}",
                w.kind().as_str()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
