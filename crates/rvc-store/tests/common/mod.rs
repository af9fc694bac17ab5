//! Products for the store's tests: a valid form (one fake PNG per SKU: the store never
//! decodes photos) and its ingest in one transaction.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rvc_domain::{CategoryName, Currency, ImageFormat, Price, ProductName, Sku, SniffedImage};
use rvc_store::products::{ingest, IngestOutcome, NewProduct, StagedImage};
use rvc_test_support::TestDb;
use uuid::Uuid;

/// A product of category Drinks at `price` EUR with one photo whose bytes depend on the SKU.
pub fn product_priced(sku: &str, price: &str) -> NewProduct {
    let bytes = format!("\u{89}PNG fake bytes of {sku}, the store does not decode").into_bytes();
    NewProduct {
        sku: Sku::parse(sku).unwrap(),
        name: ProductName::parse("Tea").unwrap(),
        category: CategoryName::parse("Drinks").unwrap(),
        price: Price::parse(price).unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        images: vec![StagedImage {
            meta: SniffedImage {
                format: ImageFormat::Png,
                width: 10,
                height: 10,
                sha256: rvc_domain::sha256_hex(&bytes),
            },
            bytes,
        }],
        traceparent: None,
    }
}

/// [`product_priced`] at 1.00.
pub fn product(sku: &str) -> NewProduct {
    product_priced(sku, "1.00")
}

/// Ingests [`product`]`(sku)` in its own transaction; returns the product id.
pub async fn create(db: &TestDb, sku: &str) -> Uuid {
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    let IngestOutcome::Accepted { product_id, .. } =
        ingest(&tx, &product(sku), None).await.unwrap()
    else {
        panic!("{sku} not accepted")
    };
    tx.commit().await.unwrap();
    product_id
}
