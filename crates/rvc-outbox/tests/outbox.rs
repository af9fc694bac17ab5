//! The outbox engine against a real Postgres, a fresh database per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rvc_domain::OutboxKind;
use rvc_outbox::testing::{seed_rows, NoopStep, STEP_LOG_DDL};
use rvc_outbox::{
    Backoff, BatchReport, HookFuture, Job, NewOutboxRow, Outbox, RowHooks, RowRef, Step, StepError,
    Worker, WorkerConfig,
};
use rvc_test_support::{wait_until, TestDb};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn fast_cfg() -> WorkerConfig {
    WorkerConfig {
        batch_size: 16,
        concurrency: 4,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(50),
        backoff: Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(5),
        },
        shutdown_grace: Duration::from_secs(5),
        retry_window: Duration::from_secs(3600),
    }
}

/// Runs batches until one claims a row (a row becomes claimable when its backoff or lease
/// runs out), within 10 s.
async fn run_until_claimed<S: Step>(w: &Worker<S>, what: &str) -> BatchReport {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = w.run_once(&CancellationToken::new()).await.unwrap();
        if r.claimed > 0 {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: nothing claimed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_never_share_a_row_and_complete_each_once() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client.batch_execute(STEP_LOG_DDL).await.unwrap();
    seed_rows(&client, 3000, OutboxKind::Publish).await.unwrap();

    // 1) Raw claims: 12 claimers race, every row is leased by exactly one of them.
    let mut handles = Vec::new();
    for i in 0..12 {
        let outbox = Outbox::new(
            db.pool.clone(),
            format!("claimer-{i}"),
            rvc_store::pipeline::hooks(),
        );
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = outbox
                    .claim(OutboxKind::Publish, 25, Duration::from_secs(60), false)
                    .await
                    .unwrap();
                if got.is_empty() {
                    break mine;
                }
                mine.extend(got.into_iter().map(|j| j.event_id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for h in handles {
        let ids = h.await.unwrap();
        total += ids.len();
        seen.extend(ids);
    }
    assert_eq!(total, 3000, "every row claimed once");
    assert_eq!(seen.len(), 3000, "no row claimed twice");

    // 2) Release them and let 8 worker loops complete everything: each exactly once.
    client
        .batch_execute(
            "UPDATE outbox SET state = 'pending', lease_token = NULL, lease_owner = NULL,
                    lease_expires_at = NULL, next_attempt_at = now(), attempts = 0",
        )
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let step = Arc::new(NoopStep {
            kind: OutboxKind::Publish,
            sleep: Duration::ZERO,
            log: true,
            owner: format!("w{i}"),
        });
        let w = Worker::new(
            Outbox::new(
                db.pool.clone(),
                format!("w{i}"),
                rvc_store::pipeline::hooks(),
            ),
            step,
            fast_cfg(),
        );
        tasks.push(tokio::spawn(w.run(shutdown.clone())));
    }
    assert!(
        wait_until(Duration::from_secs(60), || async {
            db.count("SELECT count(*) FROM outbox WHERE state = 'done'")
                .await
                == 3000
        })
        .await,
        "all rows done"
    );
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(db.count("SELECT count(*) FROM outbox_step_log").await, 3000);
    assert_eq!(
        db.count("SELECT count(DISTINCT owner) FROM outbox_step_log")
            .await,
        8,
        "work was spread over every claimer"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status = 'indexed'")
            .await,
        3000,
        "completing publish moves each product to indexed"
    );
}

#[tokio::test]
async fn completing_enqueues_the_next_step_in_the_same_transaction() {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 5, OutboxKind::UploadImages)
        .await
        .unwrap();
    let step = Arc::new(NoopStep {
        kind: OutboxKind::UploadImages,
        sleep: Duration::ZERO,
        log: false,
        owner: "t".into(),
    });
    let w = Worker::new(
        Outbox::new(db.pool.clone(), "t", rvc_store::pipeline::hooks()),
        step,
        fast_cfg(),
    );
    let report = w.run_once(&CancellationToken::new()).await.unwrap();
    assert_eq!((report.claimed, report.completed), (5, 5));
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state = 'pending'")
            .await,
        5
    );
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status = 'images_stored'")
            .await,
        5
    );
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_the_old_holder_cannot_complete() {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 1, OutboxKind::Vectorize).await.unwrap();
    let a = Outbox::new(db.pool.clone(), "a", rvc_store::pipeline::hooks());
    let b = Outbox::new(db.pool.clone(), "b", rvc_store::pipeline::hooks());
    let lease = Duration::from_millis(300);
    let job_a = a
        .claim(OutboxKind::Vectorize, 10, lease, false)
        .await
        .unwrap();
    assert_eq!(job_a.len(), 1);
    assert!(b
        .claim(OutboxKind::Vectorize, 10, lease, false)
        .await
        .unwrap()
        .is_empty());
    // Once the lease has run out, the row is b's to claim.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let job_b = loop {
        let jobs = b
            .claim(OutboxKind::Vectorize, 10, lease, false)
            .await
            .unwrap();
        if !jobs.is_empty() {
            break jobs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expired lease never reclaimed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(job_b.len(), 1, "expired lease reclaimed");
    assert_eq!(job_b[0].attempts, 2);

    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    let out = a
        .complete_in(&tx, OutboxKind::Vectorize, &job_a)
        .await
        .unwrap();
    assert!(out.completed.is_empty());
    assert_eq!(out.lease_lost, vec![job_a[0].event_id]);
    let out = b
        .complete_in(&tx, OutboxKind::Vectorize, &job_b)
        .await
        .unwrap();
    assert_eq!(out.completed, vec![job_b[0].event_id]);
    tx.commit().await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'publish'")
            .await,
        1,
        "next step enqueued once"
    );
}

