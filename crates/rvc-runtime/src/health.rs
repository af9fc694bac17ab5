//! `/healthz`, `/readyz` and `/metrics` (Prometheus text) on a worker's own port.
use crate::RuntimeError;
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn prometheus() -> Result<PrometheusHandle, RuntimeError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| RuntimeError::Metrics(e.to_string()))?;
    Ok(HANDLE.get_or_init(|| handle).clone())
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
