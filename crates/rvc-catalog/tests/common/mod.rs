//! Shared test plumbing: real Postgres (a database per test), real Redis (the machine's, with
//! a key prefix per test, or a redis-server of the test's own), products written with SQL.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]
pub mod recognition;

use rvc_cache::{CacheConfig, RedisCache};
use rvc_catalog::{Catalog, ReaderOptions};
pub use rvc_test_support::paths::redis_url;
use rvc_test_support::process::ChildGuard;
use rvc_test_support::TestDb;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

pub fn prefix() -> String {
    format!("rvc-test-{}:", Uuid::new_v4().simple())
}

pub fn cache_config(url: &str, prefix: &str) -> CacheConfig {
    let mut c = CacheConfig::new(url);
    c.prefix = prefix.to_owned();
    c.tombstone_ttl = Duration::from_secs(60);
    c
}

pub async fn redis_cache(url: &str, prefix: &str) -> RedisCache {
    RedisCache::connect(cache_config(url, prefix), Duration::from_secs(5))
        .await
        .unwrap()
}

/// A catalog over `db` and `cache` (no invalidator task unless the test runs one).
pub fn catalog(db: &TestDb, cache: &RedisCache, opts: ReaderOptions) -> Arc<Catalog> {
    Arc::new(Catalog::new(db.pool.clone(), Arc::new(cache.clone()), opts))
}

pub fn no_invalidator() -> ReaderOptions {
    ReaderOptions {
        invalidator_in_process: false,
        fill_max_age: Duration::from_secs(30),
        after_load: None,
    }
}

/// Inserts a product (category created on the way); returns its id.
pub async fn insert_product(db: &TestDb, sku: &str, price_minor: i64) -> Uuid {
    insert_product_with_id(db, Uuid::now_v7(), sku, "Snacks", price_minor).await
}

pub async fn insert_product_with_id(
    db: &TestDb,
    id: Uuid,
    sku: &str,
    category: &str,
    price_minor: i64,
) -> Uuid {
    let c = db.pool.get().await.unwrap();
    c.execute(
        "WITH cat AS (INSERT INTO categories (name) VALUES ($4)
                      ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id)
         INSERT INTO products (id, sku, name, category_id, price_minor, currency, content_hash)
         SELECT $1, $2, 'Product ' || $2, cat.id, $3, 'EUR', md5($2) FROM cat",
        &[&id, &sku, &price_minor, &category],
    )
    .await
    .unwrap();
    id
}

/// A committed price change, as a new version (what a changed POST does).
pub async fn change_price(db: &TestDb, id: Uuid, price_minor: i64) {
    let c = db.pool.get().await.unwrap();
    let n = c
        .execute(
            "UPDATE products SET price_minor = $2, version = version + 1, updated_at = now()
             WHERE id = $1",
            &[&id, &price_minor],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
}

pub async fn revision(db: &TestDb, id: Uuid) -> i64 {
    let c = db.pool.get().await.unwrap();
    c.query_one("SELECT revision FROM products WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

pub async fn pending_invalidations(db: &TestDb) -> i64 {
    db.count("SELECT count(*) FROM cache_invalidations").await
}

/// Polls `f` until it returns `Some`, failing the test after `timeout`.
pub use rvc_test_support::wait::wait_for_value as eventually;

/// A redis-server of the test's own on a free port (no persistence: a restart starts empty).
pub struct OwnRedis {
    pub port: u16,
    pub guard: ChildGuard,
}

impl OwnRedis {
    pub async fn start_on(port: u16) -> Self {
        let dir = std::env::temp_dir();
        let guard = ChildGuard::spawn(
            "redis-server",
            std::process::Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--loglevel",
                    "warning",
                ])
                .current_dir(dir)
                .stdout(std::process::Stdio::null()),
        )
        .expect("redis-server is installed (apt redis-server)");
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            rvc_test_support::net::wait_for_port(addr, Duration::from_secs(10)).await,
            "redis-server did not start on {port}"
        );
        Self { port, guard }
    }

    pub async fn start() -> Self {
        Self::start_on(rvc_test_support::net::free_port()).await
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as in a crash.
    pub fn kill(&mut self) {
        self.guard.kill();
    }
}
