//! Real dependencies of the vectorizer tests: a fresh Postgres database, object storage
//! (a directory or s3s-fs), the ML service in-process on a loopback port with the real model,
//! and the real `rvc-vector-index` binary over a temp data dir. Plus the seeding helper that
//! plays the uploader's part.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use rvc_domain::{
    CategoryName, Currency, ImageLimits, OutboxKind, Price, ProductName, Sku, SniffedImage,
};
use rvc_ml_service::{Embedder, EmbedderConfig, ServiceConfig};
use rvc_objects::{FsStore, Metadata, ObjectStore};
use rvc_outbox::{NewOutboxRow, Outbox, Worker, WorkerConfig};
use rvc_store::products::{IngestOutcome, NewProduct, StagedImage};
pub use rvc_test_support::paths::model_path;
use rvc_test_support::process::ChildGuard;
use rvc_test_support::TestDb;
use rvc_vectorizer::{IndexArgs, MlClientArgs, VectorizeStep};
use rvc_vectors::VectorIndex;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const COLLECTION: &str = "product_images";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(name: &str) -> Vec<u8> {
    let p = repo()
        .join("crates/rvc-ml-service/tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The five real photos of the ML service's tests.
pub fn photos() -> Vec<Vec<u8>> {
    [
        "cat.jpg",
        "coffee.jpg",
        "rocket.jpg",
        "astronaut.jpg",
        "cat-exif-rotated.jpg",
    ]
    .iter()
    .map(|n| fixture(n))
    .collect()
}

/// One loaded model per test process.
pub fn embedder() -> Arc<Embedder> {
    static E: OnceLock<Arc<Embedder>> = OnceLock::new();
    E.get_or_init(|| {
        Arc::new(
            Embedder::load(EmbedderConfig {
                model_path: model_path(),
                ..EmbedderConfig::default()
            })
            .expect("load the model"),
        )
    })
    .clone()
}

/// The ML service in this process; `stop` and `start_on(same port)` simulate an outage.
pub struct MlServer {
    pub addr: SocketAddr,
    token: CancellationToken,
    handle: Option<tokio::task::JoinHandle<Result<(), rvc_ml_service::MlError>>>,
}

impl MlServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    /// Binds `addr` again (retrying while the old socket lingers).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => return Self::serve(l),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebind {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot bind {addr} again: {e}"),
            }
        }
    }

    fn serve(listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let stop = token.clone();
        let cfg = ServiceConfig {
            embedder: EmbedderConfig {
                model_path: model_path(),
                ..EmbedderConfig::default()
            },
            workers: 2,
            queue_capacity: 32,
            max_batch: 8,
            max_message_bytes: 16 * 1024 * 1024,
            shutdown_grace_secs: 2,
            // no pooled (R-MAC) plan: these tests do not use EmbedRegions' pooled boxes
            regions: rvc_ml_service::RegionsConfig {
                pooling_input_size: 0,
                ..Default::default()
            },
        };
        let handle = tokio::spawn(rvc_ml_service::serve_with_embedder(
            listener,
            cfg,
            embedder(),
            async move { stop.cancelled().await },
        ));
        Self {
            addr,
            token,
            handle: Some(handle),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight calls finish, closes connections.
    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(20), h)
                .await
                .expect("ML server stops within 20 s")
                .expect("ML server task")
                .expect("ML server returns Ok");
        }
    }
}

impl Drop for MlServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// `target/<profile>/<name>`: a binary of another workspace crate, built by
/// `cargo build --workspace` / `cargo nextest run --workspace`. `VECTOR_INDEX_BIN` overrides
/// the path of `rvc-vector-index` (the benchmark uses the debug build `make run` uses).
pub fn sibling_bin(name: &str) -> PathBuf {
    if name == "rvc-vector-index" {
        if let Some(p) = std::env::var_os("VECTOR_INDEX_BIN").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
    }
    let me = PathBuf::from(env!("CARGO_BIN_EXE_rvc-vectorizer"));
    let p = me.parent().unwrap().join(name);
    assert!(
        p.is_file(),
        "{} is missing: build it first (cargo build -p rvc-vector-server)",
        p.display()
    );
    p
}

/// The real `rvc-vector-index` binary on a free port with its own data dir.
pub struct IndexServer {
    pub url: String,
    pub dir: tempfile::TempDir,
    child: ChildGuard,
}

