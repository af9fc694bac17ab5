//! `rvcctl reconcile` against a real Postgres: planted drift is found, `--repair` fixes it
//! once and only once; the object-store and vector-index checks through their traits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use async_trait::async_trait;
use common::{drain, photo, product, row, rvcctl, status_of};
use rvc_domain::OutboxKind;
use rvc_test_support::TestDb;
use rvc_vectors::GalleryView;
use rvcctl::json::RepairState;
use rvcctl::{CheckError, ObjectStore, Reconciler, VectorIndex};
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;

fn findings_of<'a>(j: &'a serde_json::Value, check: &str) -> Vec<&'a serde_json::Value> {
    j["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check)
        .collect()
}

#[tokio::test]
async fn reconcile_finds_planted_drift_and_repairs_it_once() {
    let db = TestDb::new().await;
    let c = db.client().await;
    // healthy: indexed, photo stored and vectorized
    let ok = product(&c, "OK", 1, "indexed").await;
    photo(
        &c,
        ok,
        1,
        0,
        Some("products/ok/0.jpg"),
        Some(Uuid::new_v4()),
    )
    .await;
    row(&c, ok, 1, OutboxKind::Publish, "done").await;
    // indexed but a photo was never uploaded
    let no_key = product(&c, "NO-KEY", 1, "indexed").await;
    photo(&c, no_key, 1, 0, None, None).await;
    // indexed but a photo has no vector point
    let no_point = product(&c, "NO-POINT", 1, "indexed").await;
    photo(&c, no_point, 1, 0, Some("products/np/0.jpg"), None).await;
    // images stored, yet nothing queued to vectorize it
    let stuck = product(&c, "STUCK", 1, "images_stored").await;
    photo(&c, stuck, 1, 0, Some("products/st/0.jpg"), None).await;
    row(&c, stuck, 1, OutboxKind::UploadImages, "done").await;
    // failed with a dead row that an SRE then cancelled
    let cancelled = product(&c, "CANCELLED", 1, "failed").await;
    photo(&c, cancelled, 1, 0, Some("products/ca/0.jpg"), None).await;
    row(&c, cancelled, 1, OutboxKind::UploadImages, "done").await;
    let dead = row(&c, cancelled, 1, OutboxKind::Vectorize, "dead").await;
    // failed with a dead row still waiting for an SRE: not drift
    let waiting = product(&c, "WAITING", 1, "failed").await;
    row(&c, waiting, 1, OutboxKind::UploadImages, "dead").await;
    // archived products are ignored
    let archived = product(&c, "ARCHIVED", 1, "registered").await;
    c.execute(
        "UPDATE products SET archived = TRUE WHERE id = $1",
        &[&archived],
    )
    .await
    .unwrap();

    let out = rvcctl(
        &db.url,
        &["outbox", "cancel", &dead.to_string(), "--reason", "test"],
    );
    assert_eq!(out.code, 0, "{out:?}");

    // report only: drift -> exit 1, nothing enqueued
    let rows_before = db.count("SELECT count(*) FROM outbox").await;
    let out = rvcctl(
        &db.url,
        &["reconcile", "--no-objects", "--no-vectors", "-o", "json"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("reconcile --repair"), "{out:?}");
    let j = out.json();
    assert_eq!(j["repair"], false);
    assert_eq!(
        j["checks_run"],
        serde_json::json!([
            "photo_missing_object_key",
            "indexed_photo_missing_point",
            "product_stuck"
        ])
    );
    let skipped: Vec<&str> = j["checks_skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        skipped,
        ["object_missing", "object_unreferenced", "point_missing"]
    );
    let f = findings_of(&j, "photo_missing_object_key");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["sku"], "NO-KEY");
    assert_eq!(f[0]["fix_step"], "upload_images");
    assert_eq!(f[0]["repair"], "not_repaired");
    let f = findings_of(&j, "indexed_photo_missing_point");
    // NO-KEY's photo has no point either
    let skus: HashSet<&str> = f.iter().map(|f| f["sku"].as_str().unwrap()).collect();
    assert_eq!(skus, HashSet::from(["NO-KEY", "NO-POINT"]));
    let f = findings_of(&j, "product_stuck");
    let stuck_skus: Vec<(&str, &str)> = f
        .iter()
        .map(|f| (f["sku"].as_str().unwrap(), f["fix_step"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stuck_skus,
        [("CANCELLED", "vectorize"), ("STUCK", "vectorize")]
    );
    assert_eq!(j["findings"].as_array().unwrap().len(), 5);
    assert!(j["enqueued"].as_array().unwrap().is_empty());
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, rows_before);

    // table output
    let out = rvcctl(&db.url, &["reconcile", "--no-objects", "--no-vectors"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("skipped:    object_missing"), "{out:?}");
    assert!(out.stdout.contains("product_stuck"), "{out:?}");

    // repair: one row per product version, the earliest fixing step
    let out = rvcctl(
        &db.url,
        &[
            "reconcile",
            "--no-objects",
            "--no-vectors",
            "--repair",
            "--actor",
            "carol",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    let mut enq: Vec<(String, String)> = j["enqueued"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let pid: Uuid = e["product_id"].as_str().unwrap().parse().unwrap();
            let sku = [
                (no_key, "NO-KEY"),
                (no_point, "NO-POINT"),
                (stuck, "STUCK"),
                (cancelled, "CANCELLED"),
            ]
            .iter()
            .find(|(id, _)| *id == pid)
            .unwrap()
            .1;
            (sku.to_owned(), e["kind"].as_str().unwrap().to_owned())
        })
        .collect();
    enq.sort();
    assert_eq!(
        enq,
        [
            ("CANCELLED".into(), "vectorize".into()),
            ("NO-KEY".into(), "upload_images".into()),
            ("NO-POINT".into(), "vectorize".into()),
            ("STUCK".into(), "vectorize".into()),
        ]
    );
    for f in j["findings"].as_array().unwrap() {
        assert_eq!(f["repair"], "enqueued", "{f}");
        assert!(f["repair_event_id"].is_string());
    }
    assert_eq!(status_of(&c, cancelled).await, "images_stored");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM outbox_audit WHERE action = 'reconcile_enqueue' AND actor = 'carol'"
        )
        .await,
        4
    );
    let pending = db
        .count("SELECT count(*) FROM outbox WHERE state = 'pending'")
        .await;
    assert_eq!(pending, 4);

    // a second repair enqueues nothing new
    let out = rvcctl(
        &db.url,
        &[
            "reconcile",
            "--no-objects",
            "--no-vectors",
            "--repair",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let j = out.json();
    assert!(j["enqueued"].as_array().unwrap().is_empty(), "{out:?}");
    assert!(findings_of(&j, "product_stuck").is_empty());
    for f in j["findings"].as_array().unwrap() {
        assert_eq!(f["repair"], "already_queued", "{f}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE state = 'pending'")
            .await,
        pending
    );
    // never two pending rows of the same kind for one product version
    assert_eq!(
        db.count(
            "SELECT count(*) FROM (SELECT 1 FROM outbox WHERE state IN ('pending','leased')
             GROUP BY product_id, product_version, kind HAVING count(*) > 1) d"
        )
        .await,
        0
    );

    // the workers run the repairs: the stuck products reach indexed
    drain(&db.pool).await;
    assert_eq!(status_of(&c, stuck).await, "indexed");
    assert_eq!(status_of(&c, cancelled).await, "indexed");
    assert_eq!(status_of(&c, ok).await, "indexed");
    assert_eq!(status_of(&c, waiting).await, "failed");
}

#[tokio::test]
async fn no_drift_is_exit_0() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let ok = product(&c, "OK", 1, "indexed").await;
    photo(
        &c,
        ok,
        1,
        0,
        Some("products/ok/0.jpg"),
        Some(Uuid::new_v4()),
    )
    .await;
    let out = rvcctl(&db.url, &["reconcile", "--no-objects", "--no-vectors"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("no drift found"), "{out:?}");
}

struct FakeObjects(HashSet<String>);

#[async_trait]
impl ObjectStore for FakeObjects {
    async fn missing(&self, keys: &[String]) -> Result<Vec<String>, CheckError> {
        Ok(keys
            .iter()
            .filter(|k| !self.0.contains(*k))
            .cloned()
            .collect())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, CheckError> {
        Ok(self
            .0
            .iter()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

struct FakeVectors(HashSet<Uuid>);

#[async_trait]
impl VectorIndex for FakeVectors {
    async fn missing_points(&self, ids: &[Uuid]) -> Result<Vec<Uuid>, CheckError> {
        Ok(ids
            .iter()
            .filter(|i| !self.0.contains(i))
            .copied()
            .collect())
    }
}

struct DownObjects;

#[async_trait]
impl ObjectStore for DownObjects {
    async fn missing(&self, _keys: &[String]) -> Result<Vec<String>, CheckError> {
        Err(CheckError {
            check: "object_missing",
            message: "connection refused".into(),
        })
    }
    async fn list(&self, _prefix: &str) -> Result<Vec<String>, CheckError> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn object_store_and_vector_index_checks_plug_in_behind_traits() {
    let db = TestDb::new().await;
    let c = db.client().await;
    let (p_ok, p_gone) = (Uuid::new_v4(), Uuid::new_v4());
    let ok = product(&c, "OK", 1, "indexed").await;
    photo(&c, ok, 1, 0, Some("products/ok/0.jpg"), Some(p_ok)).await;
    // its object vanished from the bucket and its point from the index
    let lost = product(&c, "LOST", 1, "indexed").await;
    photo(&c, lost, 1, 0, Some("products/lost/0.jpg"), Some(p_gone)).await;
    // its whole view is indexed, its centre view is not
    let p_half = Uuid::new_v4();
    let half = product(&c, "HALF", 1, "indexed").await;
    photo(&c, half, 1, 0, Some("products/half/0.jpg"), Some(p_half)).await;

    let objects = FakeObjects(HashSet::from([
        "products/ok/0.jpg".to_owned(),
        "products/half/0.jpg".to_owned(),
        "products/orphan/9.jpg".to_owned(),
    ]));
    let mut present: HashSet<Uuid> = GalleryView::point_ids(p_ok).into_iter().collect();
    present.insert(p_half);
    let vectors = FakeVectors(present);
    let out = Reconciler::new(db.pool.clone())
        .with_objects(Arc::new(objects))
        .with_vectors(Arc::new(vectors))
        .run(true, "tester")
        .await
        .unwrap();
    assert!(out.checks_skipped.is_empty());
    let by = |check: &str| -> Vec<&rvcctl::json::Finding> {
        out.findings.iter().filter(|f| f.check == check).collect()
    };
    let missing = by("object_missing");
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].sku.as_deref(), Some("LOST"));
    assert_eq!(missing[0].fix_step, None);
    assert_eq!(missing[0].repair, RepairState::None);
    assert!(missing[0].detail.contains("re-submit"));
    let orphan = by("object_unreferenced");
    assert_eq!(orphan.len(), 1);
    assert_eq!(
        orphan[0].object_key.as_deref(),
        Some("products/orphan/9.jpg")
    );
    let mut points = by("point_missing");
    points.sort_by_key(|f| f.sku.clone());
    assert_eq!(points.len(), 2, "{points:?}");
    assert_eq!(points[0].sku.as_deref(), Some("HALF"));
    let centre = GalleryView::Centre.point_id(p_half);
    assert_eq!(points[0].point_id, Some(centre));
    assert_eq!(
        points[0].detail,
        format!("vector point {centre} (centre view) not in the index")
    );
    assert_eq!(points[1].sku.as_deref(), Some("LOST"));
    assert_eq!(points[1].point_id, Some(p_gone));
    assert!(
        points[1].detail.contains("(whole view), "),
        "{}",
        points[1].detail
    );
    assert!(points.iter().all(|p| p.repair == RepairState::Enqueued));
    let mut enqueued: Vec<Uuid> = out.enqueued.iter().map(|e| e.product_id).collect();
    enqueued.sort();
    let mut want = vec![lost, half];
    want.sort();
    assert_eq!(enqueued, want);
    assert!(out.enqueued.iter().all(|e| e.kind == OutboxKind::Vectorize));

    // an external system that is down fails the run with a clear error
    let err = Reconciler::new(db.pool.clone())
        .with_objects(Arc::new(DownObjects))
        .run(false, "tester")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("connection refused"), "{err}");
}
