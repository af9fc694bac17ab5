//! `rvc-vector-index`: a small gRPC server that speaks the subset of Qdrant's gRPC API that
//! rvc uses, over Qdrant's own embedded engine (`qdrant-edge`), persisted under a data dir.
//!
//! # Why this exists
//! Production talks to a real Qdrant server through `qdrant-client` (crate `rvc-vectors`).
//! No package registry reachable here ships a Qdrant server, and there is no Docker. Instead of
//! faking the adapter (an in-memory trait impl would leave the production code path untested),
//! this crate serves Qdrant's *wire protocol* (the tonic server traits generated inside
//! `qdrant-client`) on top of `qdrant-edge` 0.7.1, the storage/search engine Qdrant publishes
//! for embedded use. Tests and local runs therefore exercise the very `qdrant-client` calls
//! production makes, over real gRPC, against real on-disk segments.
//!
//! # What is served
//! | service | method | notes |
//! | --- | --- | --- |
//! | `qdrant.Qdrant` | `HealthCheck` | title names this server, version = the protocol version spoken |
//! | `qdrant.Collections` | `Create` | one unnamed dense vector (`size`, `distance`); other tuning knobs are accepted and ignored |
//! | | `Get` | status, points count, segments, vectors config (size + distance), payload schema |
//! | | `List`, `CollectionExists`, `Delete` | |
//! | `qdrant.Points` | `Upsert` | unnamed dense vectors, any JSON payload; always durable (flushed) before the reply |
//! | | `Delete` | by ids or by filter; flushed before the reply |
//! | | `Get` | by ids, with payload / vectors |
//! | | `Scroll` | filter, offset, limit (no `order_by`) |
//! | | `Count` | filter; always exact |
//! | | `Search` | nearest neighbours of a dense vector: filter, limit, offset, score threshold |
//! | | `Query` | only `query = nearest(dense vector)` without prefetch: same as `Search` |
//! | | `QueryBatch` | several such queries on one collection, run under one shard read lock |
//! | | `CreateFieldIndex`, `DeleteFieldIndex` | payload index (keyword, integer, float, bool, uuid, datetime, text, geo) |
//!
//! Filters support `must` / `should` / `must_not`, nested filters, field `match`
//! (keyword, integer, bool, text, any-of, except), field `range`, `has_id`, `is_empty`, `is_null`.
//!
//! Everything else answers `UNIMPLEMENTED` with a message naming the method or option:
//! collection update, aliases, cluster info/setup, shard keys, named / sparse / multi vectors,
//! `update_vectors`, `delete_vectors`, payload set/overwrite/delete/clear, vector names,
//! search/recommend batches, search/query groups, recommend, discover, `update_batch`, facet,
//! search matrix, `order_by`, `min_should`, geo / values-count / datetime-range conditions,
//! conditional upserts (`update_filter`, `update_mode`), shard key selectors and snapshots.
//!
//! # Durability
//! `qdrant-edge` 0.7.1 does not replay its WAL when a shard is loaded, so every write is
//! followed by `EdgeShard::flush` (WAL + segments) before the reply, whatever `wait` says:
//! a point acknowledged by this server survives `kill -9`. One process owns a data dir at a
//! time (an exclusive lock on `<data_dir>/.lock`).
//!
//! # Layout on disk
//! `<data_dir>/collections/<name>/` is one `EdgeShard` per collection. Creation builds the
//! shard under `<data_dir>/.staging/` and renames it into place, so a crash never leaves a
//! half-created collection; deletion renames into `<data_dir>/.trash/` before removing.

mod convert;
pub mod metrics;
mod service;
mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use qdrant_client::qdrant::collections_server::CollectionsServer;
use qdrant_client::qdrant::points_server::PointsServer;
use qdrant_client::qdrant::qdrant_server::QdrantServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use store::StoreError;

/// The Qdrant protocol version this server reports in its health check: the `qdrant-client`
/// version it is built and tested against (the client warns when major/minor differ by more
/// than one).
pub const PROTOCOL_VERSION: &str = "1.20.0";

/// Largest gRPC message accepted or sent (batches of 1280-d vectors are a few MiB).
const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory holding one `qdrant-edge` shard per collection (created when missing).
    pub data_dir: PathBuf,
}

/// Errors that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("vector store: {0}")]
    Store(#[from] StoreError),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Serve the Qdrant gRPC subset on `listener` until `shutdown` completes, then flush and close
/// every collection. Binding is the caller's job, so tests can pass a listener on port 0.
pub async fn serve<F>(listener: TcpListener, cfg: Config, shutdown: F) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send,
{
    let data_dir = cfg.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || store::Store::open(&data_dir))
        .await
        .map_err(|e| StoreError::Internal(format!("open task failed: {e}")))??;
    let store = Arc::new(store);
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        data_dir = %cfg.data_dir.display(),
        collections = store.collection_count(),
        "rvc-vector-index serving Qdrant gRPC subset"
    );

    let svc = service::VectorService::new(Arc::clone(&store));
    let points = PointsServer::new(svc.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let collections = CollectionsServer::new(svc.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let qdrant = QdrantServer::new(svc);

    tonic::transport::Server::builder()
        .layer(metrics::MetricsLayer)
        .add_service(qdrant)
        .add_service(collections)
        .add_service(points)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;

    tracing::info!("gRPC server stopped; closing collections");
    tokio::task::spawn_blocking(move || store.close())
        .await
        .map_err(|e| StoreError::Internal(format!("close task failed: {e}")))?;
    tracing::info!("rvc-vector-index stopped");
    Ok(())
}
