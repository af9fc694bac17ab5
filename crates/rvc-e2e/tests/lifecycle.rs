//! Issue 14 with every real binary: archive (DELETE) end to end, archive while each worker is
//! SIGKILLed, and edits that keep photos (no ML call, no PUT) or change some of them (only the
//! new ones are embedded). The ML calls are counted by the ML service itself
//! (`ml_images_total` on its `/metrics`), objects are checked on the S3 server, points on the
//! vector index, events on the Kafka topic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rvc_e2e::stack::{Stack, COLLECTION, TOPIC, WORKERS};
use rvc_e2e::{fixture_photos, vary};
use rvc_kafka::KafkaReader;
use rvc_proto::events::product_change_event::Operation;
use rvc_relay::testing::{decode_all, SeenEvent};
use rvc_vectors::{GalleryView, VectorIndex};
use uuid::Uuid;

async fn delete(stack: &Stack, path: &str) -> (u16, Option<String>, serde_json::Value) {
    let resp = stack
        .http
        .delete(format!("{}{path}", stack.api_base))
        .send()
        .await
        .expect("DELETE reaches the API");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, ct, resp.json().await.expect("JSON body"))
}

async fn events(stack: &Stack) -> Vec<SeenEvent> {
    let reader = KafkaReader::connect(stack.kafka.brokers(), Default::default())
        .await
        .unwrap();
    let mut events = decode_all(&reader.fetch_all(TOPIC).await.unwrap()).unwrap();
    events.sort_by_key(|e| (e.partition, e.offset));
    events
}

/// The events of `id` in topic order (one partition per product): (version, event_type).
fn product_events(events: &[SeenEvent], id: Uuid) -> Vec<(i64, String)> {
    let mut seen = BTreeSet::new();
    events
        .iter()
        .filter(|e| e.product_id == id.to_string())
        // at-least-once: a re-delivery repeats an event id; keep its first occurrence
        .filter(|e| seen.insert(e.event_id.clone()))
        .map(|e| {
            (
                e.version,
                String::from_utf8_lossy(&e.headers["event_type"]).into_owned(),
            )
        })
        .collect()
}

/// Object keys of a product's current version, and their last-modified times.
async fn objects(stack: &Stack, id: Uuid, version: i32) -> Vec<(String, DateTime<Utc>)> {
    let c = stack.db.pool.get().await.unwrap();
    let keys: Vec<String> = c
        .query(
            "SELECT object_key FROM product_images WHERE product_id = $1 AND version = $2
             ORDER BY ordinal",
            &[&id, &version],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("object_key"))
        .collect();
    let store = stack.object_store().await;
    let mut out = Vec::new();
    for k in keys {
        let meta = store
            .head(&k)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("object {k} of {id} v{version} is missing"));
        out.push((k, meta.last_modified));
    }
    out
}

fn photos(seed: u32, n: usize) -> Vec<Vec<u8>> {
    let fixtures = fixture_photos();
    (0..n)
        .map(|k| {
            vary(
                &fixtures[(seed as usize + k) % fixtures.len()].1,
                seed * 10 + k as u32,
            )
        })
        .collect()
}

