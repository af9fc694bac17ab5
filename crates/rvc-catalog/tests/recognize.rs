//! Recognition served by rvc-catalog (issue #13), against real services: Postgres, Redis, the
//! ML service in-process with the real model, and the real `rvc-vector-index` binary. Product
//! information comes through the catalog's cached reader: a price change is seen within the
//! read side's staleness bound, an archived product is never returned.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use common::recognition::{add_product, fixture, recognize, start, Env};
use common::*;
use rvc_auth::Scope;
use rvc_proto::catalog::recognition_service_client::RecognitionServiceClient;
use rvc_proto::catalog::RecognizeRequest;
use std::sync::atomic::Ordering;
use std::time::Duration;
use uuid::Uuid;

/// The read side's stated bound for changes not made through the ingest API
/// (docs/read-api.md: the invalidator reacts to NOTIFY; tested under 1 s).
const STALENESS_BOUND: Duration = Duration::from_secs(1);

async fn batch_price(env: &Env, key: &str, id: Uuid) -> i64 {
    let r: serde_json::Value = env
        .http
        .post(format!("{}/api/v1/products:batchGet", env.base))
        .bearer_auth(key)
        .json(&serde_json::json!({ "product_ids": [id] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["products"][0]["price_minor"].as_i64().unwrap()
}

fn mentions(body: &serde_json::Value, id: Uuid) -> bool {
    let id = serde_json::json!(id.to_string());
    body["objects"].as_array().unwrap().iter().any(|o| {
        o["product"]["product_id"] == id
            || o["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["product_id"] == id)
    })
}

#[tokio::test]
async fn recognition_shows_the_new_price_through_the_cache_and_never_an_archived_product() {
    let env = start().await;
    let cat_photo = fixture("cat.jpg");
    let coffee_photo = fixture("coffee.jpg");
    let cat = add_product(&env, "CAT-1", &cat_photo).await;
    let coffee = add_product(&env, "COFFEE-1", &coffee_photo).await;
    let key = env.db.api_key(&[Scope::Recognize]).await;
    let reader = env.db.api_key(&[Scope::CatalogRead]).await;

    let body = recognize(&env, &key, &cat_photo, None).await;
    let objects = body["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1, "{body:#}");
    let p = &objects[0]["product"];
    assert_eq!(p["product_id"], cat.to_string());
    assert_eq!(p["sku"], "CAT-1");
    assert_eq!(p["price"], "2.49");
    assert_eq!(p["currency"], "EUR");
    assert_eq!(p["version"], 1);
    assert_eq!(p["category"], "Snacks");
    assert!(p.get("price_minor").is_none(), "{p}");

    // the lookups went through the catalog's cache: a second recognition is served from it
    let stats = &env.svc.catalog.stats;
    let hits_before = stats.hits.load(Ordering::Relaxed);
    let again = recognize(&env, &key, &cat_photo, None).await;
    assert_eq!(again["objects"][0]["product"]["price"], "2.49");
    assert!(
        stats.hits.load(Ordering::Relaxed) > hits_before,
        "the second recognition did not read the cache"
    );

    // a new version at a new price (as the pipeline leaves it once re-indexed): seen by the
    // cached reader within the stated bound, and then by recognition
    let c = env.db.pool.get().await.unwrap();
    c.execute(
        "UPDATE products SET price_minor = 399, version = 2, updated_at = now() WHERE id = $1",
        &[&cat],
    )
    .await
    .unwrap();
    eventually("the new price in the read path", STALENESS_BOUND, || {
        let (env, reader) = (&env, &reader);
        async move { (batch_price(env, reader, cat).await == 399).then_some(()) }
    })
    .await;
    let body = recognize(&env, &key, &cat_photo, None).await;
    let p = &body["objects"][0]["product"];
    assert_eq!(p["product_id"], cat.to_string(), "{body:#}");
    assert_eq!(p["price"], "3.99", "{body:#}");
    assert_eq!(p["version"], 2, "{body:#}");

    // archived: never returned, not even as a candidate, at any threshold, on HTTP and gRPC
    c.execute(
        "UPDATE products SET archived = true, updated_at = now() WHERE id = $1",
        &[&cat],
    )
    .await
    .unwrap();
    eventually("the archive in the read path", STALENESS_BOUND, || {
        let (env, reader) = (&env, &reader);
        async move {
            let r: serde_json::Value = env
                .http
                .post(format!("{}/api/v1/products:batchGet", env.base))
                .bearer_auth(reader)
                .json(&serde_json::json!({ "product_ids": [cat] }))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (r["products"][0]["archived"] == true).then_some(())
        }
    })
    .await;
    let body = recognize(&env, &key, &cat_photo, Some("-1")).await;
    assert!(!mentions(&body, cat), "archived product returned: {body:#}");
    let mut grpc = RecognitionServiceClient::connect(format!("http://{}", env.svc.grpc_addr))
        .await
        .unwrap();
    let mut req = tonic::Request::new(RecognizeRequest {
        image: cat_photo.clone(),
        top_k: 20,
        min_score: Some(-1.0),
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let r = grpc.recognize(req).await.unwrap().into_inner();
    let cat_s = cat.to_string();
    assert!(
        r.objects.iter().all(
            |o| o.product.as_ref().is_some_and(|p| p.product_id != cat_s)
                && o.candidates.iter().all(|c| c.product_id != cat_s)
        ),
        "{r:?}"
    );
    // the other product is still recognised
    let body = recognize(&env, &key, &coffee_photo, None).await;
    assert_eq!(
        body["objects"][0]["product"]["product_id"],
        coffee.to_string(),
        "{body:#}"
    );
}

#[tokio::test]
async fn grpc_recognition_answers_with_the_recognize_scope_only() {
    let env = start().await;
    let photo = fixture("rocket.jpg");
    let rocket = add_product(&env, "ROCKET-1", &photo).await;
    let recognize_key = env.db.api_key(&[Scope::Recognize]).await;
    let read_key = env.db.api_key(&[Scope::CatalogRead]).await;
    let mut grpc = RecognitionServiceClient::connect(format!("http://{}", env.svc.grpc_addr))
        .await
        .unwrap();
    let call = |key: Option<&str>| {
        let mut req = tonic::Request::new(RecognizeRequest {
            image: photo.clone(),
            top_k: 2,
            min_score: None,
        });
        if let Some(k) = key {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {k}").parse().unwrap());
        }
        req
    };
    let err = grpc.recognize(call(None)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let err = grpc.recognize(call(Some(&read_key))).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let r = grpc
        .recognize(call(Some(&recognize_key)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.objects.len(), 1, "{r:?}");
    let o = &r.objects[0];
    let p = o.product.as_ref().unwrap();
    assert_eq!(p.product_id, rocket.to_string());
    assert_eq!(p.sku, "ROCKET-1");
    assert_eq!(p.price, "2.49");
    assert_eq!(p.price_minor, 249);
    assert!(o.r#box.is_some() && o.score > 0.5 && o.candidates.len() <= 2);

    // the same over HTTP: a read key is refused, the recognize key answered
    let form = || {
        reqwest::multipart::Form::new().part(
            "image",
            reqwest::multipart::Part::bytes(photo.clone()).file_name("p.jpg"),
        )
    };
    let r = env
        .http
        .post(format!("{}/api/v1/recognize", env.base))
        .bearer_auth(&read_key)
        .multipart(form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = recognize(&env, &recognize_key, &photo, None).await;
    assert_eq!(body["objects"][0]["product"]["sku"], "ROCKET-1", "{body:#}");
}
