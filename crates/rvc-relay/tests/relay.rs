//! The publish step against real Postgres and a real Kafka-protocol broker (tansu).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rvc_kafka::partition_for_key;
use rvc_outbox::{Outbox, Step};
use rvc_proto::events::product_change_event::Operation;
use rvc_relay::event::{header, CONTENT_TYPE};
use rvc_relay::testing::{check_delivery, seed_publish_rows, seeded_traceparent};
use rvc_relay::PublishStep;
use rvc_test_support::kafka::TestKafka;
use rvc_test_support::TestDb;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_decode_with_prost_and_carry_the_headers() {
    let (db, kafka) = tokio::join!(TestDb::new(), TestKafka::start());
    let topic = topic();
    let client = db.client().await;
    let ids = seed_publish_rows(&client, 12, 1, 3).await.unwrap();
    let step = Arc::new(PublishStep::new(
        db.pool.clone(),
        producer(&kafka, &topic).await,
        None,
    ));
    let w = worker(&db, step, config(32));
    let report = w.run_once(&CancellationToken::new()).await.unwrap();
    assert_eq!((report.claimed, report.completed), (12, 12));

    let events = read_events(&kafka, &topic).await;
    assert_eq!(events.len(), 12);
    let rows: HashMap<Uuid, (Uuid, i32)> = client
        .query(
            "SELECT product_id, event_id, product_version FROM outbox WHERE kind = 'publish'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    for e in &events {
        let pid = Uuid::parse_str(&e.product_id).unwrap();
        let (event_id, version) = rows[&pid];
        let h = |k: &str| String::from_utf8(e.headers[k].clone()).unwrap();
        assert_eq!(h(header::EVENT_ID), event_id.to_string());
        assert_eq!(
            e.event_id,
            event_id.to_string(),
            "event_id is the outbox row's id"
        );
        assert_eq!(h(header::EVENT_TYPE), "upsert");
        assert_eq!(h(header::PRODUCT_ID), pid.to_string());
        assert_eq!(h(header::PRODUCT_VERSION), version.to_string());
        assert_eq!(h(header::CONTENT_TYPE), CONTENT_TYPE);
        assert_eq!(h(header::TRACEPARENT), seeded_traceparent(pid));
        assert_eq!(
            e.partition,
            partition_for_key(pid.to_string().as_bytes(), PARTITIONS)
        );

        let Some(Operation::Upsert(u)) = &e.event.operation else {
            panic!()
        };
        assert_eq!(u.version, i64::from(version));
        assert_eq!(u.sku, format!("SKU-{pid}"));
        assert_eq!(u.category, "seeded");
        assert_eq!(u.currency, "EUR");
        assert!(u.price_minor > 100);
        assert_eq!(u.images.len(), 3);
        for (i, img) in u.images.iter().enumerate() {
            assert_eq!(img.width, 640 + i as u32, "photos in ordinal order");
            assert_eq!(img.image_key, format!("products/{pid}/{}.jpg", img.sha256));
            let emb = img.embedding.as_ref().unwrap();
            assert_eq!(emb.model_version, "seeded@1");
            Uuid::parse_str(&emb.point_id).unwrap();
            assert!(emb.vector.is_empty(), "no vector index configured");
        }
        assert!(e.event.event_timestamp.is_some());
    }
    assert_eq!(
        events
            .iter()
            .map(|e| e.product_id.clone())
            .collect::<HashSet<_>>()
            .len(),
        ids.len()
    );
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status = 'indexed'")
            .await,
        12
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'done'")
            .await,
        12
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_updated_five_times_at_once_is_published_in_version_order() {
    let (db, kafka) = tokio::join!(TestDb::new(), TestKafka::start());
    let topic = topic();
    let client = db.client().await;
    // 5 products with 5 versions each, all five publish rows pending at the same moment,
    // plus 40 single-version products.
    let hot = seed_publish_rows(&client, 5, 5, 2).await.unwrap();
    seed_publish_rows(&client, 40, 1, 1).await.unwrap();
    let step = Arc::new(PublishStep::new(
        db.pool.clone(),
        producer(&kafka, &topic).await,
        None,
    ));
    // Two claimers race for rows, as with OUTBOX_CLAIMERS=2.
    let stop = CancellationToken::new();
    let w = worker(&db, step, config(8));
    let tasks: Vec<_> = (0..2)
        .map(|_| tokio::spawn(w.clone().run(stop.clone())))
        .collect();
    wait_drained(&db, Duration::from_secs(60)).await;
    stop.cancel();
    for t in tasks {
        t.await.unwrap();
    }

    let events = read_events(&kafka, &topic).await;
    let report = check_delivery(&events);
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!(report.distinct_event_ids, 5 * 5 + 40);
    for pid in &hot {
        let mut versions: Vec<(i64, i64)> = events
            .iter()
            .filter(|e| e.product_id == pid.to_string())
            .map(|e| (e.offset, e.version))
            .collect();
        versions.sort();
        let versions: Vec<i64> = versions.into_iter().map(|(_, v)| v).collect();
        assert_eq!(versions, vec![1, 2, 3, 4, 5], "product {pid}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status = 'indexed'")
            .await,
        45
    );
}

/// The broker acknowledged the batch, then the process died before the commit: the rows
/// are claimed again and re-sent with the SAME event ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_ack_and_commit_resends_the_same_event_ids() {
    let (db, kafka) = tokio::join!(TestDb::new(), TestKafka::start());
    let topic = topic();
    let client = db.client().await;
    seed_publish_rows(&client, 30, 1, 2).await.unwrap();
    seed_publish_rows(&client, 4, 3, 1).await.unwrap();
    let step = Arc::new(PublishStep::new(
        db.pool.clone(),
        producer(&kafka, &topic).await,
        None,
    ));

    // "Crash": claim and produce a batch, never commit.
    let outbox = Outbox::new(db.pool.clone(), "doomed", rvc_store::pipeline::hooks());
    let jobs = outbox
        .claim(
            rvc_domain::OutboxKind::Publish,
            20,
            Duration::from_secs(30),
            true,
        )
        .await
        .unwrap();
    assert_eq!(jobs.len(), 20);
    let results = step.execute_batch(&jobs, 8).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let crashed: HashSet<String> = jobs.iter().map(|j| j.event_id.to_string()).collect();
    // The leases of the dead process expire.
    client
        .execute("UPDATE outbox SET next_attempt_at = now() - interval '1 second' WHERE state = 'leased'", &[])
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let task = tokio::spawn(worker(&db, step, config(16)).run(stop.clone()));
    wait_drained(&db, Duration::from_secs(60)).await;
    stop.cancel();
    task.await.unwrap();

    let events = read_events(&kafka, &topic).await;
    let report = check_delivery(&events);
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    let rows = db
        .count("SELECT count(*) FROM outbox WHERE kind = 'publish'")
        .await as usize;
    assert_eq!(rows, 30 + 4 * 3);
    assert_eq!(
        report.distinct_event_ids, rows,
        "every row's event is on the topic"
    );
    assert_eq!(report.duplicates, 20, "the 20 crashed rows went out twice");
    // every duplicate carries an event id that was already seen: the crashed batch's
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        *counts.entry(e.event_id.as_str()).or_default() += 1;
    }
    let twice: HashSet<String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| (*id).to_owned())
        .collect();
    assert_eq!(twice, crashed);
    assert!(counts.values().all(|n| *n <= 2));
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'done'")
            .await as usize,
        rows
    );
    eprintln!(
        "crash between ack and commit: {} records, {} distinct event ids, {} duplicates (all repeated ids)",
        report.records, report.distinct_event_ids, report.duplicates
    );
}

