//! Recognition served by the read side: product information for recognised objects comes
//! through the same cached reader as `GetProductsInfo` ([`CatalogLookup`]), so a committed price
//! change or archive is seen by recognition within the cache's staleness bound
//! (docs/read-api.md), and only products that are `indexed` and not archived are returned.
use crate::config::RecognitionArgs;
use crate::model::Product;
use crate::reader::Catalog;
use async_trait::async_trait;
use rvc_recognition::{
    Backend, MlRegionsClient, ProductInfo, ProductLookup, RecognitionError, Recognizer,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Most ids per reader call (the reader's lookups are sized for a few hundred).
const CHUNK: usize = 500;

/// [`ProductLookup`] over the catalog's cached reader.
#[derive(Clone)]
pub struct CatalogLookup {
    catalog: Arc<Catalog>,
}

impl std::fmt::Debug for CatalogLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogLookup").finish_non_exhaustive()
    }
}

impl CatalogLookup {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

/// Whether recognition may return `p`: its current version is indexed and it is not archived.
pub fn recognizable(p: &Product) -> bool {
    !p.archived && p.status == rvc_domain::ProductStatus::Indexed
}

/// The response's view of a product.
pub fn product_info(p: Product) -> ProductInfo {
    ProductInfo {
        product_id: p.id,
        price: rvc_domain::Price::from_minor(p.price_minor)
            .map(|x| x.to_string())
            .unwrap_or_default(),
        price_minor: p.price_minor,
        currency: p.currency.trim().to_owned(),
        sku: p.sku,
        name: p.name,
        category: p.category,
        version: i64::from(p.version),
    }
}

#[async_trait]
impl ProductLookup for CatalogLookup {
    async fn products(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, ProductInfo>, RecognitionError> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let found = self
                .catalog
                .get_products(chunk)
                .await
                .map_err(|e| RecognitionError::Lookup(e.to_string()))?;
            out.extend(
                found
                    .products
                    .into_iter()
                    .filter(recognizable)
                    .map(|p| (p.id, product_info(p))),
            );
        }
        Ok(out)
    }
}

/// The recognizer of the read side: ML service and vector index from `args` (both contacted
/// lazily, on the first request), products from `catalog`.
pub fn recognizer(
    args: &RecognitionArgs,
    catalog: Arc<Catalog>,
) -> Result<Arc<Recognizer>, RecognitionError> {
    let ml = MlRegionsClient::new(
        &args.ml_service_url,
        Duration::from_millis(args.recognition_ml_timeout_ms.max(1)),
    )?;
    let index = args.qdrant.connect()?;
    Ok(Arc::new(Recognizer::new(
        ml,
        index,
        Arc::new(CatalogLookup::new(catalog)),
        args.recognizer.clone(),
    )))
}

/// Follows the models table: whenever the active recognition model lives in another
/// collection than the one recognition searches, recognition switches to that model's ML
/// service and collection (on the same vector-index server). Checked at start and every
/// `RECOGNITION_MODEL_REFRESH_MS`; a database error keeps the current model.
pub fn spawn_model_follower(
    pool: rvc_store::PgPool,
    recognizer: Arc<Recognizer>,
    args: RecognitionArgs,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_millis(args.recognition_model_refresh_ms.max(10));
    tokio::spawn(async move {
        loop {
            if let Err(e) = follow_active_model(&pool, &recognizer, &args).await {
                tracing::debug!(error = %e, "active recognition model not checked; keeping the current one");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    })
}

/// One check of [`spawn_model_follower`]; returns the model switched to, if any.
pub async fn follow_active_model(
    pool: &rvc_store::PgPool,
    recognizer: &Recognizer,
    args: &RecognitionArgs,
) -> Result<Option<String>, String> {
    let active = {
        let client = pool.get().await.map_err(|e| e.to_string())?;
        rvc_store::models::active(&**client)
            .await
            .map_err(|e| e.to_string())?
    };
    let Some(m) = active else {
        return Ok(None);
    };
    let current = recognizer.index();
    if current.collection() == m.collection {
        return Ok(None);
    }
    let ml = MlRegionsClient::new(
        &m.ml_service_url,
        Duration::from_millis(args.recognition_ml_timeout_ms.max(1)),
    )
    .map_err(|e| e.to_string())?;
    recognizer.switch(Backend {
        ml,
        index: current.with_collection(&m.collection),
    });
    metrics::counter!("rvc_catalog_model_switches_total").increment(1);
    tracing::info!(model_version = %m.model_version, collection = %m.collection,
        ml = %m.ml_service_url, from = %current.collection(), "recognition now answers from the active model");
    Ok(Some(m.model_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(status: &str, archived: bool, price_minor: i64) -> Product {
        Product {
            id: Uuid::now_v7(),
            sku: "S-1".into(),
            name: "Oat drink".into(),
            category: "Drinks".into(),
            price_minor,
            currency: "EUR".into(),
            status: status.parse().unwrap(),
            archived,
            version: 3,
            revision: 7,
            updated_at: chrono::Utc::now(),
            image_keys: Vec::new(),
        }
    }

    #[test]
    fn only_indexed_unarchived_products_are_recognizable() {
        assert!(recognizable(&product("indexed", false, 249)));
        assert!(!recognizable(&product("indexed", true, 249)));
        for s in ["registered", "images_stored", "vectorized", "failed"] {
            assert!(!recognizable(&product(s, false, 249)), "{s}");
        }
    }

    #[test]
    fn product_info_carries_the_decimal_price_and_version() {
        let p = product("indexed", false, 399);
        let id = p.id;
        let info = product_info(p);
        assert_eq!(info.product_id, id);
        assert_eq!(info.price, "3.99");
        assert_eq!(info.price_minor, 399);
        assert_eq!(info.currency, "EUR");
        assert_eq!(info.version, 3);
    }
}