impl IndexServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = rvc_test_support::net::free_port();
            let mut child = ChildGuard::spawn(
                "rvc-vector-index",
                Command::new(sibling_bin("rvc-vector-index"))
                    .env("VECTOR_ADDR", format!("127.0.0.1:{port}"))
                    .env("VECTOR_DATA_DIR", dir.path())
                    .env("RUST_LOG", "warn")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null()),
            )
            .unwrap();
            let url = format!("http://127.0.0.1:{port}");
            let probe = VectorIndex::connect(&url, COLLECTION).unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && child.is_running() {
                if probe.health_check().await.is_ok() {
                    return Self { url, dir, child };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            child.kill();
        }
        panic!("rvc-vector-index did not become healthy");
    }

    /// CPU seconds (user + system) the server process has used so far (Linux /proc).
    pub fn cpu_secs(&self) -> f64 {
        let Some(pid) = self.child.pid() else {
            return 0.0;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // fields after the ")" that closes the command name: state is field 3, utime 14, stime 15
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|i| f.get(*i).and_then(|v| v.parse::<f64>().ok()))
            .sum();
        ticks / 100.0
    }

    pub fn index(&self) -> VectorIndex {
        VectorIndex::connect(&self.url, COLLECTION).unwrap()
    }

    pub fn qdrant(&self) -> qdrant_client::Qdrant {
        qdrant_client::Qdrant::from_url(&self.url)
            .skip_compatibility_check()
            .build()
            .unwrap()
    }
}

/// A directory object store (created).
pub async fn dir_store(dir: &std::path::Path) -> Arc<dyn ObjectStore> {
    let store = FsStore::new(dir);
    store.ensure_bucket().await.unwrap();
    Arc::new(store)
}

