//! The web console (`/console`, crate rvc-console) in headless Chromium (Debian `chromium` and
//! `chromium-driver`, driven over the W3C WebDriver protocol), against a running read side:
//! a fresh database, products POSTed to the real ingest API, their photos put in a real S3
//! server (s3s-fs) by the real upload step, later steps moved through the real outbox
//! (completed, dead-lettered with an internal error text, left leased).
//!
//! The recognition page is checked against a stub `POST /api/v1/recognize` beside the console
//! (a second server in this test) that checks the upload and answers a recorded response in
//! the documented shape (docs/recognition.md): this test checks the page (upload, key, boxes
//! drawn, names and prices), not recognition itself (crates/rvc-recognition/tests).
//!
//! Screenshots of every page go to `$CARGO_TARGET_TMPDIR/console-screenshots/`, and also to
//! `$RVC_CONSOLE_SCREENSHOTS` when set (how docs/console/*.png are made:
//! `RVC_CONSOLE_SCREENSHOTS=$PWD/docs/console cargo nextest run -p rvc-catalog -E 'binary(console)'`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use clap::Parser;
use rvc_auth::Scope;
use rvc_catalog::{Config, ReaderOptions};
use rvc_domain::OutboxKind;
use rvc_outbox::{Backoff, Outbox, StepError, Worker, WorkerConfig};
use rvc_test_support::process::ChildGuard;
use rvc_test_support::s3::TestS3;
use rvc_test_support::TestDb;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Internal error text of the dead-lettered step: must never reach the console.
const SECRET_ERROR: &str =
    "ML service 10.20.30.40:50051 refused: model /srv/secret/model.onnx (password=hunter2)";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../rvc-ml-service/tests/fixtures")
        .join(name)
}

struct Seeded {
    sku: &'static str,
    name: &'static str,
    category: &'static str,
    price: &'static str,
    photo: &'static str,
}

const PRODUCTS: [Seeded; 4] = [
    Seeded {
        sku: "CUP-ESP-1",
        name: "Espresso cup",
        category: "Kitchen",
        price: "2.49",
        photo: "coffee.jpg",
    },
    Seeded {
        sku: "CAL-CAT-27",
        name: "Cat calendar 2027",
        category: "Stationery",
        price: "12.90",
        photo: "cat.jpg",
    },
    Seeded {
        sku: "LOL-RKT-1",
        name: "Rocket lolly",
        category: "Frozen",
        price: "1.20",
        photo: "rocket.jpg",
    },
    Seeded {
        sku: "ICE-AST-1",
        name: "Astronaut ice cream",
        category: "Frozen",
        price: "3.75",
        photo: "astronaut.jpg",
    },
];

