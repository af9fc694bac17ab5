//! The whole system on loopback: Postgres (a fresh database), s3s-fs, tansu, the ML service,
//! the vector index, and the API, uploader, vectorizer, relay and maintenance binaries.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvc_objects::{ObjectStore, ObjectStoreConfig};
use rvc_test_support::kafka::TestKafka;
use rvc_test_support::net::free_port;
use rvc_test_support::s3::TestS3;
use rvc_test_support::TestDb;
use uuid::Uuid;

use crate::Proc;

pub const TOPIC: &str = "catalog.product-events";
pub const COLLECTION: &str = "e2e_product_images";
/// The worker binaries, in the order of [`Stack::workers`].
pub const WORKERS: [&str; 4] = [
    "rvc-image-uploader",
    "rvc-vectorizer",
    "rvc-relay",
    "rvc-maintenance",
];

/// Every process of the system, killed on drop.
pub struct Stack {
    pub db: TestDb,
    pub s3: TestS3,
    pub kafka: TestKafka,
    pub dir: tempfile::TempDir,
    pub api_base: String,
    pub qdrant_url: String,
    pub ml_url: String,
    /// `/metrics` of the ML service (its `ml_images_total` counts embeddings).
    pub ml_metrics_url: String,
    pub http: reqwest::Client,
    pub ml: Proc,
    pub index: Proc,
    pub api: Proc,
    pub workers: Vec<Proc>,
    /// The environment each of `workers` was started with (for [`Stack::restart_worker`]).
    pub worker_envs: Vec<Vec<(String, String)>>,
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, String)> {
    env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Stack {
    /// Starts everything and waits until each server listens. `worker_env` is added to the
    /// uploader, vectorizer and relay (batch sizes ...).
    pub async fn start(worker_env: &[(&str, String)]) -> Self {
        Self::start_with(&[], worker_env).await
    }

    /// As [`Stack::start`], with `all_env` added to every rvc process (the ML service, the
    /// vector index, the API and the workers): `OTEL_EXPORTER_OTLP_ENDPOINT` ...
    pub async fn start_with(all_env: &[(&str, String)], worker_env: &[(&str, String)]) -> Self {
        let all = |env: Vec<(&'static str, String)>| -> Vec<(&str, String)> {
            env.into_iter().chain(all_env.iter().cloned()).collect()
        };
        let (db, s3, kafka) = tokio::join!(TestDb::new(), TestS3::start(), TestKafka::start());
        let dir = tempfile::tempdir().expect("temp dir");
        let model = rvc_test_support::paths::model_path();

        let ml_port = free_port();
        let ml_metrics_port = free_port();
        let mut ml = Proc::start(
            "rvc-ml-service",
            dir.path(),
            &all(vec![
                ("ML_ADDR", format!("127.0.0.1:{ml_port}")),
                ("ML_MODEL_PATH", model.display().to_string()),
                ("METRICS_ADDR", format!("127.0.0.1:{ml_metrics_port}")),
            ]),
        );
        let index_port = free_port();
        let mut index = Proc::start(
            "rvc-vector-index",
            dir.path(),
            &all(vec![
                ("VECTOR_ADDR", format!("127.0.0.1:{index_port}")),
                (
                    "VECTOR_DATA_DIR",
                    dir.path().join("vectors").display().to_string(),
                ),
            ]),
        );
        let api_port = free_port();
        let mut api = Proc::start(
            "rvc-ingest-api",
            dir.path(),
            &all(vec![
                ("DATABASE_URL", db.url.clone()),
                ("HTTP_ADDR", format!("127.0.0.1:{api_port}")),
                ("AUTO_MIGRATE", "false".into()),
                ("HTTP_WORKERS", "2".into()),
                // These tests drive the pipeline, not access control (rvc-ingest-api's own
                // tests cover keys): the API runs on loopback with keys off.
                ("AUTH_MODE", "disabled".into()),
            ]),
        );
        ml.wait_port(addr(ml_port), Duration::from_secs(60)).await;
        index
            .wait_port(addr(index_port), Duration::from_secs(30))
            .await;
        api.wait_port(addr(api_port), Duration::from_secs(30)).await;

        let ml_url = format!("http://127.0.0.1:{ml_port}");
        let qdrant_url = format!("http://127.0.0.1:{index_port}");
        let mut common: Vec<(&str, String)> = vec![
            ("DATABASE_URL", db.url.clone()),
            ("METRICS_ADDR", "127.0.0.1:0".into()),
            ("OUTBOX_POLL_INTERVAL_MS", "200".into()),
        ];
        common.extend(worker_env.iter().cloned());
        common.extend(all_env.iter().cloned());
        // `worker_env` comes last, so a test may override these (GC_ENABLED ...).
        let with = |extra: Vec<(&str, String)>| -> Vec<(String, String)> {
            extra
                .into_iter()
                .chain(common.iter().cloned())
                .map(|(k, v)| (k.to_owned(), v))
                .collect()
        };
        let envs = vec![
            with(s3.env()),
            with(
                s3.env()
                    .into_iter()
                    .chain([
                        ("ML_SERVICE_URL", ml_url.clone()),
                        ("QDRANT_URL", qdrant_url.clone()),
                        ("QDRANT_COLLECTION", COLLECTION.to_owned()),
                    ])
                    .collect(),
            ),
            with(vec![
                ("KAFKA_BROKERS", kafka.bootstrap()),
                ("KAFKA_TOPIC", TOPIC.to_owned()),
                ("QDRANT_URL", qdrant_url.clone()),
                ("QDRANT_COLLECTION", COLLECTION.to_owned()),
            ]),
            // Maintenance: off unless a test turns GC on (GC_ENABLED in `worker_env`).
            with(
                s3.env()
                    .into_iter()
                    .chain([("GC_ENABLED", "false".to_owned())])
                    .collect(),
            ),
        ];
        let workers = WORKERS
            .iter()
            .zip(&envs)
            .map(|(name, env)| Proc::start(name, dir.path(), &borrowed(env)))
            .collect();
        Self {
            db,
            s3,
            kafka,
            dir,
            api_base: format!("http://127.0.0.1:{api_port}"),
            qdrant_url,
            ml_url,
            ml_metrics_url: format!("http://127.0.0.1:{ml_metrics_port}/metrics"),
            http: reqwest::Client::new(),
            ml,
            index,
            api,
            workers,
            worker_envs: envs,
        }
    }

    /// SIGKILLs worker `i` (of [`WORKERS`]), as a crash.
    pub fn kill_worker(&mut self, i: usize) {
        self.workers[i].child.kill();
    }

    /// Starts worker `i` again with the environment it had (its log is appended to).
    pub fn restart_worker(&mut self, i: usize) {
        self.workers[i] = Proc::start(WORKERS[i], self.dir.path(), &borrowed(&self.worker_envs[i]));
    }

    /// Panics with the log of any process that exited.
    pub fn assert_all_running(&mut self) {
        self.ml.assert_running();
        self.index.assert_running();
        self.api.assert_running();
        for w in &mut self.workers {
            w.assert_running();
        }
    }

    /// The logs of every process (for a failure message).
    pub fn log_tails(&self) -> String {
        std::iter::once(&self.ml)
            .chain([&self.index, &self.api])
            .chain(self.workers.iter())
            .map(|p| format!("--- {} ---\n{}", p.name, p.log_tail(15)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// POSTs a product with `photos` (JPEG bytes); returns its id.
    pub async fn post_product(&self, sku: &str, price: &str, photos: &[Vec<u8>]) -> Uuid {
        let mut form = reqwest::multipart::Form::new()
            .text("sku", sku.to_owned())
            .text("name", format!("Product {sku}"))
            .text("category_name", "E2E shelf".to_owned())
            .text("price", price.to_owned());
        for (i, p) in photos.iter().enumerate() {
            form = form.part(
                "images",
                reqwest::multipart::Part::bytes(p.clone())
                    .file_name(format!("photo{i}.jpg"))
                    .mime_str("image/jpeg")
                    .expect("mime"),
            );
        }
        let resp = self
            .http
            .post(format!("{}/api/v1/products", self.api_base))
            .multipart(form)
            .send()
            .await
            .expect("POST reaches the API");
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.expect("JSON body");
        assert!(
            status == 202 || status == 200 || status == 201,
            "POST {sku}: {status} {body}"
        );
        let id = body["id"]
            .as_str()
            .or_else(|| body["product_id"].as_str())
            .unwrap_or_else(|| panic!("no id in {body}"));
        Uuid::parse_str(id).expect("product id is a uuid")
    }

    /// Photos the ML service embedded so far (`ml_images_total{outcome="ok"}` on its
    /// `/metrics`): a real counter in the process that does the work.
    pub async fn ml_embeddings(&self) -> u64 {
        let text = self
            .http
            .get(&self.ml_metrics_url)
            .send()
            .await
            .expect("ML service /metrics answers")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| l.starts_with("ml_images_total{") && l.contains("outcome=\"ok\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// The S3 bucket through the production adapter.
    pub async fn object_store(&self) -> Arc<dyn ObjectStore> {
        let mut cfg = ObjectStoreConfig::dir(self.dir.path().join("unused"));
        cfg.s3_endpoint = Some(self.s3.endpoint.clone());
        cfg.s3_bucket = self.s3.bucket.clone();
        cfg.s3_region = self.s3.region.clone();
        cfg.s3_access_key_id = Some(self.s3.access_key.clone().into());
        cfg.s3_secret_access_key = Some(self.s3.secret_key.clone().into());
        rvc_objects::from_config(&cfg)
            .await
            .expect("object store opens")
    }

    /// Number of products per status.
    pub async fn statuses(&self) -> Vec<(String, i64)> {
        let c = self.db.pool.get().await.expect("db");
        c.query(
            "SELECT status, count(*) FROM products GROUP BY status ORDER BY status",
            &[],
        )
        .await
        .expect("status query")
        .iter()
        .map(|r| (r.get("status"), r.get("count")))
        .collect()
    }

    /// (version, status, archived) of a product.
    pub async fn product_state(&self, id: Uuid) -> (i32, String, bool) {
        let c = self.db.pool.get().await.expect("db");
        let r = c
            .query_one(
                "SELECT version, status, archived FROM products WHERE id = $1",
                &[&id],
            )
            .await
            .expect("product row");
        (r.get("version"), r.get("status"), r.get("archived"))
    }

    /// Waits until every product of `want` is `indexed` at its version (panics on `failed`, on
    /// a dead process, or after `secs`).
    pub async fn wait_indexed(&mut self, want: &[(Uuid, i32)], secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            self.assert_all_running();
            let mut done = 0;
            for (id, v) in want {
                let (version, status, _) = self.product_state(*id).await;
                assert_ne!(
                    status,
                    "failed",
                    "product {id} failed\n{}",
                    self.log_tails()
                );
                if version == *v && status == "indexed" {
                    done += 1;
                }
            }
            if done == want.len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{done} of {} indexed at their version after {secs} s\n{}",
                want.len(),
                self.log_tails()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts `rvc-catalog` (the read side, as `make run` starts it, API keys off: access
    /// control has its own tests) on this stack's database, ML service and vector index, with
    /// `extra` env on top; waits for its HTTP port. Returns the process and its HTTP base URL.
    pub async fn start_catalog(&self, extra: &[(&str, String)]) -> (Proc, String) {
        let http_port = free_port();
        let mut env: Vec<(&str, String)> = vec![
            ("DATABASE_URL", self.db.url.clone()),
            ("CATALOG_HTTP_ADDR", format!("127.0.0.1:{http_port}")),
            ("GRPC_ADDR", format!("127.0.0.1:{}", free_port())),
            ("METRICS_ADDR", "127.0.0.1:0".into()),
            ("HTTP_WORKERS", "2".into()),
            ("AUTH_MODE", "disabled".into()),
            ("REDIS_URL", rvc_test_support::paths::redis_url()),
            (
                "CACHE_KEY_PREFIX",
                format!("rvc-e2e-{}:", Uuid::new_v4().simple()),
            ),
            ("ML_SERVICE_URL", self.ml_url.clone()),
            ("QDRANT_URL", self.qdrant_url.clone()),
            ("QDRANT_COLLECTION", COLLECTION.into()),
            // debug builds on a shared machine: the first inference can be slow
            ("RECOGNITION_ML_TIMEOUT_MS", "120000".into()),
        ];
        env.extend(extra.iter().cloned());
        let mut catalog = Proc::start("rvc-catalog", self.dir.path(), &env);
        catalog
            .wait_port(addr(http_port), Duration::from_secs(60))
            .await;
        (catalog, format!("http://127.0.0.1:{http_port}"))
    }
}
