//! One photo recognised end to end through rvc-catalog (HTTP multipart in, JSON out: key check,
//! the ML service's `EmbedRegions` twice, the vector searches, the cached product lookup), beside
//! the ML service's own embedding of the same photo (`VectorizeImage`) in the same run.
//! Everything is real and on this machine: Postgres, Redis, the ML service in-process with the
//! real model, the `rvc-vector-index` binary. Prints a markdown table.
//!
//! `cargo bench -p rvc-catalog --bench recognize [-- REQUESTS GALLERY_PRODUCTS]`
//! (`rvc-vector-index` must be built in the same target dir: `cargo build --release -p
//! rvc-vector-server`, or point `VECTOR_INDEX_BIN` at one.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::recognition::{add_product, fixture, recognize, start};
use rvc_auth::Scope;
use rvc_proto::ml::machine_learning_service_client::MachineLearningServiceClient;
use rvc_proto::ml::VectorizeRequest;
use rvc_test_support::images::{checkout_scene, jpeg, scene_square};
use rvc_test_support::latency::Summary;
use std::time::{Duration, Instant};

/// The allocator of the rvc-catalog binary (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `callers` concurrent loops of `f` until `total` calls are done; every call's latency.
async fn run<F, Fut>(total: usize, callers: usize, f: F) -> Summary
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(total));
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let (f, left) = (f.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                let t = Instant::now();
                f().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    Summary::of(all, start.elapsed())
}

fn skus(body: &serde_json::Value) -> Vec<String> {
    body["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["product"]["sku"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let requests: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(100);
    let gallery: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);

    let env = start().await;
    let key = env.db.api_key(&[Scope::Recognize]).await;
    // the gallery: four real photos, the rest seeded noise photos (distinct products whose
    // vectors fill the index; the search cost, not the answer, is what they are for)
    let (cat, coffee) = (fixture("cat.jpg"), fixture("coffee.jpg"));
    for (sku, photo) in [
        ("CAT-1", cat.clone()),
        ("COFFEE-1", coffee.clone()),
        ("ROCKET-1", fixture("rocket.jpg")),
        ("ASTRONAUT-1", fixture("astronaut.jpg")),
    ] {
        add_product(&env, sku, &photo).await;
    }
    for i in 4..gallery {
        add_product(&env, &format!("FILL-{i}"), &jpeg(i as u64, 320, 240)).await;
    }

    // the queries: a 1024×768 checkout scene with two of the products at 45 % of the short
    // side, and one product alone filling a 1024-px photo
    let scene = checkout_scene(&[
        (&cat, scene_square(0.05, 0.1, 0.45)),
        (&coffee, scene_square(0.55, 0.4, 0.45)),
    ]);
    let single = {
        let img = image::load_from_memory(&cat).unwrap();
        let big = img.resize(1024, 1024, image::imageops::FilterType::Triangle);
        let mut out = Vec::new();
        big.write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
        out
    };
    let found_scene = skus(&recognize(&env, &key, &scene, None).await);
    let found_single = skus(&recognize(&env, &key, &single, None).await);
    for _ in 0..3 {
        recognize(&env, &key, &scene, None).await;
    }

    let ml = MachineLearningServiceClient::connect(env.backends.ml_url.clone())
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let embed = |photo: Vec<u8>| {
        let ml = ml.clone();
        move || {
            let (mut ml, photo) = (ml.clone(), photo.clone());
            async move {
                ml.vectorize_image(VectorizeRequest {
                    image_data: photo,
                    image_type: String::new(),
                })
                .await
                .unwrap();
            }
        }
    };
    let rec = |photo: Vec<u8>| {
        let (http, base, key) = (env.http.clone(), env.base.clone(), key.clone());
        move || {
            let (http, base, key, photo) = (http.clone(), base.clone(), key.clone(), photo.clone());
            async move {
                let form = reqwest::multipart::Form::new().part(
                    "image",
                    reqwest::multipart::Part::bytes(photo).file_name("photo.jpg"),
                );
                let r = http
                    .post(format!("{base}/api/v1/recognize"))
                    .bearer_auth(key)
                    .multipart(form)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        }
    };

    println!(
        "{requests} requests per row, {gallery} products in the gallery (two points each); \
         scene = 1024×768 JPEG ({} KB) with two products at 45 % of the short side, \
         found: {found_scene:?}; single = one product in a 1024×683 JPEG ({} KB), found: {found_single:?}.\n",
        scene.len() / 1024,
        single.len() / 1024,
    );
    println!("| what | callers | photos/s | p50 | p99 | p99 / one embedding's p99 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let base = run(requests, 1, embed(scene.clone())).await;
    let rows = [
        (
            "ML service: VectorizeImage of the scene (baseline)",
            1,
            base,
        ),
        (
            "ML service: VectorizeImage of the scene",
            2,
            run(requests, 2, embed(scene.clone())).await,
        ),
        (
            "rvc-catalog: POST /api/v1/recognize, scene",
            1,
            run(requests, 1, rec(scene.clone())).await,
        ),
        (
            "rvc-catalog: POST /api/v1/recognize, single product",
            1,
            run(requests, 1, rec(single.clone())).await,
        ),
        (
            "rvc-catalog: POST /api/v1/recognize, scene",
            2,
            run(requests, 2, rec(scene.clone())).await,
        ),
    ];
    for (what, callers, s) in rows {
        println!(
            "| {what} | {callers} | {:.1} | {:.1} ms | {:.1} ms | {:.1}× |",
            s.rps,
            ms(s.p50),
            ms(s.p99),
            s.p99.as_secs_f64() / base.p99.as_secs_f64().max(1e-9),
        );
    }
}
