//! Ingest requests/s and p50/p99 latency with two ~200 KB JPEGs per request, beside two
//! baselines from the same run: a handler that parses the same form but writes nothing, and
//! the raw Postgres cost of the same writes (pgbench running `benches/same-writes.sql`, the
//! statements `rvc_store::products::ingest` sends, on the same database). Then both at a fixed
//! 100 requests/s (open loop: latency counts from when a request was due, so a slow answer
//! cannot hide the queue behind it).
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

use rvc_test_support::latency::Summary as Result;

fn form(images: &[Vec<u8>], sku: String, category: usize) -> reqwest::multipart::Form {
    let mut form = reqwest::multipart::Form::new()
        .text("sku", sku)
        .text("name", "Bench product")
        .text("category_name", format!("Bench-{category}"))
        .text("price", "9.99");
    for (k, img) in images.iter().enumerate() {
        form = form.part(
            "images",
            reqwest::multipart::Part::bytes(img.clone()).file_name(format!("{k}.jpg")),
        );
    }
    form
}

/// One POST, which must be accepted; the answer is read to the end.
async fn post(http: &reqwest::Client, url: &str, key: &str, body: reqwest::multipart::Form) {
    let resp = http
        .post(url)
        .bearer_auth(key)
        .multipart(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let _ = resp.bytes().await.unwrap();
}

/// POSTs `requests` products at a fixed `rate` per second, each request sent when it is due
/// whatever the earlier ones are doing; latency counts from the due time.
async fn load_at_rate(
    url: &str,
    images: &[Vec<u8>],
    requests: usize,
    rate: f64,
    key: &str,
) -> Result {
    let http = reqwest::Client::new();
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(requests);
    for i in 0..requests {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let (http, url, key) = (http.clone(), url.to_owned(), key.to_owned());
        let body = form(images, format!("rate-{i}"), i % 100);
        tasks.push(tokio::spawn(async move {
            post(&http, &url, &key, body).await;
            due.elapsed()
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for t in tasks {
        all.push(t.await.unwrap());
    }
    Result::of(all, start.elapsed())
}

/// Runs `benches/same-writes.sql` with pgbench on `url`: `clients` closed-loop clients for
/// `transactions` each, or at a fixed `rate` (pgbench `-R`, latency from the scheduled time).
fn pgbench_same_writes(
    url: &str,
    clients: usize,
    transactions: usize,
    rate: Option<f64>,
) -> Result {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/same-writes.sql");
    let logs = tempfile::tempdir().unwrap();
    let prefix = logs.path().join("tx");
    let mut cmd = std::process::Command::new("pgbench");
    cmd.args(["-n", "-f", script, "-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-t", &transactions.to_string(), "-l", "--log-prefix"])
        .arg(&prefix);
    if let Some(rate) = rate {
        cmd.args(["-R", &rate.to_string()]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("pgbench is installed (make setup)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tps = rvc_test_support::postgres::pgbench_tps(&text)
        .unwrap_or_else(|| panic!("no tps in pgbench output: {text}"));
    // One line per transaction: client, transaction, elapsed µs, script, epoch s, µs and,
    // under -R, the schedule lag in µs (added: latency from when the transaction was due).
    let mut all = Vec::new();
    for entry in std::fs::read_dir(logs.path()).unwrap() {
        let log = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in log.lines() {
            let cols: Vec<u64> = line
                .split_whitespace()
                .map(|c| c.parse().unwrap())
                .collect();
            all.push(Duration::from_micros(
                cols[2] + cols.get(6).copied().unwrap_or(0),
            ));
        }
    }
    assert_eq!(
        all.len(),
        clients * transactions,
        "one log line per transaction"
    );
    let mut r = Result::of(all, Duration::from_secs(1));
    r.rps = tps;
    r
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
                let body = form(&images, format!("{tag}-{i}"), i % categories);
                let t = Instant::now();
                post(&http, &url, &key, body).await;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    Result::of(all, start.elapsed())
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
    // Each measured run that writes starts right after a CHECKPOINT: every run writes a few
    // hundred MB of WAL, and a checkpoint that an earlier run started would otherwise land in
    // whichever run comes next.
    let client = db.client().await;
    let checkpoint = || async { client.batch_execute("CHECKPOINT").await.unwrap() };
    let base = load(&null_url, &images, requests, concurrency, 1, &key, "null").await;
    checkpoint().await;
    let many = load(&real_url, &images, requests, concurrency, 100, &key, "many").await;
    checkpoint().await;
    let one = load(&real_url, &images, requests, concurrency, 1, &key, "one").await;
    // The same writes straight into Postgres, same database, same photos.
    client
        .batch_execute("CREATE TABLE bench_photos (ordinal SMALLINT PRIMARY KEY, bytes BYTEA NOT NULL, sha256 TEXT NOT NULL)")
        .await
        .unwrap();
    for (i, img) in images.iter().enumerate() {
        client
            .execute(
                "INSERT INTO bench_photos VALUES ($1, $2, encode(sha256($2), 'hex'))",
                &[&(i as i16), img],
            )
            .await
            .unwrap();
    }
    checkpoint().await;
    let per_client = requests.div_ceil(concurrency);
    let url = db.url.clone();
    let raw = actix_web::rt::task::spawn_blocking(move || {
        pgbench_same_writes(&url, concurrency, per_client, None)
    })
    .await
    .unwrap();
    // A steady 100 requests/s for 10 s: the latency goal (p99 under 50 ms).
    let rate = 100.0;
    checkpoint().await;
    let paced = load_at_rate(&real_url, &images, 1000, rate, &key).await;
    checkpoint().await;
    let url = db.url.clone();
    let raw_paced = actix_web::rt::task::spawn_blocking(move || {
        pgbench_same_writes(&url, concurrency, 1000 / concurrency, Some(rate))
    })
    .await
    .unwrap();

    println!(
        "{requests} requests, {concurrency} concurrent, 2 JPEGs per request ({} and {} bytes)\n",
        sizes[0], sizes[1]
    );
    println!("| handler | requests/s | p50 | p99 |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, r) in [
        ("parse only, writes nothing (baseline)", &base),
        ("pgbench, the same writes (same-writes.sql, baseline)", &raw),
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
        "\nratio to parse only: {:.2} across 100 categories, {:.2} into one",
        many.rps / base.rps,
        one.rps / base.rps
    );
    println!(
        "ratio to pgbench with the same writes: {:.2} across 100 categories, {:.2} into one",
        many.rps / raw.rps,
        one.rps / raw.rps
    );
    println!(
        "\nAt a fixed {rate:.0} requests/s for 10 s (open loop, latency from when each was due):\n"
    );
    println!("| writer | p50 | p99 |");
    println!("| --- | ---: | ---: |");
    for (name, r) in [
        ("pgbench -R, the same writes (baseline)", &raw_paced),
        ("rvc-ingest-api POST, 100 categories", &paced),
    ] {
        println!(
            "| {name} | {:.1} ms | {:.1} ms |",
            r.p50.as_secs_f64() * 1000.0,
            r.p99.as_secs_f64() * 1000.0
        );
    }
    real_handle.stop(true).await;
    null_handle.stop(true).await;
}
