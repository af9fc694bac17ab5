//! `DELETE /api/v1/products/{id}` and `DELETE /api/v1/products?sku=`: archive in one
//! transaction, idempotent, 404 for unknown products, 400 for bad input, `catalog:write` only,
//! all documented in the OpenAPI document; a re-POST un-archives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rvc_auth::Scope;
use serde_json::Value;

async fn json(resp: reqwest::Response, status: u16, content_type: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(resp.headers()["content-type"], content_type);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn delete_archives_once_answers_the_same_again_and_404s_the_unknown() {
    let app = TestApp::spawn().await;
    let ack = json(
        app.post(FormSpec::valid("DEL-1").form()).await,
        202,
        "application/json",
    )
    .await;
    let id = ack["product_id"].as_str().unwrap().to_owned();
    let outbox_before = app.db.count("SELECT count(*) FROM outbox").await;

    let first = json(
        app.http
            .delete(app.url(&format!("/api/v1/products/{id}")))
            .send()
            .await
            .unwrap(),
        200,
        "application/json",
    )
    .await;
    assert_eq!(first["version"], 2);
    assert_eq!(first["archived"], true);
    assert_eq!(first["sku"], "DEL-1");
    assert!(first["archived_at"].is_string());
    assert_eq!(
        app.db.count("SELECT count(*) FROM outbox").await,
        outbox_before + 1,
        "one outbox row"
    );

    // Again, by SKU: the same body, nothing written.
    let again = json(
        app.http
            .delete(app.url("/api/v1/products?sku=DEL-1"))
            .send()
            .await
            .unwrap(),
        200,
        "application/json",
    )
    .await;
    assert_eq!(again, first);
    assert_eq!(
        app.db.count("SELECT count(*) FROM outbox").await,
        outbox_before + 1
    );

    // The product reads as archived.
    let got = json(
        app.http
            .get(app.url(&format!("/api/v1/products/{id}")))
            .send()
            .await
            .unwrap(),
        200,
        "application/json",
    )
    .await;
    assert_eq!(
        (got["archived"].clone(), got["version"].clone()),
        (Value::Bool(true), 2.into())
    );

    // Unknown id or SKU: 404 problem+json; bad input: 400.
    for (path, status) in [
        (format!("/api/v1/products/{}", uuid::Uuid::now_v7()), 404),
        ("/api/v1/products?sku=NOPE".to_owned(), 404),
        ("/api/v1/products/not-a-uuid".to_owned(), 400),
        ("/api/v1/products".to_owned(), 400),
        ("/api/v1/products?sku=a%20b".to_owned(), 400),
    ] {
        let p = json(
            app.http.delete(app.url(&path)).send().await.unwrap(),
            status,
            "application/problem+json",
        )
        .await;
        assert_eq!(p["status"], status, "{path}: {p}");
    }
    assert_eq!(
        app.db.count("SELECT count(*) FROM outbox").await,
        outbox_before + 1
    );

    // A re-POST of the same form un-archives it as version 3.
    let back = json(
        app.post(FormSpec::valid("DEL-1").form()).await,
        202,
        "application/json",
    )
    .await;
    assert_eq!(back["version"], 3);
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM products WHERE NOT archived AND archived_at IS NULL")
            .await,
        1
    );
}

#[tokio::test]
async fn only_catalog_write_may_archive_and_the_routes_are_documented() {
    let app = TestApp::spawn().await;
    let ack = json(
        app.post(FormSpec::valid("DEL-2").form()).await,
        202,
        "application/json",
    )
    .await;
    let id = ack["product_id"].as_str().unwrap().to_owned();
    let read = client_with_key(&app.db.api_key(&[Scope::CatalogRead]).await);
    let path = app.url(&format!("/api/v1/products/{id}"));
    json(
        app.anon.delete(&path).send().await.unwrap(),
        401,
        "application/problem+json",
    )
    .await;
    json(
        read.delete(&path).send().await.unwrap(),
        403,
        "application/problem+json",
    )
    .await;
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM products WHERE archived")
            .await,
        0
    );
    let write = client_with_key(&app.db.api_key(&[Scope::CatalogWrite]).await);
    json(
        write.delete(&path).send().await.unwrap(),
        200,
        "application/json",
    )
    .await;

    let doc: Value = app
        .anon
        .get(app.url("/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in ["/api/v1/products", "/api/v1/products/{id}"] {
        let op = &doc["paths"][p]["delete"];
        assert_eq!(op["security"][0]["api_key"][0], "catalog:write", "{p}");
        for status in ["200", "400", "401", "403", "404", "429", "503"] {
            assert!(
                op["responses"][status].is_object(),
                "{p} documents {status}"
            );
        }
    }
    assert!(doc["components"]["schemas"]["ArchiveAck"].is_object());
}
