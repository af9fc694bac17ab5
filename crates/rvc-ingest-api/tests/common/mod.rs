#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
use rvc_ingest_api::{Application, Config, Limits};
use rvc_test_support::TestDb;

pub struct TestApp {
    pub base: String,
    pub db: TestDb,
    /// Sends `key` (every scope) with each request.
    pub http: reqwest::Client,
    /// Sends no key.
    pub anon: reqwest::Client,
    /// An API key with every scope.
    pub key: String,
    pub metrics_addr: Option<std::net::SocketAddr>,
    server: actix_web::dev::ServerHandle,
}

/// A client that sends `Authorization: Bearer <key>` with each request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value: reqwest::header::HeaderValue = format!("Bearer {key}").parse().unwrap();
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Limits::default()).await
    }

    pub async fn spawn_with(limits: Limits) -> Self {
        Self::spawn_configured(|c| c.limits = limits).await
    }

    /// Starts the API with the test defaults, then `tweak` applied to its configuration.
    pub async fn spawn_configured(tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::new().await;
        let mut config = <Config as clap::Parser>::parse_from(["rvc-ingest-api"]);
        config.http_addr = "127.0.0.1:0".into();
        config.db.database_url = db.url.clone().into();
        config.auto_migrate = false;
        config.http_workers = 2;
        config.auth = rvc_auth::AuthArgs::default();
        tweak(&mut config);
        let app = Application::build(config).await.unwrap();
        let metrics_addr = app.metrics_addr();
        let base = format!("http://{}", app.addr());
        let server = app.into_server();
        let handle = server.handle();
        tokio::spawn(server);
        let key = db.admin_key().await;
        Self {
            base,
            http: client_with_key(&key),
            anon: reqwest::Client::new(),
            key,
            db,
            metrics_addr,
            server: handle,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, form: reqwest::multipart::Form) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/products"))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Rows in every table a POST writes to.
    pub async fn written(&self) -> (i64, i64, i64, i64, i64) {
        (
            self.db.count("SELECT count(*) FROM categories").await,
            self.db.count("SELECT count(*) FROM products").await,
            self.db.count("SELECT count(*) FROM product_images").await,
            self.db.count("SELECT count(*) FROM outbox").await,
            self.db.count("SELECT count(*) FROM idempotency_keys").await,
        )
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        drop(self.server.stop(false));
    }
}

pub use rvc_test_support::images::{jpeg, png};

pub fn file(bytes: Vec<u8>, name: &str) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned())
}

/// A valid form; tweak fields with `without` / `with`.
pub struct FormSpec {
    pub fields: Vec<(&'static str, String)>,
    pub images: Vec<Vec<u8>>,
}

impl FormSpec {
    pub fn valid(sku: &str) -> Self {
        Self {
            fields: vec![
                ("sku", sku.to_owned()),
                ("name", "Oat milk 1 L".to_owned()),
                ("category_name", "Dairy alternatives".to_owned()),
                ("price", "2.49".to_owned()),
            ],
            images: vec![png(1, 40, 30), jpeg(2, 50, 40)],
        }
    }

    pub fn with(mut self, k: &'static str, v: &str) -> Self {
        self.fields.retain(|(f, _)| *f != k);
        self.fields.push((k, v.to_owned()));
        self
    }

    pub fn without(mut self, k: &str) -> Self {
        self.fields.retain(|(f, _)| *f != k);
        if k == "images" {
            self.images.clear();
        }
        self
    }

    pub fn form(&self) -> reqwest::multipart::Form {
        let mut f = reqwest::multipart::Form::new();
        for (k, v) in &self.fields {
            f = f.text(*k, v.clone());
        }
        for (i, img) in self.images.iter().enumerate() {
            f = f.part("images", file(img.clone(), &format!("p{i}.bin")));
        }
        f
    }
}
