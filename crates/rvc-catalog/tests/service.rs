//! The public surfaces (gRPC, HTTP) of an in-process rvc-catalog, the real binary under
//! SIGKILL, and read-your-write through the ingest API.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use clap::Parser;
use common::*;
use rvc_cache::{Entry, ProductCache};
use rvc_catalog::{Config, ReaderOptions};
use rvc_proto::catalog::product_service_client::ProductServiceClient;
use rvc_proto::catalog::{GetProductBySkuRequest, GetProductsInfoRequest};
use rvc_test_support::process::ChildGuard;
use rvc_test_support::TestDb;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn config(db: &TestDb, redis: &str, prefix: &str) -> Config {
    let mut c = Config::parse_from(["rvc-catalog"]);
    c.grpc_addr = "127.0.0.1:0".into();
    c.http_addr = "127.0.0.1:0".into();
    c.http_workers = 2;
    // these tests are about the reads; the keys are tested in tests/auth.rs
    c.auth.auth_mode = rvc_auth::AuthMode::Disabled;
    c.db.database_url = db.url.clone().into();
    c.cache.redis_url = Some(redis.to_owned());
    c.cache.cache_key_prefix = prefix.to_owned();
    c
}

async fn start(db: &TestDb, prefix: &str) -> rvc_catalog::Running {
    let cfg = config(db, &redis_url(), prefix);
    let cache = rvc_catalog::cache_from(&cfg.cache).await.unwrap();
    rvc_catalog::start(
        &cfg,
        cache,
        ReaderOptions::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn grpc_returns_products_and_names_malformed_ids() {
    let db = TestDb::new().await;
    let a = insert_product(&db, "G-1", 249).await;
    let b = insert_product(&db, "G-2", 100).await;
    db.pool
        .get()
        .await
        .unwrap()
        .execute("UPDATE products SET archived = true WHERE id = $1", &[&b])
        .await
        .unwrap();
    let svc = start(&db, &prefix()).await;
    let mut client = ProductServiceClient::connect(format!("http://{}", svc.grpc_addr))
        .await
        .unwrap();
    let unknown = Uuid::now_v7();
    let r = client
        .get_products_info(GetProductsInfoRequest {
            product_ids: vec![a.to_string(), b.to_string(), unknown.to_string()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.products.len(), 2);
    assert_eq!(r.products[0].product_id, a.to_string());
    assert_eq!(r.products[0].price_minor, 249);
    assert_eq!(r.products[0].currency, "EUR");
    assert_eq!(r.products[0].sku, "G-1");
    assert_eq!(r.products[0].version, 1);
    assert!(r.products[0].updated_at.is_some());
    assert!(!r.products[0].archived);
    assert!(r.products[1].archived, "archived reported as such");
    assert_eq!(r.not_found_ids, vec![unknown.to_string()]);

    let err = client
        .get_products_info(GetProductsInfoRequest {
            product_ids: vec![a.to_string(), "not-a-uuid".into(), "42".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("\"not-a-uuid\"") && err.message().contains("\"42\""),
        "{}",
        err.message()
    );
    let too_many = client
        .get_products_info(GetProductsInfoRequest {
            product_ids: (0..501).map(|_| Uuid::now_v7().to_string()).collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), tonic::Code::InvalidArgument);

    let by_sku = client
        .get_product_by_sku(GetProductBySkuRequest { sku: "G-1".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_sku.product.unwrap().product_id, a.to_string());
    let missing = client
        .get_product_by_sku(GetProductBySkuRequest { sku: "NOPE".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // gRPC health reports the service
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", svc.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "rvc.catalog.v1.ProductService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // server reflection lists the services (what grpcurl-style clients use)
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", svc.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(futures::stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply: {reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "rvc.catalog.v1.ProductService"),
        "{names:?}"
    );
    svc.stop().await;
}

#[tokio::test]
async fn http_batch_get_health_openapi_and_problems() {
    let db = TestDb::new().await;
    let a = insert_product(&db, "H-1", 249).await;
    let svc = start(&db, &prefix()).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", svc.http_addr);
    let unknown = Uuid::now_v7();
    let r: serde_json::Value = http
        .post(format!("{base}/api/v1/products:batchGet"))
        .json(&serde_json::json!({"product_ids": [a, unknown]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["products"][0]["id"], a.to_string());
    assert_eq!(r["products"][0]["price_minor"], 249);
    assert_eq!(r["not_found_ids"][0], unknown.to_string());

    let bad = http
        .post(format!("{base}/api/v1/products:batchGet"))
        .json(&serde_json::json!({"product_ids": [a.to_string(), "bogus"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let p: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(p["field"], "product_ids");
    assert!(p["detail"].as_str().unwrap().contains("\"bogus\""), "{p}");

    for (query, field) in [
        ("limit=0", "limit"),
        ("status=shipped", "status"),
        ("updated_since=yesterday", "updated_since"),
        ("cursor=abc", "cursor"),
    ] {
        let r = http
            .get(format!("{base}/api/v1/products?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["field"], field, "{query}");
    }
    for path in ["/healthz", "/readyz", "/metrics", "/api-docs/openapi.json"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let doc: serde_json::Value = http
        .get(format!("{base}/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/api/v1/products:batchGet"].is_object());
    assert!(http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .contains("rvc_catalog_"));
    svc.stop().await;
}

/// Keyset pagination while other transactions insert products with ids anywhere in the key
/// space: every product that existed before the walk appears exactly once, nothing twice.
#[tokio::test]
async fn pagination_under_concurrent_inserts_skips_and_repeats_nothing() {
    let db = TestDb::new().await;
    let mut before = HashSet::new();
    for i in 0..150 {
        let id =
            insert_product_with_id(&db, Uuid::new_v4(), &format!("P-{i}"), "Drinks", 100 + i).await;
        before.insert(id);
    }
    let svc = start(&db, &prefix()).await;
    let stop = CancellationToken::new();
    let writer = {
        let (pool, stop) = (db.pool.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let c = pool.get().await.unwrap();
                c.execute(
                    "INSERT INTO products (id, sku, name, category_id, price_minor, currency, content_hash)
                     SELECT $1, $2, 'new', id, 1, 'EUR', 'x' FROM categories WHERE name = 'Drinks'",
                    &[&Uuid::new_v4(), &format!("NEW-{n}")],
                )
                .await
                .unwrap();
                // and move an existing row, so updated rows are exercised too
                c.execute(
                    "UPDATE products SET status = 'indexed', updated_at = now()
                     WHERE id = (SELECT id FROM products ORDER BY random() LIMIT 1)",
                    &[],
                )
                .await
                .unwrap();
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        })
    };
    let http = reqwest::Client::new();
    let base = format!("http://{}", svc.http_addr);
    let mut seen: Vec<Uuid> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/products?category=Drinks&limit=7");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().parse().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    stop.cancel();
    let inserted = writer.await.unwrap();
    assert!(inserted > 0, "inserts ran during the walk");
    let unique: HashSet<Uuid> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no product repeated");
    assert!(before.is_subset(&unique), "no pre-existing product skipped");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "ordered by id");
    svc.stop().await;
}

fn catalog_bin(db: &TestDb, prefix: &str, http_port: u16, grpc_port: u16) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rvc-catalog"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", redis_url())
        .env("CACHE_KEY_PREFIX", prefix)
        .env("CATALOG_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("AUTH_MODE", "disabled")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null());
    cmd
}

async fn wait_ready(base: &str) {
    let http = reqwest::Client::new();
    eventually("rvc-catalog ready", Duration::from_secs(30), || {
        let r = http.get(format!("{base}/readyz")).send();
        async move { r.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
    })
    .await;
}

async fn batch_price(base: &str, id: Uuid) -> i64 {
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/products:batchGet"))
        .json(&serde_json::json!({ "product_ids": [id] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["products"][0]["price_minor"].as_i64().unwrap()
}

/// The invalidating process is frozen after a change commits (so it cannot apply it), then
/// SIGKILLed: the trigger's row survives and the restarted process applies it.
#[tokio::test]
async fn sigkill_of_the_invalidator_after_commit_still_invalidates_on_restart() {
    let db = TestDb::new().await;
    let prefix = prefix();
    let cache = redis_cache(&redis_url(), &prefix).await;
    let id = insert_product(&db, "SIG-1", 111).await;
    let (http_port, grpc_port) = (
        rvc_test_support::net::free_port(),
        rvc_test_support::net::free_port(),
    );
    let base = format!("http://127.0.0.1:{http_port}");
    let mut proc = ChildGuard::spawn(
        "rvc-catalog",
        &mut catalog_bin(&db, &prefix, http_port, grpc_port),
    )
    .unwrap();
    wait_ready(&base).await;
    // cached at revision 1
    eventually("cached", Duration::from_secs(10), || {
        let (base, cache) = (base.clone(), cache.clone());
        async move {
            assert_eq!(batch_price(&base, id).await, 111);
            matches!(
                cache.get_many(&[id]).await.ok()?[0],
                Some(Entry::Value { .. })
            )
            .then_some(())
        }
    })
    .await;

    let pid = proc.pid().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    change_price(&db, id, 222).await; // committed; the frozen process cannot invalidate
    assert_eq!(pending_invalidations(&db).await, 1);
    proc.kill(); // SIGKILL
    let raw = cache.get_many(&[id]).await.unwrap();
    assert!(
        matches!(&raw[0], Some(Entry::Value { value, .. }) if value.contains("\"price_minor\":111")),
        "the stale entry is still there: {raw:?}"
    );

    let _proc2 = ChildGuard::spawn(
        "rvc-catalog",
        &mut catalog_bin(&db, &prefix, http_port, grpc_port),
    )
    .unwrap();
    wait_ready(&base).await;
    let rev = revision(&db, id).await;
    eventually("the row applied", Duration::from_secs(10), || {
        let cache = cache.clone();
        let db = &db;
        async move {
            let raw = cache.get_many(&[id]).await.ok()?;
            let applied = raw[0].as_ref().is_some_and(|e| e.revision() >= rev);
            (applied && pending_invalidations(db).await == 0).then_some(())
        }
    })
    .await;
    assert_eq!(batch_price(&base, id).await, 222);
}

/// A price changed by a POST to the ingest API is what the next read returns, through a warm
/// cache, with no invalidator running: the ingest API's post-commit tombstone does it.
#[tokio::test]
async fn read_your_write_of_a_price_change_through_the_cache() {
    let db = TestDb::new().await;
    let prefix = prefix();
    let mut icfg = <rvc_ingest_api::Config as clap::Parser>::parse_from(["rvc-ingest-api"]);
    icfg.http_addr = "127.0.0.1:0".into();
    icfg.db.database_url = db.url.clone().into();
    icfg.auto_migrate = false;
    icfg.http_workers = 1;
    icfg.redis_url = Some(redis_url());
    icfg.cache_key_prefix.clone_from(&prefix);
    let ingest = rvc_ingest_api::Application::build(icfg).await.unwrap();
    let write_key = db.api_key(&[rvc_auth::Scope::CatalogWrite]).await;
    let ingest_base = format!("http://{}", ingest.addr());
    let server = ingest.into_server();
    let ingest_handle = server.handle();
    tokio::spawn(server);

    let cache = redis_cache(&redis_url(), &prefix).await;
    let cat = Arc::new(rvc_catalog::Catalog::new(
        db.pool.clone(),
        Arc::new(cache.clone()),
        no_invalidator(),
    ));
    let http = reqwest::Client::new();
    let post = |price: &'static str| {
        let form = reqwest::multipart::Form::new()
            .text("sku", "RYW-1")
            .text("name", "Oat drink 1 L")
            .text("category_name", "Dairy alternatives")
            .text("price", price)
            .text("currency", "EUR")
            .part(
                "images",
                reqwest::multipart::Part::bytes(PNG_1X1.to_vec())
                    .file_name("a.png")
                    .mime_str("image/png")
                    .unwrap(),
            );
        http.post(format!("{ingest_base}/api/v1/products"))
            .bearer_auth(&write_key)
            .multipart(form)
            .send()
    };
    let ack: serde_json::Value = post("2.49").await.unwrap().json().await.unwrap();
    let id: Uuid = ack["product_id"].as_str().unwrap().parse().unwrap();
    for (price, minor) in [("2.99", 299), ("3.49", 349), ("1.99", 199), ("2.49", 249)] {
        // warm: the old price is cached and served from Redis
        cat.get_products(&[id]).await.unwrap();
        let hits = cat.stats.hits.load(std::sync::atomic::Ordering::SeqCst);
        cat.get_products(&[id]).await.unwrap();
        assert_eq!(
            cat.stats.hits.load(std::sync::atomic::Ordering::SeqCst),
            hits + 1
        );
        let r = post(price).await.unwrap();
        assert_eq!(r.status(), 202);
        let read = cat.get_products(&[id]).await.unwrap();
        assert_eq!(
            read.products[0].price_minor, minor,
            "read right after the POST"
        );
    }
    ingest_handle.stop(true).await;
}

/// A valid 1×1 RGB PNG.
const PNG_1X1: [u8; 69] = [
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0,
    0, 0, 144, 119, 83, 222, 0, 0, 0, 12, 73, 68, 65, 84, 120, 156, 99, 248, 207, 192, 0, 0, 3, 1,
    1, 0, 201, 254, 146, 239, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
];
