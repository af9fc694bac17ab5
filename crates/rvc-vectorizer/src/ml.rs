//! The gRPC client of `rvc-ml-service`: connect timeout, a deadline per call, and a short
//! retry loop for the failures that a second try can fix (UNAVAILABLE, DEADLINE_EXCEEDED,
//! RESOURCE_EXHAUSTED). Everything else is returned at once.
use crate::error::VectorizerError;
use rand::Rng;
use rvc_proto::ml::machine_learning_service_client::MachineLearningServiceClient;
use rvc_proto::ml::{Box as PbBox, EmbedRegionsRequest, GetModelInfoRequest, ModelInfo};
use rvc_vectors::GalleryView;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The name the ML service registers with `grpc.health.v1.Health`.
pub const ML_HEALTH_SERVICE: &str = "rvc.ml.v1.MachineLearningService";

/// Largest message sent to or accepted from the ML service.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// ML client settings (`#[command(flatten)]` into the binary's args).
#[derive(Debug, Clone, clap::Args)]
pub struct MlClientArgs {
    /// gRPC URL of rvc-ml-service.
    #[arg(long, env = "ML_SERVICE_URL", default_value = "http://127.0.0.1:50051")]
    pub ml_service_url: String,
    /// Most photos being embedded (EmbedRegions calls) in flight from this process, across
    /// every job of a batch.
    #[arg(long, env = "ML_CONCURRENCY", default_value_t = 4)]
    pub ml_concurrency: usize,
    /// TCP connect timeout to the ML service, in milliseconds.
    #[arg(long, env = "ML_CONNECT_TIMEOUT_MS", default_value_t = 2000)]
    pub ml_connect_timeout_ms: u64,
    /// Deadline of one ML call, in milliseconds (sent as grpc-timeout too).
    #[arg(long, env = "ML_CALL_TIMEOUT_MS", default_value_t = 30_000)]
    pub ml_call_timeout_ms: u64,
    /// Retries of one call within a step attempt, only on UNAVAILABLE, DEADLINE_EXCEEDED and
    /// RESOURCE_EXHAUSTED; after them the step is retried later by the outbox (with backoff).
    #[arg(long, env = "ML_RETRIES", default_value_t = 4)]
    pub ml_retries: u32,
    /// First in-attempt retry delay in milliseconds (doubles per retry, with jitter).
    #[arg(long, env = "ML_RETRY_BASE_MS", default_value_t = 200)]
    pub ml_retry_base_ms: u64,
    /// At start, how long to wait for the ML service to answer GetModelInfo, in seconds.
    #[arg(long, env = "ML_STARTUP_WAIT_SECS", default_value_t = 60)]
    pub ml_startup_wait_secs: u64,
}

impl MlClientArgs {
    /// Defaults for `url` (tests and benchmarks).
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            ml_service_url: url.into(),
            ..rvc_runtime::args::defaults()
        }
    }
}

/// Whether a second try of the same call may succeed soon.
pub fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
    )
}

/// The vectors of one photo's gallery views.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewEmbeddings {
    /// One per [`GalleryView::ALL`], in that order.
    pub vectors: Vec<Vec<f32>>,
    /// The model that computed them.
    pub model_version: String,
}

/// A cheap-to-clone client of the ML service (one HTTP/2 channel, connected lazily and
/// re-connected by tonic after the service restarts).
#[derive(Debug, Clone)]
pub struct MlClient {
    url: String,
    client: MachineLearningServiceClient<Channel>,
    health: HealthClient<Channel>,
    call_timeout: Duration,
    retries: u32,
    retry_base: Duration,
}

