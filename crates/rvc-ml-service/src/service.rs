//! The tonic `MachineLearningService` and the server around it (with gRPC health).
use crate::embedder::{Embedder, EmbedderConfig};
use crate::error::MlError;
use crate::pool::InferencePool;
use rvc_proto::ml::machine_learning_service_server::{
    MachineLearningService, MachineLearningServiceServer,
};
use rvc_proto::ml::{
    GetModelInfoRequest, ModelInfo, VectorizeBatchRequest, VectorizeBatchResponse,
    VectorizeRequest, VectorizeResponse,
};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// Service settings beyond the model (the binary reads them from the environment).
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceConfig {
    #[command(flatten)]
    pub embedder: EmbedderConfig,
    /// Inference threads. 0 = one per CPU core.
    #[arg(long, env = "ML_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Images admitted at once (queued + running); more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ML_QUEUE_CAPACITY", default_value_t = 64)]
    pub queue_capacity: usize,
    /// Most images in one VectorizeImages call.
    #[arg(long, env = "ML_MAX_BATCH", default_value_t = 32)]
    pub max_batch: usize,
    /// Largest gRPC message accepted (and sent), in bytes.
    #[arg(long, env = "ML_MAX_MESSAGE_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// On SIGTERM/SIGINT, seconds to let in-flight calls finish before connections are closed.
    #[arg(long, env = "ML_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    #[command(flatten)]
    pub regions: crate::regions::RegionsConfig,
}

impl Default for ServiceConfig {
    /// The defaults of the `#[arg]` attributes above (stated once, there).
    fn default() -> Self {
        rvc_runtime::args::defaults()
    }
}

impl ServiceConfig {
    /// The worker count with 0 resolved to the number of cores.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }
    }
}

/// The gRPC handler: validates requests and hands images to the [`InferencePool`].
#[derive(Debug, Clone)]
pub struct MlService {
    pool: Arc<InferencePool>,
    regions: Arc<crate::regions::RegionEmbedder>,
    info: ModelInfo,
    max_batch: usize,
}

impl MlService {
    pub fn new(embedder: Arc<Embedder>, cfg: &ServiceConfig) -> Result<Self, MlError> {
        if cfg.max_batch == 0 {
            return Err(MlError::Config(
                "ML_MAX_BATCH must be at least 1".to_owned(),
            ));
        }
        let info = ModelInfo {
            name: embedder.model_name().to_owned(),
            model_version: embedder.model_version().to_owned(),
            dimension: u32::try_from(embedder.dimension())
                .map_err(|_| MlError::ModelShape("dimension does not fit u32".to_owned()))?,
            input_width: embedder.input_size(),
            input_height: embedder.input_size(),
        };
        let regions = crate::regions::RegionEmbedder::new(
            Arc::clone(&embedder),
            cfg.regions.pooling_input_size,
            cfg.effective_workers(),
            cfg.regions.max_regions,
        )?;
        let pool = InferencePool::start(embedder, cfg.effective_workers(), cfg.queue_capacity)?;
        Ok(Self {
            pool: Arc::new(pool),
            regions: Arc::new(regions),
            info,
            max_batch: cfg.max_batch,
        })
    }

    /// Inference threads still running (0: nothing can be embedded).
    pub fn live_workers(&self) -> usize {
        self.pool.live_workers()
    }

    fn response(&self, vector: Vec<f32>) -> VectorizeResponse {
        VectorizeResponse {
            vector,
            model_version: self.info.model_version.clone(),
        }
    }
}

#[tonic::async_trait]
impl MachineLearningService for MlService {
    #[tracing::instrument(skip_all, fields(bytes = request.get_ref().image_data.len(), image_type = %request.get_ref().image_type))]
    async fn vectorize_image(
        &self,
        request: Request<VectorizeRequest>,
    ) -> Result<Response<VectorizeResponse>, Status> {
        let req = request.into_inner();
        if req.image_data.is_empty() {
            return Err(MlError::InvalidRequest("image_data is empty".to_owned()).into());
        }
        let vector = self.pool.embed(req.image_data).await?;
        Ok(Response::new(self.response(vector)))
    }

