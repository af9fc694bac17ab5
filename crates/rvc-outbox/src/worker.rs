//! The worker loop: claim a batch, run the step, complete or fail every row in one
//! transaction, repeat. Generic over [`Step`], so each worker binary writes only its step.
use crate::error::{DbContext, OutboxError, StepError};
use crate::queue::{Backoff, Job, Outbox, DEFAULT_RETRY_WINDOW};
use futures::StreamExt;
use rvc_domain::OutboxKind;
use rvc_runtime::health::ReadyCheck;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// One step of the pipeline. `execute` makes the external side effect and must be
/// idempotent (deterministic keys); `commit` records its result in Postgres inside the
/// transaction that also completes the row and enqueues the next step.
pub trait Step: Send + Sync + 'static {
    type Output: Send + 'static;

    /// The outbox kind this step claims.
    fn kind(&self) -> OutboxKind;

    /// Claim a product's rows strictly in version order (the relay).
    fn ordered_per_product(&self) -> bool {
        false
    }

    /// Whether `commit` writes anything (when false no savepoint is spent per row).
    const COMMIT_WRITES: bool = true;

    fn execute(&self, job: &Job) -> impl Future<Output = Result<Self::Output, StepError>> + Send;

    /// Runs a claimed batch; the default runs `execute` for each job, `concurrency` at a time.
    /// Override to batch across jobs (the relay produces one Kafka request for many rows).
    fn execute_batch(
        &self,
        jobs: &[Job],
        concurrency: usize,
    ) -> impl Future<Output = Vec<Result<Self::Output, StepError>>> + Send {
        run_concurrently(self, jobs, concurrency)
    }

    fn commit(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        job: &Job,
        output: Self::Output,
    ) -> impl Future<Output = Result<(), StepError>> + Send;
}

/// Runs `step.execute` for each job, at most `concurrency` at a time; results in job order.
pub async fn run_concurrently<S: Step + ?Sized>(
    step: &S,
    jobs: &[Job],
    concurrency: usize,
) -> Vec<Result<S::Output, StepError>> {
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut next = jobs.iter().enumerate();
    let mut out: Vec<(usize, Result<S::Output, StepError>)> = Vec::with_capacity(jobs.len());
    loop {
        while pending.len() < concurrency.max(1) {
            match next.next() {
                Some((i, job)) => pending.push(execute_one(step, i, job)),
                None => break,
            }
        }
        match pending.next().await {
            Some(r) => out.push(r),
            None => break,
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

async fn execute_one<S: Step + ?Sized>(
    step: &S,
    i: usize,
    job: &Job,
) -> (usize, Result<S::Output, StepError>) {
    let span = step_span(job);
    (i, step.execute(job).instrument(span).await)
}

/// A span for one job, linked to the trace of the request that created the product.
pub fn step_span(job: &Job) -> tracing::Span {
    let span = tracing::info_span!("outbox_step", kind = job.kind.as_str(), event_id = %job.event_id,
        product_id = %job.product_id, product_version = job.product_version, attempt = job.attempts);
    if let Some(tp) = &job.traceparent {
        rvc_runtime::telemetry::link_to(&span, tp);
    }
    span
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Rows claimed per round trip.
    pub batch_size: usize,
    /// Jobs of a batch run at once.
    pub concurrency: usize,
    /// Lease length; the heartbeat extends it every third of it.
    pub lease: Duration,
    /// Poll interval when idle (NOTIFY usually wakes the worker sooner).
    pub poll_interval: Duration,
    pub backoff: Backoff,
    /// On shutdown, how long in-flight work may take before its leases are released.
    pub shutdown_grace: Duration,
    /// How long retryable failures of a row may go on, from its first failure, before it is
    /// dead-lettered (permanent failures are dead at once).
    pub retry_window: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            concurrency: 8,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            backoff: Backoff::default(),
            shutdown_grace: Duration::from_secs(20),
            retry_window: DEFAULT_RETRY_WINDOW,
        }
    }
}

/// Worker tuning from flags / environment (`#[command(flatten)]` into a binary's args).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Rows claimed per round trip.
    #[arg(long, env = "OUTBOX_BATCH_SIZE", default_value_t = 32)]
    pub batch_size: usize,
    /// Jobs of a batch processed concurrently.
    #[arg(long, env = "OUTBOX_CONCURRENCY", default_value_t = 8)]
    pub concurrency: usize,
    /// Lease length in seconds (a crashed worker's rows are taken over after it).
    #[arg(long, env = "OUTBOX_LEASE_SECS", default_value_t = 30.0)]
    pub lease_secs: f64,
    /// Idle poll interval in milliseconds (LISTEN/NOTIFY wakes workers sooner).
    #[arg(long, env = "OUTBOX_POLL_INTERVAL_MS", default_value_t = 1000)]
    pub poll_interval_ms: u64,
    /// First retry delay in milliseconds (doubles per attempt, with jitter).
    #[arg(long, env = "OUTBOX_BACKOFF_BASE_MS", default_value_t = 1000)]
    pub backoff_base_ms: u64,
    /// Longest retry delay in seconds.
    #[arg(long, env = "OUTBOX_BACKOFF_MAX_SECS", default_value_t = 300)]
    pub backoff_max_secs: u64,
    /// Seconds in-flight work may take after SIGTERM before its leases are released.
    #[arg(long, env = "OUTBOX_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Claimer loops in this process.
    #[arg(long, env = "OUTBOX_CLAIMERS", default_value_t = 1)]
    pub claimers: usize,
    /// Seconds retryable failures of one row may go on (from its first failure) before it is
    /// dead-lettered; an outage shorter than this heals without a replay.
    #[arg(long, env = "OUTBOX_RETRY_WINDOW_SECS", default_value_t = 86_400)]
    pub retry_window_secs: u64,
}

