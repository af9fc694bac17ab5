//! Products written through the real ingest transaction (`rvc_store::products::ingest`), with
//! real PNG photos.
use crate::images::png;
use crate::TestDb;
use rvc_domain::{CategoryName, Currency, ImageLimits, Price, ProductName, Sku, SniffedImage};
use rvc_store::products::{ingest, IngestOutcome, NewProduct, StagedImage};
use uuid::Uuid;

/// A "Green tea" at 2.50 EUR in "Drinks" with these photos.
pub fn product(sku: &str, photos: &[Vec<u8>]) -> NewProduct {
    NewProduct {
        sku: Sku::parse(sku).unwrap(),
        name: ProductName::parse("Green tea").unwrap(),
        category: CategoryName::parse("Drinks").unwrap(),
        price: Price::parse("2.50").unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        images: photos
            .iter()
            .map(|b| StagedImage {
                meta: SniffedImage::inspect(b, ImageLimits::default()).unwrap(),
                bytes: b.clone(),
            })
            .collect(),
        traceparent: None,
    }
}

/// Ingests `p` in its own transaction; returns (product id, version).
pub async fn ingest_one(db: &TestDb, p: &NewProduct) -> (Uuid, i32) {
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    let out = ingest(&tx, p, None).await.unwrap();
    tx.commit().await.unwrap();
    accepted(out)
}

/// `n` products (`SKU-00000` …) with `photos` distinct `side`×`side` PNGs each, in one
/// transaction; returns their (id, version).
pub async fn seed(db: &TestDb, n: usize, photos: usize, side: u32) -> Vec<(Uuid, i32)> {
    let mut c = db.client().await;
    let tx = c.transaction().await.unwrap();
    let mut out = Vec::with_capacity(n);
    let run = Uuid::new_v4().as_u64_pair().0;
    for i in 0..n {
        let imgs: Vec<Vec<u8>> = (0..photos)
            .map(|j| png(run ^ ((i * 16 + j) as u64 + 1), side, side))
            .collect();
        let p = product(&format!("SKU-{i:05}"), &imgs);
        out.push(accepted(ingest(&tx, &p, None).await.unwrap()));
    }
    tx.commit().await.unwrap();
    out
}

fn accepted(out: IngestOutcome) -> (Uuid, i32) {
    match out {
        IngestOutcome::Accepted {
            product_id,
            version,
            ..
        } => (product_id, version),
        other => panic!("not accepted: {other:?}"),
    }
}

/// Every `object_key` Postgres refers to, sorted.
pub async fn referenced_keys(db: &TestDb) -> Vec<String> {
    let c = db.pool.get().await.unwrap();
    c.query(
        "SELECT DISTINCT object_key FROM product_images WHERE object_key IS NOT NULL ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get("object_key"))
    .collect()
}
