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
                Outbox::new(pool.clone(), format!("test-{kind}")),
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
