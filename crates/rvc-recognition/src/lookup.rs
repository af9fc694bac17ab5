//! Product information for recognised products: only products that are indexed and not
//! archived. The read-side binary implements [`ProductLookup`] over its cache; this crate ships
//! one over Postgres ([`PgProductLookup`]).
use crate::error::RecognitionError;
use async_trait::async_trait;
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// What the response shows of a product (its current version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = RecognizedProduct)]
pub struct ProductInfo {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub category: String,
    /// Decimal string ("2.49").
    pub price: String,
    pub currency: String,
    pub version: i64,
    #[serde(skip)]
    pub price_minor: i64,
}

/// Ids → product info. Must leave out every product that is not currently `indexed` or is
/// archived: recognition never returns what it cannot find here.
#[async_trait]
pub trait ProductLookup: Send + Sync {
    async fn products(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, ProductInfo>, RecognitionError>;
}

/// [`ProductLookup`] straight from Postgres (`rvc_store::recognizable`).
#[derive(Clone)]
pub struct PgProductLookup {
    pool: rvc_store::PgPool,
}

impl std::fmt::Debug for PgProductLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgProductLookup").finish_non_exhaustive()
    }
}

impl PgProductLookup {
    pub fn new(pool: rvc_store::PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl ProductLookup for PgProductLookup {
    async fn products(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, ProductInfo>, RecognitionError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| RecognitionError::Lookup(format!("database: {e}")))?;
        let rows = rvc_store::recognizable::recognizable(&**client, ids)
            .await
            .map_err(|e| RecognitionError::Lookup(e.to_string()))?;
        Ok(rows
            .into_iter()
            .map(|p| {
                (
                    p.id,
                    ProductInfo {
                        product_id: p.id,
                        sku: p.sku,
                        name: p.name,
                        category: p.category,
                        price: p.price,
                        currency: p.currency,
                        version: i64::from(p.version),
                        price_minor: p.price_minor,
                    },
                )
            })
            .collect())
    }
}
