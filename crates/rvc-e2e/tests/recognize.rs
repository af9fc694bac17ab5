//! Recognition on what the real pipeline indexed: products POSTed to `rvc-ingest-api` go
//! through the uploader, the vectorizer (which indexes each photo's gallery views) and the
//! relay; then a real `rvc-catalog` process answers `POST /api/v1/recognize` for a checkout
//! scene holding two of them, and a price change POSTed afterwards is what the next
//! recognition returns. (rvc-recognition's and rvc-catalog's own tests index their gallery
//! themselves; this one checks the vectorizer indexes what recognition needs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rvc_e2e::recognize;
use rvc_e2e::stack::Stack;
use rvc_test_support::images::{checkout_scene, scene_square, Frac};
use uuid::Uuid;

fn fixture(name: &str) -> Vec<u8> {
    let path = rvc_e2e::repo_root()
        .join("crates/rvc-ml-service/tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Intersection over union of a response box and an expected one.
fn iou(got: &serde_json::Value, (x, y, w, h): Frac) -> f64 {
    let f = |k: &str| got[k].as_f64().unwrap();
    let (gx, gy, gw, gh) = (f("x"), f("y"), f("width"), f("height"));
    let (x, y, w, h) = (f64::from(x), f64::from(y), f64::from(w), f64::from(h));
    let ix = ((gx + gw).min(x + w) - gx.max(x)).max(0.0);
    let iy = ((gy + gh).min(y + h) - gy.max(y)).max(0.0);
    let inter = ix * iy;
    inter / (gw * gh + w * h - inter)
}

/// The object of `product` in a recognition answer, if any.
fn object_of(body: &serde_json::Value, product: Uuid) -> Option<&serde_json::Value> {
    body["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["product"]["product_id"] == product.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scene_of_two_products_ingested_through_the_pipeline_is_recognised_with_their_prices() {
    let mut stack = Stack::start(&[]).await;
    let (cat, rocket, coffee) = (
        fixture("cat.jpg"),
        fixture("rocket.jpg"),
        fixture("coffee.jpg"),
    );
    let cat_id = stack
        .post_product("REC-CAT", "2.49", std::slice::from_ref(&cat))
        .await;
    let rocket_id = stack
        .post_product("REC-ROCKET", "7.00", std::slice::from_ref(&rocket))
        .await;
    let coffee_id = stack.post_product("REC-COFFEE", "1.20", &[coffee]).await;
    stack
        .wait_indexed(&[(cat_id, 1), (rocket_id, 1), (coffee_id, 1)], 180)
        .await;

    let (mut catalog, base) = stack.start_catalog(&[]).await;
    let http = reqwest::Client::new();

    let (b_cat, b_rocket) = (scene_square(0.05, 0.1, 0.45), scene_square(0.55, 0.4, 0.45));
    let scene = checkout_scene(&[(&cat, b_cat), (&rocket, b_rocket)]);
    let body = recognize(&http, &base, &scene).await.unwrap();
    let found = |id: Uuid, b: Frac, price: &str, version: i64| {
        let o = object_of(&body, id).unwrap_or_else(|| panic!("{id} not found: {body:#}"));
        assert!(iou(&o["box"], b) >= 0.3, "box of {id}: {o:#}");
        assert_eq!(o["product"]["price"], price, "{o:#}");
        assert_eq!(o["product"]["version"], version, "{o:#}");
    };
    found(cat_id, b_cat, "2.49", 1);
    found(rocket_id, b_rocket, "7.00", 1);
    assert!(
        object_of(&body, coffee_id).is_none(),
        "coffee is not in the photo: {body:#}"
    );

    // A new price for the cat, same photo: the next recognition says so.
    stack
        .post_product("REC-CAT", "3.10", std::slice::from_ref(&cat))
        .await;
    stack.wait_indexed(&[(cat_id, 2)], 120).await;
    let body = recognize(&http, &base, &scene).await.unwrap();
    let o = object_of(&body, cat_id).unwrap_or_else(|| panic!("cat not found: {body:#}"));
    assert_eq!(o["product"]["price"], "3.10", "{o:#}");
    assert_eq!(o["product"]["version"], 2, "{o:#}");
    catalog.assert_running();
}