/// Archive retention of the first test: long enough for the archive pipeline and a few GC
/// passes on a loaded machine, short enough to watch the photos being collected.
const RETENTION_SECS: u64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_end_to_end_then_unarchive_within_retention_and_gc_after_it() {
    let mut stack = Stack::start(&[
        ("GC_ENABLED", "true".to_owned()),
        ("GC_SCHEDULE", "* * * * * *".to_owned()),
        ("GC_GRACE_SECS", "3600".to_owned()),
        ("ARCHIVE_RETENTION_SECS", RETENTION_SECS.to_string()),
    ])
    .await;
    let index = VectorIndex::connect(&stack.qdrant_url, COLLECTION).unwrap();
    let a_photos = photos(1, 2);
    let a = stack.post_product("ARC-A", "3.50", &a_photos).await;
    let b = stack.post_product("ARC-B", "4.50", &photos(5, 2)).await;
    stack.wait_indexed(&[(a, 1), (b, 1)], 120).await;
    assert_eq!(
        index.count(Some(a)).await.unwrap(),
        4,
        "two views of two photos"
    );
    let a_objects = objects(&stack, a, 1).await;
    let b_objects = objects(&stack, b, 1).await;

    // DELETE by id and by SKU: 200, the archive version.
    let (status, _, body) = delete(&stack, &format!("/api/v1/products/{a}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2);
    assert_eq!(body["archived"], true);
    let archived_at = Instant::now();
    let (status, _, body_b) = delete(&stack, "/api/v1/products?sku=ARC-B").await;
    assert_eq!(status, 200, "{body_b}");
    assert_eq!(body_b["product_id"], b.to_string());
    // Again: the same answer, no new version.
    let (status, _, again) = delete(&stack, "/api/v1/products?sku=ARC-A").await;
    assert_eq!((status, &again), (200, &body));
    // Unknown: 404 problem+json.
    let (status, ct, problem) =
        delete(&stack, &format!("/api/v1/products/{}", Uuid::now_v7())).await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(ct.as_deref(), Some("application/problem+json"));

    // The read side reports it archived at once; recognition leaves it out.
    let c = stack.db.pool.get().await.unwrap();
    let read = rvc_store::catalog::products_by_ids(&**c, &[a])
        .await
        .unwrap();
    assert!(read[0].archived && read[0].version == 2);
    let got: serde_json::Value = stack
        .http
        .get(format!("{}/api/v1/products/{a}", stack.api_base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["archived"], true);

    // The archive runs through the pipeline: points gone, a delete event with the version.
    stack.wait_indexed(&[(a, 2), (b, 2)], 120).await;
    assert!(rvc_store::recognizable::recognizable(&**c, &[a, b])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(index.count(Some(a)).await.unwrap(), 0);
    assert_eq!(index.count(Some(b)).await.unwrap(), 0);
    let ev = events(&stack).await;
    for id in [a, b] {
        assert_eq!(
            product_events(&ev, id),
            vec![(1, "upsert".to_owned()), (2, "delete".to_owned())],
            "events of {id}"
        );
    }
    let del = ev
        .iter()
        .find(|e| e.product_id == a.to_string() && e.version == 2)
        .unwrap();
    let Some(Operation::Delete(d)) = &del.event.operation else {
        panic!("not a delete: {:?}", del.event)
    };
    assert_eq!((d.sku.as_str(), d.version), ("ARC-A", 2));
    assert!(d.archived_at.is_some());

    // Within the retention GC (every second) keeps the archived photos.
    let gc_passes = Instant::now() + Duration::from_secs(3);
    while Instant::now() < gc_passes {
        stack.assert_all_running();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        archived_at.elapsed() < Duration::from_secs(RETENTION_SECS),
        "the machine is too slow for this test's {RETENTION_SECS} s retention"
    );
    let store = stack.object_store().await;
    for (k, _) in a_objects.iter().chain(&b_objects) {
        assert!(
            store.head(k).await.unwrap().is_some(),
            "{k} collected within the retention"
        );
    }

    // Un-archive A by POSTing it again: a new version, its photos re-used (no PUT).
    assert_eq!(stack.post_product("ARC-A", "3.50", &a_photos).await, a);
    stack.wait_indexed(&[(a, 3)], 120).await;
    assert_eq!(
        stack.product_state(a).await,
        (3, "indexed".to_owned(), false)
    );
    assert_eq!(
        objects(&stack, a, 3).await,
        a_objects,
        "objects were re-used"
    );
    assert_eq!(
        index.count(Some(a)).await.unwrap(),
        4,
        "two views of two photos"
    );
    let ev = events(&stack).await;
    assert_eq!(
        product_events(&ev, a),
        vec![
            (1, "upsert".to_owned()),
            (2, "delete".to_owned()),
            (3, "upsert".to_owned())
        ]
    );

    // After the retention, GC collects B's photos (and keeps A's, which are live again).
    let deadline = Instant::now() + Duration::from_secs(RETENTION_SECS + 60);
    loop {
        stack.assert_all_running();
        let mut left = 0;
        for (k, _) in &b_objects {
            left += usize::from(store.head(k).await.unwrap().is_some());
        }
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} photos of the archived product still stored\n{}",
            stack.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(objects(&stack, a, 3).await, a_objects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_with_each_worker_sigkilled_midway_leaves_nothing_missing() {
    let mut stack = Stack::start(&[
        ("OUTBOX_LEASE_SECS", "3".to_owned()),
        ("OUTBOX_BACKOFF_BASE_MS", "200".to_owned()),
        ("OUTBOX_BACKOFF_MAX_SECS", "2".to_owned()),
    ])
    .await;
    let index = VectorIndex::connect(&stack.qdrant_url, COLLECTION).unwrap();
    let per_round = 3;
    let mut ids = Vec::new();
    for i in 0..WORKERS.len() * per_round {
        let sku = format!("KILL-{i:02}");
        ids.push(stack.post_product(&sku, "1.00", &photos(i as u32, 2)).await);
    }
    let v1: Vec<(Uuid, i32)> = ids.iter().map(|id| (*id, 1)).collect();
    stack.wait_indexed(&v1, 180).await;

    // Round w: archive 3 products, SIGKILL worker w while their archive is in its step or
    // queued for it, start it again.
    for (w, chunk) in ids.chunks(per_round).enumerate() {
        for id in chunk {
            let (status, _, body) = delete(&stack, &format!("/api/v1/products/{id}")).await;
            assert_eq!(status, 200, "{body}");
        }
        tokio::time::sleep(Duration::from_millis(50 * w as u64)).await;
        stack.kill_worker(w);
        tokio::time::sleep(Duration::from_millis(700)).await;
        stack.restart_worker(w);
    }
    let v2: Vec<(Uuid, i32)> = ids.iter().map(|id| (*id, 2)).collect();
    stack.wait_indexed(&v2, 180).await;
    let ev = events(&stack).await;
    for id in &ids {
        assert!(stack.product_state(*id).await.2, "{id} archived");
        assert_eq!(index.count(Some(*id)).await.unwrap(), 0, "points of {id}");
        assert_eq!(
            product_events(&ev, *id),
            vec![(1, "upsert".to_owned()), (2, "delete".to_owned())],
            "events of {id}"
        );
    }
    assert_eq!(index.count(None).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_only_edit_makes_no_ml_call_and_a_partial_photo_change_embeds_only_new_photos() {
    let mut stack = Stack::start(&[]).await;
    let index = VectorIndex::connect(&stack.qdrant_url, COLLECTION).unwrap();
    let p = photos(3, 3);
    let (x, y, z) = (p[0].clone(), p[1].clone(), p[2].clone());
    let id = stack
        .post_product("EDIT-1", "1.00", &[x.clone(), y.clone()])
        .await;
    stack.wait_indexed(&[(id, 1)], 120).await;
    let embedded_v1 = stack.ml_embeddings().await;
    assert!(embedded_v1 >= 2, "the ML service counted {embedded_v1}");
    let objects_v1 = objects(&stack, id, 1).await;
    let points_v1 = index.product_point_ids(id).await.unwrap();

    // Price only: same photos → no ML call, no PUT, same points now at version 2.
    stack
        .post_product("EDIT-1", "1.50", &[x.clone(), y.clone()])
        .await;
    stack.wait_indexed(&[(id, 2)], 120).await;
    assert_eq!(
        stack.ml_embeddings().await,
        embedded_v1,
        "ML calls for a price change"
    );
    assert_eq!(
        objects(&stack, id, 2).await,
        objects_v1,
        "objects were PUT again"
    );
    assert_eq!(index.product_point_ids(id).await.unwrap(), points_v1);
    let ev = events(&stack).await;
    assert_eq!(
        product_events(&ev, id),
        vec![(1, "upsert".to_owned()), (2, "upsert".to_owned())],
        "v2's event follows v1's"
    );
    let v2 = ev
        .iter()
        .find(|e| e.product_id == id.to_string() && e.version == 2)
        .unwrap();
    let Some(Operation::Upsert(u)) = &v2.event.operation else {
        panic!("not an upsert")
    };
    assert_eq!(u.price_minor, 150);
    // The points carry the new version (the payload was rewritten) and their vectors.
    let vector = u.images[0].embedding.as_ref().unwrap().vector.clone();
    assert!(!vector.is_empty());
    let hits = index.search(vector, 10).await.unwrap();
    let mine: Vec<_> = hits.iter().filter(|h| h.payload.product_id == id).collect();
    assert_eq!(
        mine.len(),
        2 * GalleryView::ALL.len(),
        "two views of two photos"
    );
    assert!(
        mine.iter().all(|h| h.payload.product_version == 2),
        "{mine:?}"
    );

    // Drop y, add z: only z is embedded; the points are exactly x and z.
    stack
        .post_product("EDIT-1", "1.50", &[x.clone(), z.clone()])
        .await;
    stack.wait_indexed(&[(id, 3)], 120).await;
    assert_eq!(
        stack.ml_embeddings().await,
        embedded_v1 + 1,
        "one new photo, one ML call"
    );
    let c = stack.db.pool.get().await.unwrap();
    let want: Vec<Uuid> = {
        let mut v: Vec<Uuid> = c
            .query(
                "SELECT point_id FROM product_images WHERE product_id = $1 AND version = 3",
                &[&id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("point_id"))
            .flat_map(GalleryView::point_ids)
            .collect();
        v.sort();
        v
    };
    assert_eq!(index.product_point_ids(id).await.unwrap(), want);
    // x's points (both views) are kept, y's are gone.
    assert_eq!(
        want.iter().filter(|p| points_v1.contains(p)).count(),
        GalleryView::ALL.len(),
        "v1 {points_v1:?}, v3 {want:?}"
    );
    let ev = events(&stack).await;
    assert_eq!(
        product_events(&ev, id)
            .iter()
            .map(|(v, _)| *v)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
}
