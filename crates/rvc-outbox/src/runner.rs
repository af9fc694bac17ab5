//! Everything a worker binary does around its step: the pool, the LISTEN connection, the
//! claimer loops, the outbox gauges, `/healthz` `/readyz` `/metrics` on `METRICS_ADDR`, and a
//! graceful stop on SIGTERM/SIGINT. A worker's `main` builds its step and calls [`run`].
use crate::{spawn_listener, spawn_stats_refresher, Outbox, RowHooks, Step, Worker, WorkerArgs};
use rvc_runtime::health::ReadyCheck;
use rvc_runtime::DatabaseArgs;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Flags and variables every worker shares (flatten into the binary's own args).
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerProcessArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Address of /healthz, /readyz and /metrics (port 0 picks a free one).
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Name of this process in lease_owner (default: binary name, host and pid).
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("invalid DATABASE_URL: {0}")]
    Config(String),
    #[error("database pool: {0}")]
    Pool(String),
    #[error(transparent)]
    Runtime(#[from] rvc_runtime::RuntimeError),
    #[error("a worker task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// The pool `args.db` describes ([`rvc_runtime::db::pool`]).
pub fn pool(args: &WorkerProcessArgs) -> Result<deadpool_postgres::Pool, RunError> {
    rvc_runtime::db::pool(&args.db).map_err(|e| RunError::Config(e.to_string()))
}

/// A second step run by the same process beside the main one: its own claimers, tuning and
/// LISTEN wake-up, the same `/healthz` `/readyz` `/metrics` and readiness gate.
pub struct Companion<B: Step> {
    pub step: Arc<B>,
    pub config: crate::WorkerConfig,
    pub claimers: usize,
}

/// What every worker process has, whatever its step.
pub struct Process<'a> {
    /// The binary's name (in the lease owner and the logs).
    pub name: &'a str,
    /// `/healthz` `/readyz` `/metrics` address when `METRICS_ADDR` is unset.
    pub default_metrics_addr: &'a str,
    pub args: &'a WorkerProcessArgs,
    pub pool: deadpool_postgres::Pool,
    /// Told about finished rows (the pipeline: `rvc_store::pipeline::hooks()`).
    pub hooks: Arc<dyn RowHooks>,
    /// Stops the process (pass `rvc_runtime::shutdown::on_signal()`).
    pub shutdown: CancellationToken,
}

/// Runs `step` until `process.shutdown`.
/// `ready` adds the step's own readiness (its S3 bucket, ML service ...) to the database check.
pub async fn run<S: Step>(
    process: Process<'_>,
    step: Arc<S>,
    ready: Option<ReadyCheck>,
) -> Result<(), RunError> {
    run_with::<S, S>(process, step, ready, None).await
}

/// [`run`] with a [`Companion`] step (the vectorizer's model migration beside `vectorize`).
pub async fn run_with<S: Step, B: Step>(
    process: Process<'_>,
    step: Arc<S>,
    ready: Option<ReadyCheck>,
    companion: Option<Companion<B>>,
) -> Result<(), RunError> {
    let Process {
        name,
        default_metrics_addr,
        args,
        pool,
        hooks,
        shutdown,
    } = process;
    let kind = step.kind();
    let owner = args.worker_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        format!("{name}@{host}:{}", std::process::id())
    });
    let pg: tokio_postgres::Config = args
        .db
        .url()
        .parse()
        .map_err(|e: tokio_postgres::Error| RunError::Config(e.to_string()))?;

    let gate = ready.clone();
    let db_ready = {
        let pool = pool.clone();
        move || {
            let pool = pool.clone();
            async move {
                let c = pool.get().await.map_err(|e| format!("database: {e}"))?;
                c.execute("SELECT 1 FROM outbox LIMIT 1", &[])
                    .await
                    .map_err(|e| format!("database: {e}"))?;
                Ok::<(), String>(())
            }
        }
    };
    let check: ReadyCheck = Arc::new(move || {
        let db = db_ready();
        let extra = ready.as_ref().map(|r| r());
        Box::pin(async move {
            db.await?;
            if let Some(extra) = extra {
                extra.await?;
            }
            Ok(())
        })
    });
    let metrics_addr = args
        .metrics_addr
        .clone()
        .unwrap_or_else(|| default_metrics_addr.to_owned());
    let (bound, server) = rvc_runtime::health::serve(&metrics_addr, check)?;
    let server_handle = server.handle();
    tokio::spawn(server);
    tracing::info!(%bound, kind = kind.as_str(), %owner, "health and metrics endpoint up");

    let outbox = Outbox::new(pool.clone(), owner.clone(), hooks.clone());
    let mut worker = Worker::new(outbox, step, args.worker.config());
    if let Some(gate) = gate.clone() {
        // The step's dependency gates claiming (and `/readyz`): no attempts are spent on an
        // outage.
        worker = worker.with_gate(gate);
    }
    let mut listeners = vec![spawn_listener(
        pg.clone(),
        kind,
        worker.wake_handle(),
        shutdown.clone(),
    )];
    let stats = spawn_stats_refresher(pool.clone(), Duration::from_secs(15), shutdown.clone());
    let mut claimers = Vec::new();
    for _ in 0..args.worker.claimers.max(1) {
        claimers.push(tokio::spawn(worker.clone().run(shutdown.clone())));
    }
    if let Some(c) = companion {
        let ckind = c.step.kind();
        let outbox = Outbox::new(pool, format!("{owner}/{}", ckind.as_str()), hooks);
        let mut w = Worker::new(outbox, c.step, c.config);
        if let Some(gate) = gate {
            w = w.with_gate(gate);
        }
        listeners.push(spawn_listener(pg, ckind, w.wake_handle(), shutdown.clone()));
        tracing::info!(kind = ckind.as_str(), "companion step runs in this process");
        for _ in 0..c.claimers.max(1) {
            claimers.push(tokio::spawn(w.clone().run(shutdown.clone())));
        }
    }
    for c in claimers {
        c.await?;
    }
    shutdown.cancel();
    for l in listeners {
        let _ = l.await;
    }
    let _ = stats.await;
    server_handle.stop(true).await;
    tracing::info!("stopped cleanly");
    Ok(())
}
