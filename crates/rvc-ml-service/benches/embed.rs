//! Throughput and latency of the embedder with the real model (`cargo bench -p rvc-ml-service`).
//!
//! 1. library, one thread: preprocessing, network, and whole `embed` per image (p50/p99);
//! 2. gRPC in-process: ML_WORKERS = cores, 2 × cores concurrent clients: images/s, p50/p99.
//!
//! BENCH_ITERS (default 60) sets the number of images per measurement.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use rvc_ml_service::{Embedder, EmbedderConfig, ServiceConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> Vec<Vec<u8>> {
    ["cat.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg"]
        .iter()
        .map(|n| {
            std::fs::read(repo().join("crates/rvc-ml-service/tests/fixtures").join(n)).unwrap()
        })
        .collect()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn report(name: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    let n = lat.len();
    let mean = lat.iter().sum::<Duration>().as_secs_f64() * 1e3 / n as f64;
    println!(
        "{name:<28} n={n:<4} p50={:>7.2} ms  p99={:>7.2} ms  mean={mean:>7.2} ms  {:>7.1} images/s",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        n as f64 / wall.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful: run tiny then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 2 } else { 60 });
    let model_path = std::env::var_os("ML_MODEL_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(rvc_ml_service::DEFAULT_MODEL_PATH));
    assert!(
        model_path.is_file(),
        "the ML model is missing at {}: run scripts/setup-model.sh first",
        model_path.display()
    );
    let cfg = EmbedderConfig {
        model_path,
        ..EmbedderConfig::default()
    };
    let t = Instant::now();
    let embedder = Arc::new(Embedder::load(cfg.clone()).unwrap());
    println!(
        "model load + optimise: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let images = fixtures();

    // Warm-up.
    for img in &images {
        embedder.embed(img).unwrap();
    }

    let mut state = embedder.new_state().unwrap();
    let (mut pre, mut all) = (Vec::new(), Vec::new());
    let wall = Instant::now();
    for i in 0..iters {
        let img = &images[i % images.len()];
        let t = Instant::now();
        embedder.preprocess(img).unwrap();
        pre.push(t.elapsed());
    }
    report("decode+preprocess (1 thr)", pre, wall.elapsed());
    let input = embedder.preprocess(&images[0]).unwrap();
    let mut net = Vec::new();
    let wall = Instant::now();
    for _ in 0..iters {
        let t = Instant::now();
        embedder.forward(input.clone()).unwrap();
        net.push(t.elapsed());
    }
    report("network only (1 thr)", net, wall.elapsed());
    let wall = Instant::now();
    for i in 0..iters {
        let img = &images[i % images.len()];
        let t = Instant::now();
        embedder.embed_with(&mut state, img).unwrap();
        all.push(t.elapsed());
    }
    report("embed, library (1 thr)", all, wall.elapsed());

    // gRPC, in-process server on a free loopback port.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let svc = ServiceConfig {
            embedder: cfg,
            workers: 0,
            queue_capacity: 64,
            ..ServiceConfig::default()
        };
        let workers = svc.effective_workers();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(rvc_ml_service::serve_with_embedder(
            listener,
            svc,
            Arc::clone(&embedder),
            async move {
                let _ = rx.await;
            },
        ));
        let client =
            rvc_proto::ml::machine_learning_service_client::MachineLearningServiceClient::connect(
                url,
            )
            .await
            .unwrap();
        let concurrency = 2 * workers;
        let per_client = iters.div_ceil(concurrency).max(1);
        let wall = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|c| {
                let mut client = client.clone();
                let images = images.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    for i in 0..per_client {
                        let t = Instant::now();
                        client
                            .vectorize_image(rvc_proto::ml::VectorizeRequest {
                                image_data: images[(c + i) % images.len()].clone(),
                                image_type: "image/jpeg".into(),
                            })
                            .await
                            .unwrap();
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        report(
            &format!("gRPC {workers} workers, {concurrency} clients"),
            lat,
            wall.elapsed(),
        );
        let _ = tx.send(());
        server.await.unwrap().unwrap();
    });
}
