//! The ML service client for recognition (`EmbedRegions`, `GetModelInfo`).
use crate::error::RecognitionError;
use crate::geometry::BoxF;
use rvc_proto::ml::machine_learning_service_client::MachineLearningServiceClient;
use rvc_proto::ml::{EmbedRegionsRequest, GetModelInfoRequest};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// What one `EmbedRegions` call returned.
#[derive(Debug, Clone)]
pub struct Regions {
    pub crops: Vec<Vec<f32>>,
    pub pooled: Vec<Vec<f32>>,
    pub model_version: String,
    pub width: u32,
    pub height: u32,
}

/// A lazily connected client; cheap to clone.
#[derive(Debug, Clone)]
pub struct MlRegionsClient {
    inner: MachineLearningServiceClient<Channel>,
    timeout: Duration,
}

impl MlRegionsClient {
    /// `url` like `http://127.0.0.1:50051`; nothing is sent until the first call.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RecognitionError> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| RecognitionError::Ml(format!("bad ML_SERVICE_URL {url:?}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Self {
            inner: MachineLearningServiceClient::new(channel)
                .max_decoding_message_size(64 * 1024 * 1024)
                .max_encoding_message_size(64 * 1024 * 1024),
            timeout,
        })
    }

    pub async fn model_version(&self) -> Result<String, RecognitionError> {
        let mut req = tonic::Request::new(GetModelInfoRequest {});
        req.set_timeout(self.timeout);
        let info = self
            .inner
            .clone()
            .get_model_info(req)
            .await
            .map_err(|s| RecognitionError::Ml(format!("{}: {}", s.code(), s.message())))?;
        Ok(info.into_inner().model_version)
    }

    /// Crop embeddings and pooled descriptors of `image` (see `proto/ml.proto`).
    pub async fn regions(
        &self,
        image: Vec<u8>,
        crops: &[BoxF],
        pooled: &[BoxF],
    ) -> Result<Regions, RecognitionError> {
        let wire = |b: &BoxF| rvc_proto::ml::Box {
            x: b.x,
            y: b.y,
            width: b.width,
            height: b.height,
        };
        let mut req = tonic::Request::new(EmbedRegionsRequest {
            image_data: image,
            image_type: String::new(),
            crops: crops.iter().map(wire).collect(),
            pooled: pooled.iter().map(wire).collect(),
            pooling_input_size: 0,
        });
        req.set_timeout(self.timeout);
        let resp = self
            .inner
            .clone()
            .embed_regions(req)
            .await
            .map_err(|s| match s.code() {
                Code::InvalidArgument if s.message().contains("invalid image") => {
                    RecognitionError::InvalidImage(s.message().to_owned())
                }
                Code::InvalidArgument => RecognitionError::InvalidRequest(s.message().to_owned()),
                c => RecognitionError::Ml(format!("{c}: {}", s.message())),
            })?
            .into_inner();
        if resp.crops.len() != crops.len() || resp.pooled.len() != pooled.len() {
            return Err(RecognitionError::Ml(format!(
                "asked {} crops and {} pooled boxes, got {} and {}",
                crops.len(),
                pooled.len(),
                resp.crops.len(),
                resp.pooled.len()
            )));
        }
        Ok(Regions {
            crops: resp.crops.into_iter().map(|e| e.vector).collect(),
            pooled: resp.pooled.into_iter().map(|e| e.vector).collect(),
            model_version: resp.model_version,
            width: resp.image_width,
            height: resp.image_height,
        })
    }
}
