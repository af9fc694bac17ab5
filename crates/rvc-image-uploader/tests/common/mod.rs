//! Shared helpers of the uploader tests: real PNG photos, products seeded through the real
//! ingest transaction, both object-store backends, and a worker driven batch by batch.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rvc_domain::{CategoryName, Currency, ImageLimits, Price, ProductName, Sku, SniffedImage};
use rvc_image_uploader::UploadStep;
use rvc_objects::{FsStore, ObjectStore, S3Config, S3Store};
use rvc_outbox::{Backoff, Outbox, Worker, WorkerConfig};
use rvc_store::products::{ingest, IngestOutcome, NewProduct, StagedImage};
use rvc_test_support::s3::TestS3;
use rvc_test_support::TestDb;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use rvc_test_support::images::png;

pub fn product(sku: &str, photos: &[Vec<u8>]) -> NewProduct {
    NewProduct {
        sku: Sku::parse(sku).unwrap(),
        name: ProductName::parse("Green tea").unwrap(),
        category: CategoryName::parse("Drinks").unwrap(),
        price: Price::parse("2.50").unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        images: photos
            .iter()
            .map(|b| StagedImage {
                meta: SniffedImage::inspect(b, ImageLimits::default()).unwrap(),
                bytes: b.clone(),
            })
            .collect(),
        traceparent: None,
    }
}

/// Ingests `p` in its own transaction; returns (product id, version).
pub async fn ingest_one(db: &TestDb, p: &NewProduct) -> (Uuid, i32) {
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    let out = ingest(&tx, p, None).await.unwrap();
    tx.commit().await.unwrap();
    match out {
        IngestOutcome::Accepted {
            product_id,
            version,
            ..
        } => (product_id, version),
        other => panic!("not accepted: {other:?}"),
    }
}

/// `n` products with `photos` distinct small PNGs each.
pub async fn seed(db: &TestDb, n: usize, photos: usize, side: u32) -> Vec<(Uuid, i32)> {
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    let mut out = Vec::with_capacity(n);
    let run = rand_seed();
    for i in 0..n {
        let imgs: Vec<Vec<u8>> = (0..photos)
            .map(|j| png(run ^ ((i * 16 + j) as u64 + 1), side, side))
            .collect();
        let p = product(&format!("SKU-{i:05}"), &imgs);
        match ingest(&tx, &p, None).await.unwrap() {
            IngestOutcome::Accepted {
                product_id,
                version,
                ..
            } => out.push((product_id, version)),
            other => panic!("not accepted: {other:?}"),
        }
    }
    tx.commit().await.unwrap();
    out
}

fn rand_seed() -> u64 {
    Uuid::new_v4().as_u64_pair().0
}

/// One object-store backend for a test: a real s3s-fs server or a temp directory.
pub enum Backend {
    S3(TestS3),
    Fs(tempfile::TempDir),
}

impl Backend {
    pub async fn s3() -> Self {
        Self::S3(TestS3::start().await)
    }

    pub fn fs() -> Self {
        Self::Fs(tempfile::tempdir().unwrap())
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::S3(_) => "s3",
            Self::Fs(_) => "fs",
        }
    }

    pub async fn store(&self) -> Arc<dyn ObjectStore> {
        let store: Arc<dyn ObjectStore> = match self {
            Self::S3(s3) => Arc::new(S3Store::new(s3_config(s3)).unwrap()),
            Self::Fs(dir) => Arc::new(FsStore::new(dir.path())),
        };
        store.ensure_bucket().await.unwrap();
        store
    }

    /// The file holding an object's bytes (its mtime is the object's last_modified).
    pub fn object_file(&self, key: &str) -> PathBuf {
        match self {
            Self::S3(s3) => s3.object_path(&s3.bucket, key),
            Self::Fs(dir) => dir.path().join("data").join(key),
        }
    }

    /// Makes an object look `age` old.
    pub fn age(&self, key: &str, age: Duration) {
        let f = std::fs::File::options()
            .write(true)
            .open(self.object_file(key))
            .unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    /// Environment of the real binary for this backend.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::S3(s3) => s3.env(),
            Self::Fs(dir) => vec![
                ("S3_ENDPOINT", String::new()),
                ("OBJECT_STORE_DIR", dir.path().display().to_string()),
            ],
        }
    }
}

pub fn s3_config(s3: &TestS3) -> S3Config {
    let mut c = S3Config::new(
        &s3.endpoint,
        &s3.region,
        &s3.bucket,
        &s3.access_key,
        &s3.secret_key,
    );
    c.request_timeout = Duration::from_secs(5);
    c
}

pub fn worker_config() -> WorkerConfig {
    WorkerConfig {
        batch_size: 16,
        concurrency: 4,
        lease: Duration::from_secs(10),
        poll_interval: Duration::from_millis(50),
        backoff: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        shutdown_grace: Duration::from_secs(5),
        retry_window: Duration::from_secs(3600),
    }
}

pub fn worker(db: &TestDb, store: Arc<dyn ObjectStore>, cfg: WorkerConfig) -> Worker<UploadStep> {
    Worker::new(
        Outbox::new(db.pool.clone(), "uploader-test"),
        Arc::new(UploadStep::new(db.pool.clone(), store)),
        cfg,
    )
}

/// Runs batches until nothing is claimable (retries included) or `timeout`.
pub async fn drain(w: &Worker<UploadStep>, db: &TestDb, timeout: Duration) {
    let stop = CancellationToken::new();
    let deadline = Instant::now() + timeout;
    loop {
        let r = w.run_once(&stop).await.unwrap();
        if r.claimed == 0 {
            let open = db
                .count("SELECT count(*) FROM outbox WHERE kind = 'upload_images' AND state IN ('pending','leased')")
                .await;
            if open == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "upload rows still open after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every object key under `products/`.
pub async fn bucket_keys(store: &dyn ObjectStore) -> Vec<String> {
    store
        .list("products/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Every object_key Postgres refers to, sorted.
pub async fn referenced_keys(db: &TestDb) -> Vec<String> {
    let c = db.pool.get().await.unwrap();
    c.query(
        "SELECT DISTINCT object_key FROM product_images WHERE object_key IS NOT NULL ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}