/// Fails the first `fail_times` attempts of every row, retryably or not.
struct Flaky {
    fail_times: i32,
    permanent: bool,
    calls: AtomicUsize,
}

impl Step for Flaky {
    type Output = ();
    const COMMIT_WRITES: bool = false;
    fn kind(&self) -> OutboxKind {
        OutboxKind::Publish
    }
    async fn execute(&self, job: &Job) -> Result<(), StepError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if job.attempts <= self.fail_times {
            if self.permanent {
                return Err(StepError::permanent("poison input: cannot decode"));
            }
            return Err(StepError::retryable(format!(
                "flaky attempt {}",
                job.attempts
            )));
        }
        Ok(())
    }
    async fn commit(
        &self,
        _tx: &tokio_postgres::Transaction<'_>,
        _job: &Job,
        _o: (),
    ) -> Result<(), StepError> {
        Ok(())
    }
}

#[tokio::test]
async fn retryable_failures_back_off_exponentially_then_succeed() {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 1, OutboxKind::Publish).await.unwrap();
    let step = Arc::new(Flaky {
        fail_times: 2,
        permanent: false,
        calls: AtomicUsize::new(0),
    });
    let w = Worker::new(
        Outbox::new(db.pool.clone(), "f", rvc_store::pipeline::hooks()),
        step.clone(),
        fast_cfg(),
    );
    let none = CancellationToken::new();

    w.run_once(&none).await.unwrap();
    let (state, attempts, delay_ms, err): (String, i32, f64, Option<String>) = {
        let r = client
            .query_one(
                "SELECT state, attempts, (extract(epoch FROM next_attempt_at - updated_at)*1000)::float8, last_error FROM outbox",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3))
    };
    assert_eq!((state.as_str(), attempts), ("pending", 1));
    assert!(
        (100.0..=200.0).contains(&delay_ms),
        "first backoff {delay_ms} ms in [base/2, base]"
    );
    assert_eq!(err.as_deref(), Some("flaky attempt 1"));

    // Not claimable before its time.
    assert_eq!(w.run_once(&none).await.unwrap().claimed, 0);
    run_until_claimed(&w, "second attempt after the first backoff").await;
    let delay_ms: f64 = client
        .query_one(
            "SELECT (extract(epoch FROM next_attempt_at - updated_at)*1000)::float8 FROM outbox",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        (200.0..=400.0).contains(&delay_ms),
        "second backoff {delay_ms} ms doubles"
    );
    let r = run_until_claimed(&w, "third attempt after the second backoff").await;
    assert_eq!(r.completed, 1);
    assert_eq!(step.calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'done'")
            .await,
        1
    );
}

