//! tonic `rvc.catalog.v1.RecognitionService`, ready to add to the read side's server.
use crate::recognizer::{Recognition, Recognizer};
use rvc_proto::catalog::recognition_service_server::{
    RecognitionService, RecognitionServiceServer,
};
use rvc_proto::catalog::{
    Candidate, RecognizeRequest, RecognizeResponse, RecognizedBox, RecognizedObject,
    RecognizedProduct,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Largest image accepted over gRPC (same as the HTTP limit).
pub const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;

/// The gRPC handler. `RecognitionGrpc::new(r).into_server()` gives the service to add to a
/// `tonic::transport::Server`.
#[derive(Debug, Clone)]
pub struct RecognitionGrpc {
    recognizer: Arc<Recognizer>,
}

impl RecognitionGrpc {
    pub fn new(recognizer: Arc<Recognizer>) -> Self {
        Self { recognizer }
    }

    pub fn into_server(self) -> RecognitionServiceServer<Self> {
        RecognitionServiceServer::new(self).max_decoding_message_size(MAX_IMAGE_BYTES + 1024)
    }
}

/// The wire form of a [`Recognition`].
pub fn to_proto(r: Recognition) -> RecognizeResponse {
    RecognizeResponse {
        model_version: r.model_version,
        objects: r
            .objects
            .into_iter()
            .map(|o| RecognizedObject {
                r#box: Some(RecognizedBox {
                    x: o.bbox.x,
                    y: o.bbox.y,
                    width: o.bbox.width,
                    height: o.bbox.height,
                }),
                score: o.score,
                product: Some(RecognizedProduct {
                    product_id: o.product.product_id.to_string(),
                    sku: o.product.sku,
                    name: o.product.name,
                    category: o.product.category,
                    price: o.product.price,
                    currency: o.product.currency,
                    version: o.product.version,
                    price_minor: o.product.price_minor,
                }),
                candidates: o
                    .candidates
                    .into_iter()
                    .map(|c| Candidate {
                        product_id: c.product_id.to_string(),
                        sku: c.sku,
                        score: c.score,
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl RecognitionService for RecognitionGrpc {
    #[tracing::instrument(skip_all, fields(bytes = request.get_ref().image.len()))]
    async fn recognize(
        &self,
        request: Request<RecognizeRequest>,
    ) -> Result<Response<RecognizeResponse>, Status> {
        let req = request.into_inner();
        if req.image.is_empty() {
            return Err(Status::invalid_argument("image: is required"));
        }
        if req.image.len() > MAX_IMAGE_BYTES {
            return Err(Status::invalid_argument(format!(
                "image: at most {MAX_IMAGE_BYTES} bytes"
            )));
        }
        if rvc_domain::ImageFormat::sniff(&req.image).is_none() {
            return Err(Status::invalid_argument(
                "image: not a supported image: only JPEG, PNG and WebP are accepted",
            ));
        }
        let top_k = usize::try_from(req.top_k).unwrap_or(usize::MAX);
        let out = self
            .recognizer
            .recognize(req.image, top_k, req.min_score)
            .await?;
        Ok(Response::new(to_proto(out)))
    }
}
