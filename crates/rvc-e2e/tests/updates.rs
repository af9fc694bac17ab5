//! Issue 11, "a test that would have caught 1 and 2": products are POSTed and re-POSTed while
//! the workers are SIGKILLed and restarted at random and GC runs every two seconds:
//! price-only new versions (same photos), and a photo set that drops one photo and then
//! re-adds it. At the end every product is `indexed` at its latest version; the vector index
//! holds exactly the points of the latest version's photos (no missing, no stray); every
//! object the latest version references exists; Kafka holds the latest version's event for
//! each product.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rvc_e2e::stack::{Stack, COLLECTION, TOPIC, WORKERS};
use rvc_e2e::{fixture_photos, vary};
use rvc_kafka::KafkaReader;
use rvc_relay::testing::decode_all;
use rvc_vectors::{GalleryView, VectorIndex};
use uuid::Uuid;

const PRODUCTS: usize = 10;
/// v1 [A B C] → v2 price only → v3 drops C → v4 re-adds C (same bytes as v1's C).
const VERSIONS: i32 = 4;

/// A tiny deterministic PRNG (xorshift), so a failing run can be repeated.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_under_random_worker_kills_and_gc_end_with_exactly_the_latest_version_everywhere() {
    let t0 = Instant::now();
    let mut stack = Stack::start(&[
        ("OUTBOX_BATCH_SIZE", "8".to_owned()),
        ("OUTBOX_LEASE_SECS", "3".to_owned()),
        ("OUTBOX_BACKOFF_BASE_MS", "200".to_owned()),
        ("OUTBOX_BACKOFF_MAX_SECS", "2".to_owned()),
        ("OUTBOX_SHUTDOWN_GRACE_SECS", "1".to_owned()),
        ("GC_ENABLED", "true".to_owned()),
        ("GC_SCHEDULE", "*/2 * * * * *".to_owned()),
        ("GC_GRACE_SECS", "3600".to_owned()),
    ])
    .await;
    let seed = std::env::var("E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1111_u64);
    eprintln!("E2E_SEED={seed}");
    let mut rng = Rng(seed | 1);

    let fixtures = fixture_photos();
    let photos: Vec<[Vec<u8>; 3]> = (0..PRODUCTS)
        .map(|i| {
            std::array::from_fn(|k| {
                vary(
                    &fixtures[(i + k) % fixtures.len()].1,
                    (i * 3 + k) as u32 + 100,
                )
            })
        })
        .collect();
    let version_of = |v: i32, p: &[Vec<u8>; 3]| -> (String, Vec<Vec<u8>>) {
        match v {
            1 => ("1.00".into(), p.to_vec()),
            2 => ("2.00".into(), p.to_vec()),
            3 => ("2.00".into(), p[..2].to_vec()),
            _ => ("2.00".into(), p.to_vec()),
        }
    };

    // POST every version of every product, interleaved, while workers die and come back.
    let mut kills = 0;
    let mut ids: Vec<Option<Uuid>> = vec![None; PRODUCTS];
    for v in 1..=VERSIONS {
        for (i, p) in photos.iter().enumerate() {
            let (price, ph) = version_of(v, p);
            let id = stack
                .post_product(&format!("UPD-{i:02}"), &price, &ph)
                .await;
            assert!(ids[i].is_none_or(|old| old == id));
            ids[i] = Some(id);
            if rng.next(3) == 0 {
                let w = rng.next(WORKERS.len() as u64) as usize;
                stack.kill_worker(w);
                kills += 1;
                // Let the pipeline move (or stall) a little before the worker is back.
                tokio::time::sleep(Duration::from_millis(200 + rng.next(800))).await;
                stack.restart_worker(w);
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.next(1500))).await;
    }
    let ids: Vec<Uuid> = ids.into_iter().map(Option::unwrap).collect();

    // Every product indexed at its latest version.
    let deadline = Instant::now() + Duration::from_secs(240);
    let db = stack.db.pool.get().await.unwrap();
    loop {
        stack.assert_all_running();
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE status = 'indexed' AND version = $1),
                        count(*) FILTER (WHERE status = 'failed')
                 FROM products",
                &[&VERSIONS],
            )
            .await
            .unwrap();
        let (indexed, failed): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(failed, 0, "a product failed\n{}", stack.log_tails());
        if indexed == PRODUCTS as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{indexed} of {PRODUCTS} indexed at v{VERSIONS} after 240 s\n{}",
            stack.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Let GC run a few more times over the final state (it runs every 2 s).
    let gc_wait = Instant::now() + Duration::from_secs(5);
    while Instant::now() < gc_wait {
        stack.assert_all_running();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let latest: Vec<(Uuid, String, Uuid)> = db
        .query(
            "SELECT i.product_id, i.object_key, i.point_id FROM product_images i
             JOIN products p ON p.id = i.product_id AND p.version = i.version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(latest.len(), PRODUCTS * 3);

    // The vector index: exactly the latest version's points, per product.
    let index = VectorIndex::connect(&stack.qdrant_url, COLLECTION).unwrap();
    for id in &ids {
        let want: BTreeSet<Uuid> = latest
            .iter()
            .filter(|(p, ..)| p == id)
            .flat_map(|(.., pt)| GalleryView::point_ids(*pt))
            .collect();
        let got: BTreeSet<Uuid> = index
            .product_point_ids(*id)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(got, want, "points of product {id}");
    }
    assert_eq!(
        index.count(None).await.unwrap() as usize,
        PRODUCTS * 3 * GalleryView::ALL.len()
    );

    // Object storage: every object the latest version references exists.
    let store = stack.object_store().await;
    for (id, key, _) in &latest {
        assert!(
            store.head(key).await.unwrap().is_some(),
            "object {key} of product {id} (latest version) is gone"
        );
    }

    // Kafka: the latest version's event for each product.
    let reader = KafkaReader::connect(stack.kafka.brokers(), Default::default())
        .await
        .unwrap();
    let events = decode_all(&reader.fetch_all(TOPIC).await.unwrap()).unwrap();
    let mut highest: HashMap<String, i64> = HashMap::new();
    for e in &events {
        let h = highest.entry(e.product_id.clone()).or_default();
        *h = (*h).max(e.version);
    }
    for id in &ids {
        assert_eq!(
            highest.get(&id.to_string()).copied(),
            Some(i64::from(VERSIONS)),
            "latest event of product {id}"
        );
    }
    eprintln!(
        "updates e2e: {PRODUCTS} products x {VERSIONS} versions, {kills} worker kills, {} events, {:?}",
        events.len(),
        t0.elapsed()
    );
}