/// Issue 11, item 3: retryable failures are bounded by time since the first failure, not by
/// attempts. With `max_attempts = 2` a row fails retryably many times and stays `pending`
/// (before the fix it went dead at the second failure); once the retry window has passed
/// since its first failure the next failure dead-letters it. Permanent errors are dead at once.
#[tokio::test]
async fn retryable_failures_are_bounded_by_time_and_permanent_errors_dead_letter_at_once() {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 1, OutboxKind::Publish).await.unwrap();
    client
        .batch_execute("UPDATE outbox SET max_attempts = 2")
        .await
        .unwrap();
    let mut cfg = fast_cfg();
    cfg.backoff.base = Duration::from_millis(1);
    cfg.backoff.max = Duration::from_millis(2);
    cfg.retry_window = Duration::from_millis(1500);
    let step = Arc::new(Flaky {
        fail_times: 1000,
        permanent: false,
        calls: AtomicUsize::new(0),
    });
    let w = Worker::new(
        Outbox::new(db.pool.clone(), "d", rvc_store::pipeline::hooks()),
        step,
        cfg.clone(),
    );
    let none = CancellationToken::new();
    let first = std::time::Instant::now();
    // An outage: six failed attempts, three times max_attempts, all within the window.
    let mut attempts = 0;
    while attempts < 6 {
        attempts += w.run_once(&none).await.unwrap().claimed;
        assert!(
            first.elapsed() < Duration::from_millis(1200),
            "too slow for the window"
        );
    }
    let r = client
        .query_one("SELECT state, attempts FROM outbox", &[])
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, String>(0).as_str(), r.get::<_, i32>(1)),
        ("pending", 6),
        "retryable failures within the window never dead-letter"
    );
    // The window passes: the next failure is the last.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            w.run_once(&none).await.unwrap();
            db.count("SELECT count(*) FROM outbox WHERE state = 'dead'")
                .await
                == 1
        })
        .await
    );
    assert!(first.elapsed() >= Duration::from_millis(1500));
    let r = client
        .query_one("SELECT last_error FROM outbox", &[])
        .await
        .unwrap();
    assert!(r.get::<_, String>(0).starts_with("flaky attempt"));
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status = 'failed'")
            .await,
        1
    );
    assert_eq!(
        w.run_once(&none).await.unwrap().claimed,
        0,
        "dead rows are never claimed"
    );

    // Poison input: dead at the first attempt, whatever max_attempts says.
    seed_rows(&client, 1, OutboxKind::Publish).await.unwrap();
    let poison = Arc::new(Flaky {
        fail_times: 100,
        permanent: true,
        calls: AtomicUsize::new(0),
    });
    let w = Worker::new(
        Outbox::new(db.pool.clone(), "p", rvc_store::pipeline::hooks()),
        poison,
        cfg,
    );
    w.run_once(&none).await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'dead' AND attempts = 1")
            .await,
        1
    );
}

#[tokio::test]
async fn notify_wakes_an_idle_worker_long_before_its_poll_interval() {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 1, OutboxKind::Vectorize).await.unwrap(); // a product to hang rows on
    let product_id: uuid::Uuid = client
        .query_one("SELECT id FROM products", &[])
        .await
        .unwrap()
        .get(0);
    client.batch_execute("DELETE FROM outbox").await.unwrap();

    let mut cfg = fast_cfg();
    cfg.poll_interval = Duration::from_secs(600);
    let step = Arc::new(NoopStep {
        kind: OutboxKind::Publish,
        sleep: Duration::ZERO,
        log: false,
        owner: "n".into(),
    });
    // The worker and the listener get connections of their own, named, so that the test can
    // see in pg_stat_activity when each is idle.
    let mut worker_cfg: tokio_postgres::Config = db.url.parse().unwrap();
    worker_cfg.application_name("notify-worker");
    let worker_pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        worker_cfg,
        tokio_postgres::NoTls,
    ))
    .max_size(4)
    .build()
    .unwrap();
    let w = Worker::new(
        Outbox::new(worker_pool, "n", rvc_store::pipeline::hooks()),
        step,
        cfg,
    );
    let shutdown = CancellationToken::new();
    let mut listener_cfg: tokio_postgres::Config = db.url.parse().unwrap();
    listener_cfg.application_name("notify-listener");
    rvc_outbox::spawn_listener(
        listener_cfg,
        OutboxKind::Publish,
        w.wake_handle(),
        shutdown.clone(),
    );
    let task = tokio::spawn(w.run(shutdown.clone()));
    // Wait until the listener is LISTENing and the worker has finished a poll (its claim
    // transaction committed, finding nothing) after that: from then on only a NOTIFY wakes
    // the worker before its 600 s poll interval.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            db.count(
                "SELECT count(*) FROM pg_stat_activity l JOIN pg_stat_activity w
                   ON w.datname = l.datname
                 WHERE l.datname = current_database()
                   AND l.application_name = 'notify-listener' AND l.state = 'idle'
                   AND l.query LIKE 'LISTEN%'
                   AND w.application_name = 'notify-worker' AND w.state = 'idle'
                   AND w.query = 'COMMIT' AND w.state_change >= l.state_change",
            )
            .await
                > 0
        })
        .await,
        "the worker never went idle after the listener started listening"
    );
    rvc_outbox::enqueue(
        &client,
        &NewOutboxRow::new(product_id, 1, OutboxKind::Publish),
    )
    .await
    .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            db.count("SELECT count(*) FROM outbox WHERE state = 'done'")
                .await
                == 1
        })
        .await,
        "the NOTIFY woke the worker"
    );
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_releases_work_that_overruns_the_grace_period() {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 3, OutboxKind::Publish).await.unwrap();
    let mut cfg = fast_cfg();
    cfg.shutdown_grace = Duration::from_millis(200);
    let step = Arc::new(NoopStep {
        kind: OutboxKind::Publish,
        sleep: Duration::from_secs(30),
        log: false,
        owner: "s".into(),
    });
    let w = Worker::new(
        Outbox::new(db.pool.clone(), "s", rvc_store::pipeline::hooks()),
        step,
        cfg,
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(w.run(shutdown.clone()));
    assert!(
        wait_until(Duration::from_secs(10), || async {
            db.count("SELECT count(*) FROM outbox WHERE state = 'leased'")
                .await
                == 3
        })
        .await
    );
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("worker stops within the grace period")
        .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'pending' AND attempts = 0 AND lease_token IS NULL")
            .await,
        3,
        "leases released without counting an attempt"
    );
}

