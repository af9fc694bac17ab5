//! `/healthz`, `/readyz` and `/metrics` (Prometheus text) on a worker's own port.
use crate::RuntimeError;
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

/// Buckets of every histogram whose name ends in `_seconds`: from 5 ms (an HTTP request, one
/// embedding) to an hour (registered → indexed behind a long outage). Without buckets the
/// exporter would render summaries, which cannot be aggregated across replicas.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn prometheus() -> Result<PrometheusHandle, RuntimeError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| RuntimeError::Metrics(e.to_string()))?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Sets `rvc_build_info{version, model_version} 1` (installing the recorder if needed), so a
/// dashboard can tell which release, and which embedding model, each process runs. Binaries
/// that load no model pass `""` (Prometheus drops an empty label).
pub fn build_info(model_version: &str) -> Result<(), RuntimeError> {
    prometheus()?;
    metrics::gauge!("rvc_build_info", "version" => env!("CARGO_PKG_VERSION"),
        "model_version" => model_version.to_owned())
    .set(1.0);
    Ok(())
}

pub type ReadyFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// A readiness probe: `Ok` when the process can do its work (database reachable ...).
pub type ReadyCheck = Arc<dyn Fn() -> ReadyFuture + Send + Sync>;

#[derive(Clone)]
struct State {
    metrics: PrometheusHandle,
    ready: ReadyCheck,
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn readyz(state: web::Data<State>) -> HttpResponse {
    match (state.ready)().await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        Err(why) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("not ready: {why}")),
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

/// Routes shared by every HTTP surface that exposes health and metrics.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

/// Starts the health/metrics server on `addr` (port 0 picks a free one). Returns the bound
/// address and the server future (spawn it; it stops when its handle is stopped or the
/// process ends).
pub fn serve(
    addr: &str,
    ready: ReadyCheck,
) -> Result<(std::net::SocketAddr, actix_web::dev::Server), RuntimeError> {
    let state = State {
        metrics: prometheus()?,
        ready,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .configure(configure)
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .map_err(|source| RuntimeError::Bind {
        addr: addr.to_owned(),
        source,
    })?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| RuntimeError::Bind {
            addr: addr.to_owned(),
            source: std::io::Error::other("no address bound"),
        })?;
    Ok((bound, server.run()))
}

/// A readiness state the API shares with its handlers: metrics + a probe.
pub fn app_state(ready: ReadyCheck) -> Result<impl Clone + 'static, RuntimeError> {
    Ok(web::Data::new(State {
        metrics: prometheus()?,
        ready,
    }))
}
