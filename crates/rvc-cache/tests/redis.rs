//! The Lua scripts against the real Redis (REDIS_URL, default redis://127.0.0.1:6379), each
//! test under its own key prefix.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use rvc_cache::{CacheConfig, Entry, Fill, ProductCache, RedisCache};
use std::time::Duration;
use uuid::Uuid;

async fn cache() -> RedisCache {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let mut cfg = CacheConfig::new(url);
    cfg.prefix = format!("rvc-test-{}:", Uuid::new_v4().simple());
    RedisCache::connect(cfg, Duration::from_secs(5))
        .await
        .unwrap()
}

fn fill(id: Uuid, revision: i64, v: &str) -> Fill {
    Fill {
        id,
        revision,
        value: v.to_owned(),
    }
}

#[tokio::test]
async fn fills_never_go_back_in_revision() {
    let c = cache().await;
    let id = Uuid::now_v7();
    assert_eq!(c.fill_many(&[fill(id, 2, "{\"p\":2}")]).await.unwrap(), 1);
    assert_eq!(
        c.fill_many(&[fill(id, 1, "{\"p\":1}")]).await.unwrap(),
        0,
        "older refused"
    );
    assert_eq!(
        c.fill_many(&[fill(id, 2, "{\"p\":2}")]).await.unwrap(),
        0,
        "same kept"
    );
    assert_eq!(
        c.fill_many(&[fill(id, 3, "{\"p\":3}")]).await.unwrap(),
        1,
        "newer wins"
    );
    assert_eq!(
        c.get_many(&[id]).await.unwrap(),
        vec![Some(Entry::Value {
            revision: 3,
            value: "{\"p\":3}".into()
        })]
    );
}

#[tokio::test]
async fn a_tombstone_blocks_older_fills_and_admits_its_own_revision() {
    let c = cache().await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    c.fill_many(&[fill(a, 1, "{}x")]).await.unwrap();
    c.invalidate_many(&[(a, 2), (b, 5)]).await.unwrap();
    assert_eq!(
        c.get_many(&[a, b]).await.unwrap(),
        vec![
            Some(Entry::Tombstone { revision: 2 }),
            Some(Entry::Tombstone { revision: 5 })
        ]
    );
    // the stale set: a reader that loaded revision 1 before the change
    assert_eq!(c.fill_many(&[fill(a, 1, "{\"old\":1}")]).await.unwrap(), 0);
    // a reader that loaded the committed revision fills
    assert_eq!(
        c.fill_many(&[fill(a, 2, "{\"new\":1}"), fill(b, 4, "{}")])
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        &c.get_many(&[a]).await.unwrap()[0],
        Some(Entry::Value { revision: 2, .. })
    ));
    // an invalidation older than the stored value is a no-op
    c.invalidate_many(&[(a, 1)]).await.unwrap();
    assert!(matches!(
        &c.get_many(&[a]).await.unwrap()[0],
        Some(Entry::Value { revision: 2, .. })
    ));
}

#[tokio::test]
async fn values_and_tombstones_expire() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let mut cfg = CacheConfig::new(url);
    cfg.prefix = format!("rvc-test-{}:", Uuid::new_v4().simple());
    cfg.value_ttl = Duration::from_millis(200);
    cfg.tombstone_ttl = Duration::from_millis(200);
    let c = RedisCache::connect(cfg, Duration::from_secs(5))
        .await
        .unwrap();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    c.fill_many(&[fill(a, 1, "{}")]).await.unwrap();
    c.invalidate_many(&[(b, 1)]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if c.get_many(&[a, b]).await.unwrap() == vec![None, None] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "entries did not expire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