#[tokio::test]
async fn done_rows_are_pruned_after_retention_only() {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 10, OutboxKind::Publish).await.unwrap();
    client
        .batch_execute(
            "UPDATE outbox SET state = 'done', completed_at = now() - interval '2 days'
             WHERE event_id IN (SELECT event_id FROM outbox LIMIT 6)",
        )
        .await
        .unwrap();
    let o = Outbox::new(db.pool.clone(), "pruner", rvc_store::pipeline::hooks());
    assert_eq!(
        o.prune_done(Duration::from_secs(3 * 86400)).await.unwrap(),
        0
    );
    assert_eq!(o.prune_done(Duration::from_secs(86400)).await.unwrap(), 6);
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, 4);
}

#[tokio::test]
async fn ordered_claims_hold_back_newer_versions_of_a_product_only() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let ids = seed_rows(&client, 2, OutboxKind::Publish).await.unwrap();
    // product 0 gets versions 2 and 3 queued behind version 1
    for v in [2, 3] {
        rvc_outbox::enqueue(&client, &NewOutboxRow::new(ids[0], v, OutboxKind::Publish))
            .await
            .unwrap();
    }
    let o = Outbox::new(db.pool.clone(), "r", rvc_store::pipeline::hooks());
    let lease = Duration::from_secs(30);
    let first = o.claim(OutboxKind::Publish, 10, lease, true).await.unwrap();
    let mut got: Vec<(uuid::Uuid, i32)> = first
        .iter()
        .map(|j| (j.product_id, j.product_version))
        .collect();
    got.sort();
    let mut want = vec![(ids[0], 1), (ids[1], 1)];
    want.sort();
    assert_eq!(
        got, want,
        "v2/v3 wait for v1; the other product is not blocked"
    );
    assert!(o
        .claim(OutboxKind::Publish, 10, lease, true)
        .await
        .unwrap()
        .is_empty());
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    o.complete_in(&tx, OutboxKind::Publish, &first)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let next = o.claim(OutboxKind::Publish, 10, lease, true).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].product_id, next[0].product_version), (ids[0], 2));
}

