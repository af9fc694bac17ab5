//! The cache against the real Redis and a real Postgres database per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::*;
use futures::FutureExt;
use rvc_cache::{Entry, ProductCache};
use rvc_catalog::invalidator;
use rvc_catalog::reader::AfterLoadHook;
use rvc_catalog::ReaderOptions;
use rvc_test_support::TestDb;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Mutex};

/// A hook that pauses the first loader between its Postgres read and its cache write:
/// it reports `loaded` and waits for `go`.
fn pause_once() -> (AfterLoadHook, oneshot::Receiver<()>, oneshot::Sender<()>) {
    let (loaded_tx, loaded_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let slot = Arc::new(Mutex::new(Some((loaded_tx, go_rx))));
    let hook: AfterLoadHook = Arc::new(move |_ids| {
        let slot = slot.clone();
        async move {
            let taken = slot.lock().await.take();
            if let Some((loaded, go)) = taken {
                let _ = loaded.send(());
                let _ = go.await;
            }
        }
        .boxed()
    });
    (hook, loaded_rx, go_tx)
}

#[tokio::test]
async fn hits_after_the_first_read_and_reports_unknown_ids() {
    let db = TestDb::new().await;
    let cache = redis_cache(&redis_url(), &prefix()).await;
    let cat = catalog(&db, &cache, no_invalidator());
    let a = insert_product(&db, "A-1", 249).await;
    let unknown = uuid::Uuid::now_v7();

    let first = cat.get_products(&[a, unknown, a]).await.unwrap();
    assert_eq!(first.products.len(), 1, "duplicates once");
    assert_eq!(first.products[0].price_minor, 249);
    assert_eq!(first.not_found, vec![unknown]);
    assert_eq!(cat.stats.pg_loads.load(Ordering::SeqCst), 2);

    let second = cat.get_products(&[a]).await.unwrap();
    assert_eq!(second.products, first.products);
    assert_eq!(
        cat.stats.hits.load(Ordering::SeqCst),
        1,
        "served from Redis"
    );
    assert_eq!(cat.stats.pg_loads.load(Ordering::SeqCst), 2, "no new load");
    let raw = cache.get_many(&[a]).await.unwrap();
    assert!(
        matches!(&raw[0], Some(Entry::Value { revision, .. }) if *revision == revision_of(&db, a).await)
    );
}

async fn revision_of(db: &TestDb, id: uuid::Uuid) -> i64 {
    revision(db, id).await
}

/// The classic stale set: the reader loads revision 1, the writer commits revision 2 and
/// invalidates, then the reader writes revision 1 into the cache. The conditional fill must
/// refuse it, and the next read must see revision 2.
#[tokio::test]
async fn the_stale_set_race_is_refused() {
    let db = TestDb::new().await;
    let cache = redis_cache(&redis_url(), &prefix()).await;
    let (hook, loaded, go) = pause_once();
    let cat = catalog(
        &db,
        &cache,
        ReaderOptions {
            after_load: Some(hook),
            ..no_invalidator()
        },
    );
    let id = insert_product(&db, "RACE-1", 100).await;
    let rev1 = revision(&db, id).await;

    let reader = {
        let cat = cat.clone();
        tokio::spawn(async move { cat.get_products(&[id]).await.unwrap() })
    };
    loaded.await.unwrap(); // the reader holds revision 1, not yet written to Redis

    change_price(&db, id, 200).await;
    let rev2 = revision(&db, id).await;
    assert!(rev2 > rev1);
    // the guaranteed path: the trigger's row, applied by the invalidator
    assert_eq!(pending_invalidations(&db).await, 1);
    assert_eq!(invalidator::run_pass(&cat, 100).await.unwrap(), 1);
    assert_eq!(pending_invalidations(&db).await, 0);

    go.send(()).unwrap();
    let stale_read = reader.await.unwrap();
    assert_eq!(
        stale_read.products[0].price_minor, 100,
        "the paused read began before the commit"
    );
    assert_eq!(
        cat.stats.fills_refused.load(Ordering::SeqCst),
        1,
        "Redis refused the stale fill"
    );
    let raw = cache.get_many(&[id]).await.unwrap();
    assert_eq!(raw[0], Some(Entry::Tombstone { revision: rev2 }));

    let fresh = cat.get_products(&[id]).await.unwrap();
    assert_eq!(fresh.products[0].price_minor, 200);
    assert_eq!(fresh.products[0].revision, rev2);
    let raw = cache.get_many(&[id]).await.unwrap();
    assert!(matches!(&raw[0], Some(Entry::Value { revision, .. }) if *revision == rev2));
}

/// Concurrent misses on one key: one Postgres load, everybody gets the product.
#[tokio::test]
async fn concurrent_misses_load_once() {
    let db = TestDb::new().await;
    let cache = redis_cache(&redis_url(), &prefix()).await;
    let (hook, loaded, go) = pause_once();
    let cat = catalog(
        &db,
        &cache,
        ReaderOptions {
            after_load: Some(hook),
            ..no_invalidator()
        },
    );
    let id = insert_product(&db, "HOT-1", 999).await;

    let leader = {
        let cat = cat.clone();
        tokio::spawn(async move { cat.get_products(&[id]).await.unwrap() })
    };
    loaded.await.unwrap();
    let followers: Vec<_> = (0..31)
        .map(|_| {
            let cat = cat.clone();
            tokio::spawn(async move { cat.get_products(&[id]).await.unwrap() })
        })
        .collect();
    eventually("31 followers waiting", Duration::from_secs(10), || {
        let n = cat.stats.followers_waiting.load(Ordering::SeqCst);
        async move { (n == 31).then_some(()) }
    })
    .await;
    go.send(()).unwrap();
    assert_eq!(leader.await.unwrap().products[0].price_minor, 999);
    for f in followers {
        assert_eq!(f.await.unwrap().products[0].price_minor, 999);
    }
    assert_eq!(
        cat.stats.pg_loads.load(Ordering::SeqCst),
        1,
        "one Postgres load for 32 concurrent misses"
    );
}

/// Staleness bound, normal operation: a change committed without the write path's prompt
/// invalidation (a worker moving the status) reaches readers through the trigger's row and
/// the invalidator within the bound stated in docs/decisions.md (1 s here; measured ms).
#[tokio::test]
async fn a_change_reaches_cached_readers_within_the_stated_bound() {
    let db = TestDb::new().await;
    let cache = redis_cache(&redis_url(), &prefix()).await;
    let cat = catalog(
        &db,
        &cache,
        ReaderOptions {
            invalidator_in_process: true,
            ..no_invalidator()
        },
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(invalidator::run(
        cat.clone(),
        rvc_store::pg_config(&db.url).unwrap(),
        invalidator::InvalidatorConfig::default(),
        stop.clone(),
    ));
    let id = insert_product(&db, "STAT-1", 500).await;
    // trusted once the invalidator drained; then a read fills the cache
    eventually("cache trusted", Duration::from_secs(10), || {
        let t = cat.cache_trusted();
        async move { t.then_some(()) }
    })
    .await;
    cat.get_products(&[id]).await.unwrap();
    cat.get_products(&[id]).await.unwrap();
    assert!(cat.stats.hits.load(Ordering::SeqCst) >= 1, "cached");

    let mut worst = Duration::ZERO;
    for status in ["images_stored", "vectorized", "indexed"] {
        let c = db.pool.get().await.unwrap();
        c.execute(
            "UPDATE products SET status = $2, updated_at = now() WHERE id = $1",
            &[&id, &status],
        )
        .await
        .unwrap();
        let committed = Instant::now();
        eventually("the new status", Duration::from_secs(5), || {
            let cat = cat.clone();
            async move {
                let p = cat.get_products(&[id]).await.unwrap();
                (p.products[0].status.as_str() == status).then_some(())
            }
        })
        .await;
        worst = worst.max(committed.elapsed());
    }
    eprintln!("worst commit-to-visible: {worst:?}");
    assert!(
        worst < Duration::from_secs(1),
        "stated bound is 1 s with the invalidator running; saw {worst:?}"
    );
    stop.cancel();
    task.await.unwrap();
}

/// Redis killed while a reader is between its Postgres read and its fill, a change committed
/// while it is down, then Redis restarted (empty) on the same port: no read fails, reads
/// fall back to Postgres (metric), and the cache refills with the current revision.
#[tokio::test]
async fn redis_killed_mid_load_and_restarted() {
    let db = TestDb::new().await;
    let mut redis = OwnRedis::start().await;
    let port = redis.port;
    let cache = redis_cache(&redis.url(), "rvc:").await;
    let (hook, loaded, go) = pause_once();
    let cat = catalog(
        &db,
        &cache,
        ReaderOptions {
            after_load: Some(hook),
            invalidator_in_process: true,
            fill_max_age: Duration::from_secs(30),
        },
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(invalidator::run(
        cat.clone(),
        rvc_store::pg_config(&db.url).unwrap(),
        invalidator::InvalidatorConfig {
            poll_interval: Duration::from_millis(100),
            ..Default::default()
        },
        stop.clone(),
    ));
    let id = insert_product(&db, "KILL-1", 300).await;
    eventually("cache trusted", Duration::from_secs(10), || {
        let t = cat.cache_trusted();
        async move { t.then_some(()) }
    })
    .await;

    let reader = {
        let cat = cat.clone();
        tokio::spawn(async move { cat.get_products(&[id]).await })
    };
    loaded.await.unwrap();
    redis.kill();
    go.send(()).unwrap();
    let r = reader.await.unwrap().expect("no error to the caller");
    assert_eq!(r.products[0].price_minor, 300);

    // Redis down: reads still answer, from Postgres, and see new commits
    change_price(&db, id, 350).await;
    for _ in 0..5 {
        let r = cat
            .get_products(&[id])
            .await
            .expect("no error while Redis is down");
        assert_eq!(r.products[0].price_minor, 350);
    }
    assert!(
        cat.stats.fallbacks.load(Ordering::SeqCst) >= 5,
        "fallbacks counted"
    );
    assert!(
        pending_invalidations(&db).await >= 1,
        "kept until Redis acknowledges"
    );

    let _redis2 = OwnRedis::start_on(port).await;
    let rev = revision(&db, id).await;
    eventually("the cache refilled", Duration::from_secs(15), || {
        let (cat, cache) = (cat.clone(), cache.clone());
        async move {
            let r = cat.get_products(&[id]).await.ok()?;
            assert_eq!(r.products[0].price_minor, 350);
            let raw = cache.get_many(&[id]).await.ok()?;
            matches!(&raw[0], Some(Entry::Value { revision, .. }) if *revision == rev).then_some(())
        }
    })
    .await;
    assert_eq!(
        pending_invalidations(&db).await,
        0,
        "queue drained after reconnect"
    );
    let hits_before = cat.stats.hits.load(Ordering::SeqCst);
    cat.get_products(&[id]).await.unwrap();
    assert_eq!(cat.stats.hits.load(Ordering::SeqCst), hits_before + 1);
    stop.cancel();
    task.await.unwrap();
}

/// A flushed Redis is a cold cache, not an error.
#[tokio::test]
async fn a_flushed_redis_refills() {
    let db = TestDb::new().await;
    let redis = OwnRedis::start().await;
    let cache = redis_cache(&redis.url(), "rvc:").await;
    let cat = catalog(&db, &cache, no_invalidator());
    let id = insert_product(&db, "FLUSH-1", 10).await;
    cat.get_products(&[id]).await.unwrap();
    let st = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "FLUSHALL"])
        .output()
        .unwrap();
    assert!(st.status.success());
    assert_eq!(cache.get_many(&[id]).await.unwrap(), vec![None]);
    let r = cat.get_products(&[id]).await.unwrap();
    assert_eq!(r.products[0].price_minor, 10);
    assert!(
        cache.get_many(&[id]).await.unwrap()[0].is_some(),
        "refilled"
    );
}
