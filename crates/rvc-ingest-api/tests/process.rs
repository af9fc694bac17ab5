//! `rvc-ingest-api` as a real process: it migrates an empty database, serves HTTP, and stops
//! cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::FormSpec;
use rvc_test_support::{net, process::ChildGuard, TestDb};
use std::process::Command;
use std::time::Duration;

#[tokio::test]
async fn the_binary_migrates_serves_and_stops_on_sigterm() {
    let template_db = TestDb::new().await; // a database we can drop the schema of
    let c = template_db.client().await;
    c.batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .await
        .unwrap();
    let port = net::free_port();
    let mut api = ChildGuard::spawn(
        "api",
        Command::new(env!("CARGO_BIN_EXE_rvc-ingest-api"))
            .env("DATABASE_URL", &template_db.url)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("AUTO_MIGRATE", "true")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn"),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        net::wait_for_port(addr, Duration::from_secs(20)).await,
        "api did not listen"
    );
    let base = format!("http://127.0.0.1:{port}");
    let ready = reqwest::Client::new()
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    // the binary enforces keys by default
    let anon = reqwest::Client::new()
        .post(format!("{base}/api/v1/products"))
        .multipart(FormSpec::valid("PROC-0").form())
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
    let http = common::client_with_key(&template_db.admin_key().await);

    let resp = http
        .post(format!("{base}/api/v1/products"))
        .multipart(FormSpec::valid("PROC-1").form())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let loc = resp.headers()["location"].to_str().unwrap().to_owned();
    let got: serde_json::Value = http
        .get(format!("{base}{loc}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["sku"], "PROC-1");
    assert_eq!(got["status"], "registered");
    assert_eq!(template_db.count("SELECT count(*) FROM outbox").await, 1);

    let status = api
        .terminate(Duration::from_secs(15))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn help_lists_every_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_rvc-ingest-api"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for var in [
        "HTTP_ADDR",
        "DATABASE_URL",
        "AUTO_MIGRATE",
        "LOG_FORMAT",
        "RUST_LOG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "DEFAULT_CURRENCY",
        "MAX_IMAGES",
        "MAX_IMAGE_BYTES",
        "AUTH_MODE",
        "AUTH_CACHE_TTL_SECS",
        "RATE_LIMIT_CATALOG_WRITE",
        "RATE_LIMIT_CATALOG_READ",
        "REDIS_URL",
        "METRICS_ADDR",
    ] {
        assert!(text.contains(var), "--help lacks {var}:\n{text}");
    }
}