    #[tracing::instrument(skip_all, fields(images = request.get_ref().images.len()))]
    async fn vectorize_images(
        &self,
        request: Request<VectorizeBatchRequest>,
    ) -> Result<Response<VectorizeBatchResponse>, Status> {
        let images = request.into_inner().images;
        if images.is_empty() {
            return Err(MlError::InvalidRequest("images is empty".to_owned()).into());
        }
        if images.len() > self.max_batch {
            return Err(MlError::InvalidRequest(format!(
                "{} images in one call; at most {} (ML_MAX_BATCH)",
                images.len(),
                self.max_batch
            ))
            .into());
        }
        if let Some(i) = images.iter().position(|r| r.image_data.is_empty()) {
            return Err(MlError::InvalidRequest(format!("images[{i}].image_data is empty")).into());
        }
        let results = self
            .pool
            .embed_all(images.into_iter().map(|r| r.image_data).collect())
            .await?;
        let mut out = Vec::with_capacity(results.len());
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(v) => out.push(self.response(v)),
                Err(MlError::InvalidImage(why)) => {
                    return Err(Status::invalid_argument(format!(
                        "images[{i}]: invalid image: {why}"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Response::new(VectorizeBatchResponse { results: out }))
    }

    async fn embed_regions(
        &self,
        request: Request<rvc_proto::ml::EmbedRegionsRequest>,
    ) -> Result<Response<rvc_proto::ml::EmbedRegionsResponse>, Status> {
        crate::regions::handle(
            &self.regions,
            &self.info.model_version,
            request.into_inner(),
        )
        .await
        .map(Response::new)
    }

    async fn get_model_info(
        &self,
        _request: Request<GetModelInfoRequest>,
    ) -> Result<Response<ModelInfo>, Status> {
        Ok(Response::new(self.info.clone()))
    }
}

/// Loads the model from `cfg` and serves until `shutdown` completes. See [`serve_with_embedder`].
pub async fn serve(
    listener: TcpListener,
    cfg: ServiceConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MlError> {
    let embedder_cfg = cfg.embedder.clone();
    let embedder = tokio::task::spawn_blocking(move || Embedder::load(embedder_cfg))
        .await
        .map_err(|e| MlError::Config(format!("model loading task failed: {e}")))??;
    serve_with_embedder(listener, cfg, Arc::new(embedder), shutdown).await
}

/// How often the health reporter looks at the inference threads.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Whether the service can embed images right now: what gRPC health reports and what the
/// HTTP `/readyz` answers. False before the model is serving, once no inference thread is
/// left, and from shutdown on.
#[derive(Debug, Clone, Default)]
pub struct Serving(Arc<AtomicBool>);

impl Serving {
    pub fn is_serving(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self, serving: bool) {
        self.0.store(serving, Ordering::SeqCst);
    }

    /// The HTTP `/readyz` check: ready exactly while [`Self::is_serving`].
    pub fn ready_check(&self) -> rvc_runtime::health::ReadyCheck {
        let state = self.clone();
        Arc::new(move || {
            let serving = state.is_serving();
            Box::pin(async move {
                if serving {
                    Ok(())
                } else {
                    Err("no inference thread is running (or shutting down)".to_owned())
                }
            })
        })
    }
}

/// [`serve_with_health`] with a [`Serving`] state nobody else reads.
pub async fn serve_with_embedder(
    listener: TcpListener,
    cfg: ServiceConfig,
    embedder: Arc<Embedder>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), MlError> {
    serve_with_health(listener, cfg, embedder, Serving::default(), shutdown).await
}

/// Reports the state to gRPC health: the ML service's own name and the whole server ("").
async fn report(reporter: &tonic_health::server::HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter
        .set_service_status(
            <MachineLearningServiceServer<MlService> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    reporter.set_service_status("", status).await;
}

/// Serves `MachineLearningService` and `grpc.health.v1.Health` on `listener` (bind port 0 in
/// tests) with an already loaded model, until `shutdown` completes; then reports NOT_SERVING,
/// stops accepting and lets in-flight calls finish.
///
/// Health follows the real state: SERVING while at least one inference thread runs, and
/// NOT_SERVING (gRPC health and `serving`, which backs `/readyz`) once none is left, so
/// clients (the vectorizer's readiness gate, a load balancer) stop sending work to a process
/// that cannot do it. A thread survives a panicking inference; it ends only when it cannot
/// renew its model state.
pub async fn serve_with_health(
    listener: TcpListener,
    cfg: ServiceConfig,
    embedder: Arc<Embedder>,
    serving: Serving,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), MlError> {
    let service = MlService::new(embedder, &cfg)?;
    let (reporter, health) = tonic_health::server::health_reporter();
    report(&reporter, true).await;
    serving.set(true);
    let watch = {
        let (service, reporter, serving) = (service.clone(), reporter.clone(), serving.clone());
        async move {
            let mut tick = tokio::time::interval(HEALTH_CHECK_INTERVAL);
            loop {
                tick.tick().await;
                let up = service.live_workers() > 0;
                if up != serving.is_serving() {
                    if up {
                        tracing::info!("inference threads back: SERVING");
                    } else {
                        tracing::error!(
                            "no inference thread is left: NOT_SERVING (restart the process)"
                        );
                    }
                    serving.set(up);
                    report(&reporter, up).await;
                }
            }
        }
    };
    let ml = MachineLearningServiceServer::new(service)
        .max_decoding_message_size(cfg.max_message_bytes)
        .max_encoding_message_size(cfg.max_message_bytes);
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "rvc-ml-service listening");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(ml)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => {
            result?;
            return Ok(());
        }
        () = shutdown => {}
        () = watch => {}
    }
    serving.set(false);
    report(&reporter, false).await;
    tracing::info!(
        grace_secs = cfg.shutdown_grace_secs,
        "shutting down: no new calls, finishing in-flight ones"
    );
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(cfg.shutdown_grace_secs), server).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
    tracing::info!("rvc-ml-service stopped");
    Ok(())
}
