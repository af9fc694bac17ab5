//! The adapter (qdrant-client over gRPC) against a real `rvc-vector-index` server started
//! in-process on a free loopback port with its own temp data dir.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chrono::{TimeZone, Utc};
use rvc_vectors::{point_id, PointPayload, PointRecord, VectorIndex, VectorIndexError};
use tokio::sync::oneshot;
use uuid::Uuid;

struct Server {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), rvc_vector_server::ServerError>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let cfg = rvc_vector_server::Config {
            data_dir: dir.path().join("index"),
        };
        let task = tokio::spawn(rvc_vector_server::serve(listener, cfg, async move {
            let _ = rx.await;
        }));
        Self {
            url,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Deterministic pseudo-random vectors (no RNG dependency, reproducible failures).
fn vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..dim)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect()
}

fn record(product_id: Uuid, version: i64, image: u64, dim: usize) -> PointRecord {
    let sha = format!("{image:064x}");
    let model = "test-model@1";
    PointRecord {
        id: point_id(product_id, &sha, model),
        vector: vector(image, dim),
        payload: PointPayload {
            product_id,
            sku: format!("SKU-{image}"),
            product_version: version,
            image_key: format!("products/{product_id}/{sha}.jpg"),
            model_version: model.to_owned(),
            created_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
        },
    }
}

fn collection() -> String {
    format!("test_{}", Uuid::new_v4().simple())
}

#[tokio::test]
async fn ensure_collection_is_idempotent_and_rejects_another_dimension() {
    let server = Server::start().await;
    let name = collection();
    let index = VectorIndex::connect(&server.url, &name).unwrap();

    let (title, version) = index.health_check().await.unwrap();
    assert!(title.contains("rvc-vector-index"), "{title}");
    assert_eq!(version, rvc_vector_server::PROTOCOL_VERSION);

    index.ensure_collection(8).await.unwrap();
    index.ensure_collection(8).await.unwrap();
    assert_eq!(index.count(None).await.unwrap(), 0);

    let other = VectorIndex::connect(&server.url, &name).unwrap();
    let err = other.ensure_collection(16).await.unwrap_err();
    match &err {
        VectorIndexError::DimensionMismatch {
            collection,
            existing,
            expected,
        } => {
            assert_eq!(collection, &name);
            assert_eq!((*existing, *expected), (8, 16));
        }
        e => panic!("expected DimensionMismatch, got {e:?}"),
    }
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("vector size 8"), "{err}");

    // Two racing ensure_collection calls on a fresh collection both succeed.
    let racing = collection();
    let a = VectorIndex::connect(&server.url, &racing).unwrap();
    let b = a.clone();
    let (ra, rb) = tokio::join!(a.ensure_collection(4), b.ensure_collection(4));
    ra.unwrap();
    rb.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn upsert_is_idempotent_by_point_id() {
    let server = Server::start().await;
    let index = VectorIndex::connect(&server.url, &collection()).unwrap();
    index.ensure_collection(16).await.unwrap();

    let product = Uuid::now_v7();
    let points: Vec<_> = (1..=3).map(|i| record(product, 1, i, 16)).collect();
    let mut expected: Vec<Uuid> = points.iter().map(|p| p.id).collect();
    expected.sort();

    index.upsert(points.clone()).await.unwrap();
    assert_eq!(index.count(None).await.unwrap(), 3);
    index.upsert(points).await.unwrap();
    assert_eq!(index.count(None).await.unwrap(), 3);
    assert_eq!(index.count(Some(product)).await.unwrap(), 3);
    assert_eq!(index.count(Some(Uuid::now_v7())).await.unwrap(), 0);
    assert_eq!(index.product_point_ids(product).await.unwrap(), expected);

    // A vector of the wrong length is rejected by the server, not retried forever.
    let mut bad = record(product, 1, 99, 16);
    bad.vector.truncate(5);
    let err = index.upsert(vec![bad]).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(index.count(None).await.unwrap(), 3);
    server.stop().await;
}

#[tokio::test]
async fn deletes_older_versions_and_whole_products() {
    let server = Server::start().await;
    let index = VectorIndex::connect(&server.url, &collection()).unwrap();
    index.ensure_collection(8).await.unwrap();

    let a = Uuid::now_v7();
    let b = Uuid::now_v7();
    let a_v1 = [record(a, 1, 1, 8), record(a, 1, 2, 8)];
    let a_v2 = record(a, 2, 3, 8);
    let a_v3 = record(a, 3, 4, 8);
    let b_v1 = record(b, 1, 5, 8);
    let mut all = a_v1.to_vec();
    all.extend([a_v2.clone(), a_v3.clone(), b_v1.clone()]);
    index.upsert(all).await.unwrap();
    assert_eq!(index.count(Some(a)).await.unwrap(), 4);

    index.delete_product_versions_below(a, 3).await.unwrap();
    assert_eq!(index.product_point_ids(a).await.unwrap(), vec![a_v3.id]);
    assert_eq!(index.product_point_ids(b).await.unwrap(), vec![b_v1.id]);

    // Idempotent: nothing older is left.
    index.delete_product_versions_below(a, 3).await.unwrap();
    assert_eq!(index.count(Some(a)).await.unwrap(), 1);

    index.delete_product(a).await.unwrap();
    assert_eq!(index.count(Some(a)).await.unwrap(), 0);
    assert_eq!(index.count(None).await.unwrap(), 1);
    server.stop().await;
}

