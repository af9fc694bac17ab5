//! Uploader throughput through the whole pipeline step (claim → PUT each photo →
//! commit keys, drop staged bytes, complete, enqueue vectorize) beside the raw PUT rate of the
//! same s3s-fs server, measured in the same run. Prints a markdown table.
//!
//! `cargo bench -p rvc-image-uploader --bench uploader [-- PRODUCTS]` (default 200 products
//! of 2 photos of ~200 KB). Under `cargo test --benches` it runs a short smoke pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use bytes::Bytes;
use rvc_image_uploader::UploadStep;
use rvc_objects::{Metadata, ObjectStore, S3Config, S3Store};
use rvc_outbox::{Backoff, Outbox, Worker, WorkerConfig};
use rvc_store::products::ingest;
use rvc_test_support::cpu::CpuTimes;
use rvc_test_support::s3::TestS3;
use rvc_test_support::TestDb;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A real PNG of noise, `side`² pixels (~3·side² bytes: 256 → ~197 KB).
fn png(seed: u64, side: u32) -> Vec<u8> {
    rvc_test_support::images::png(seed, side, side)
}

/// The processes that share the machine in this bench.
const CPU_GROUPS: &[&str] = &["bench", "postgres", "s3s-fs"];

struct Rate {
    photos: usize,
    bytes: usize,
    secs: f64,
    /// CPU time per process group during the run.
    cpu: CpuTimes,
}

impl Rate {
    fn per_s(&self) -> f64 {
        self.photos as f64 / self.secs
    }
    fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
}

async fn raw_puts(store: Arc<dyn ObjectStore>, photos: &[Vec<u8>], conc: usize) -> Rate {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let sem = Arc::new(tokio::sync::Semaphore::new(conc));
    let mut tasks = tokio::task::JoinSet::new();
    let meta: Metadata = [("sha256".to_owned(), "0".repeat(64))].into();
    let bytes: usize = photos.iter().map(Vec::len).sum();
    let payloads: Vec<Bytes> = photos.iter().map(|p| Bytes::from(p.clone())).collect();
    let cpu = CpuTimes::now();
    let start = Instant::now();
    for (i, b) in payloads.into_iter().enumerate() {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (store, meta) = (store.clone(), meta.clone());
        let key = format!("raw/{run}/{i:06}.png");
        tasks.spawn(async move {
            store.put(&key, b, "image/png", &meta).await.unwrap();
            drop(permit);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    Rate {
        photos: photos.len(),
        bytes,
        secs: start.elapsed().as_secs_f64(),
        cpu: CpuTimes::now().since(&cpu),
    }
}

async fn pipeline(
    store: Arc<dyn ObjectStore>,
    products: usize,
    photos: &[Vec<u8>],
    conc: usize,
) -> Rate {
    let db = TestDb::new().await;
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    let per = photos.len() / products;
    for (i, chunk) in photos.chunks(per).enumerate() {
        let p = rvc_test_support::products::product(&format!("B-{i:06}"), chunk);
        ingest(&tx, &p, None).await.unwrap();
    }
    tx.commit().await.unwrap();
    // CHECKPOINT: the ingest above dirtied ~400 KB of pages per product; without it the
    // checkpointer writes them out during the run and its CPU counts against the uploader.
    for sql in ["VACUUM ANALYZE outbox, product_images", "CHECKPOINT"] {
        c.batch_execute(sql).await.unwrap();
    }
    let cfg = WorkerConfig {
        batch_size: 32,
        concurrency: conc,
        lease: Duration::from_secs(60),
        poll_interval: Duration::from_millis(20),
        backoff: Backoff::default(),
        shutdown_grace: Duration::from_secs(5),
        retry_window: Duration::from_secs(3600),
    };
    let w = Worker::new(
        Outbox::new(db.pool.clone(), "bench", rvc_store::pipeline::hooks()),
        Arc::new(UploadStep::new(db.pool.clone(), store)),
        cfg,
    );
    let stop = CancellationToken::new();
    let cpu = CpuTimes::now();
    let start = Instant::now();
    let task = tokio::spawn(w.run(stop.clone()));
    while db
        .count("SELECT count(*) FROM products WHERE status = 'images_stored'")
        .await
        < products as i64
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = CpuTimes::now().since(&cpu);
    stop.cancel();
    task.await.unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'dead'")
            .await,
        0
    );
    Rate {
        photos: photos.len(),
        bytes: photos.iter().map(Vec::len).sum(),
        secs,
        cpu,
    }
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let products: usize = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .find_map(|a| a.parse().ok())
        .unwrap_or(if bench_mode { 200 } else { 5 });
    let side = if bench_mode { 256 } else { 64 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s3 = TestS3::start().await;
        let store: Arc<dyn ObjectStore> = Arc::new(
            S3Store::new(S3Config::new(
                &s3.endpoint,
                &s3.region,
                &s3.bucket,
                &s3.access_key,
                &s3.secret_key,
            ))
            .unwrap(),
        );
        store.ensure_bucket().await.unwrap();
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        let photos: Vec<Vec<u8>> = (0..products * 2)
            .map(|i| png(seed ^ (i as u64 + 1), side))
            .collect();
        let avg_kb = photos.iter().map(Vec::len).sum::<usize>() as f64 / photos.len() as f64 / 1024.0;
        println!(
            "{products} products × 2 PNG photos (avg {avg_kb:.0} KB), s3s-fs {} on loopback, 2 tokio threads.",
            rvc_test_support::s3::S3S_FS_VERSION
        );
        println!();
        println!("| concurrency | raw PUT photos/s | raw PUT MB/s | uploader photos/s | uploader MB/s | uploader / raw |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        let mut cpu_rows = Vec::new();
        for conc in [1usize, 8] {
            let raw = raw_puts(store.clone(), &photos, conc).await;
            let up = pipeline(store.clone(), products, &photos, conc).await;
            for (name, r) in [("raw PUT", &raw), ("uploader", &up)] {
                let cells: Vec<String> = CPU_GROUPS
                    .iter()
                    .map(|g| format!("{:.2}", r.cpu.ms_per(g, r.photos)))
                    .collect();
                cpu_rows.push(format!("| {conc} | {name} | {} |", cells.join(" | ")));
            }
            println!(
                "| {conc} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
                raw.per_s(),
                raw.mb_s(),
                up.per_s(),
                up.mb_s(),
                up.per_s() / raw.per_s()
            );
        }
        println!();
        println!(
            "Raw: `ObjectStore::put` of the same bytes, `concurrency` in flight. Uploader: the \
             `upload_images` worker (batch 32, `concurrency` jobs at once; each job PUTs its 2 \
             photos concurrently and commits keys + drops staged bytes + completes + enqueues \
             vectorize in one transaction), from the first claim until every product is `images_stored`."
        );
        println!();
        println!("CPU time per photo, ms, by process (user + system, from /proc; the three share the 2 cores):");
        println!();
        println!("| concurrency | run | {} |", CPU_GROUPS.join(" | "));
        println!("| ---: | --- |{}", " ---: |".repeat(CPU_GROUPS.len()));
        for row in cpu_rows {
            println!("{row}");
        }
    });
}
