//! Recognition served by a real rvc-catalog, shared by tests/recognize.rs and
//! benches/recognize.rs: Postgres (a database of its own), Redis, the ML service in-process with
//! the real model, and the real `rvc-vector-index` binary (built beside rvc-catalog).
use super::*;
use clap::Parser;
use rvc_auth::AuthMode;
use rvc_catalog::{Config, ReaderOptions};
use rvc_test_support::recognition::RecognitionBackends;
use rvc_test_support::TestDb;
use std::path::PathBuf;
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
    /// The ML service and the vector index rvc-catalog talks to.
    pub backends: RecognitionBackends,
    pub http: reqwest::Client,
    pub base: String,
}

pub async fn start() -> Env {
    let db = TestDb::new().await;
    let collection = "product_images";
    let backends = RecognitionBackends::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_rvc-catalog")),
        collection,
    )
    .await;
    let mut cfg = Config::parse_from(["rvc-catalog"]);
    cfg.grpc_addr = "127.0.0.1:0".into();
    cfg.http_addr = "127.0.0.1:0".into();
    cfg.http_workers = 2;
    cfg.db.database_url = db.url.clone().into();
    cfg.cache.redis_url = Some(redis_url());
    cfg.cache.cache_key_prefix = prefix();
    cfg.auth.auth_mode = AuthMode::Enforce;
    cfg.recognition.ml_service_url = backends.ml_url.clone();
    cfg.recognition.qdrant.qdrant_url = backends.qdrant_url.clone();
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
        backends,
        http: reqwest::Client::new(),
        base,
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
    env.backends.index_photo(id, sku, photo).await;
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
