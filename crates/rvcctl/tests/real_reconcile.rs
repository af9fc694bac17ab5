//! `rvcctl reconcile` against the real S3-protocol server (s3s-fs) and the real vector index
//! server (qdrant-edge behind Qdrant's gRPC API), through the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{photo, product, rvcctl};
use rvc_test_support::{s3::TestS3, TestDb};
use std::collections::HashMap;
use std::process::Command;
use uuid::Uuid;

fn rvcctl_env(url: &str, env: &[(&str, String)], args: &[&str]) -> common::Run {
    let out = Command::new(env!("CARGO_BIN_EXE_rvcctl"))
        .env("DATABASE_URL", url)
        .env("USER", "ci-user")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .output()
        .unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_drift_in_the_bucket_and_the_index_and_repairs_what_it_can() {
    let db = TestDb::new().await;
    let s3 = TestS3::start().await;
    let c = db.client().await;

    // The vector index, in-process on a free port, with one point for the healthy product.
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let qdrant_url = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(rvc_vector_server::serve(
        listener,
        rvc_vector_server::Config {
            data_dir: dir.path().to_path_buf(),
        },
        stop.clone().cancelled_owned(),
    ));
    let index = rvc_vectors::VectorIndex::connect(&qdrant_url, "product_images").unwrap();
    index.ensure_collection(4).await.unwrap();

    let mut cfg = rvc_objects::ObjectStoreConfig::dir(dir.path().join("unused"));
    cfg.s3_endpoint = Some(s3.endpoint.clone());
    cfg.s3_bucket = s3.bucket.clone();
    cfg.s3_access_key_id = Some(s3.access_key.clone().into());
    cfg.s3_secret_access_key = Some(s3.secret_key.clone().into());
    let store = rvc_objects::from_config(&cfg).await.unwrap();
    let put = |key: &'static str| {
        let store = store.clone();
        async move {
            store
                .put(
                    key,
                    bytes::Bytes::from_static(b"jpeg"),
                    "image/jpeg",
                    &Default::default(),
                )
                .await
                .unwrap()
        }
    };

    let (p_ok, p_gone) = (Uuid::new_v4(), Uuid::new_v4());
    let ok = product(&c, "OK", 1, "indexed").await;
    photo(&c, ok, 1, 0, Some("products/ok/0.jpg"), Some(p_ok)).await;
    put("products/ok/0.jpg").await;
    // Both of its views, as the vectorizer writes them.
    index
        .upsert(
            rvc_vectors::GalleryView::point_ids(p_ok)
                .into_iter()
                .map(|id| rvc_vectors::PointRecord {
                    id,
                    vector: vec![0.5, 0.5, 0.5, 0.5],
                    payload: rvc_vectors::PointPayload {
                        product_id: ok,
                        sku: "OK".into(),
                        product_version: 1,
                        image_key: "products/ok/0.jpg".into(),
                        model_version: "m".into(),
                        created_at: chrono::Utc::now(),
                    },
                })
                .collect(),
        )
        .await
        .unwrap();
    // Drift: LOST's object and point are gone; an object nobody references sits in the bucket.
    let lost = product(&c, "LOST", 1, "indexed").await;
    photo(&c, lost, 1, 0, Some("products/lost/0.jpg"), Some(p_gone)).await;
    put("products/orphan/9.jpg").await;

    let mut env = s3.env();
    env.push(("QDRANT_URL", qdrant_url.clone()));
    env.push(("QDRANT_COLLECTION", "product_images".into()));
    let out = rvcctl_env(&db.url, &env, &["reconcile", "-o", "json"]);
    assert_eq!(out.code, 1, "drift is exit 1: {out:?}");
    let json = out.json();
    let checks: HashMap<String, usize> =
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .fold(HashMap::new(), |mut m, f| {
                *m.entry(f["check"].as_str().unwrap().to_owned())
                    .or_default() += 1;
                m
            });
    assert_eq!(checks.get("object_missing"), Some(&1), "{json}");
    assert_eq!(checks.get("object_unreferenced"), Some(&1), "{json}");
    assert_eq!(checks.get("point_missing"), Some(&1), "{json}");
    assert!(
        json["checks_skipped"].as_array().unwrap().is_empty(),
        "{json}"
    );

    let repaired = rvcctl_env(&db.url, &env, &["reconcile", "--repair", "-o", "json"]);
    let enq = repaired.json()["enqueued"].as_array().unwrap().clone();
    assert_eq!(enq.len(), 1, "{repaired:?}\n{}", repaired.json());
    assert_eq!(enq[0]["kind"], "vectorize");
    let again = rvcctl_env(&db.url, &env, &["reconcile", "--repair", "-o", "json"]);
    assert!(
        again.json()["enqueued"].as_array().unwrap().is_empty(),
        "idempotent repair"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE kind = 'vectorize' AND state = 'pending'")
            .await,
        1
    );
    // With the external checks off, Postgres alone shows no drift (the repair is queued).
    let pg_only = rvcctl(&db.url, &["reconcile", "--no-objects", "--no-vectors"]);
    assert_eq!(pg_only.code, 0, "{pg_only:?}");
    stop.cancel();
    let _ = server.await;
}
