//! The ML service's own throughput (direct `EmbedRegions` calls for a photo's gallery views,
//! the ML work the vectorizer asks for per photo, `CONCURRENCY` in flight)
//! beside the vectorizer's photos/s through the whole pipeline (outbox claim → object store
//! → the same ML service → vector index upsert + delete → one completing transaction), in the
//! same run. Prints a markdown table (scripts/bench.d/vectorizer.sh puts it in
//! docs/benchmarks.md).
//!
//! `cargo bench -p rvc-vectorizer --bench vectorizer [-- PRODUCTS PHOTOS_PER_PRODUCT CONCURRENCY]`
//! Needs Postgres, the model (scripts/setup-model.sh) and the `rvc-vector-index` binary
//! (`VECTOR_INDEX_BIN`, default the sibling of this bench's `rvc-vectorizer`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use rvc_outbox::{Backoff, WorkerConfig};
use rvc_proto::ml::machine_learning_service_client::MachineLearningServiceClient;
use rvc_proto::ml::{Box as PbBox, EmbedRegionsRequest};
use rvc_test_support::TestDb;
use rvc_vectors::GalleryView;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// `n` direct calls, `concurrency` in flight; returns (images/s, per-call latencies in ms).
async fn standalone(
    url: &str,
    images: &[Vec<u8>],
    n: usize,
    concurrency: usize,
) -> (f64, Vec<f64>) {
    let client = MachineLearningServiceClient::connect(url.to_owned())
        .await
        .unwrap()
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20);
    let slots = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let mut c = client.clone();
        let bytes = images[i % images.len()].clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = c
                .embed_regions(EmbedRegionsRequest {
                    image_data: bytes,
                    image_type: "image/jpeg".to_owned(),
                    crops: GalleryView::ALL
                        .iter()
                        .map(|v| PbBox::from(v.frac_box()))
                        .collect(),
                    pooled: Vec::new(),
                    pooling_input_size: 0,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.crops.len(), GalleryView::ALL.len());
            assert!(r.crops.iter().all(|e| e.vector.len() == 1280));
            drop(permit);
            t.elapsed().as_secs_f64() * 1000.0
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.push(t.await.unwrap());
    }
    (n as f64 / start.elapsed().as_secs_f64(), lat)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let products: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(100);
    let per_product: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
        .clamp(1, 5);
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4).max(1);
    let n = products * per_product;

    let db = TestDb::new().await;
    let objects = tempfile::tempdir().unwrap();
    let store = dir_store(objects.path()).await;
    let ml = MlServer::start().await;
    let index = IndexServer::start().await;
    let p = photos();

    // warm-up (first calls allocate the model's buffers)
    standalone(&ml.url(), &p, 8, concurrency).await;
    let (ips_before, mut lat) = standalone(&ml.url(), &p, n, concurrency).await;

    for i in 0..products {
        let photos: Vec<Vec<u8>> = (0..per_product)
            .map(|k| p[(i + k) % p.len()].clone())
            .collect();
        seed_product(&db, store.as_ref(), &format!("BENCH-{i:04}"), &photos).await;
    }
    let mut ml_args_bench = ml_args(&ml.url());
    ml_args_bench.ml_concurrency = concurrency;
    let step = rvc_vectorizer::VectorizeStep::start(
        db.pool.clone(),
        store.clone(),
        &ml_args_bench,
        &rvc_vectorizer::IndexArgs::new(&index.url, COLLECTION),
    )
    .await
    .unwrap();
    let cfg = WorkerConfig {
        batch_size: 32,
        concurrency: 16,
        lease: Duration::from_secs(60),
        poll_interval: Duration::from_millis(20),
        backoff: Backoff::default(),
        shutdown_grace: Duration::from_secs(10),
        retry_window: Duration::from_secs(3600),
    };
    let worker = rvc_outbox::Worker::new(
        rvc_outbox::Outbox::new(db.pool.clone(), "bench", rvc_store::pipeline::hooks()),
        Arc::new(step),
        cfg,
    );
    let token = tokio_util::sync::CancellationToken::new();
    let index_cpu_before = index.cpu_secs();
    let start = Instant::now();
    let handle = tokio::spawn(worker.run(token.clone()));
    loop {
        let done = db
            .count("SELECT count(*) FROM products WHERE status = 'vectorized'")
            .await;
        if done as usize == products {
            break;
        }
        assert_eq!(
            db.count("SELECT count(*) FROM outbox WHERE state = 'dead'")
                .await,
            0,
            "a vectorize step died"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pipeline_secs = start.elapsed().as_secs_f64();
    let index_cpu = index.cpu_secs() - index_cpu_before;
    token.cancel();
    handle.await.unwrap();
    let points = index.index().count(None).await.unwrap();
    assert_eq!(
        points as usize,
        n * GalleryView::ALL.len(),
        "one point per view of each photo"
    );
    let pps = n as f64 / pipeline_secs;

    let (ips_after, lat_after) = standalone(&ml.url(), &p, n, concurrency).await;
    lat.extend(lat_after);
    lat.sort_by(f64::total_cmp);
    let ips = (ips_before + ips_after) / 2.0;
    ml.stop().await;

    println!(
        "{products} products × {per_product} photos = {n} images (real JPEGs, ~30 KB, 288 px short side); \
         ML service in-process with {} inference threads; {concurrency} calls in flight in both runs; \
         vector index: rvc-vector-index binary; object store: local directory.",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!("| measure | value |");
    println!("| --- | ---: |");
    println!("| ML standalone, photos/s (EmbedRegions of both gallery views; mean of a run before and after the pipeline: {ips_before:.1}, {ips_after:.1}) | {ips:.1} |");
    println!("| vectorizer through the pipeline, photos/s | {pps:.1} |");
    println!("| ratio (goal ≥ 80 %) | {:.0} % |", pps / ips * 100.0);
    println!("| vector index (debug build) CPU during the pipeline | {index_cpu:.1} s of {pipeline_secs:.1} s |");
    println!(
        "| ML latency per photo, p50 (standalone, {} calls) | {:.1} ms |",
        lat.len(),
        percentile(&lat, 0.5)
    );
    println!(
        "| ML latency per photo, p99 | {:.1} ms |",
        percentile(&lat, 0.99)
    );
}
