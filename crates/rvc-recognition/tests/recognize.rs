//! Recognition against real services: Postgres (products, `PgProductLookup`), the ML service
//! in-process with the real model, and the real `rvc-vector-index` binary; the HTTP handler
//! through actix's test service, the gRPC handler through its trait.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix_web::{test, App};
use rvc_proto::catalog::recognition_service_server::RecognitionService;
use rvc_recognition::grpc::RecognitionGrpc;
use rvc_recognition::http::{configure, HttpLimits, RecognizeState};
use rvc_recognition::{BoxF, MlRegionsClient, PgProductLookup, Recognizer, RecognizerConfig};
use rvc_test_support::recognition::RecognitionBackends;
use rvc_test_support::TestDb;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../rvc-ml-service/tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

struct Product {
    id: Uuid,
    sku: String,
    photo: Vec<u8>,
}

struct Env {
    db: TestDb,
    recognizer: Arc<Recognizer>,
    backends: RecognitionBackends,
}

async fn start() -> Env {
    let db = TestDb::new().await;
    let backends = RecognitionBackends::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_rvc-recognition-eval")),
        "products",
    )
    .await;
    let recognizer = Arc::new(Recognizer::new(
        MlRegionsClient::new(&backends.ml_url, Duration::from_secs(120)).unwrap(),
        backends.index.clone(),
        Arc::new(PgProductLookup::new(db.pool.clone())),
        RecognizerConfig::default(),
    ));
    Env {
        db,
        recognizer,
        backends,
    }
}

/// Registers a product as the pipeline leaves it (`indexed`, price 2.49 EUR) and indexes its
/// photo as the gallery does (whole photo + centre view).
async fn add_product(env: &Env, sku: &str, photo: Vec<u8>) -> Product {
    let id = Uuid::now_v7();
    let c = env.db.client().await;
    c.execute(
        "INSERT INTO categories (name) VALUES ('Test') ON CONFLICT (name) DO NOTHING",
        &[],
    )
    .await
    .unwrap();
    c.execute(
        "INSERT INTO products (id, sku, name, category_id, price_minor, currency, version, content_hash, status)
         SELECT $1, $2, $3, id, 249, 'EUR', 1, 'h', 'indexed' FROM categories WHERE name = 'Test'",
        &[&id, &sku, &format!("Name of {sku}")],
    )
    .await
    .unwrap();
    env.backends.index_photo(id, sku, &photo).await;
    Product {
        id,
        sku: sku.to_owned(),
        photo,
    }
}

/// A 1024×768 checkout scene with the photos pasted at `boxes`.
fn scene(photos: &[(&[u8], BoxF)]) -> Vec<u8> {
    let photos: Vec<_> = photos
        .iter()
        .map(|(p, b)| (*p, (b.x, b.y, b.width, b.height)))
        .collect();
    rvc_test_support::images::checkout_scene(&photos)
}

/// A box square in pixels: `side` of the 768-px short side, at (x, y) fractions.
fn square(x: f32, y: f32, side: f32) -> BoxF {
    let (x, y, width, height) = rvc_test_support::images::scene_square(x, y, side);
    BoxF {
        x,
        y,
        width,
        height,
    }
}

fn multipart(image: Option<(&[u8], &str)>, fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "rvc-test-boundary-7MA4YWxk";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    if let Some((bytes, ct)) = image {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"p\"\r\nContent-Type: {ct}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post(
    env: &Env,
    image: Option<(&[u8], &str)>,
    fields: &[(&str, &str)],
) -> (u16, String, serde_json::Value) {
    let app = test::init_service(App::new().configure(configure(RecognizeState {
        recognizer: env.recognizer.clone(),
        limits: HttpLimits::default(),
    })))
    .await;
    let (ct, body) = multipart(image, fields);
    let req = test::TestRequest::post()
        .uri("/api/v1/recognize")
        .insert_header(("content-type", ct))
        .set_payload(body)
        .to_request();
    let resp = test::call_service(&app, req).await;
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = test::read_body(resp).await;
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, ctype, json)
}