impl MlClient {
    /// Builds the client; nothing is sent until the first call.
    pub fn new(args: &MlClientArgs) -> Result<Self, VectorizerError> {
        let url = args.ml_service_url.trim().to_owned();
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| VectorizerError::MlUrl {
                url: url.clone(),
                message: e.to_string(),
            })?
            .connect_timeout(Duration::from_millis(args.ml_connect_timeout_ms.max(1)))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        let channel = endpoint.connect_lazy();
        Ok(Self {
            url,
            client: MachineLearningServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            health: HealthClient::new(channel),
            call_timeout: Duration::from_millis(args.ml_call_timeout_ms.max(1)),
            retries: args.ml_retries,
            retry_base: Duration::from_millis(args.ml_retry_base_ms.max(1)),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// One call under the deadline: the deadline is enforced here (DEADLINE_EXCEEDED) and
    /// sent to the server as `grpc-timeout`.
    async fn with_deadline<T, F>(&self, call: F) -> Result<T, Status>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        match tokio::time::timeout(self.call_timeout, call).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer from the ML service within {} ms",
                self.call_timeout.as_millis()
            ))),
        }
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.call_timeout);
        req
    }

    /// `GetModelInfo`, once.
    pub async fn model_info(&self) -> Result<ModelInfo, Status> {
        let mut client = self.client.clone();
        let req = self.request(GetModelInfoRequest {});
        self.with_deadline(client.get_model_info(req)).await
    }

    /// `GetModelInfo`, retried until `wait` has passed while the service is unreachable
    /// (a vectorizer may start before the ML service has loaded its model).
    pub async fn wait_for_model_info(&self, wait: Duration) -> Result<ModelInfo, VectorizerError> {
        rvc_runtime::retry::until_deadline(
            "ML service",
            wait,
            |s: &Status| is_transient(s.code()) || s.code() == Code::Unknown,
            || self.model_info(),
        )
        .await
        .map_err(|s| VectorizerError::MlUnavailable {
            url: self.url.clone(),
            message: format!("{:?}: {}", s.code(), s.message()),
        })
    }

    /// The embeddings of every [`GalleryView`] of one photo, in [`GalleryView::ALL`] order, from
    /// one `EmbedRegions` call (each view is cut out and embedded like a whole photo, so the
    /// whole view is `VectorizeImage`'s vector), with the in-attempt retry loop. The returned
    /// error is the last one.
    pub async fn embed_views(
        &self,
        image: &[u8],
        image_type: &str,
    ) -> Result<ViewEmbeddings, Status> {
        let crops: Vec<PbBox> = GalleryView::ALL
            .iter()
            .map(|v| PbBox::from(v.frac_box()))
            .collect();
        let reply = self
            .with_retries(|| {
                let mut client = self.client.clone();
                let req = self.request(EmbedRegionsRequest {
                    image_data: image.to_vec(),
                    image_type: image_type.to_owned(),
                    crops: crops.clone(),
                    pooled: Vec::new(),
                    pooling_input_size: 0,
                });
                async move { self.with_deadline(client.embed_regions(req)).await }
            })
            .await?;
        if reply.crops.len() != GalleryView::ALL.len() {
            return Err(Status::internal(format!(
                "EmbedRegions answered {} crops for {} views",
                reply.crops.len(),
                GalleryView::ALL.len()
            )));
        }
        Ok(ViewEmbeddings {
            vectors: reply.crops.into_iter().map(|e| e.vector).collect(),
            model_version: reply.model_version,
        })
    }

    /// Runs `call` until it succeeds, fails with a code a retry cannot fix, or has been
    /// retried `ML_RETRIES` times (exponential backoff with jitter).
    async fn with_retries<T, F, Fut>(&self, mut call: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let result = call().await;
            metrics::histogram!("rvc_vectorizer_ml_call_seconds")
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(r) => return Ok(r),
                Err(s) if is_transient(s.code()) && attempt < self.retries => {
                    let base = self.retry_base.saturating_mul(1u32 << attempt.min(10));
                    let jitter = rand::rng().random_range(0.5..1.5);
                    let delay = base.mul_f64(jitter);
                    attempt += 1;
                    metrics::counter!("rvc_vectorizer_ml_retries_total", "code" => format!("{:?}", s.code()))
                        .increment(1);
                    tracing::debug!(code = ?s.code(), error = s.message(), attempt,
                        delay_ms = delay.as_millis() as u64, "ML call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(s) => return Err(s),
            }
        }
    }

    /// Readiness: the ML service reports SERVING on the gRPC health service.
    pub async fn health(&self) -> Result<(), String> {
        let mut health = self.health.clone();
        let req = HealthCheckRequest {
            service: ML_HEALTH_SERVICE.to_owned(),
        };
        let reply = tokio::time::timeout(Duration::from_secs(2), health.check(req))
            .await
            .map_err(|_| format!("ML service {}: health check timed out", self.url))?
            .map_err(|s| format!("ML service {}: {:?} {}", self.url, s.code(), s.message()))?
            .into_inner();
        if reply.status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err(format!(
                "ML service {}: health status {}",
                self.url, reply.status
            ))
        }
    }
}