impl WorkerArgs {
    pub fn config(&self) -> WorkerConfig {
        WorkerConfig {
            batch_size: self.batch_size.max(1),
            concurrency: self.concurrency.max(1),
            lease: Duration::from_secs_f64(self.lease_secs.clamp(0.1, 86_400.0)),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            backoff: Backoff {
                base: Duration::from_millis(self.backoff_base_ms.max(1)),
                max: Duration::from_secs(self.backoff_max_secs.max(1)),
            },
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            retry_window: Duration::from_secs(self.retry_window_secs.max(1)),
        }
    }
}

/// Counts of one processed batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    pub claimed: usize,
    pub completed: usize,
    pub failed: usize,
    pub released: usize,
    pub lease_lost: usize,
}

/// Runs a [`Step`] against the outbox until shutdown.
pub struct Worker<S: Step> {
    outbox: Outbox,
    step: Arc<S>,
    cfg: WorkerConfig,
    wake: Arc<Notify>,
    gate: Option<ReadyCheck>,
}

impl<S: Step> Clone for Worker<S> {
    fn clone(&self) -> Self {
        Self {
            outbox: self.outbox.clone(),
            step: self.step.clone(),
            cfg: self.cfg.clone(),
            wake: self.wake.clone(),
            gate: self.gate.clone(),
        }
    }
}

impl<S: Step> Worker<S> {
    pub fn new(outbox: Outbox, step: Arc<S>, cfg: WorkerConfig) -> Self {
        Self {
            outbox,
            step,
            cfg,
            wake: Arc::new(Notify::new()),
            gate: None,
        }
    }

    /// Claim only while `ready` (the step's own dependency: S3, the ML service, Kafka)
    /// answers: during an outage rows stay `pending` instead of failing attempt after
    /// attempt, and work resumes within a poll interval of the dependency coming back.
    pub fn with_gate(mut self, ready: ReadyCheck) -> Self {
        self.gate = Some(ready);
        self
    }

