//! GetProductsInfo of 50 ids over real gRPC: the service with a hot cache vs the same service
//! with the cache off (Postgres only) vs a raw fred MGET of the same 50 keys (the floor), at
//! 1, 8 and 32 concurrent callers, in one run. Prints a markdown table.
//!
//! `cargo bench -p rvc-catalog --bench catalog [-- SECONDS_PER_CELL PRODUCTS]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use clap::Parser;
use rvc_cache::{CacheConfig, ProductCache, RedisCache};
use rvc_catalog::{Config, ReaderOptions};
use rvc_proto::catalog::product_service_client::ProductServiceClient;
use rvc_proto::catalog::GetProductsInfoRequest;
use rvc_test_support::TestDb;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use rvc_test_support::latency::Summary as Cell;

/// The allocator of the rvc-catalog binary (src/main.rs), so the figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn grpc_cell(addr: std::net::SocketAddr, ids: &[String], callers: usize, secs: f64) -> Cell {
    let mut tasks = Vec::new();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    for _ in 0..callers {
        let ids = ids.to_vec();
        tasks.push(tokio::spawn(async move {
            // one HTTP/2 connection per caller, as independent POS terminals would have
            let mut c = ProductServiceClient::connect(format!("http://{addr}"))
                .await
                .unwrap();
            let mut lat = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                let r = c
                    .get_products_info(GetProductsInfoRequest {
                        product_ids: ids.clone(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(r.products.len(), ids.len());
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    Cell::of(all, start.elapsed())
}

async fn mget_cell(cache: &RedisCache, ids: &[Uuid], callers: usize, secs: f64) -> Cell {
    let mut tasks = Vec::new();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    for _ in 0..callers {
        let (cache, ids) = (cache.clone(), ids.to_vec());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                let r = cache.raw_mget(&ids).await.unwrap();
                assert!(r.iter().all(Option::is_some));
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    Cell::of(all, start.elapsed())
}

async fn start(db: &TestDb, prefix: &str, cached: bool) -> rvc_catalog::Running {
    let mut c = Config::parse_from(["rvc-catalog"]);
    c.grpc_addr = "127.0.0.1:0".into();
    c.http_addr = "127.0.0.1:0".into();
    c.http_workers = 1;
    // the figures in docs/benchmarks.md are of the lookup path, without the key check
    c.auth.auth_mode = rvc_auth::AuthMode::Disabled;
    c.db.database_url = db.url.clone().into();
    c.cache.cache_key_prefix = prefix.to_owned();
    c.cache.redis_url = cached.then(redis_url);
    c.cache.cache_invalidator = cached;
    let cache = rvc_catalog::cache_from(&c.cache).await.unwrap();
    rvc_catalog::start(
        &c,
        cache,
        ReaderOptions::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let products: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let db = TestDb::new().await;
    {
        let c = db.pool.get().await.unwrap();
        c.execute(
            "WITH cat AS (INSERT INTO categories (name) VALUES ('Bench') RETURNING id)
             INSERT INTO products (id, sku, name, category_id, price_minor, currency, content_hash)
             SELECT gen_random_uuid(), 'B-' || g, 'Bench product ' || g, cat.id, 100 + g, 'EUR', md5(g::text)
             FROM cat, generate_series(1, $1::int) g",
            &[&i32::try_from(products).unwrap()],
        )
        .await
        .unwrap();
    }
    let all: Vec<Uuid> = {
        let c = db.pool.get().await.unwrap();
        c.query("SELECT id FROM products ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    // 50 ids spread over the table
    let step = (all.len() / 50).max(1);
    let ids: Vec<Uuid> = all.iter().step_by(step).take(50).copied().collect();
    let id_strings: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let prefix = format!("rvc-bench-{}:", Uuid::new_v4().simple());

    let hot = start(&db, &prefix, true).await;
    let off = start(&db, &prefix, false).await;
    // warm the cache: trusted after the first invalidator pass, then one read fills it
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hot.catalog.cache_trusted() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hot.catalog.get_products(&ids).await.unwrap();
    let mut cfg = CacheConfig::new(redis_url());
    cfg.prefix.clone_from(&prefix);
    let raw = RedisCache::connect(cfg, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        raw.get_many(&ids)
            .await
            .unwrap()
            .iter()
            .all(Option::is_some),
        "cache warm"
    );

    println!(
        "GetProductsInfo of 50 ids over gRPC (loopback), {secs} s per cell, {products} products in the table; \
         raw MGET = fred MGET of the same 50 keys, no gRPC, no decoding.\n"
    );
    println!("| callers | cache hot req/s | p50 | p99 | cache off (Postgres) req/s | p50 | p99 | raw MGET req/s | p50 | p99 | hot / off |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for callers in [1usize, 8, 32] {
        let h = grpc_cell(hot.grpc_addr, &id_strings, callers, secs).await;
        let o = grpc_cell(off.grpc_addr, &id_strings, callers, secs).await;
        let m = mget_cell(&raw, &ids, callers, secs).await;
        println!(
            "| {callers} | {:.0} | {:.2} ms | {:.2} ms | {:.0} | {:.2} ms | {:.2} ms | {:.0} | {:.2} ms | {:.2} ms | {:.1}× |",
            h.rps,
            h.p50.as_secs_f64() * 1e3,
            h.p99.as_secs_f64() * 1e3,
            o.rps,
            o.p50.as_secs_f64() * 1e3,
            o.p99.as_secs_f64() * 1e3,
            m.rps,
            m.p50.as_secs_f64() * 1e3,
            m.p99.as_secs_f64() * 1e3,
            h.rps / o.rps.max(1e-9),
        );
    }
    let misses = hot
        .catalog
        .stats
        .misses
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "\nCache misses during the hot runs (after warm-up): {}",
        misses.saturating_sub(50)
    );
    hot.stop().await;
    off.stop().await;
}