/// The broker dies for 30 s while the relay runs: the backlog grows, nothing goes dead,
/// and it drains once the broker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_for_30s_backlog_grows_then_drains_with_nothing_lost() {
    let (db, mut kafka) = tokio::join!(TestDb::new(), TestKafka::start());
    let topic = topic();
    let client = db.client().await;
    let step = Arc::new(PublishStep::new(
        db.pool.clone(),
        producer(&kafka, &topic).await,
        None,
    ));
    let stop = CancellationToken::new();
    let mut cfg = config(16);
    cfg.backoff = rvc_outbox::Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(10),
    };
    let task = tokio::spawn(worker(&db, step, cfg).run(stop.clone()));

    seed_publish_rows(&client, 10, 1, 1).await.unwrap();
    wait_drained(&db, Duration::from_secs(30)).await;

    kafka.stop();
    let down_at = Instant::now();
    let mut during: HashSet<Uuid> = HashSet::new();
    let mut max_backlog = 0;
    while down_at.elapsed() < Duration::from_secs(30) {
        during.extend(seed_publish_rows(&client, 5, 1, 1).await.unwrap());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let open = db
            .count("SELECT count(*) FROM outbox WHERE state IN ('pending', 'leased')")
            .await;
        max_backlog = max_backlog.max(open);
        assert_eq!(
            db.count("SELECT count(*) FROM outbox WHERE state = 'dead'")
                .await,
            0
        );
    }
    assert!(
        max_backlog >= 40,
        "backlog grew while the broker was down: {max_backlog}"
    );
    let retried = db
        .count("SELECT count(*) FROM outbox WHERE attempts > 1")
        .await;
    assert!(retried > 0, "rows were retried during the outage");

    // tansu keeps topics in memory: the restarted broker is empty, the relay re-creates the
    // topic (auto_create_topic) and so does this line, whichever comes first.
    kafka.restart().await;
    producer(&kafka, &topic).await;
    let back_at = Instant::now();
    wait_drained(&db, Duration::from_secs(60)).await;
    let drain = back_at.elapsed();
    stop.cancel();
    task.await.unwrap();

    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'dead'")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM products WHERE status <> 'indexed'")
            .await,
        0
    );
    let events = read_events(&kafka, &topic).await;
    let report = check_delivery(&events);
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    let published: HashSet<Uuid> = events
        .iter()
        .map(|e| Uuid::parse_str(&e.product_id).unwrap())
        .collect();
    assert!(
        during.is_subset(&published),
        "{} of the {} products registered during the outage are missing from the topic",
        during.difference(&published).count(),
        during.len()
    );
    eprintln!(
        "broker down 30 s: backlog peaked at {max_backlog} rows, drained {:?} after restart; {} records, {} duplicates",
        drain, report.records, report.duplicates
    );
}
