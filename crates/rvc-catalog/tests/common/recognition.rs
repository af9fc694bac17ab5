//! Recognition served by a real rvc-catalog, shared by tests/recognize.rs and
//! benches/recognize.rs: Postgres (a database of its own), Redis, the ML service in-process with
//! the real model, and the real `rvc-vector-index` binary (built beside rvc-catalog).
use super::*;
use clap::Parser;
use rvc_auth::AuthMode;
use rvc_catalog::{Config, ReaderOptions};
use rvc_recognition::{BoxF, MlRegionsClient};
use rvc_test_support::process::ChildGuard;
use rvc_test_support::TestDb;
use rvc_vectors::{PointPayload, PointRecord, VectorIndex};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../rvc-ml-service/tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

pub struct Env {
    pub db: TestDb,
    pub svc: rvc_catalog::Running,
    pub ml: MlRegionsClient,
    pub index: VectorIndex,
    pub model_version: String,
    pub http: reqwest::Client,
    pub base: String,
    /// The ML service's address (for a client of its own, as the bench's baseline).
    pub ml_url: String,
    _index_proc: ChildGuard,
    dir: PathBuf,
    _stop_ml: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub async fn start() -> Env {
    let db = TestDb::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ml_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_ml, rx) = tokio::sync::oneshot::channel::<()>();
    let ml_cfg = rvc_ml_service::ServiceConfig {
        embedder: rvc_ml_service::EmbedderConfig {
            model_path: rvc_test_support::paths::model_path(),
            ..Default::default()
        },
        workers: 2,
        shutdown_grace_secs: 1,
        ..Default::default()
    };
    tokio::spawn(rvc_ml_service::serve(listener, ml_cfg, async move {
        let _ = rx.await;
    }));
    let dir = std::env::temp_dir().join(format!("rvc-cat-rec-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = rvc_test_support::net::free_port();
    let index_proc = ChildGuard::spawn(
        "rvc-vector-index",
        Command::new(rvc_test_support::paths::vector_index_bin(
            std::path::Path::new(env!("CARGO_BIN_EXE_rvc-catalog")),
        ))
        .env("VECTOR_ADDR", format!("127.0.0.1:{port}"))
        .env("VECTOR_DATA_DIR", &dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null()),
    )
    .unwrap();
    let qdrant_url = format!("http://127.0.0.1:{port}");
    let collection = "product_images";
    let index = VectorIndex::connect(&qdrant_url, collection).unwrap();
    let ml = MlRegionsClient::new(&ml_url, Duration::from_secs(120)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let model_version = loop {
        if index.health_check().await.is_ok() {
            if let Ok(v) = ml.model_version().await {
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "ML service or vector index did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    index.ensure_collection(1280).await.unwrap();

    let mut cfg = Config::parse_from(["rvc-catalog"]);
    cfg.grpc_addr = "127.0.0.1:0".into();
    cfg.http_addr = "127.0.0.1:0".into();
    cfg.http_workers = 2;
    cfg.db.database_url = db.url.clone().into();
    cfg.cache.redis_url = Some(redis_url());
    cfg.cache.cache_key_prefix = prefix();
    cfg.auth.auth_mode = AuthMode::Enforce;
    let ml_url_kept = ml_url.clone();
    cfg.recognition.ml_service_url = ml_url;
    cfg.recognition.qdrant.qdrant_url = qdrant_url;
    cfg.recognition.qdrant.qdrant_collection = collection.into();
    // debug builds on a shared machine: the first inference can be slow
    cfg.recognition.recognition_ml_timeout_ms = 120_000;
    let cache = rvc_catalog::cache_from(&cfg.cache).await.unwrap();
    let svc = rvc_catalog::start(
        &cfg,
        cache,
        ReaderOptions::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", svc.http_addr);
    Env {
        db,
        svc,
        ml,
        index,
        model_version,
        http: reqwest::Client::new(),
        base,
        ml_url: ml_url_kept,
        _index_proc: index_proc,
        dir,
        _stop_ml: stop_ml,
    }
}

/// A product as the pipeline leaves it (`indexed`, 2.49 EUR), its photo indexed the way the
/// gallery is (whole photo and centre view, as in rvc-recognition's tests).
pub async fn add_product(env: &Env, sku: &str, photo: &[u8]) -> Uuid {
    let id = insert_product(&env.db, sku, 249).await;
    let c = env.db.pool.get().await.unwrap();
    c.execute(
        "UPDATE products SET status = 'indexed' WHERE id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let views = [
        BoxF::WHOLE,
        BoxF {
            x: 0.2,
            y: 0.2,
            width: 0.6,
            height: 0.6,
        },
    ];
    let r = env.ml.regions(photo.to_vec(), &views, &[]).await.unwrap();
    let sha = format!("{:064x}", id.as_u128());
    let points = r
        .crops
        .into_iter()
        .enumerate()
        .map(|(i, vector)| PointRecord {
            id: rvc_vectors::point_id(id, &sha, &format!("{}#{i}", env.model_version)),
            vector,
            payload: PointPayload {
                product_id: id,
                sku: sku.to_owned(),
                product_version: 1,
                image_key: format!("products/{id}/{sha}.jpg"),
                model_version: env.model_version.clone(),
                created_at: chrono::Utc::now(),
            },
        })
        .collect();
    env.index.upsert(points).await.unwrap();
    id
}

pub async fn recognize(
    env: &Env,
    key: &str,
    photo: &[u8],
    min_score: Option<&str>,
) -> serde_json::Value {
    let mut form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(photo.to_vec()).file_name("photo.jpg"),
    );
    if let Some(m) = min_score {
        form = form.text("min_score", m.to_owned());
    }
    let r = env
        .http
        .post(format!("{}/api/v1/recognize", env.base))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}