fn iou(a: &serde_json::Value, b: &BoxF) -> f32 {
    let a = BoxF {
        x: a["x"].as_f64().unwrap() as f32,
        y: a["y"].as_f64().unwrap() as f32,
        width: a["width"].as_f64().unwrap() as f32,
        height: a["height"].as_f64().unwrap() as f32,
    };
    a.iou(b)
}

#[actix_web::test]
async fn scene_with_two_products_returns_both_with_boxes_prices_and_ordered_scores() {
    let env = start().await;
    let cat = add_product(&env, "CAT-1", fixture("cat.jpg")).await;
    let rocket = add_product(&env, "ROCKET-1", fixture("rocket.jpg")).await;
    let _coffee = add_product(&env, "COFFEE-1", fixture("coffee.jpg")).await;
    let b_cat = square(0.05, 0.1, 0.45);
    let b_rocket = square(0.55, 0.4, 0.45);
    let photo = scene(&[(&cat.photo, b_cat), (&rocket.photo, b_rocket)]);

    let (status, ct, body) = post(&env, Some((&photo, "image/jpeg")), &[("top_k", "3")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(ct.starts_with("application/json"), "{ct}");
    assert!(body["model_version"]
        .as_str()
        .unwrap()
        .starts_with("efficientnet-lite0"));
    let objects = body["objects"].as_array().unwrap();
    let skus: Vec<&str> = objects
        .iter()
        .map(|o| o["product"]["sku"].as_str().unwrap())
        .collect();
    assert!(
        skus.contains(&"CAT-1") && skus.contains(&"ROCKET-1"),
        "{body:#}"
    );
    assert!(
        !skus.contains(&"COFFEE-1"),
        "coffee is not in the photo: {body:#}"
    );
    let mut uniq = skus.clone();
    uniq.sort_unstable();
    uniq.dedup();
    assert_eq!(uniq.len(), skus.len(), "each product at most once");
    let scores: Vec<f64> = objects
        .iter()
        .map(|o| o["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    for o in objects {
        let p = &o["product"];
        let expected = match p["sku"].as_str().unwrap() {
            "CAT-1" => (&cat, b_cat),
            "ROCKET-1" => (&rocket, b_rocket),
            other => panic!("unexpected {other}"),
        };
        assert_eq!(p["product_id"], expected.0.id.to_string());
        assert!(
            iou(&o["box"], &expected.1) >= 0.3,
            "box of {}: {o:#}",
            expected.0.sku
        );
        assert_eq!(p["price"], "2.49");
        assert_eq!(p["currency"], "EUR");
        assert_eq!(p["version"], 1);
        assert_eq!(p["category"], "Test");
        assert_eq!(p["name"], format!("Name of {}", expected.0.sku));
        let cands = o["candidates"].as_array().unwrap();
        assert!(!cands.is_empty() && cands.len() <= 3, "{o:#}");
        assert_eq!(cands[0]["sku"], p["sku"]);
        assert!(cands[0]["product_id"].is_string() && cands[0]["score"].is_number());
    }
}

#[actix_web::test]
async fn nothing_from_the_catalog_gives_an_empty_list_and_bad_input_is_problem_json() {
    let env = start().await;
    let _cat = add_product(&env, "CAT-1", fixture("cat.jpg")).await;
    // a plain counter with nothing on it
    let empty = scene(&[]);
    let (status, _, body) = post(&env, Some((&empty, "image/jpeg")), &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["objects"], serde_json::json!([]), "{body:#}");

    type Case<'a> = (
        Option<(&'a [u8], &'a str)>,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (None, vec![("top_k", "3")], 400, "image"),
        (
            Some((b"GIF89a not a supported image at all", "image/gif")),
            vec![],
            415,
            "image",
        ),
        (
            Some((&empty, "image/jpeg")),
            vec![("top_k", "0")],
            400,
            "top_k",
        ),
        (
            Some((&empty, "image/jpeg")),
            vec![("top_k", "99")],
            400,
            "top_k",
        ),
        (
            Some((&empty, "image/jpeg")),
            vec![("min_score", "high")],
            400,
            "min_score",
        ),
        (
            Some((&empty, "image/jpeg")),
            vec![("min_score", "2")],
            400,
            "min_score",
        ),
    ];
    for (image, fields, want, field) in cases {
        let (status, ct, body) = post(&env, image, &fields).await;
        assert_eq!(status, want, "{fields:?}: {body}");
        assert_eq!(ct, "application/problem+json", "{fields:?}");
        assert_eq!(body["status"], want);
        assert_eq!(body["field"], field, "{body}");
        assert!(body["type"].as_str().unwrap().starts_with("/problems/"));
    }
    // A truncated JPEG passes the header sniff but cannot be decoded.
    let cat = fixture("cat.jpg");
    let (status, ct, body) = post(&env, Some((&cat[..200], "image/jpeg")), &[]).await;
    assert!(status == 415 || status == 400, "{status} {body}");
    assert_eq!(ct, "application/problem+json");
}

#[actix_web::test]
async fn archived_or_not_indexed_products_are_never_returned_and_updates_show_the_new_price() {
    let env = start().await;
    let cat = add_product(&env, "CAT-1", fixture("cat.jpg")).await;
    let coffee = add_product(&env, "COFFEE-1", fixture("coffee.jpg")).await;
    let c = env.db.client().await;

    // Known before any change.
    let r = env
        .recognizer
        .recognize(cat.photo.clone(), 5, None)
        .await
        .unwrap();
    assert_eq!(r.objects.len(), 1, "{r:?}");
    assert_eq!(r.objects[0].product.sku, "CAT-1");
    assert!(r.objects[0].bbox.iou(&BoxF::WHOLE) > 0.9);

    // Archived: never returned, not even as a candidate.
    c.execute(
        "UPDATE products SET archived = true WHERE id = $1",
        &[&cat.id],
    )
    .await
    .unwrap();
    let r = env
        .recognizer
        .recognize(cat.photo.clone(), 5, Some(-1.0))
        .await
        .unwrap();
    assert!(
        r.objects.iter().all(|o| o.product.product_id != cat.id
            && o.candidates.iter().all(|c| c.product_id != cat.id)),
        "{r:?}"
    );
    // Not (yet) indexed: never returned.
    c.execute(
        "UPDATE products SET status = 'vectorized' WHERE id = $1",
        &[&coffee.id],
    )
    .await
    .unwrap();
    let r = env
        .recognizer
        .recognize(coffee.photo.clone(), 5, Some(-1.0))
        .await
        .unwrap();
    assert!(
        r.objects.iter().all(|o| o.product.product_id != coffee.id),
        "{r:?}"
    );

    // A new version with a new price: the answer carries it.
    c.execute(
        "UPDATE products SET status = 'indexed', version = 2, price_minor = 399 WHERE id = $1",
        &[&coffee.id],
    )
    .await
    .unwrap();
    let r = env
        .recognizer
        .recognize(coffee.photo.clone(), 5, None)
        .await
        .unwrap();
    assert_eq!(r.objects.len(), 1, "{r:?}");
    assert_eq!(r.objects[0].product.product_id, coffee.id);
    assert_eq!(r.objects[0].product.price, "3.99");
    assert_eq!(r.objects[0].product.version, 2);
}

#[actix_web::test]
async fn grpc_answers_the_same_shape_and_refuses_bad_input() {
    let env = start().await;
    let rocket = add_product(&env, "ROCKET-1", fixture("rocket.jpg")).await;
    let svc = RecognitionGrpc::new(env.recognizer.clone());
    let resp = svc
        .recognize(tonic::Request::new(rvc_proto::catalog::RecognizeRequest {
            image: rocket.photo.clone(),
            top_k: 2,
            min_score: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.objects.len(), 1, "{resp:?}");
    let o = &resp.objects[0];
    assert_eq!(o.product.as_ref().unwrap().sku, "ROCKET-1");
    assert_eq!(o.product.as_ref().unwrap().price, "2.49");
    assert!(o.r#box.is_some() && o.score > 0.5 && o.candidates.len() <= 2);
    for bad in [Vec::new(), b"not an image at all, definitely".to_vec()] {
        let err = svc
            .recognize(tonic::Request::new(rvc_proto::catalog::RecognizeRequest {
                image: bad,
                top_k: 0,
                min_score: None,
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    }
    let err = svc
        .recognize(tonic::Request::new(rvc_proto::catalog::RecognizeRequest {
            image: rocket.photo,
            top_k: 50,
            min_score: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
}
