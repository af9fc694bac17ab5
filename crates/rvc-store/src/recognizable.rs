//! Products that recognition may return: currently `indexed` and not archived.
use crate::{DbContext, StoreError};
use rvc_domain::Price;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// What a checkout needs to charge for a recognised product (its current version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecognizableProduct {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price_minor: i64,
    /// Decimal string of `price_minor` ("2.49").
    pub price: String,
    pub currency: String,
    pub version: i32,
}

/// The products among `ids` that are `indexed` and not archived (others are left out).
pub async fn recognizable<C: GenericClient>(
    db: &C,
    ids: &[Uuid],
) -> Result<Vec<RecognizableProduct>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = db
        .query(
            "SELECT p.id, p.sku, p.name, c.name AS category, p.price_minor, p.currency, p.version
             FROM products p JOIN categories c ON c.id = p.category_id
             WHERE p.id = ANY($1) AND p.status = 'indexed' AND NOT p.archived",
            &[&ids],
        )
        .await
        .ctx("recognizable products")?;
    const CTX: &str = "recognizable products";
    rows.iter()
        .map(|r| {
            let price_minor: i64 = r.try_get("price_minor").ctx(CTX)?;
            let currency: String = r.try_get("currency").ctx(CTX)?;
            Ok(RecognizableProduct {
                id: r.try_get("id").ctx(CTX)?,
                sku: r.try_get("sku").ctx(CTX)?,
                name: r.try_get("name").ctx(CTX)?,
                category: r.try_get("category").ctx(CTX)?,
                price_minor,
                price: Price::from_minor(price_minor)
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                currency: currency.trim().to_owned(),
                version: r.try_get("version").ctx(CTX)?,
            })
        })
        .collect()
}
