//! Raw PUT rate of 200 KB objects: S3Store against a local s3s-fs, and FsStore for comparison.
//!
//! `cargo bench -p rvc-objects --bench put_rate` prints objects/s and MB/s per backend and
//! concurrency. Knobs: `BENCH_OBJECTS` (default 400), `BENCH_OBJECT_KB` (200),
//! `BENCH_CONCURRENCY` (comma list, default "1,8"). Under `cargo test --benches` (no
//! `--bench` flag) it runs a short smoke pass instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use bytes::Bytes;
use rvc_objects::{FsStore, Metadata, ObjectStore, S3Config, S3Store};
use rvc_test_support::s3::TestS3;
use std::sync::Arc;
use std::time::Instant;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(store: Arc<dyn ObjectStore>, label: &str, n: usize, size: usize, conc: usize) {
    // Distinct content per object, generated up front so only the PUTs are timed.
    let payloads: Vec<Bytes> = (0..n)
        .map(|i| {
            Bytes::from(
                (0..size)
                    .map(|j| (j as u8).wrapping_mul(17) ^ (i as u8))
                    .collect::<Vec<u8>>(),
            )
        })
        .collect();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let sem = Arc::new(tokio::sync::Semaphore::new(conc));
    let mut tasks = tokio::task::JoinSet::new();
    let meta: Metadata = [("bench".to_owned(), "1".to_owned())].into();
    let start = Instant::now();
    for (i, bytes) in payloads.into_iter().enumerate() {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let store = store.clone();
        let key = format!("bench/{run_id}/{i:06}.jpg");
        let meta = meta.clone();
        tasks.spawn(async move {
            store.put(&key, bytes, "image/jpeg", &meta).await.unwrap();
            drop(permit);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let listed = store.list(&format!("bench/{run_id}/")).await.unwrap().len();
    assert_eq!(listed, n, "every PUT landed");
    println!(
        "put_rate backend={label:<6} objects={n} size_kb={} concurrency={conc:<2} elapsed_s={secs:.2} objects_per_s={:.1} mb_per_s={:.1}",
        size / 1024,
        n as f64 / secs,
        (n * size) as f64 / secs / 1e6,
    );
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let n = if bench_mode {
        env_usize("BENCH_OBJECTS", 400)
    } else {
        20
    };
    let size = env_usize("BENCH_OBJECT_KB", 200) * 1024;
    let concurrency: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,8".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .filter(|&c| c > 0)
        .collect();

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
        for &c in &concurrency {
            run(store.clone(), "s3", n, size, c).await;
        }

        let dir = std::env::temp_dir().join(format!("rvc-bench-{}", uuid::Uuid::new_v4().simple()));
        let fs: Arc<dyn ObjectStore> = Arc::new(FsStore::new(&dir));
        fs.ensure_bucket().await.unwrap();
        for &c in &concurrency {
            run(fs.clone(), "fs", n, size, c).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