#[tokio::test]
async fn search_returns_the_nearest_points_best_first() {
    let server = Server::start().await;
    let index = VectorIndex::connect(&server.url, &collection()).unwrap();
    let dim = 32;
    index.ensure_collection(dim as u64).await.unwrap();

    let product = Uuid::now_v7();
    let points: Vec<_> = (0..60).map(|i| record(product, 1, i, dim)).collect();
    index.upsert(points.clone()).await.unwrap();

    for target in [0usize, 17, 59] {
        let mut q = points[target].vector.clone();
        for (i, x) in q.iter_mut().enumerate() {
            *x += if i % 2 == 0 { 0.01 } else { -0.01 };
        }
        let hits = index.search(q, 5).await.unwrap();
        assert_eq!(hits.len(), 5);
        assert_eq!(hits[0].id, points[target].id, "target {target}");
        assert_eq!(hits[0].payload, points[target].payload);
        assert!(hits[0].score > 0.99, "score {}", hits[0].score);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }
    server.stop().await;
}

#[tokio::test]
async fn search_many_answers_each_vector_as_its_own_search_in_order() {
    let server = Server::start().await;
    let index = VectorIndex::connect(&server.url, &collection()).unwrap();
    let dim = 32;
    index.ensure_collection(dim as u64).await.unwrap();
    let product = Uuid::now_v7();
    let points: Vec<_> = (0..40).map(|i| record(product, 1, i, dim)).collect();
    index.upsert(points.clone()).await.unwrap();

    let targets = [31usize, 0, 17, 31];
    let queries: Vec<Vec<f32>> = targets.iter().map(|&t| points[t].vector.clone()).collect();
    let batch = index.search_many(queries.clone(), 3).await.unwrap();
    assert_eq!(batch.len(), targets.len());
    for ((hits, &t), q) in batch.iter().zip(&targets).zip(queries) {
        assert_eq!(hits[0].id, points[t].id, "target {t}");
        let single = index.search(q, 3).await.unwrap();
        let ids = |h: &[rvc_vectors::SearchHit]| h.iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(ids(hits), ids(&single), "target {t}");
    }
    assert!(index.search_many(Vec::new(), 3).await.unwrap().is_empty());
    // a wrong dimension in any query fails the whole batch, as a single search would
    let err = index
        .search_many(vec![vector(1, dim), vector(2, dim + 1)], 3)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dimension"), "{err}");
    server.stop().await;
}

/// Rough throughput of the whole path (client, gRPC, engine, flush per request). Prints the
/// numbers (`--nocapture`); asserts correctness only.
#[tokio::test]
async fn throughput_of_upsert_and_search() {
    let server = Server::start().await;
    let index = VectorIndex::connect(&server.url, &collection()).unwrap();
    let dim = 1280;
    index.ensure_collection(dim as u64).await.unwrap();

    let batches = 10u64;
    let batch = 50u64;
    let start = Instant::now();
    for b in 0..batches {
        let product = Uuid::now_v7();
        let points: Vec<_> = (0..batch)
            .map(|i| record(product, 1, b * batch + i, dim))
            .collect();
        index.upsert(points).await.unwrap();
    }
    let upsert = start.elapsed();
    let total = batches * batch;
    assert_eq!(index.count(None).await.unwrap(), total);

    let single = Instant::now();
    let singles = 20u64;
    for i in 0..singles {
        index
            .upsert(vec![record(Uuid::now_v7(), 1, 10_000 + i, dim)])
            .await
            .unwrap();
    }
    let single = single.elapsed();

    let queries = 100u64;
    let start = Instant::now();
    for i in 0..queries {
        let hits = index.search(vector(i % total, dim), 10).await.unwrap();
        assert_eq!(hits.len(), 10);
    }
    let search = start.elapsed();
    let start = Instant::now();
    for _ in 0..queries {
        index.count(None).await.unwrap();
    }
    let count = start.elapsed();
    eprintln!(
        "THROUGHPUT dim={dim}: upsert {total} points in batches of {batch}: {:.0} points/s ({:.1} ms/batch); \
         single-point upserts: {:.1} ms each; search top-10 over {} points: {:.0} queries/s ({:.2} ms each); \
         count round trip: {:.2} ms",
        total as f64 / upsert.as_secs_f64(),
        upsert.as_secs_f64() * 1000.0 / batches as f64,
        single.as_secs_f64() * 1000.0 / singles as f64,
        total + singles,
        queries as f64 / search.as_secs_f64(),
        search.as_secs_f64() * 1000.0 / queries as f64,
        count.as_secs_f64() * 1000.0 / queries as f64,
    );
    server.stop().await;
}
