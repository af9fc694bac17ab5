//! The product as the read API returns it (HTTP JSON, the cached form, and gRPC).
use chrono::{DateTime, Utc};
use rvc_store::catalog::CatalogProduct;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A product's current committed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub category: String,
    /// Price in minor units of `currency` (cents for EUR).
    pub price_minor: i64,
    /// ISO 4217.
    pub currency: String,
    /// Pipeline status: registered, images_stored, vectorized, indexed, failed.
    #[schema(value_type = String, example = "indexed")]
    pub status: rvc_domain::ProductStatus,
    pub archived: bool,
    /// The current version (a new one per changed POST).
    pub version: i32,
    /// Changes on every committed change of the product; the cache stamps entries with it.
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
    /// Object keys of the current version's photos already in object storage.
    pub image_keys: Vec<String>,
}

impl From<CatalogProduct> for Product {
    fn from(p: CatalogProduct) -> Self {
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            category: p.category,
            price_minor: p.price_minor,
            currency: p.currency,
            status: p.status,
            archived: p.archived,
            version: p.version,
            revision: p.revision,
            updated_at: p.updated_at,
            image_keys: p.image_keys,
        }
    }
}

impl From<Product> for rvc_proto::catalog::ProductInfo {
    fn from(p: Product) -> Self {
        let ts = prost_types::Timestamp {
            seconds: p.updated_at.timestamp(),
            nanos: i32::try_from(p.updated_at.timestamp_subsec_nanos()).unwrap_or(0),
        };
        Self {
            product_id: p.id.to_string(),
            version: i64::from(p.version),
            sku: p.sku,
            name: p.name,
            category: p.category,
            price_minor: p.price_minor,
            currency: p.currency,
            status: p.status.to_string(),
            image_keys: p.image_keys,
            updated_at: Some(ts),
            archived: p.archived,
            revision: p.revision,
        }
    }
}

/// Parses product ids; `Err` lists every malformed one (quoted), in request order.
pub fn parse_ids<S: AsRef<str>>(raw: &[S]) -> Result<Vec<Uuid>, Vec<String>> {
    let mut ids = Vec::with_capacity(raw.len());
    let mut bad = Vec::new();
    for s in raw {
        match Uuid::parse_str(s.as_ref().trim()) {
            Ok(id) => ids.push(id),
            Err(_) => bad.push(format!("{:?}", s.as_ref())),
        }
    }
    if bad.is_empty() {
        Ok(ids)
    } else {
        Err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_malformed_id() {
        let ok = "0190c0de-0000-7000-8000-000000000001";
        assert_eq!(parse_ids(&[ok]).map(|v| v.len()), Ok(1));
        assert_eq!(
            parse_ids(&[ok, "nope", "", "123"]),
            Err(vec!["\"nope\"".into(), "\"\"".into(), "\"123\"".into()])
        );
    }
}
