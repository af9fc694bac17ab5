//! Issue 14, model migration, with every real binary: the catalog is indexed with model A;
//! `rvcctl model migrate` builds model B (a second real ML service: the same network under
//! another `ML_MODEL_VERSION`, so its points are told apart) in its own collection through
//! `embed` outbox rows; the vectorizer is SIGKILLed half-way and restarted; a product ingested
//! during the migration gets both models' points; the switch happens by itself when B is
//! complete, rvc-catalog follows it, and A's collection is dropped after the grace period.
//! Meanwhile a client recognises a catalog photo over and over through rvc-catalog: it never
//! gets an empty answer or an error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rvc_e2e::stack::{Stack, COLLECTION};
use rvc_e2e::{binary, fixture_photos, recognize, vary, Proc};
use rvc_test_support::net::free_port;
use rvc_vectors::{point_id, GalleryView, VectorIndex};
use uuid::Uuid;

const MODEL_B: &str = "e2e-model-b@1";
const COLLECTION_B: &str = "e2e_product_images_b";
const VECTORIZER: usize = 1;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits for `cond` (`wait_until`) or panics with `what` and the logs after `secs`.
async fn wait_for<F, Fut>(stack: &Stack, secs: u64, what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        rvc_test_support::wait_until(Duration::from_secs(secs), cond).await,
        "{what}: not within {secs} s\n{}",
        stack.log_tails()
    );
}

async fn count(stack: &Stack, sql: &str) -> i64 {
    stack.db.count(sql).await
}

/// A photo of a current version: sha256, recorded point id, recorded model version.
type PhotoRecord = (String, Option<Uuid>, String);

/// (product, version) of every product, and its current photos.
async fn current_photos(stack: &Stack) -> Vec<(Uuid, i32, Vec<PhotoRecord>)> {
    let c = stack.db.pool.get().await.unwrap();
    let rows = c
        .query(
            "SELECT p.id, p.version, i.sha256, i.point_id, i.model_version
             FROM products p JOIN product_images i ON i.product_id = p.id AND i.version = p.version
             ORDER BY p.id, i.ordinal",
            &[],
        )
        .await
        .unwrap();
    let mut out: Vec<(Uuid, i32, Vec<PhotoRecord>)> = Vec::new();
    for r in rows {
        let (id, v): (Uuid, i32) = (r.get("id"), r.get("version"));
        let photo = (
            r.get("sha256"),
            r.get("point_id"),
            r.get::<_, Option<String>>("model_version")
                .unwrap_or_default(),
        );
        match out.last_mut() {
            Some((last, _, photos)) if *last == id => photos.push(photo),
            _ => out.push((id, v, vec![photo])),
        }
    }
    out
}