    /// Use a shared wake-up (one LISTEN connection for several claimers).
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Notified by the LISTEN task when a row of this kind is enqueued.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The kind of rows this worker claims.
    pub fn kind(&self) -> OutboxKind {
        self.step.kind()
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Claims and processes batches until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let kind = self.step.kind();
        tracing::info!(
            kind = kind.as_str(),
            owner = self.outbox.owner(),
            "worker started"
        );
        let mut db_backoff = Duration::from_millis(100);
        let mut gate_closed = false;
        let mut gate_backoff = Duration::from_millis(100);
        let mut gate_ok_at: Option<std::time::Instant> = None;
        while !shutdown.is_cancelled() {
            // A passing check is trusted for a second (a busy worker claims many batches).
            let fresh = gate_ok_at.is_some_and(|t| t.elapsed() < Duration::from_secs(1));
            if let Some(gate) = self.gate.as_ref().filter(|_| !fresh) {
                let check = match tokio::time::timeout(Duration::from_secs(10), gate()).await {
                    Ok(r) => r,
                    Err(_) => Err("readiness check timed out after 10 s".to_owned()),
                };
                match check {
                    Ok(()) => {
                        if gate_closed {
                            tracing::info!(
                                kind = kind.as_str(),
                                "dependency ready again; claiming"
                            );
                        }
                        gate_closed = false;
                        gate_ok_at = Some(std::time::Instant::now());
                        gate_backoff = Duration::from_millis(100);
                    }
                    Err(error) => {
                        if !gate_closed {
                            tracing::warn!(kind = kind.as_str(), %error,
                                "dependency not ready; not claiming until it is");
                        }
                        gate_closed = true;
                        gate_ok_at = None;
                        metrics::counter!("rvc_outbox_claim_gated_total", "kind" => kind.as_str())
                            .increment(1);
                        tokio::select! {
                            _ = tokio::time::sleep(gate_backoff) => {}
                            _ = shutdown.cancelled() => {}
                        }
                        gate_backoff = (gate_backoff * 2)
                            .min(self.cfg.poll_interval.max(Duration::from_secs(2)));
                        continue;
                    }
                }
            }
            match self.run_once(&shutdown).await {
                Ok(report) if report.claimed > 0 => {
                    db_backoff = Duration::from_millis(100);
                    // a full batch means more work may be waiting: go again at once
                    if report.claimed >= self.cfg.batch_size {
                        continue;
                    }
                }
                Ok(_) => {
                    db_backoff = Duration::from_millis(100);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(kind = kind.as_str(), error = %e, retry_in_ms = db_backoff.as_millis() as u64,
                        "outbox unavailable; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(db_backoff) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    db_backoff = (db_backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::info!(kind = kind.as_str(), "worker stopped");
    }

    /// Claims one batch and processes it; returns what happened.
    pub async fn run_once(&self, shutdown: &CancellationToken) -> Result<BatchReport, OutboxError> {
        let kind = self.step.kind();
        let jobs = self
            .outbox
            .claim(
                kind,
                self.cfg.batch_size,
                self.cfg.lease,
                self.step.ordered_per_product(),
            )
            .await?;
        let mut report = BatchReport {
            claimed: jobs.len(),
            ..Default::default()
        };
        if jobs.is_empty() {
            return Ok(report);
        }
        let claimed_at = std::time::Instant::now();

        // Heartbeat: keep the leases while the step runs. When a lease turns out to be lost
        // (taken over after it expired), or the heartbeat has failed for a whole lease
        // length, the step is cancelled: another worker may be doing this work now, and a
        // stalled step must not, say, publish after the row was handed over.
        let hb_stop = CancellationToken::new();
        let lease_lost = CancellationToken::new();
        let heartbeat = {
            let (outbox, jobs, lease, stop, lost) = (
                self.outbox.clone(),
                jobs.clone(),
                self.cfg.lease,
                hb_stop.clone(),
                lease_lost.clone(),
            );
            tokio::spawn(async move {
                let every = (lease / 3).max(Duration::from_millis(50));
                let mut last_ok = std::time::Instant::now();
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(every) => {
                            match outbox.heartbeat(&jobs, lease).await {
                                Ok(n) if n == jobs.len() as u64 => last_ok = std::time::Instant::now(),
                                Ok(n) => {
                                    tracing::warn!(held = n, claimed = jobs.len(),
                                        "lease lost during the step; cancelling it");
                                    lost.cancel();
                                    break;
                                }
                                Err(e) if last_ok.elapsed() >= lease => {
                                    tracing::warn!(error = %e,
                                        "lease heartbeat failing for a whole lease; cancelling the step");
                                    lost.cancel();
                                    break;
                                }
                                Err(e) => tracing::warn!(error = %e, "lease heartbeat failed"),
                            }
                        }
                    }
                }
            })
        };

        let results = {
            let exec = self.step.execute_batch(&jobs, self.cfg.concurrency);
            tokio::pin!(exec);
            tokio::select! {
                r = &mut exec => Some(r),
                _ = lease_lost.cancelled() => None,
                _ = shutdown.cancelled() => {
                    tokio::select! {
                        r = tokio::time::timeout(self.cfg.shutdown_grace, &mut exec) => r.ok(),
                        _ = lease_lost.cancelled() => None,
                    }
                }
            }
        };
        hb_stop.cancel();
        let _ = heartbeat.await;

        if results.is_none() && lease_lost.is_cancelled() {
            // Rows still ours go back without counting the attempt; the lost ones belong to
            // their new holder.
            let n = self.outbox.release(&jobs).await?;
            metrics::counter!("rvc_outbox_lease_lost_total", "kind" => kind.as_str())
                .increment((jobs.len() as u64).saturating_sub(n));
            report.lease_lost = jobs.len().saturating_sub(usize::try_from(n).unwrap_or(0));
            report.released = usize::try_from(n).unwrap_or(0);
            return Ok(report);
        }
        let Some(results) = results else {
            let n = self.outbox.release(&jobs).await?;
            tracing::warn!(
                released = n,
                "shutdown deadline passed: released in-flight leases"
            );
            report.released = jobs.len();
            return Ok(report);
        };
        self.finish(jobs, results, &mut report, claimed_at).await?;
        Ok(report)
    }

    /// One transaction for the whole batch: fence the leases, run each step's `commit`
    /// (in a savepoint, so one bad row does not undo the others), complete the successes
    /// together with their next step, record the failures.
    async fn finish(
        &self,
        jobs: Vec<Job>,
        results: Vec<Result<S::Output, StepError>>,
        report: &mut BatchReport,
        claimed_at: std::time::Instant,
    ) -> Result<(), OutboxError> {
        let kind = self.step.kind();
        let mut client = self.outbox.pool().get().await?;
        let mut tx = tokio_postgres::Client::transaction(&mut client)
            .await
            .ctx("finish begin")?;
        // Lock the rows we still hold; a row whose lease expired and was taken over is not ours.
        let ids: Vec<uuid::Uuid> = jobs.iter().map(|j| j.event_id).collect();
        let tokens: Vec<uuid::Uuid> = jobs.iter().map(|j| j.lease_token).collect();
        let held: std::collections::HashSet<uuid::Uuid> = tx
            .query(
                "SELECT o.event_id FROM outbox o
                 JOIN unnest($1::uuid[], $2::uuid[]) AS t(id, token)
                   ON o.event_id = t.id AND o.lease_token = t.token
                 WHERE o.state = 'leased' FOR UPDATE OF o",
                &[&ids, &tokens],
            )
            .await
            .ctx("fence leases")?
            .iter()
            .map(|r| r.try_get("event_id"))
            .collect::<Result<_, _>>()
            .ctx("fence leases")?;

        let mut done = Vec::new();
        for (job, result) in jobs.into_iter().zip(results) {
            if !held.contains(&job.event_id) {
                report.lease_lost += 1;
                metrics::counter!("rvc_outbox_lease_lost_total", "kind" => kind.as_str())
                    .increment(1);
                tracing::warn!(event_id = %job.event_id, "lease lost before completion; another worker owns the row");
                continue;
            }
            let outcome = match result {
                Ok(output) if S::COMMIT_WRITES => {
                    let sp = tx.savepoint("step_commit").await.ctx("savepoint")?;
                    match self.step.commit(&sp, &job, output).await {
                        Ok(()) => {
                            sp.commit().await.ctx("release savepoint")?;
                            Ok(())
                        }
                        Err(e) => {
                            sp.rollback().await.ctx("rollback savepoint")?;
                            Err(e)
                        }
                    }
                }
                Ok(output) => self.step.commit(&tx, &job, output).await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => done.push(job),
                Err(e) => {
                    report.failed += 1;
                    self.outbox
                        .fail_in(&tx, &job, &e, &self.cfg.backoff, self.cfg.retry_window)
                        .await?;
                }
            }
        }
        let outcome = self.outbox.complete_in(&tx, kind, &done).await?;
        tx.commit().await.ctx("finish commit")?;
        report.completed = outcome.completed.len();
        report.lease_lost += outcome.lease_lost.len();
        if report.completed > 0 {
            metrics::counter!("rvc_outbox_completed_total", "kind" => kind.as_str())
                .increment(report.completed as u64);
        }
        // Every row of the batch was leased at the claim and finished at this commit.
        let took = claimed_at.elapsed().as_secs_f64();
        for (label, n) in [("completed", report.completed), ("failed", report.failed)] {
            let h = metrics::histogram!("rvc_outbox_step_duration_seconds", "kind" => kind.as_str(), "outcome" => label);
            (0..n).for_each(|_| h.record(took));
        }
        observe_lag(&client, kind, &outcome.completed).await;
        if !outcome.completed_rows.is_empty() {
            if let Err(e) = self
                .outbox
                .hooks()
                .committed(&client, kind, &outcome.completed_rows)
                .await
            {
                tracing::debug!(error = %e, "after-commit hook failed");
            }
        }
        Ok(())
    }
}

/// After the commit: `rvc_outbox_lag_seconds{kind}` (enqueued → done) for each completed row.
/// Best effort: a failed read costs a debug line, never the batch.
async fn observe_lag(client: &tokio_postgres::Client, kind: OutboxKind, completed: &[uuid::Uuid]) {
    if completed.is_empty() {
        return;
    }
    let rows = client
        .query(
            "SELECT extract(epoch FROM completed_at - created_at)::float8 AS lag_secs
             FROM outbox WHERE event_id = ANY($1) AND state = 'done'",
            &[&completed],
        )
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = %e, "could not read completion times for metrics");
            return;
        }
    };
    let lag = metrics::histogram!("rvc_outbox_lag_seconds", "kind" => kind.as_str());
    for r in rows {
        if let Ok(Some(secs)) = r.try_get::<_, Option<f64>>("lag_secs") {
            lag.record(secs.max(0.0));
        }
    }
}