/// One photo of a seeded product.
#[derive(Debug, Clone)]
pub struct SeededPhoto {
    pub ordinal: i16,
    pub sha256: String,
    pub key: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Seeded {
    pub product_id: Uuid,
    pub version: i32,
    pub sku: String,
    pub photos: Vec<SeededPhoto>,
}

impl Seeded {
    /// Every point of the product's photos: one per gallery view of each distinct photo.
    pub fn point_ids(&self, model_version: &str) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .photos
            .iter()
            .map(|p| rvc_vectors::point_id(self.product_id, &p.sha256, model_version))
            .flat_map(rvc_vectors::GalleryView::point_ids)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Plays the uploader: ingests the product (a new version when the sku exists), puts the photos
/// at their deterministic keys, sets object_key and drops the staged bytes, completes the
/// upload row, moves the product to `images_stored` and enqueues `vectorize`.
pub async fn seed_product(
    db: &TestDb,
    store: &dyn ObjectStore,
    sku: &str,
    photos: &[Vec<u8>],
) -> Seeded {
    seed_product_priced(db, store, sku, photos, 1999).await
}

/// [`seed_product`] at a price in minor units (a price-only change is a new version).
pub async fn seed_product_priced(
    db: &TestDb,
    store: &dyn ObjectStore,
    sku: &str,
    photos: &[Vec<u8>],
    price_minor: i64,
) -> Seeded {
    let images: Vec<StagedImage> = photos
        .iter()
        .map(|b| StagedImage {
            bytes: b.clone(),
            meta: SniffedImage::inspect(b, ImageLimits::default()).unwrap(),
        })
        .collect();
    let product = NewProduct {
        sku: Sku::parse(sku).unwrap(),
        name: ProductName::parse(&format!("Product {sku}")).unwrap(),
        category: CategoryName::parse("tests").unwrap(),
        price: Price::from_minor(price_minor).unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        images: images.clone(),
        traceparent: None,
    };
    let mut client = db.client().await;
    let tx = client.transaction().await.unwrap();
    let outcome = rvc_store::products::ingest(&tx, &product, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let IngestOutcome::Accepted {
        product_id,
        version,
        ..
    } = outcome
    else {
        panic!("product {sku} unchanged: {outcome:?}");
    };

    let mut seeded = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let key = rvc_objects::product_image_key(
            product_id,
            &img.meta.sha256,
            img.meta.format.extension(),
        );
        store
            .put(
                &key,
                Bytes::from(img.bytes.clone()),
                img.meta.format.content_type(),
                &Metadata::new(),
            )
            .await
            .unwrap();
        seeded.push(SeededPhoto {
            ordinal: i16::try_from(i).unwrap(),
            sha256: img.meta.sha256.clone(),
            key,
            bytes: img.bytes.clone(),
        });
    }

    let tx = client.transaction().await.unwrap();
    for p in &seeded {
        tx.execute(
            "UPDATE product_images SET object_key = $4, staged_bytes = NULL
             WHERE product_id = $1 AND version = $2 AND ordinal = $3",
            &[&product_id, &version, &p.ordinal, &p.key],
        )
        .await
        .unwrap();
    }
    tx.execute(
        "UPDATE outbox SET state = 'done', completed_at = now(), updated_at = now()
         WHERE product_id = $1 AND product_version = $2 AND kind = 'upload_images'",
        &[&product_id, &version],
    )
    .await
    .unwrap();
    tx.execute(
        "UPDATE products SET status = 'images_stored' WHERE id = $1 AND version = $2",
        &[&product_id, &version],
    )
    .await
    .unwrap();
    rvc_outbox::enqueue(
        &tx,
        &NewOutboxRow::new(product_id, version, OutboxKind::Vectorize),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Seeded {
        product_id,
        version,
        sku: sku.to_owned(),
        photos: seeded,
    }
}

/// Fast-retrying worker settings for tests.
pub fn worker_config() -> WorkerConfig {
    WorkerConfig {
        batch_size: 8,
        concurrency: 4,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(100),
        backoff: rvc_outbox::Backoff {
            base: Duration::from_millis(300),
            max: Duration::from_secs(3),
        },
        shutdown_grace: Duration::from_secs(10),
        retry_window: Duration::from_secs(3600),
    }
}

pub fn ml_args(url: &str) -> MlClientArgs {
    let mut a = MlClientArgs::for_url(url);
    a.ml_concurrency = 2;
    a.ml_retries = 3;
    a.ml_retry_base_ms = 100;
    a.ml_startup_wait_secs = 10;
    a
}

/// A vectorize worker running in this process.
pub struct RunningWorker {
    pub token: CancellationToken,
    pub handle: tokio::task::JoinHandle<()>,
    pub model: rvc_vectorizer::Model,
}

impl RunningWorker {
    pub async fn start(
        db: &TestDb,
        store: Arc<dyn ObjectStore>,
        ml_url: &str,
        index: &IndexServer,
    ) -> Self {
        Self::start_with(db, store, ml_url, index, worker_config()).await
    }

    pub async fn start_with(
        db: &TestDb,
        store: Arc<dyn ObjectStore>,
        ml_url: &str,
        index: &IndexServer,
        cfg: WorkerConfig,
    ) -> Self {
        let step = VectorizeStep::start(
            db.pool.clone(),
            store,
            &ml_args(ml_url),
            &IndexArgs::new(&index.url, COLLECTION),
        )
        .await
        .expect("vectorizer starts");
        let model = step.model().clone();
        let worker = Worker::new(
            Outbox::new(
                db.pool.clone(),
                "test-vectorizer",
                rvc_store::pipeline::hooks(),
            ),
            Arc::new(step),
            cfg,
        );
        let token = CancellationToken::new();
        let handle = tokio::spawn(worker.run(token.clone()));
        Self {
            token,
            handle,
            model,
        }
    }

    pub async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("worker stops")
            .expect("worker task");
    }
}

/// Polls `sql` (a count) until it equals `want`; panics with the last value after `timeout`.
pub async fn wait_count(db: &TestDb, sql: &str, want: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let n = db.count(sql).await;
        if n == want {
            return;
        }
        if Instant::now() > deadline {
            let rows = db
                .client()
                .await
                .query(
                    "SELECT kind, state, attempts, coalesce(last_error, '') FROM outbox ORDER BY created_at",
                    &[],
                )
                .await
                .unwrap();
            let dump: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "{} {} {} {}",
                        r.get::<_, String>(0),
                        r.get::<_, String>(1),
                        r.get::<_, i32>(2),
                        r.get::<_, String>(3)
                    )
                })
                .collect();
            panic!(
                "`{sql}` = {n}, want {want} after {timeout:?}; outbox:\n{}",
                dump.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
