//! `rvc.catalog.v1.ProductService` over tonic.
use crate::model::parse_ids;
use crate::reader::{Catalog, CatalogError};
use rvc_proto::catalog::product_service_server::ProductService;
use rvc_proto::catalog::{
    GetProductBySkuRequest, GetProductBySkuResponse, GetProductsInfoRequest,
    GetProductsInfoResponse, ProductInfo,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ProductGrpc {
    pub catalog: Arc<Catalog>,
    pub max_ids: usize,
}

fn status_of(e: CatalogError) -> Status {
    if e.is_unavailable() {
        tracing::error!(error = %e, "database unavailable");
        Status::unavailable("the database is unavailable; retry later")
    } else {
        tracing::error!(error = %e, "lookup failed");
        Status::internal("lookup failed")
    }
}

#[tonic::async_trait]
impl ProductService for ProductGrpc {
    async fn get_products_info(
        &self,
        request: Request<GetProductsInfoRequest>,
    ) -> Result<Response<GetProductsInfoResponse>, Status> {
        let raw = request.into_inner().product_ids;
        if raw.len() > self.max_ids {
            return Err(Status::invalid_argument(format!(
                "product_ids: {} ids, at most {} per call",
                raw.len(),
                self.max_ids
            )));
        }
        let ids = parse_ids(&raw).map_err(|bad| {
            Status::invalid_argument(format!(
                "product_ids: malformed ids (expected UUIDs): {}",
                bad.join(", ")
            ))
        })?;
        let found = self.catalog.get_products(&ids).await.map_err(status_of)?;
        Ok(Response::new(GetProductsInfoResponse {
            products: found.products.into_iter().map(ProductInfo::from).collect(),
            not_found_ids: found.not_found.iter().map(ToString::to_string).collect(),
        }))
    }

    async fn get_product_by_sku(
        &self,
        request: Request<GetProductBySkuRequest>,
    ) -> Result<Response<GetProductBySkuResponse>, Status> {
        let sku = request.into_inner().sku;
        if sku.trim().is_empty() {
            return Err(Status::invalid_argument("sku: is required"));
        }
        let client = self
            .catalog
            .pool()
            .get()
            .await
            .map_err(|e| status_of(CatalogError::Store(e.into())))?;
        let p = rvc_store::catalog::product_by_sku(&**client, sku.trim())
            .await
            .map_err(|e| status_of(e.into()))?
            .ok_or_else(|| Status::not_found(format!("no product with sku {sku:?}")))?;
        Ok(Response::new(GetProductBySkuResponse {
            product: Some(crate::model::Product::from(p).into()),
        }))
    }
}
