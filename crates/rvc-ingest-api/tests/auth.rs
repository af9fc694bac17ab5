//! API keys on the ingest API (issue #15): scope boundaries, revocation, rate limits,
//! redaction of the timeline and of /readyz, and keys never in the logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{client_with_key, FormSpec, TestApp};
use rvc_auth::{RateSpec, Scope};
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn problem(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status);
    body
}

#[tokio::test]
async fn each_scope_opens_only_its_routes() {
    let app = TestApp::spawn().await;
    let read = client_with_key(&app.db.api_key(&[Scope::CatalogRead]).await);
    let write = client_with_key(&app.db.api_key(&[Scope::CatalogWrite]).await);
    let recognize = client_with_key(&app.db.api_key(&[Scope::Recognize]).await);
    let products = app.url("/api/v1/products");

    // no key
    let r = app
        .anon
        .post(&products)
        .multipart(FormSpec::valid("A-1").form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], r#"Bearer realm="rvc""#);
    let body = problem(r, 401).await;
    assert_eq!(body["type"], "/problems/unauthenticated");
    problem(
        app.anon
            .get(app.url("/api/v1/products?sku=A-1"))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    // an invalid key
    let bogus = client_with_key("rvc_aaaaaaaaaaaa_0000000000000000000000000000000000000000");
    problem(
        bogus
            .get(app.url("/api/v1/products?sku=A-1"))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    // a read key cannot POST, a recognise key can do neither
    for c in [&read, &recognize] {
        let r = c
            .post(&products)
            .multipart(FormSpec::valid("A-1").form())
            .send()
            .await
            .unwrap();
        let body = problem(r, 403).await;
        assert_eq!(body["type"], "/problems/permission-denied");
    }
    assert_eq!(
        app.written().await,
        (0, 0, 0, 0, 0),
        "a refused POST writes nothing"
    );
    // a write key can POST but not read
    let r = write
        .post(&products)
        .multipart(FormSpec::valid("A-1").form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    problem(write.get(app.url(&loc)).send().await.unwrap(), 403).await;
    problem(recognize.get(app.url(&loc)).send().await.unwrap(), 403).await;
    // a read key reads
    assert_eq!(
        read.get(app.url(&loc))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    // health, metrics and the API document stay open
    for open in ["/healthz", "/readyz", "/metrics", "/api-docs/openapi.json"] {
        let r = app.anon.get(app.url(open)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{open}");
    }
    let doc: Value = app
        .anon
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/api/v1/products"]["post"]["security"][0]["api_key"][0],
        "catalog:write"
    );
    assert!(doc["paths"]["/api/v1/products/{id}"]["get"]["responses"]["429"].is_object());
}

#[tokio::test]
async fn a_revoked_key_is_refused_within_the_cache_ttl() {
    let app = TestApp::spawn_configured(|c| c.auth.auth_cache_ttl_secs = 1).await;
    let key = app.db.api_key(&[Scope::CatalogRead]).await;
    let c = client_with_key(&key);
    let url = app.url("/api/v1/products?sku=NONE");
    assert_eq!(c.get(&url).send().await.unwrap().status().as_u16(), 404);
    let client = app.db.client().await;
    rvc_store::api_keys::revoke(&client, &key[4..16])
        .await
        .unwrap()
        .unwrap();
    let start = Instant::now();
    loop {
        let r = c.get(&url).send().await.unwrap();
        if r.status().as_u16() == 401 {
            let body = problem(r, 401).await;
            assert!(
                body["detail"].as_str().unwrap().contains("revoked"),
                "{body}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still accepted 5 s after revocation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn rate_limit_is_429_with_retry_after_then_recovers() {
    let app = TestApp::spawn_configured(|c| {
        c.auth.rate_limit_catalog_read = RateSpec {
            per_sec: 1.0,
            burst: 2.0,
        }
    })
    .await;
    let url = app.url("/api/v1/products?sku=NONE");
    for _ in 0..2 {
        assert_eq!(
            app.http.get(&url).send().await.unwrap().status().as_u16(),
            404
        );
    }
    let r = app.http.get(&url).send().await.unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 1);
    let body = problem(r, 429).await;
    assert_eq!(body["type"], "/problems/rate-limited");
    // POST has its own bucket (catalog:write)
    assert_eq!(
        app.post(FormSpec::valid("RL-1").form())
            .await
            .status()
            .as_u16(),
        202
    );
    tokio::time::sleep(Duration::from_secs(retry)).await; // the wait the API told us
    assert_eq!(
        app.http.get(&url).send().await.unwrap().status().as_u16(),
        404,
        "no recovery"
    );
}

#[tokio::test]
async fn the_timeline_shows_codes_not_internal_errors() {
    let app = TestApp::spawn().await;
    let r = app.post(FormSpec::valid("RED-1").form()).await;
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let internal = "PUT http://s3.internal.corp:9000/rvc-images failed: connection refused; \
                    SELECT * FROM product_images WHERE staged_bytes IS NOT NULL";
    let c = app.db.client().await;
    c.execute(
        "UPDATE outbox SET state = 'dead', attempts = max_attempts, last_error = $1",
        &[&internal],
    )
    .await
    .unwrap();
    let text = app
        .http
        .get(app.url(&loc))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for leak in [
        "s3.internal",
        "9000",
        "SELECT",
        "connection refused",
        "last_error",
    ] {
        assert!(!text.contains(leak), "{leak:?} leaked: {text}");
    }
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["timeline"][0]["error"]["code"], "upload_failed");
    assert!(!body["timeline"][0]["error"]["message"]
        .as_str()
        .unwrap()
        .is_empty());
    // a retrying step says so
    c.execute("UPDATE outbox SET state = 'pending', attempts = 1", &[])
        .await
        .unwrap();
    let body: Value = app
        .http
        .get(app.url(&loc))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["timeline"][0]["error"]["code"], "upload_retrying");
    // the operator still sees everything
    let full = rvc_store::products::timeline(&c, body["id"].as_str().unwrap().parse().unwrap())
        .await
        .unwrap();
    assert_eq!(full[0].last_error.as_deref(), Some(internal));
}

#[tokio::test]
async fn readyz_does_not_show_driver_errors() {
    let port = rvc_test_support::net::free_port();
    let app = TestApp::spawn_configured(|c| {
        c.db.database_url = format!("postgres://postgres@127.0.0.1:{port}/nowhere").into()
    })
    .await;
    let r = app.anon.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let text = r.text().await.unwrap();
    assert_eq!(text, "not ready: database unreachable");
    // and an API request answers 503 without the cause, even before the key is checked
    let key = client_with_key(&rvc_auth::key::generate().key);
    let r = key
        .get(app.url("/api/v1/products?sku=X"))
        .send()
        .await
        .unwrap();
    let body = problem(r, 503).await;
    assert!(!body.to_string().contains(&port.to_string()), "{body}");
}

#[tokio::test]
async fn health_and_metrics_can_move_to_their_own_address() {
    let app = TestApp::spawn_configured(|c| c.metrics_addr = Some("127.0.0.1:0".into())).await;
    let m = app.metrics_addr.unwrap();
    for p in ["/healthz", "/readyz", "/metrics"] {
        let r = app.anon.get(format!("http://{m}{p}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{p}");
        assert_eq!(
            app.anon
                .get(app.url(p))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            404,
            "{p}"
        );
    }
}

#[tokio::test]
async fn auth_disabled_lets_everyone_in_on_loopback_only() {
    let app = TestApp::spawn_configured(|c| c.auth.auth_mode = rvc_auth::AuthMode::Disabled).await;
    let r = app
        .anon
        .post(app.url("/api/v1/products"))
        .multipart(FormSpec::valid("OPEN-1").form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let db = rvc_test_support::TestDb::new().await;
    let mut config = <rvc_ingest_api::Config as clap::Parser>::parse_from(["rvc-ingest-api"]);
    config.http_addr = "0.0.0.0:0".into();
    config.db.database_url = db.url.clone().into();
    config.auto_migrate = false;
    config.auth.auth_mode = rvc_auth::AuthMode::Disabled;
    let err = rvc_ingest_api::Application::build(config)
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn keys_never_appear_in_the_logs() {
    // nextest runs each test in its own process: this subscriber sees everything the API logs
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();
    let app = TestApp::spawn().await;
    let read = app.db.api_key(&[Scope::CatalogRead]).await;
    let wrong = format!("{}{}", &read[..17], "Z".repeat(40));
    assert_eq!(
        app.post(FormSpec::valid("LOG-1").form())
            .await
            .status()
            .as_u16(),
        202
    );
    let r = client_with_key(&read)
        .post(app.url("/api/v1/products"))
        .multipart(FormSpec::valid("LOG-2").form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = client_with_key(&wrong)
        .get(app.url("/api/v1/products?sku=LOG-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains(&read[4..16]),
        "the capture sees the key ids:\n{logs}"
    );
    for secret in [&app.key[17..], &read[17..], &wrong[17..]] {
        assert!(
            !logs.contains(secret),
            "a key leaked into the logs:\n{logs}"
        );
    }
}
