//! Shared helpers of the rvc-ml-service tests: the real model, fixtures, an in-process server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rvc_ml_service::{Embedder, EmbedderConfig, ServiceConfig};
pub use rvc_test_support::paths::model_path;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

pub fn embedder_config() -> EmbedderConfig {
    EmbedderConfig {
        model_path: model_path(),
        ..EmbedderConfig::default()
    }
}

/// One loaded model per test process.
pub fn embedder() -> Arc<Embedder> {
    static E: OnceLock<Arc<Embedder>> = OnceLock::new();
    E.get_or_init(|| Arc::new(Embedder::load(embedder_config()).expect("load the model")))
        .clone()
}

pub fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    (dot / (na * nb)) as f32
}

/// A server running in this process on a free loopback port.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), rvc_ml_service::MlError>>>,
}

impl TestServer {
    pub async fn start(cfg: ServiceConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(rvc_ml_service::serve_with_embedder(
            listener,
            cfg,
            embedder(),
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(
        &self,
    ) -> rvc_proto::ml::machine_learning_service_client::MachineLearningServiceClient<
        tonic::transport::Channel,
    > {
        rvc_proto::ml::machine_learning_service_client::MachineLearningServiceClient::connect(
            self.url(),
        )
        .await
        .expect("connect to the in-process server")
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024)
    }

    /// Signals shutdown and waits for `serve` to return (bounded).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(std::time::Duration::from_secs(20), h)
                .await
                .expect("server stops within 20 s")
                .expect("server task")
                .expect("serve returns Ok");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn service_config() -> ServiceConfig {
    ServiceConfig {
        embedder: embedder_config(),
        workers: 2,
        queue_capacity: 16,
        max_batch: 8,
        max_message_bytes: 8 * 1024 * 1024,
        shutdown_grace_secs: 10,
        // no pooled (R-MAC) plan: these tests do not use EmbedRegions' pooled boxes
        regions: rvc_ml_service::RegionsConfig {
            pooling_input_size: 0,
            ..Default::default()
        },
    }
}

/// A `grpc.health.v1.Health` client (tonic-health generates no `connect`).
pub async fn health_client(
    url: &str,
) -> Result<
    tonic_health::pb::health_client::HealthClient<tonic::transport::Channel>,
    tonic::transport::Error,
> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect()
        .await?;
    Ok(tonic_health::pb::health_client::HealthClient::new(channel))
}