fn rvcctl(stack: &Stack, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(binary("rvcctl"))
        .args(args)
        .env("DATABASE_URL", &stack.db.url)
        .current_dir(stack.dir.path())
        .output()
        .expect("rvcctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_migration_killed_half_way_resumes_and_switches_with_no_empty_answer() {
    let mut stack = Stack::start(&[
        // slow enough to be killed half-way, fast enough for a test
        ("EMBED_MAX_PHOTOS_PER_SEC", "3".into()),
        ("EMBED_BATCH_SIZE", "2".into()),
        ("EMBED_CONCURRENCY", "1".into()),
        ("MODEL_CHECK_INTERVAL_MS", "200".into()),
        ("MODEL_RETIRE_GRACE_SECS", "3".into()),
        ("OUTBOX_BACKOFF_BASE_MS", "200".into()),
        ("OUTBOX_BACKOFF_MAX_SECS", "2".into()),
    ])
    .await;

    // Model B: a second ML service, the same network under another version label.
    let model = rvc_test_support::paths::model_path();
    let ml_b_port = free_port();
    let mut ml_b = Proc::start(
        "rvc-ml-service",
        stack.dir.path(),
        &[
            ("ML_ADDR", format!("127.0.0.1:{ml_b_port}")),
            ("ML_MODEL_PATH", model.display().to_string()),
            ("ML_MODEL_VERSION", MODEL_B.to_owned()),
        ],
    );
    // The read side, following the models table every 200 ms.
    ml_b.wait_port(addr(ml_b_port), Duration::from_secs(60))
        .await;
    let (mut catalog, catalog_base) = stack
        .start_catalog(&[
            ("RECOGNITION_MODEL_REFRESH_MS", "200".into()),
            ("RECOGNITION_MIN_SCORE", "0.5".into()),
        ])
        .await;

    // Six products, two photos each, indexed with model A.
    let fixtures = fixture_photos();
    let mut gallery = Vec::new();
    for i in 0..6u32 {
        let photos: Vec<Vec<u8>> = (0..2)
            .map(|k| {
                vary(
                    &fixtures[(i as usize + k) % fixtures.len()].1,
                    i * 10 + k as u32,
                )
            })
            .collect();
        let id = stack
            .post_product(&format!("MIG-{i}"), "1.99", &photos)
            .await;
        gallery.push((id, photos));
    }
    wait_for(&stack, 120, "the catalog indexed with model A", || async {
        count(
            &stack,
            "SELECT count(*) FROM products WHERE status = 'indexed'",
        )
        .await
            == 6
    })
    .await;
    let model_a: String = {
        let c = stack.db.pool.get().await.unwrap();
        c.query_one(
            "SELECT model_version FROM recognition_models WHERE state = 'active'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    };
    assert_ne!(model_a, MODEL_B);

    // A checkout recognises product 0's photo over and over, through the whole migration.
    let (query_product, query_photo) = (gallery[0].0, gallery[0].1[0].clone());
    let first = recognize(&stack.http, &catalog_base, &query_photo)
        .await
        .expect("recognition answers before the migration");
    assert_eq!(first["model_version"], model_a.as_str(), "{first}");
    let stop = Arc::new(AtomicBool::new(false));
    let checkout = {
        let (stop, http, base, photo) = (
            stop.clone(),
            stack.http.clone(),
            catalog_base.clone(),
            query_photo.clone(),
        );
        tokio::spawn(async move {
            let mut answers: Vec<String> = Vec::new();
            let mut failures: Vec<String> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match recognize(&http, &base, &photo).await {
                    Ok(body) => {
                        let found = body["objects"].as_array().is_some_and(|o| {
                            o.iter()
                                .any(|x| x["product"]["product_id"] == query_product.to_string())
                        });
                        if !found {
                            failures.push(format!("product not recognised: {body}"));
                        }
                        answers.push(body["model_version"].as_str().unwrap_or("").to_owned());
                    }
                    Err(e) => failures.push(e),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (answers, failures)
        })
    };

    // Start the migration; refused while the ML service serves another model.
    let ml_b_url = format!("http://127.0.0.1:{ml_b_port}");
    let (code, _, err) = rvcctl(
        &stack,
        &[
            "model",
            "migrate",
            "--to",
            "not-this-model",
            "--ml-url",
            &ml_b_url,
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(MODEL_B), "{err}");
    let (code, out, err) = rvcctl(
        &stack,
        &[
            "model",
            "migrate",
            "--to",
            MODEL_B,
            "--ml-url",
            &ml_b_url,
            "--collection",
            COLLECTION_B,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("6 products to embed"), "{out}");

    // Half-way: some embed rows done, some not; SIGKILL the vectorizer.
    wait_for(&stack, 60, "a third of the embed rows done", || async {
        let done = count(
            &stack,
            "SELECT count(*) FROM outbox WHERE kind = 'embed' AND state = 'done'",
        )
        .await;
        done >= 2
    })
    .await;
    let remaining = count(
        &stack,
        "SELECT count(*) FROM outbox WHERE kind = 'embed' AND state <> 'done'",
    )
    .await;
    assert!(
        remaining > 0,
        "the migration finished before the kill: slow it down"
    );
    stack.kill_worker(VECTORIZER);
    assert_eq!(
        count(
            &stack,
            "SELECT count(*) FROM recognition_models WHERE state = 'building'"
        )
        .await,
        1
    );
    // A product ingested while the migration runs (and its vectorizer is down).
    let late_photos = vec![vary(&fixtures[4].1, 99)];
    let late = stack.post_product("MIG-LATE", "2.49", &late_photos).await;
    stack.restart_worker(VECTORIZER);

    // The switch happens by itself once every product has model B's points.
    wait_for(&stack, 120, "model B active", || async {
        count(
            &stack,
            &format!(
                "SELECT count(*) FROM recognition_models WHERE model_version = '{MODEL_B}' AND state = 'active'"
            ),
        )
        .await
            == 1
    })
    .await;
    wait_for(&stack, 60, "MIG-LATE indexed", || async {
        count(
            &stack,
            &format!("SELECT count(*) FROM products WHERE id = '{late}' AND status = 'indexed'"),
        )
        .await
            == 1
    })
    .await;
    // The catalog answers from B within its refresh interval; A is dropped after the grace.
    wait_for(&stack, 30, "model A's collection dropped", || async {
        count(
            &stack,
            &format!(
                "SELECT count(*) FROM recognition_models WHERE model_version = '{model_a}' AND state = 'retired' AND dropped_at IS NOT NULL"
            ),
        )
        .await
            == 1
    })
    .await;
    // a few more answers after the drop
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (answers, failures) = checkout.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} recognitions failed or were empty: {:?}\n{}",
        failures.len(),
        answers.len() + failures.len(),
        &failures[..failures.len().min(5)],
        stack.log_tails()
    );
    assert!(answers.iter().any(|m| m == &model_a), "{answers:?}");
    assert_eq!(
        answers.last().map(String::as_str),
        Some(MODEL_B),
        "{answers:?}"
    );
    let switches = answers.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(switches, 1, "answers go from A to B once: {answers:?}");

    // Every product (the late one too) has exactly B's points for its current photos, and
    // Postgres records them; A's collection is gone.
    let index_b = VectorIndex::connect(&stack.qdrant_url, COLLECTION_B).unwrap();
    let products = current_photos(&stack).await;
    assert_eq!(products.len(), 7);
    for (id, _version, photos) in &products {
        let want: BTreeSet<Uuid> = photos
            .iter()
            .flat_map(|(sha, _, _)| GalleryView::point_ids(point_id(*id, sha, MODEL_B)))
            .collect();
        let have: BTreeSet<Uuid> = index_b
            .product_point_ids(*id)
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(have, want, "points of {id} in model B's collection");
        for (sha, recorded, mv) in photos {
            assert_eq!(mv, MODEL_B, "{id}");
            assert_eq!(*recorded, Some(point_id(*id, sha, MODEL_B)), "{id}");
        }
    }
    let index_a = VectorIndex::connect(&stack.qdrant_url, COLLECTION).unwrap();
    assert!(!index_a.collection_exists().await.unwrap());
    assert_eq!(
        count(&stack, "SELECT count(*) FROM model_points").await,
        0,
        "the staged points moved to the photos"
    );

    // Recognition finds the product ingested during the migration, with model B.
    let body = recognize(&stack.http, &catalog_base, &late_photos[0])
        .await
        .unwrap();
    assert_eq!(body["model_version"], MODEL_B, "{body}");
    assert!(
        body["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["product"]["product_id"] == late.to_string()),
        "{body}"
    );

    // The operator's view.
    let (code, out, err) = rvcctl(&stack, &["model", "status", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let models: serde_json::Value = serde_json::from_str(&out).unwrap();
    let b = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model_version"] == MODEL_B)
        .unwrap();
    assert_eq!(b["state"], "active");
    assert_eq!(b["done"], b["total"]);
    assert!(b["total"].as_i64().unwrap() >= 6, "{b}");
    let (code, out, _) = rvcctl(&stack, &["model", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("(dropped)"), "{out}");
    stack.assert_all_running();
    ml_b.assert_running();
    catalog.assert_running();
}