/// A minimal W3C WebDriver client over chromedriver (enough for this test).
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    _driver: ChildGuard,
    _profile: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    async fn start() -> Self {
        let port = rvc_test_support::net::free_port();
        let driver = ChildGuard::spawn(
            "chromedriver",
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("chromedriver is installed (apt chromium-driver; scripts/needs.txt)");
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            rvc_test_support::net::wait_for_port(addr, Duration::from_secs(20)).await,
            "chromedriver did not listen on {port}"
        );
        let profile = std::env::temp_dir().join(format!("rvc-chromium-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&profile).unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--hide-scrollbars", "--window-size=1280,900", "--lang=en-GB",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_owned();
        Self {
            http,
            base,
            session,
            _driver: driver,
            _profile: tempfile_dir::Dir(profile),
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        if let Some(err) = r["value"].get("error") {
            panic!("WebDriver {path}: {err}: {}", r["value"]["message"]);
        }
        r["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Polls `script` (which returns a value) until it is truthy.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.js(script).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out waiting for {what}; the page says:\n{}",
                    self.text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the page says it is ready (`body[data-state]`), failing on an error banner.
    async fn wait_ready(&self, page: &str) {
        let state = self
            .wait_for(
                &format!("{page} to be ready"),
                "const s = document.body && document.body.dataset.state; \
                 return (s === 'ready' || s === 'error' || s === 'key') ? s : null;",
            )
            .await;
        assert_eq!(
            state,
            "ready",
            "{page}: {}",
            self.js("return document.body.innerText").await
        );
    }

    async fn text(&self) -> String {
        self.js("return document.body ? document.body.innerText : ''")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// A PNG of the whole page (the window is grown to the page's height first).
    async fn screenshot(&self, name: &str) {
        let height = self
            .js("return document.documentElement.scrollHeight")
            .await
            .as_i64()
            .unwrap_or(900)
            .clamp(600, 2400);
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": 1280, "height": height + 120})),
        )
        .await;
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let mut dirs = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")];
        if let Some(d) = std::env::var_os("RVC_CONSOLE_SCREENSHOTS").filter(|d| !d.is_empty()) {
            dirs.push(PathBuf::from(d));
        }
        for d in dirs {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("{name}.png")), &png).unwrap();
        }
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": 1280, "height": 900})),
        )
        .await;
    }

    async fn quit(self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
    }
}

/// Enters the key in the console's prompt (shown because this origin has none yet).
async fn give_key(b: &Browser, key: &str) {
    b.wait_for(
        "the key prompt",
        "return document.body.dataset.state === 'key' && !document.querySelector('#keybox').hidden",
    )
    .await;
    b.type_into("#key-input", key).await;
    b.click("#key-submit").await;
}

async fn post_product(http: &reqwest::Client, base: &str, key: &str, p: &Seeded) -> Uuid {
    let photo = std::fs::read(fixture(p.photo)).unwrap();
    let form = reqwest::multipart::Form::new()
        .text("sku", p.sku)
        .text("name", p.name)
        .text("category_name", p.category)
        .text("price", p.price)
        .text("currency", "EUR")
        .part(
            "images",
            reqwest::multipart::Part::bytes(photo)
                .file_name(p.photo)
                .mime_str("image/jpeg")
                .unwrap(),
        );
    let r = http
        .post(format!("{base}/api/v1/products"))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
    let ack: Value = r.json().await.unwrap();
    ack["product_id"].as_str().unwrap().parse().unwrap()
}

async fn drain_uploads(db: &TestDb, worker: &Worker<rvc_image_uploader::UploadStep>) {
    let stop = CancellationToken::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        worker.run_once(&stop).await.unwrap();
        let open = db
            .count("SELECT count(*) FROM outbox WHERE kind = 'upload_images' AND state <> 'done'")
            .await;
        if open == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "uploads still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The documented `POST /api/v1/recognize` answer for the espresso cup, recorded shape.
fn recorded_recognition(cup: Uuid, calendar: Uuid) -> Value {
    json!({
        "model_version": "efficientnet-lite0-v1",
        "objects": [{
            "box": {"x": 0.22, "y": 0.16, "width": 0.56, "height": 0.62},
            "score": 0.873,
            "product": {"product_id": cup, "sku": "CUP-ESP-1", "name": "Espresso cup",
                        "category": "Kitchen", "price": "2.49", "currency": "EUR", "version": 1},
            "candidates": [{"product_id": cup, "sku": "CUP-ESP-1", "score": 0.873},
                           {"product_id": calendar, "sku": "CAL-CAT-27", "score": 0.412}]
        }]
    })
}

/// Answers the recorded recognition after checking what the page sent: the key, multipart,
/// and the chosen photo's bytes.
async fn stub_recognize(
    req: HttpRequest,
    body: web::Bytes,
    expect: web::Data<(String, Vec<u8>, Value)>,
) -> HttpResponse {
    let (key, photo, answer) = expect.get_ref();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(format!("Bearer {key}").as_str()) {
        return HttpResponse::Unauthorized()
            .content_type("application/problem+json")
            .json(json!({"type": "/problems/unauthenticated", "title": "Unauthenticated", "status": 401, "detail": "stub: wrong key"}));
    }
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let has_photo = body.windows(photo.len()).any(|w| w == photo.as_slice());
    if !ct.starts_with("multipart/form-data")
        || !has_photo
        || !body
            .windows(14)
            .any(|w| w == b"name=\"image\"; ".as_slice())
    {
        return HttpResponse::BadRequest()
            .json(json!({"detail": "stub: expected multipart with the photo as `image`"}));
    }
    HttpResponse::Ok().json(answer)
}

#[tokio::test]
async fn console_pages_in_headless_chromium() {
    let db = TestDb::new().await;
    let s3 = TestS3::start().await;
    let env: HashMap<&str, String> = s3.env().into_iter().collect();

    // --- the read side, with the console, keys enforced ---
    let mut cfg = Config::parse_from([
        "rvc-catalog",
        "--s3-endpoint",
        &env["S3_ENDPOINT"],
        "--s3-bucket",
        &env["S3_BUCKET"],
        "--s3-region",
        &env["S3_REGION"],
        "--s3-access-key-id",
        &env["S3_ACCESS_KEY_ID"],
        "--s3-secret-access-key",
        &env["S3_SECRET_ACCESS_KEY"],
    ]);
    cfg.grpc_addr = "127.0.0.1:0".into();
    cfg.http_addr = "127.0.0.1:0".into();
    cfg.http_workers = 2;
    cfg.db.database_url = db.url.clone().into();
    cfg.cache.redis_url = None;
    cfg.cache.cache_invalidator = false;
    cfg.auth.rate_limit_redis_url = None;
    let store = rvc_console::open_objects(&cfg.objects).unwrap();

    // --- products through the real ingest API ---
    let mut icfg = <rvc_ingest_api::Config as clap::Parser>::parse_from(["rvc-ingest-api"]);
    icfg.http_addr = "127.0.0.1:0".into();
    icfg.db.database_url = db.url.clone().into();
    icfg.auto_migrate = false;
    icfg.http_workers = 1;
    icfg.redis_url = None;
    let ingest = rvc_ingest_api::Application::build(icfg).await.unwrap();
    let ingest_base = format!("http://{}", ingest.addr());
    let ingest_server = ingest.into_server();
    let ingest_handle = ingest_server.handle();
    tokio::spawn(ingest_server);
    let write_key = db.api_key(&[Scope::CatalogWrite]).await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for p in &PRODUCTS[..3] {
        ids.push(post_product(&http, &ingest_base, &write_key, p).await);
    }
    let (cup, calendar, lolly) = (ids[0], ids[1], ids[2]);

    // photos into S3 by the real upload step
    let uploader = Worker::new(
        Outbox::new(
            db.pool.clone(),
            "console-test-uploader",
            rvc_store::pipeline::hooks(),
        ),
        Arc::new(rvc_image_uploader::UploadStep::new(
            db.pool.clone(),
            store.clone(),
        )),
        WorkerConfig {
            poll_interval: Duration::from_millis(50),
            ..WorkerConfig::default()
        },
    );
    drain_uploads(&db, &uploader).await;

    // vectorize: two done, the lolly dead-lettered with an internal error text
    let outbox = Outbox::new(
        db.pool.clone(),
        "console-test",
        rvc_store::pipeline::hooks(),
    );
    let lease = Duration::from_secs(3600);
    let jobs = outbox
        .claim(OutboxKind::Vectorize, 10, lease, false)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 3);
    let (ok, bad): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| j.product_id != lolly);
    {
        let mut c = db.pool.get().await.unwrap();
        let tx = tokio_postgres::Client::transaction(&mut c).await.unwrap();
        outbox
            .complete_in(&tx, OutboxKind::Vectorize, &ok)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    outbox
        .fail(
            &bad[0],
            &StepError::permanent(SECRET_ERROR),
            &Backoff::default(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    // publish: the cup done (indexed); the calendar's row stays leased (vectorized)
    let jobs = outbox
        .claim(OutboxKind::Publish, 10, lease, true)
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    let cup_job: Vec<_> = jobs.into_iter().filter(|j| j.product_id == cup).collect();
    {
        let mut c = db.pool.get().await.unwrap();
        let tx = tokio_postgres::Client::transaction(&mut c).await.unwrap();
        outbox
            .complete_in(&tx, OutboxKind::Publish, &cup_job)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    // and one product just registered (its photo still staged in Postgres)
    let ice = post_product(&http, &ingest_base, &write_key, &PRODUCTS[3]).await;
    ingest_handle.stop(true).await;

    let running = rvc_catalog::start(
        &cfg,
        Arc::new(rvc_cache::NoCache),
        ReaderOptions::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", running.http_addr);
    let key = db.admin_key().await;
    let read_key = db.api_key(&[Scope::CatalogRead]).await;

    // --- the HTTP surface: static files open, data needs a key with the scope ---
    let r = http.get(format!("{base}/console/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(format!("{base}/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/console/");
    let r = http
        .get(format!("{base}/console/console.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(
        http.get(format!("{base}/console/nope.html"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http
        .get(format!("{base}/console/api/outbox"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the data routes need a key");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = http
        .get(format!("{base}/console/api/outbox"))
        .bearer_auth(&read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the outbox needs admin");
    let cup_sha: String = {
        let c = db.pool.get().await.unwrap();
        c.query_one(
            "SELECT sha256 FROM product_images WHERE product_id = $1",
            &[&cup],
        )
        .await
        .unwrap()
        .get(0)
    };
    let r = http
        .get(format!(
            "{base}/console/api/products/{cup}/images/{cup_sha}"
        ))
        .bearer_auth(&read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        std::fs::read(fixture("coffee.jpg")).unwrap().as_slice(),
        "the photo's bytes, from S3"
    );
    for (path, status) in [
        (
            format!("/console/api/products/{cup}/images/{}", "0".repeat(64)),
            404,
        ),
        (
            format!("/console/api/products/{cup}/images/..%2F..%2Fetc"),
            400,
        ),
        (
            format!("/console/api/products/not-a-uuid/images/{cup_sha}"),
            400,
        ),
        (format!("/console/api/products/{}", Uuid::now_v7()), 404),
        ("/console/api/nothing".to_owned(), 404),
    ] {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    let staged_sha: String = {
        let c = db.pool.get().await.unwrap();
        c.query_one(
            "SELECT sha256 FROM product_images WHERE product_id = $1",
            &[&ice],
        )
        .await
        .unwrap()
        .get(0)
    };
    let r = http
        .get(format!(
            "{base}/console/api/products/{ice}/images/{staged_sha}"
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a staged photo is not in S3 yet");
    let outbox_json = http
        .get(format!("{base}/console/api/outbox"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !outbox_json.contains("hunter2") && !outbox_json.contains("10.20.30.40"),
        "{outbox_json}"
    );

    // --- the pages, in Chromium ---
    let b = Browser::start().await;

    // products: the key is asked for once, then every product with its status and thumbnail
    b.goto(&format!("{base}/console/")).await;
    give_key(&b, &key).await;
    b.wait_ready("products").await;
    let rows = b
        .js("return [...document.querySelectorAll('#products tbody tr')].map(r => ({ \
               sku: r.dataset.sku, \
               name: r.querySelector('td.name').innerText, \
               status: r.querySelector('.badge').dataset.status, \
               thumb: r.querySelector('img.thumb') ? r.querySelector('img.thumb').naturalWidth : 0 }))")
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let by_sku = |sku: &str| rows.iter().find(|r| r["sku"] == sku).unwrap().clone();
    for (sku, name, status, thumb) in [
        ("CUP-ESP-1", "Espresso cup", "indexed", true),
        ("CAL-CAT-27", "Cat calendar 2027", "vectorized", true),
        ("LOL-RKT-1", "Rocket lolly", "failed", true),
        ("ICE-AST-1", "Astronaut ice cream", "registered", false),
    ] {
        let r = by_sku(sku);
        assert_eq!(r["name"], name);
        assert_eq!(r["status"], status, "{sku}");
        assert_eq!(
            r["thumb"].as_i64().unwrap() > 0,
            thumb,
            "{sku}: thumbnail from S3"
        );
    }
    let text = b.text().await;
    assert!(
        text.contains("2.49 EUR") && text.contains("12.90 EUR"),
        "{text}"
    );
    assert_eq!(
        b.js("return sessionStorage.getItem('rvc-console-api-key') !== null")
            .await,
        true
    );
    b.screenshot("products").await;

    // a product: photo from S3, status, the step timeline
    b.goto(&format!("{base}/console/product.html?id={cup}"))
        .await;
    b.wait_ready("product").await;
    assert_eq!(
        b.js("return document.querySelector('#name').innerText")
            .await,
        "Espresso cup"
    );
    assert_eq!(
        b.js("return document.querySelector('.product-head .badge').dataset.status")
            .await,
        "indexed"
    );
    assert_eq!(
        b.js("return document.querySelector('#archived').offsetParent === null")
            .await,
        true,
        "no archived badge on a current product"
    );
    let photo_width = b
        .js("const i = document.querySelector('#photos img.photo'); return i ? i.naturalWidth : 0")
        .await;
    assert!(
        photo_width.as_i64().unwrap() > 100,
        "photo shown: {photo_width}"
    );
    let steps = b
        .js("return [...document.querySelectorAll('#timeline tbody tr')].map(r => r.dataset.kind + ':' + r.dataset.state)")
        .await;
    assert_eq!(
        steps,
        json!(["upload_images:done", "vectorize:done", "publish:done"])
    );
    b.screenshot("product").await;

    // the failed product: its dead step with the public error only
    b.goto(&format!("{base}/console/product.html?id={lolly}"))
        .await;
    b.wait_ready("failed product").await;
    let text = b.text().await;
    assert!(text.contains("vectorize_failed"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains("10.20.30.40"),
        "{text}"
    );
    let steps = b
        .js("return [...document.querySelectorAll('#timeline tbody tr')].map(r => r.dataset.kind + ':' + r.dataset.state)")
        .await;
    assert_eq!(steps, json!(["upload_images:done", "vectorize:dead"]));
    b.screenshot("product-failed").await;

    // the registered product: its photo is still staged
    b.goto(&format!("{base}/console/product.html?id={ice}"))
        .await;
    b.wait_ready("registered product").await;
    assert!(b.text().await.contains("staged: waiting for the uploader"));

    // outbox: counts by step and state, the dead entry with its public error
    b.goto(&format!("{base}/console/outbox.html")).await;
    b.wait_ready("outbox").await;
    assert_eq!(
        b.js("return [...document.querySelectorAll('#counts tbody tr')].map(r => r.dataset.kind)")
            .await,
        json!(["upload_images", "vectorize", "publish"]),
        "steps in pipeline order"
    );
    let counts = b
        .js("const o = {}; for (const r of document.querySelectorAll('#counts tbody tr')) { \
               o[r.dataset.kind] = {}; \
               for (const c of r.querySelectorAll('td[data-state]')) o[r.dataset.kind][c.dataset.state] = +c.innerText; } \
             return o;")
        .await;
    assert_eq!(
        counts,
        json!({
            "upload_images": {"pending": 1, "leased": 0, "done": 3, "dead": 0},
            "vectorize": {"pending": 0, "leased": 0, "done": 2, "dead": 1},
            "publish": {"pending": 0, "leased": 1, "done": 1, "dead": 0},
        })
    );
    let dead = b
        .js("return [...document.querySelectorAll('#dead tbody tr')].map(r => r.innerText)")
        .await;
    let dead = dead.as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let row = dead[0].as_str().unwrap();
    assert!(
        row.contains("Rocket lolly")
            && row.contains("LOL-RKT-1")
            && row.contains("vectorize_failed"),
        "{row}"
    );
    let text = b.text().await;
    assert!(
        !text.contains("hunter2") && !text.contains("10.20.30.40"),
        "{text}"
    );
    b.screenshot("outbox").await;

    // a refused key: the prompt comes back with the reason
    b.js("sessionStorage.setItem('rvc-console-api-key', 'rvc_aaaaaaaaaaaa_bogus'); return 1")
        .await;
    b.goto(&format!("{base}/console/outbox.html")).await;
    b.wait_for("the key prompt after a 401", "return !document.querySelector('#keybox').hidden && !document.querySelector('#key-error').hidden").await;
    assert!(b.text().await.contains("The key was refused"));
    running.stop().await;

    // recognition: the page posts the photo with the key and draws what comes back
    let photo = std::fs::read(fixture("coffee.jpg")).unwrap();
    let expect = web::Data::new((key.clone(), photo, recorded_recognition(cup, calendar)));
    let console_state = rvc_console::ConsoleState {
        pool: db.pool.clone(),
        objects: store.clone(),
        auth: rvc_auth::Authenticator::build(cfg.auth.clone(), db.pool.clone())
            .await
            .unwrap(),
    };
    let stub = HttpServer::new(move || {
        App::new()
            .app_data(expect.clone())
            .configure(|c| rvc_console::configure(c, console_state.clone()))
            .route("/api/v1/recognize", web::post().to(stub_recognize))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let stub_addr = stub.addrs()[0];
    let stub = stub.run();
    let stub_handle = stub.handle();
    tokio::spawn(stub);
    b.goto(&format!("http://{stub_addr}/console/recognize.html"))
        .await;
    give_key(&b, &key).await;
    b.wait_ready("recognition").await;
    let path: &Path = &fixture("coffee.jpg").canonicalize().unwrap();
    b.type_into("#photo", path.to_str().unwrap()).await;
    b.click("#recognize").await;
    b.wait_for(
        "a box drawn",
        "return document.querySelector('#scene').dataset.boxes === '1'",
    )
    .await;
    b.wait_ready("recognition result").await;
    assert_eq!(
        b.js("return JSON.parse(document.querySelector('#scene').dataset.labels)")
            .await,
        json!(["Espresso cup"])
    );
    // the box's left edge is drawn in the first colour (#e6194b), the centre is the photo
    let pixels = b
        .js("const c = document.querySelector('#scene'); const x = c.getContext('2d'); \
             const px = (fx, fy) => [...x.getImageData(Math.round(fx * c.width), Math.round(fy * c.height), 1, 1).data].slice(0, 3); \
             return { size: [c.width, c.height], edge: [...x.getImageData(Math.round(0.22 * c.width) + 1, Math.round(0.6 * c.height), 1, 1).data].slice(0, 3), \
                      outside: px(0.05, 0.95) };")
        .await;
    let size = pixels["size"].as_array().unwrap();
    assert!(
        size[0].as_i64().unwrap() > 200 && size[1].as_i64().unwrap() > 100,
        "{pixels}"
    );
    assert_eq!(pixels["edge"], json!([230, 25, 75]), "box stroke: {pixels}");
    assert_ne!(pixels["outside"], json!([230, 25, 75]), "{pixels}");
    let text = b.text().await;
    assert!(
        text.contains("Espresso cup")
            && text.contains("2.49 EUR")
            && text.contains("1 product(s) recognised"),
        "{text}"
    );
    b.screenshot("recognize").await;

    b.quit().await;
    stub_handle.stop(true).await;
}
