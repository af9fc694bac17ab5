//! The worker's pipeline metrics, read back from the Prometheus text every binary serves:
//! step duration and outbox lag (the engine), and registered → indexed (the pipeline's hooks,
//! `rvc_store::pipeline`, only when `indexed` is committed).
//! Each test runs in its own process under nextest, so the global recorder is this test's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rvc_domain::OutboxKind;
use rvc_outbox::testing::{seed_rows, NoopStep};
use rvc_outbox::{Outbox, Worker, WorkerConfig};
use rvc_test_support::TestDb;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The value of the sample whose name and labels are exactly `series` (`name{a="b",...}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn run_step(db: &TestDb, kind: OutboxKind) -> usize {
    let step = Arc::new(NoopStep {
        kind,
        sleep: Duration::ZERO,
        log: false,
        owner: "t".into(),
    });
    let w = Worker::new(
        Outbox::new(db.pool.clone(), "t", rvc_store::pipeline::hooks()),
        step,
        WorkerConfig::default(),
    );
    w.run_once(&CancellationToken::new())
        .await
        .unwrap()
        .completed
}

#[tokio::test]
async fn completing_publish_observes_lag_duration_and_registered_to_indexed_per_version() {
    let metrics = rvc_runtime::health::prometheus().unwrap();
    let db = TestDb::new().await;
    let client = db.client().await;
    let products = seed_rows(&client, 3, OutboxKind::Publish).await.unwrap();
    // The publish rows were enqueued 90 s ago. A version is registered when its photos are
    // written: one product's 200 s ago, the others' 90 s ago.
    client
        .execute(
            "UPDATE outbox SET created_at = now() - interval '90 seconds'",
            &[],
        )
        .await
        .unwrap();
    for (i, p) in products.iter().enumerate() {
        let age = if i == 0 { 200.0 } else { 90.0 };
        client
            .execute(
                "INSERT INTO product_images (product_id, version, ordinal, sha256, content_type, width,
                                             height, size_bytes, object_key, created_at)
                 VALUES ($1, 1, 0, repeat('a', 64), 'image/png', 1, 1, 1, 'k',
                         now() - make_interval(secs => $2))",
                &[p, &age],
            )
            .await
            .unwrap();
    }

    assert_eq!(run_step(&db, OutboxKind::Publish).await, 3);

    let text = metrics.render();
    let latency = "rvc_product_registered_to_indexed_seconds";
    assert_eq!(
        sample(&text, &format!("{latency}_count")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("{latency}_bucket{{le=\"60\"}}")),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("{latency}_bucket{{le=\"120\"}}")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("{latency}_bucket{{le=\"300\"}}")),
        Some(3.0),
        "{text}"
    );
    let lag = "rvc_outbox_lag_seconds";
    assert_eq!(
        sample(
            &text,
            &format!("{lag}_bucket{{kind=\"publish\",le=\"60\"}}")
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("{lag}_bucket{{kind=\"publish\",le=\"120\"}}")
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "rvc_outbox_step_duration_seconds_count{kind=\"publish\",outcome=\"completed\"}"
        ),
        Some(3.0),
        "{text}"
    );
}

#[tokio::test]
async fn an_intermediate_step_observes_its_lag_but_not_registered_to_indexed() {
    let metrics = rvc_runtime::health::prometheus().unwrap();
    let db = TestDb::new().await;
    let client = db.client().await;
    seed_rows(&client, 2, OutboxKind::UploadImages)
        .await
        .unwrap();

    assert_eq!(run_step(&db, OutboxKind::UploadImages).await, 2);

    let text = metrics.render();
    assert_eq!(
        sample(
            &text,
            "rvc_outbox_lag_seconds_count{kind=\"upload_images\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert!(
        !text.contains("rvc_product_registered_to_indexed_seconds_count"),
        "{text}"
    );
}

#[tokio::test]
async fn build_info_names_the_release_and_the_model() {
    let metrics = rvc_runtime::health::prometheus().unwrap();
    rvc_runtime::health::build_info("efficientnet-lite0@abc").unwrap();
    let text = metrics.render();
    let series = format!(
        "rvc_build_info{{version=\"{}\",model_version=\"efficientnet-lite0@abc\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &series), Some(1.0), "{text}");
}
