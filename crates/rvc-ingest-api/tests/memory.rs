//! Issue 11, item 7: ingest memory is bounded under concurrency. 50 clients upload 40 MiB each
//! at once to the real binary; the API holds at most MAX_INFLIGHT_BODY_BYTES of bodies (a
//! request reserves its Content-Length before its body is read), answers the others 503 with
//! Retry-After, and its peak resident memory stays under a stated bound. Before the fix every
//! body was read into memory at once (50 × 40 MiB = 2 GiB).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rvc_test_support::{net, process::ChildGuard, TestDb};
use std::process::Command;
use std::time::Duration;

const MIB: usize = 1024 * 1024;
const CLIENTS: usize = 50;
const INFLIGHT: usize = 160 * MIB;
/// Bodies in flight (160 MiB) plus vector growth of the photo buffers (a 10 MiB photo is read
/// into a Vec that may double to 16 MiB) plus the process's own baseline.
const RSS_BOUND_MIB: u64 = 450;

/// A 10 MiB "photo": a real PNG header (the API reads dimensions from it) and filler.
fn photo(seed: u8) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    v.extend_from_slice(&100u32.to_be_bytes());
    v.extend_from_slice(&100u32.to_be_bytes());
    v.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    v.resize(10 * MIB, seed);
    v
}

/// One multipart body: four 10 MiB photos, then an invalid price, so the API reads and hashes
/// all 40 MiB and then answers 400 without writing anything.
fn body(boundary: &str) -> bytes::Bytes {
    let mut b = Vec::with_capacity(41 * MIB);
    for (k, v) in [("sku", "MEM-1"), ("name", "Big"), ("category_name", "Mem")] {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    for i in 0..4u8 {
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"p{i}.png\"\r\nContent-Type: image/png\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(&photo(i));
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"price\"\r\n\r\nnot-a-price\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    bytes::Bytes::from(b)
}

/// Peak resident set (VmHWM) of `pid`, in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_40_mib_uploads_stay_under_the_memory_bound_and_all_get_an_answer() {
    let db = TestDb::new().await;
    let port = net::free_port();
    let api = ChildGuard::spawn(
        "api",
        Command::new(env!("CARGO_BIN_EXE_rvc-ingest-api"))
            .env("DATABASE_URL", &db.url)
            .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("HTTP_WORKERS", "2")
            // memory, not access control, is under test here (loopback only)
            .env("AUTH_MODE", "disabled")
            .env("MAX_INFLIGHT_BODY_BYTES", INFLIGHT.to_string())
            .env("INGEST_ADMISSION_WAIT_MS", "1000")
            .env("RUST_LOG", "error"),
    )
    .unwrap();
    let pid = api.pid().unwrap();
    assert!(
        net::wait_for_port(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(20)
        )
        .await
    );
    let boundary = "rvc-memory-test-boundary";
    let body = body(boundary);
    assert!(body.len() > 40 * MIB);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/products");
    let started = std::time::Instant::now();
    let calls = (0..CLIENTS).map(|_| {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        tokio::spawn(async move {
            let r = http
                .post(url)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body)
                .send()
                .await
                .expect("an answer, not a broken connection");
            let retry_after = r.headers().get("retry-after").cloned();
            (r.status().as_u16(), retry_after)
        })
    });
    let answers = futures::future::join_all(calls).await;
    let took = started.elapsed();
    let peak = peak_rss_mib(pid);
    let mut bad_request = 0;
    let mut busy = 0;
    for a in answers {
        let (status, retry_after) = a.unwrap();
        match status {
            400 => bad_request += 1,
            503 => {
                assert!(retry_after.is_some(), "503 carries Retry-After");
                busy += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    eprintln!(
        "{CLIENTS} x 40 MiB: {bad_request} read fully (400), {busy} refused (503), \
         peak RSS {peak} MiB, {took:?}"
    );
    assert_eq!(bad_request + busy, CLIENTS, "every request got an answer");
    assert!(bad_request >= 1, "some requests were admitted and read");
    assert!(
        peak < RSS_BOUND_MIB,
        "peak RSS {peak} MiB over the {RSS_BOUND_MIB} MiB bound"
    );
    assert_eq!(db.count("SELECT count(*) FROM products").await, 0);
}
