//! The whole path to `indexed` with every real binary: 50 products with 2-3 real photos each
//! POSTed over HTTP, then checked on every public surface (Postgres, Kafka, the vector index,
//! the bucket) and one event decoded by `protoc`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rvc_e2e::stack::{Stack, COLLECTION, TOPIC};
use rvc_e2e::{fixture_photos, repo_root, vary};
use rvc_kafka::KafkaReader;
use rvc_proto::events::product_change_event::Operation;
use rvc_relay::testing::{check_delivery, decode_all};
use rvc_vectors::VectorIndex;
use uuid::Uuid;

const PRODUCTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_products_reach_indexed_and_every_surface_agrees() {
    let t0 = Instant::now();
    let mut stack = Stack::start(&[("OUTBOX_BATCH_SIZE", "16".to_owned())]).await;
    let started = t0.elapsed();

    // 50 products, 2 or 3 photos each: variations of the real fixture photos.
    let fixtures = fixture_photos();
    assert!(fixtures.len() >= 3);
    let forms: Vec<(String, Vec<Vec<u8>>)> = (0..PRODUCTS)
        .map(|i| {
            let n = 2 + i % 2;
            let photos = (0..n)
                .map(|k| vary(&fixtures[(i + k) % fixtures.len()].1, (i * 3 + k) as u32))
                .collect();
            (format!("E2E-{i:03}"), photos)
        })
        .collect();
    let photos_total: usize = forms.iter().map(|(_, p)| p.len()).sum();

    let t_post = Instant::now();
    let ids: Vec<Uuid> = futures::stream::iter(forms.iter().enumerate())
        .map(|(i, (sku, photos))| {
            let stack = &stack;
            async move {
                stack
                    .post_product(sku, &format!("{}.99", i + 1), photos)
                    .await
            }
        })
        .buffered(6)
        .collect()
        .await;
    let posted = t_post.elapsed();

    // Wait until every product is indexed (or something failed).
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        stack.assert_all_running();
        let st = stack.statuses().await;
        let count = |s: &str| st.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        assert_eq!(
            count("failed"),
            0,
            "a product failed: {st:?}\n{}",
            stack.log_tails()
        );
        if count("indexed") == PRODUCTS as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all indexed after 150 s: {st:?}\n{}",
            stack.log_tails()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let indexed_after = t_post.elapsed();

    let db = stack.db.pool.get().await.unwrap();
    // --- Postgres: every product indexed, every outbox row done ---
    let open: i64 = db
        .query_one("SELECT count(*) FROM outbox WHERE state <> 'done'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "outbox rows left that are not done");
    let images: Vec<(Uuid, i32, String, Uuid)> = db
        .query(
            "SELECT i.product_id, i.version, i.object_key, i.point_id FROM product_images i
             JOIN products p ON p.id = i.product_id AND p.version = i.version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(images.len(), photos_total);

    // --- Kafka: one event per product version after dedupe, in order, decodable ---
    let reader = KafkaReader::connect(stack.kafka.brokers(), Default::default())
        .await
        .unwrap();
    let records = reader.fetch_all(TOPIC).await.unwrap();
    let events = decode_all(&records).unwrap();
    let report = check_delivery(&events);
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!(
        report.distinct_event_ids, PRODUCTS,
        "one event per product version"
    );
    let by_product: HashMap<String, &rvc_relay::testing::SeenEvent> =
        events.iter().map(|e| (e.product_id.clone(), e)).collect();
    for id in &ids {
        let e = by_product
            .get(&id.to_string())
            .unwrap_or_else(|| panic!("no event for product {id}"));
        let Some(Operation::Upsert(u)) = &e.event.operation else {
            panic!()
        };
        let mine: Vec<&(Uuid, i32, String, Uuid)> =
            images.iter().filter(|(p, ..)| p == id).collect();
        assert_eq!(
            u.images.len(),
            mine.len(),
            "product {id}: photos in the event"
        );
        for img in &u.images {
            assert!(mine.iter().any(|(_, _, key, _)| *key == img.image_key));
            let emb = img.embedding.as_ref().expect("embedding");
            assert_eq!(
                emb.vector.len(),
                1280,
                "the 1280-d EfficientNet-Lite0 embedding"
            );
            assert!(!emb.model_version.is_empty());
            let norm: f32 = emb.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!(norm > 0.0, "non-zero embedding");
        }
        assert_eq!(
            e.headers["product_id"],
            id.to_string().into_bytes(),
            "product_id header"
        );
    }

    // --- vector index: one point per gallery view of each photo ---
    let index = VectorIndex::connect(&stack.qdrant_url, COLLECTION).unwrap();
    let views = rvc_vectors::GalleryView::ALL.len();
    assert_eq!(
        index.count(None).await.unwrap() as usize,
        photos_total * views
    );
    for id in ids.iter().take(5) {
        let expect = images.iter().filter(|(p, ..)| p == id).count() * views;
        assert_eq!(index.count(Some(*id)).await.unwrap() as usize, expect);
    }

    // --- bucket: exactly the referenced objects ---
    let store = stack.object_store().await;
    let listed: BTreeSet<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let referenced: BTreeSet<String> = images.iter().map(|(_, _, k, _)| k.clone()).collect();
    assert_eq!(
        listed, referenced,
        "bucket holds exactly the referenced objects"
    );

    // --- a third-party tool reads an event: protoc --decode ---
    let sample = records.first().unwrap().value.clone().unwrap();
    let root = repo_root();
    // Google's protoc as shipped by protoc-bin-vendored, with its well-known types.
    let well_known = protoc_bin_vendored::include_path().unwrap();
    let mut protoc = Command::new(protoc_bin_vendored::protoc_bin_path().unwrap())
        .args([
            "--decode",
            "rvc.events.v1.ProductChangeEvent",
            "-I",
            "proto",
            "-I",
        ])
        .arg(&well_known)
        .arg("proto/events.proto")
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vendored protoc runs");
    protoc.stdin.take().unwrap().write_all(&sample).unwrap();
    let out = protoc.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let first = decode_all(&records[..1]).unwrap().remove(0);
    assert!(
        text.contains(&format!("event_id: \"{}\"", first.event_id)),
        "{}",
        &text[..text.len().min(600)]
    );
    assert!(
        text.contains("upsert {") && text.contains("sku: \"E2E-"),
        "{}",
        &text[..text.len().min(600)]
    );
    assert!(text.contains("model_version:"));

    eprintln!(
        "e2e: stack up in {started:?}; {PRODUCTS} products / {photos_total} photos POSTed in {posted:?}; \
         all indexed {indexed_after:?} after the first POST; {} records ({} duplicates); total {:?}",
        report.records,
        report.duplicates,
        t0.elapsed()
    );
}
