//! Outbox claim→complete throughput on a no-op step with 1, 4 and 16 concurrent claimers,
//! beside `pgbench` write TPS (TPC-B-like) at the same client count on the same server, in
//! the same run. Prints a markdown table (scripts/bench.sh puts it in docs/benchmarks.md).
//!
//! `cargo bench -p rvc-outbox --bench outbox [-- ROWS SECONDS]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use rvc_domain::OutboxKind;
use rvc_outbox::testing::{seed_rows, NoopStep};
use rvc_outbox::{Backoff, Outbox, Worker, WorkerConfig};
use rvc_test_support::TestDb;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

async fn outbox_rows_per_sec(claimers: usize, rows: i64) -> f64 {
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, rows, OutboxKind::Publish).await.unwrap();
    client.batch_execute("VACUUM ANALYZE outbox").await.unwrap();
    let cfg = WorkerConfig {
        batch_size: 64,
        concurrency: 64,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(20),
        backoff: Backoff::default(),
        shutdown_grace: Duration::from_secs(5),
        retry_window: Duration::from_secs(3600),
    };
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..claimers {
        let step = Arc::new(NoopStep {
            kind: OutboxKind::Publish,
            sleep: Duration::ZERO,
            log: false,
            owner: format!("b{i}"),
        });
        let w = Worker::new(
            Outbox::new(
                db.pool.clone(),
                format!("b{i}"),
                rvc_store::pipeline::hooks(),
            ),
            step,
            cfg.clone(),
        );
        tasks.push(tokio::spawn(w.run(shutdown.clone())));
    }
    loop {
        if db
            .count("SELECT count(*) FROM outbox WHERE state <> 'done'")
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

/// TPC-B-like write transactions per second, as pgbench reports them.
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
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or_else(|| panic!("no tps in pgbench output: {text}"))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let rows: i64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let seconds: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    println!("| claimers | outbox rows/s (no-op step, batch 64) | pgbench TPS (TPC-B, same clients) | ratio |");
    println!("| ---: | ---: | ---: | ---: |");
    for claimers in [1usize, 4, 16] {
        let rps = outbox_rows_per_sec(claimers, rows).await;
        let db = TestDb::new().await;
        let url = db.url.clone();
        let tps = tokio::task::spawn_blocking(move || pgbench_tps(&url, claimers, seconds))
            .await
            .unwrap();
        drop(db);
        println!("| {claimers} | {rps:.0} | {tps:.0} | {:.1}× |", rps / tps);
    }
}
