//! Ingest requests/s and p50/p99 latency with two ~200 KB JPEGs per request, beside the
//! same requests answered by a handler that parses the same form but writes nothing
//! (the cost of the Postgres transaction is the difference). Same process, same run.
//!
//! `cargo bench -p rvc-ingest-api --bench ingest [-- REQUESTS CONCURRENCY]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use rvc_ingest_api::{Application, Config, Limits};
use rvc_test_support::TestDb;
use std::time::{Duration, Instant};

/// Parses the form exactly like the real handler, then answers without touching Postgres.
async fn null_handler(req: HttpRequest, payload: web::Payload) -> HttpResponse {
    let limits = Limits::default();
    match rvc_ingest_api::form::read_product(
        actix_multipart::Multipart::new(req.headers(), payload),
        &limits,
    )
    .await
    {
        Ok(p) => HttpResponse::Accepted().json(serde_json::json!({"sku": p.sku.as_str()})),
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
}

struct Result {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(
    url: &str,
    images: &[Vec<u8>],
    requests: usize,
    concurrency: usize,
    categories: usize,
    key: &str,
    tag: &str,
) -> Result {
    let http = reqwest::Client::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, next, url, images, tag, key) = (
            http.clone(),
            next.clone(),
            url.to_owned(),
            images.to_vec(),
            tag.to_owned(),
            key.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    break lat;
                }
                let mut form = reqwest::multipart::Form::new()
                    .text("sku", format!("{tag}-{i}"))
                    .text("name", "Bench product")
                    .text("category_name", format!("Bench-{}", i % categories))
                    .text("price", "9.99");
                for (k, img) in images.iter().enumerate() {
                    form = form.part(
                        "images",
                        reqwest::multipart::Part::bytes(img.clone()).file_name(format!("{k}.jpg")),
                    );
                }
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .bearer_auth(&key)
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 202);
                let _ = resp.bytes().await.unwrap();
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    all.sort();
    let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Result {
        rps: requests as f64 / elapsed.as_secs_f64(),
        p50: pick(0.50),
        p99: pick(0.99),
    }
}

#[actix_web::main]
async fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let requests: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(400);
    let concurrency: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(8);
    // Noise at JPEG quality 80: about 200 KB each, as a phone photo (does not compress).
    let images = vec![
        rvc_test_support::images::jpeg_with_quality(1, 372, 372, 80),
        rvc_test_support::images::jpeg_with_quality(2, 372, 372, 80),
    ];
    let sizes: Vec<usize> = images.iter().map(Vec::len).collect();

    let db = TestDb::new().await;
    let mut config = <Config as clap::Parser>::parse_from(["rvc-ingest-api"]);
    config.http_addr = "127.0.0.1:0".into();
    config.db.database_url = db.url.clone().into();
    config.auto_migrate = false;
    config.telemetry.rust_log = "warn".into();
    // Keys are checked as in production (a cached lookup); the per-key rate limit is lifted:
    // the bench is one client sending as fast as it can.
    config.auth.rate_limit_catalog_write = rvc_auth::RateSpec {
        per_sec: 1e9,
        burst: 1e9,
    };
    let key = db.api_key(&[rvc_auth::Scope::CatalogWrite]).await;
    let app = Application::build(config).await.unwrap();
    let real_url = format!("http://{}/api/v1/products", app.addr());
    let real = app.into_server();
    let real_handle = real.handle();
    actix_web::rt::spawn(real);

    let null = HttpServer::new(|| App::new().route("/null", web::post().to(null_handler)))
        .bind("127.0.0.1:0")
        .unwrap();
    let null_url = format!("http://{}/null", null.addrs()[0]);
    let null = null.run();
    let null_handle = null.handle();
    actix_web::rt::spawn(null);

    // warm up both
    // 100 categories exist before the measured runs, as in a catalog that has its
    // departments; "one category" is a bulk load of one department.
    load(&null_url, &images, 20, 2, 1, &key, "warm-null").await;
    load(&real_url, &images, 100, 2, 100, &key, "warm-real").await;
    let base = load(&null_url, &images, requests, concurrency, 1, &key, "null").await;
    let many = load(&real_url, &images, requests, concurrency, 100, &key, "many").await;
    let one = load(&real_url, &images, requests, concurrency, 1, &key, "one").await;

    println!(
        "{requests} requests, {concurrency} concurrent, 2 JPEGs per request ({} and {} bytes)\n",
        sizes[0], sizes[1]
    );
    println!("| handler | requests/s | p50 | p99 |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, r) in [
        ("parse only, writes nothing (baseline)", &base),
        ("rvc-ingest-api POST, 100 categories", &many),
        ("rvc-ingest-api POST, all into one category", &one),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} ms | {:.1} ms |",
            r.rps,
            r.p50.as_secs_f64() * 1000.0,
            r.p99.as_secs_f64() * 1000.0
        );
    }
    println!(
        "\nratio (real / baseline requests/s): {:.2} across 100 categories, {:.2} into one",
        many.rps / base.rps,
        one.rps / base.rps
    );
    real_handle.stop(true).await;
    null_handle.stop(true).await;
}
