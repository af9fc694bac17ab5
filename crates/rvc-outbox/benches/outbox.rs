//! Outbox claim→complete throughput on a no-op step with 1, 4 and 16 concurrent claimers,
//! beside what a user would pick instead, at the same client count on the same server in the
//! same run: `pgbench -N` (one-row-per-statement write transactions, the Postgres limit) and
//! graphile-worker (npm) draining no-op jobs (scripts/bench/graphile-worker/bench.cjs,
//! installed by scripts/setup-bench.sh). Prints a markdown table (scripts/bench.sh puts it in
//! docs/benchmarks.md).
//!
//! `cargo bench -p rvc-outbox --bench outbox [-- ROWS SECONDS]`
//!
//! `cargo bench -p rvc-outbox --bench outbox -- growth [ROWS]`: claim→complete as the table
//! grows: the same run on an empty outbox, then with 100 k `dead` rows and 10 k, 1 M and
//! 10 M `done` rows awaiting pruning (issue 17, item 4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use rvc_domain::OutboxKind;
use rvc_outbox::testing::{seed_history, seed_rows, NullStep};
use rvc_outbox::{Backoff, Outbox, Worker, WorkerConfig};
use rvc_test_support::TestDb;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn bench_config() -> WorkerConfig {
    WorkerConfig {
        batch_size: 64,
        concurrency: 64,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(20),
        backoff: Backoff::default(),
        shutdown_grace: Duration::from_secs(5),
        retry_window: Duration::from_secs(3600),
    }
}

fn worker(db: &TestDb, name: &str) -> Worker<NullStep> {
    let step = Arc::new(NullStep(OutboxKind::Publish));
    Worker::new(
        Outbox::new(db.pool.clone(), name, rvc_store::pipeline::hooks()),
        step,
        bench_config(),
    )
}

async fn outbox_rows_per_sec(claimers: usize, rows: i64) -> f64 {
    let db = TestDb::new().await;
    drain_rate(&db, claimers, rows).await
}

/// Seeds `rows` publish rows and drains them with `claimers` workers; rows/s.
async fn drain_rate(db: &TestDb, claimers: usize, rows: i64) -> f64 {
    let client = db.client().await;
    seed_rows(&client, rows, OutboxKind::Publish).await.unwrap();
    client.batch_execute("VACUUM ANALYZE outbox").await.unwrap();
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..claimers {
        let w = worker(db, &format!("b{i}"));
        tasks.push(tokio::spawn(w.run(shutdown.clone())));
    }
    loop {
        if db
            .count("SELECT count(*) FROM outbox WHERE state IN ('pending', 'leased')")
            .await
            == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    shutdown.cancel();
    for t in tasks {
        t.await.unwrap();
    }
    rows as f64 / elapsed
}

/// graphile-worker's no-op jobs per second with `concurrency`, on a database of its own.
fn graphile_jobs_per_sec(url: &str, jobs: i64, concurrency: usize) -> f64 {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let modules = format!("{repo}/var/bench/graphile-worker/node_modules");
    assert!(
        std::path::Path::new(&modules)
            .join("graphile-worker")
            .exists(),
        "graphile-worker is not installed: run `make bench` (scripts/setup-bench.sh)"
    );
    let out = Command::new("node")
        .arg(format!("{repo}/scripts/bench/graphile-worker/bench.cjs"))
        .args([url, &jobs.to_string(), &concurrency.to_string()])
        .env("NODE_PATH", modules)
        .output()
        .expect("node is installed (make setup)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "graphile-worker bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no jobs/s in: {text}"))
}

/// `pgbench -N` write transactions per second (TPC-B-like, without the contended
/// branch/teller updates: the one-row-transaction limit of this server).
fn pgbench_tps(url: &str, clients: usize, seconds: u32) -> f64 {
    let init = Command::new("pgbench")
        .args(["-i", "-q", "-s", "4", url])
        .output()
        .expect("pgbench is installed (make setup)");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let out = Command::new("pgbench")
        .args([
            "-N",
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(4).to_string(),
            "-T",
            &seconds.to_string(),
            url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    rvc_test_support::postgres::pgbench_tps(&text)
        .unwrap_or_else(|| panic!("no tps in pgbench output: {text}"))
}

/// Claim→complete of one batch of 64 by one claimer, `batches` times: (p50, p99) in ms.
async fn batch_latency(db: &TestDb, batches: usize) -> (f64, f64) {
    let client = db.client().await;
    seed_rows(&client, 64 * batches as i64, OutboxKind::Publish)
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE outbox").await.unwrap();
    let w = worker(db, "latency");
    let none = CancellationToken::new();
    let mut ms = Vec::with_capacity(batches);
    for _ in 0..batches {
        let t = Instant::now();
        let r = w.run_once(&none).await.unwrap();
        assert_eq!(r.completed, 64);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// The growth table: one database, history added between the measurements.
async fn growth(rows: i64) {
    let db = TestDb::new().await;
    let client = db.client().await;
    println!("| done rows | dead rows | seeding took | rows/s (4 claimers, batch 64) | batch p50 | batch p99 | rows/s vs empty |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    // Warm-up (connections, plans, caches), not recorded: the empty table's figure is then
    // measured under the same conditions as the others.
    drain_rate(&db, 4, rows).await;
    batch_latency(&db, 50).await;
    client
        .batch_execute("DELETE FROM outbox; DELETE FROM products")
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    let mut base = None;
    let mut have_done = 0i64;
    for (done, dead) in [
        (0i64, 0i64),
        (10_000, 100_000),
        (1_000_000, 100_000),
        (10_000_000, 100_000),
    ] {
        let t = Instant::now();
        let add_dead = if have_done == 0 && dead > 0 { dead } else { 0 };
        seed_history(&client, done - have_done, add_dead, 10)
            .await
            .unwrap();
        client.batch_execute("VACUUM ANALYZE").await.unwrap();
        // The seeding and the VACUUM dirtied up to gigabytes of pages: write them out now, so
        // the checkpointer's write-back is not measured as claim latency.
        client.batch_execute("CHECKPOINT").await.unwrap();
        have_done = done;
        let seeded = t.elapsed().as_secs_f64();
        let rate = drain_rate(&db, 4, rows).await;
        let (p50, p99) = batch_latency(&db, 500).await;
        let base = *base.get_or_insert(rate);
        println!(
            "| {done} | {dead} | {seeded:.0} s | {rate:.0} | {p50:.1} ms | {p99:.1} ms | {:.2}× |",
            rate / base
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    if args.get(1).map(String::as_str) == Some("growth") {
        let rows: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000);
        growth(rows).await;
        return;
    }
    let rows: i64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let seconds: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    println!("| claimers | outbox rows/s (no-op step, batch 64) | pgbench -N TPS (same clients) | graphile-worker jobs/s (no-op, same concurrency) | outbox / pgbench -N | outbox / graphile-worker |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for claimers in [1usize, 4, 16] {
        let rps = outbox_rows_per_sec(claimers, rows).await;
        let db = TestDb::new().await;
        let url = db.url.clone();
        let tps = tokio::task::spawn_blocking(move || pgbench_tps(&url, claimers, seconds))
            .await
            .unwrap();
        drop(db);
        let db = TestDb::new().await;
        let url = db.url.clone();
        let jobs = rows / 2;
        let gw = tokio::task::spawn_blocking(move || graphile_jobs_per_sec(&url, jobs, claimers))
            .await
            .unwrap();
        drop(db);
        println!(
            "| {claimers} | {rps:.0} | {tps:.0} | {gw:.0} | {:.1}× | {:.1}× |",
            rps / tps,
            rps / gw
        );
    }
}