/// Issue 11, item 4: a row that crashes its worker every time (simulated: its batch is never
/// completed and the lease runs out) is dead-lettered alone; the rows that happened to share
/// its batch complete. Before the fix they were re-claimed together with it and reached
/// max_attempts with it.
#[tokio::test]
async fn a_crash_loop_dead_letters_only_the_row_that_kills_the_worker() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let products = seed_rows(&client, 5, OutboxKind::Vectorize).await.unwrap();
    client
        .batch_execute("UPDATE outbox SET max_attempts = 3")
        .await
        .unwrap();
    let poison = products[2];
    let lease = Duration::from_millis(200);
    let outbox = Outbox::new(db.pool.clone(), "crashy", rvc_store::pipeline::hooks());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut crashes = 0;
    loop {
        assert!(std::time::Instant::now() < deadline, "did not settle");
        let open = db
            .count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state IN ('pending', 'leased')")
            .await;
        if open == 0 {
            break;
        }
        let jobs = outbox
            .claim(OutboxKind::Vectorize, 16, lease, false)
            .await
            .unwrap();
        if jobs.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        if jobs.iter().any(|j| j.product_id == poison) {
            // The worker dies mid-batch: nothing of the batch is recorded.
            crashes += 1;
            continue;
        }
        let mut c = db.client().await;
        let tx = c.transaction().await.unwrap();
        outbox
            .complete_in(&tx, OutboxKind::Vectorize, &jobs)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let dead: Vec<uuid::Uuid> = client
        .query(
            "SELECT product_id FROM outbox WHERE kind = 'vectorize' AND state = 'dead'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(dead, vec![poison], "only the poison row is dead");
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state = 'done'")
            .await,
        4
    );
    assert_eq!(
        crashes, 3,
        "the poison row crashed the worker max_attempts times"
    );
    let err: String = client
        .query_one("SELECT last_error FROM outbox WHERE state = 'dead'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(err.contains("lease expired 3 times"), "{err}");
}

/// Sleeps, then records that it finished (its side effect).
struct Stalled {
    finished: Arc<std::sync::atomic::AtomicBool>,
}

impl Step for Stalled {
    type Output = ();
    const COMMIT_WRITES: bool = false;
    fn kind(&self) -> OutboxKind {
        OutboxKind::Publish
    }
    async fn execute(&self, _job: &Job) -> Result<(), StepError> {
        tokio::time::sleep(Duration::from_secs(4)).await;
        self.finished.store(true, Ordering::SeqCst);
        Ok(())
    }
    async fn commit(
        &self,
        _tx: &tokio_postgres::Transaction<'_>,
        _job: &Job,
        _o: (),
    ) -> Result<(), StepError> {
        Ok(())
    }
}

/// Issue 11, item 8: when the heartbeat finds the lease gone (taken over by another worker),
/// the step is cancelled at once instead of running on and, for the relay, publishing after
/// another worker took the row. Before the fix the heartbeat's result was ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_cancels_the_running_step() {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 1, OutboxKind::Publish).await.unwrap();
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut cfg = fast_cfg();
    cfg.lease = Duration::from_millis(600);
    let w = Worker::new(
        Outbox::new(db.pool.clone(), "stalled", rvc_store::pipeline::hooks()),
        Arc::new(Stalled {
            finished: finished.clone(),
        }),
        cfg,
    );
    let started = std::time::Instant::now();
    let run = tokio::spawn(async move { w.run_once(&CancellationToken::new()).await });
    assert!(
        wait_until(Duration::from_secs(5), || async {
            db.count("SELECT count(*) FROM outbox WHERE state = 'leased'")
                .await
                == 1
        })
        .await
    );
    // Another worker takes the row over (as after an expiry).
    client
        .batch_execute("UPDATE outbox SET lease_token = gen_random_uuid(), lease_owner = 'thief'")
        .await
        .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cancelled within a heartbeat, took {:?}",
        started.elapsed()
    );
    assert_eq!(report.lease_lost, 1);
    assert!(!finished.load(Ordering::SeqCst), "the step did not run on");
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'leased' AND lease_owner = 'thief'")
            .await,
        1,
        "the new holder keeps the row"
    );
}

/// Issue 11, item 3: while the step's dependency is down the worker claims nothing (no
/// attempt is spent), and it resumes when the dependency is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unready_dependency_gates_claiming() {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 3, OutboxKind::Vectorize).await.unwrap();
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probes = Arc::new(AtomicUsize::new(0));
    let gate: rvc_runtime::health::ReadyCheck = {
        let (up, probes) = (up.clone(), probes.clone());
        Arc::new(move || {
            let (up, probes) = (up.clone(), probes.clone());
            Box::pin(async move {
                probes.fetch_add(1, Ordering::SeqCst);
                if up.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("ML service: connection refused".to_owned())
                }
            })
        })
    };
    let step = Arc::new(NoopStep {
        kind: OutboxKind::Vectorize,
        sleep: Duration::ZERO,
        log: false,
        owner: "gated".into(),
    });
    let w = Worker::new(
        Outbox::new(db.pool.clone(), "gated", rvc_store::pipeline::hooks()),
        step,
        fast_cfg(),
    )
    .with_gate(gate);
    let stop = CancellationToken::new();
    let h = tokio::spawn(w.run(stop.clone()));
    assert!(
        wait_until(Duration::from_secs(5), || async {
            probes.load(Ordering::SeqCst) >= 3
        })
        .await
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state = 'pending' AND attempts = 0")
            .await,
        3,
        "nothing claimed while the dependency is down"
    );
    up.store(true, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state = 'done'")
                .await
                == 3
        })
        .await
    );
    stop.cancel();
    h.await.unwrap();
}

/// Issue 11, item 9: the gauges every worker refreshes are answered from the partial indexes
/// (pending/leased and dead rows) and never scan the done rows, which are most of the table.
#[tokio::test]
async fn the_gauge_query_reads_only_the_partial_indexes() {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 200, OutboxKind::Vectorize)
        .await
        .unwrap();
    client
        .batch_execute(
            "UPDATE outbox SET state = 'done', completed_at = now() WHERE product_id IN
               (SELECT product_id FROM outbox LIMIT 190);
             ANALYZE outbox;
             SET enable_seqscan = off;",
        )
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(&format!("EXPLAIN {}", rvc_outbox::LIVE_COUNTS_SQL), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(
        plan.contains("outbox_claimable") && plan.contains("outbox_dead"),
        "{plan}"
    );
}

/// Hooks that write nothing and remember what the engine told them.
#[derive(Default)]
struct Recording {
    done: std::sync::Mutex<Vec<(OutboxKind, RowRef)>>,
    dead: std::sync::Mutex<Vec<(OutboxKind, RowRef)>>,
}

impl RowHooks for Recording {
    fn done<'a>(
        &'a self,
        _: &'a tokio_postgres::Transaction<'_>,
        kind: OutboxKind,
        rows: &'a [RowRef],
    ) -> HookFuture<'a> {
        self.done
            .lock()
            .unwrap()
            .extend(rows.iter().map(|r| (kind, *r)));
        Box::pin(async { Ok(()) })
    }

    fn dead<'a>(
        &'a self,
        _: &'a tokio_postgres::Transaction<'_>,
        kind: OutboxKind,
        rows: &'a [RowRef],
    ) -> HookFuture<'a> {
        self.dead
            .lock()
            .unwrap()
            .extend(rows.iter().map(|r| (kind, *r)));
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn the_engine_moves_only_its_own_rows_and_tells_its_hooks_what_finished() {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 3, OutboxKind::UploadImages)
        .await
        .unwrap();
    let hooks = Arc::new(Recording::default());
    let step = Arc::new(NoopStep {
        kind: OutboxKind::UploadImages,
        sleep: Duration::ZERO,
        log: false,
        owner: "t".into(),
    });
    let w = Worker::new(
        Outbox::new(db.pool.clone(), "t", hooks.clone()),
        step,
        fast_cfg(),
    );
    let report = w.run_once(&CancellationToken::new()).await.unwrap();
    assert_eq!(report.completed, 3);
    let products: HashSet<RowRef> = client
        .query("SELECT id, version FROM products", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| RowRef {
            product_id: r.get("id"),
            product_version: r.get("version"),
        })
        .collect();
    let told: HashSet<RowRef> = hooks.done.lock().unwrap().iter().map(|(_, r)| *r).collect();
    assert_eq!(
        told, products,
        "every completed row's product version, once"
    );
    assert!(hooks
        .done
        .lock()
        .unwrap()
        .iter()
        .all(|(k, _)| *k == OutboxKind::UploadImages));
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status <> 'registered'")
            .await,
        0,
        "the engine itself never writes a product's status"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state = 'pending'")
            .await,
        3,
        "the next step is enqueued"
    );

    // A permanent failure: dead, told to the hooks, product untouched.
    seed_rows(&client, 1, OutboxKind::Publish).await.unwrap();
    let poison = Arc::new(Flaky {
        fail_times: 100,
        permanent: true,
        calls: AtomicUsize::new(0),
    });
    let w = Worker::new(
        Outbox::new(db.pool.clone(), "p", hooks.clone()),
        poison,
        fast_cfg(),
    );
    w.run_once(&CancellationToken::new()).await.unwrap();
    let dead = hooks.dead.lock().unwrap().clone();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, OutboxKind::Publish);
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status = 'failed'")
            .await,
        0
    );
}
