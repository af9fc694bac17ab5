//! Building and running the HTTP server.
use crate::config::{Config, Limits};
use crate::openapi::ApiDoc;
use crate::problem::Problem;
use crate::routes::products;
use actix_web::dev::{Server, Service};
use actix_web::{web, App, HttpServer};
use deadpool_postgres::Pool;
use rvc_runtime::health::ReadyCheck;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use rvc_auth::{AuthMode, Authenticator, Scope};

/// What every handler shares.
pub struct AppState {
    pub pool: Pool,
    pub limits: Limits,
    /// The read side's cache, invalidated right after each commit (None: no REDIS_URL).
    pub cache: Option<Arc<dyn rvc_cache::ProductCache>>,
    /// Request-body bytes in memory, in KiB permits (`MAX_INFLIGHT_BODY_BYTES`).
    pub admission: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(
        pool: Pool,
        limits: Limits,
        cache: Option<Arc<dyn rvc_cache::ProductCache>>,
    ) -> Self {
        let kib =
            (limits.max_inflight_body_bytes / 1024).clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        Self {
            pool,
            admission: Arc::new(tokio::sync::Semaphore::new(kib)),
            limits,
            cache,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] rvc_store::StoreError),
    #[error(transparent)]
    Runtime(#[from] rvc_runtime::RuntimeError),
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("DEFAULT_CURRENCY: {0}")]
    Currency(rvc_domain::DomainError),
    #[error(transparent)]
    Cache(#[from] rvc_cache::CacheError),
    #[error(transparent)]
    Auth(#[from] rvc_auth::BuildError),
    #[error("AUTH_MODE=disabled is only allowed on a loopback HTTP_ADDR, not {0}")]
    AuthDisabledOffLoopback(SocketAddr),
}

/// The API server, bound and ready to run.
pub struct Application {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    server: Server,
}

impl Application {
    /// Connects, migrates when `auto_migrate`, and binds `http_addr` (port 0 picks a free one).
    pub async fn build(config: Config) -> Result<Self, StartError> {
        rvc_domain::Currency::parse(&config.limits.default_currency)
            .map_err(StartError::Currency)?;
        tracing::info!(db = ?config.db, "connecting to Postgres");
        if config.auto_migrate {
            let applied = rvc_store::migrations::run(config.db.url()).await?;
            tracing::info!(applied = applied.len(), "migrations up to date");
        }
        let pool = rvc_runtime::db::pool(&config.db).map_err(rvc_store::StoreError::from)?;
        let listener = TcpListener::bind(&config.http_addr).map_err(|source| StartError::Bind {
            addr: config.http_addr.clone(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.http_addr.clone(),
            source,
        })?;
        let cache: Option<Arc<dyn rvc_cache::ProductCache>> = match config
            .redis_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            Some(url) => {
                let mut cfg = rvc_cache::CacheConfig::new(url);
                cfg.prefix.clone_from(&config.cache_key_prefix);
                cfg.tombstone_ttl =
                    std::time::Duration::from_secs(config.cache_tombstone_ttl_secs.max(1));
                let cache =
                    rvc_cache::RedisCache::connect(cfg, std::time::Duration::from_secs(2)).await?;
                Some(Arc::new(cache))
            }
            None => None,
        };
        if config.auth.auth_mode == AuthMode::Disabled && !addr.ip().is_loopback() {
            return Err(StartError::AuthDisabledOffLoopback(addr));
        }
        let auth = Authenticator::build(config.auth.clone(), pool.clone()).await?;
        let mut metrics_addr = None;
        let separate_health = match &config.metrics_addr {
            Some(m) if !m.trim().is_empty() => {
                let (bound, health) = rvc_runtime::health::serve(m, readiness(pool.clone()))?;
                tracing::info!(addr = %bound, "health and metrics on their own address");
                metrics_addr = Some(bound);
                tokio::spawn(health);
                true
            }
            _ => false,
        };
        let server = run(
            listener,
            pool,
            config.limits,
            config.http_workers,
            auth,
            !separate_health,
            cache,
        )?;
        Ok(Self {
            addr,
            metrics_addr,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where /healthz, /readyz and /metrics are served when METRICS_ADDR is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until SIGTERM/SIGINT (actix stops gracefully: in-flight requests finish).
    pub async fn run_until_stopped(self) -> Result<(), std::io::Error> {
        self.server.await
    }

    /// The server future and a handle, for tests that stop it themselves.
    pub fn into_server(self) -> Server {
        self.server
    }
}

/// Readiness answers with a public reason only; the driver's error goes to the log.
fn readiness(pool: Pool) -> ReadyCheck {
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            rvc_store::ping(&pool).await.map_err(|e| {
                tracing::warn!(error = %e, "readiness: database unreachable");
                "database unreachable".to_owned()
            })?;
            match rvc_store::migrations::is_current(&pool).await {
                Ok(true) => Ok(()),
                Ok(false) => Err("migrations not applied: run `rvcctl migrate`".to_owned()),
                Err(e) => {
                    tracing::warn!(error = %e, "readiness: migration check failed");
                    Err("database check failed".to_owned())
                }
            }
        })
    })
}

fn run(
    listener: TcpListener,
    pool: Pool,
    limits: Limits,
    workers: usize,
    auth: Authenticator,
    health_here: bool,
    cache: Option<Arc<dyn rvc_cache::ProductCache>>,
) -> Result<Server, StartError> {
    let health = rvc_runtime::health::app_state(readiness(pool.clone()))?;
    let state = web::Data::new(AppState::new(pool, limits, cache));
    let openapi = ApiDoc::openapi();
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap_fn(|req, srv| {
                let start = Instant::now();
                let method = req.method().to_string();
                let span = tracing::info_span!("http_request", %method, path = %req.path());
                if let Some(tp) = req
                    .headers()
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                {
                    rvc_runtime::telemetry::set_remote_parent(&span, tp);
                }
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    let route = res
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_owned());
                    let status = res.status().as_u16().to_string();
                    metrics::counter!("rvc_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
                        .increment(1);
                    metrics::histogram!("rvc_http_request_duration_seconds", "method" => method, "route" => route)
                        .record(start.elapsed().as_secs_f64());
                    Ok(res)
                }
                .instrument(span)
            })
            .app_data(state.clone())
            .app_data(health.clone())
            .app_data(web::QueryConfig::default().error_handler(|e, _| {
                Problem::bad_request(format!("invalid query string: {e}")).into()
            }))
            .app_data(web::PathConfig::default().error_handler(|e, _| {
                Problem::bad_request(format!("invalid path: {e}")).into()
            }))
            .configure(|cfg| {
                if health_here {
                    rvc_runtime::health::configure(cfg)
                }
            })
            // Every API route names its scope (rvc-auth: 401/403/429 problem+json).
            .service(
                web::scope("/api/v1")
                    .route(
                        "/products",
                        web::post()
                            .to(products::create)
                            .wrap(auth.require(Scope::CatalogWrite)),
                    )
                    .route(
                        "/products",
                        web::get()
                            .to(products::get_by_sku)
                            .wrap(auth.require(Scope::CatalogRead)),
                    )
                    .route(
                        "/products",
                        web::delete()
                            .to(products::archive_by_sku)
                            .wrap(auth.require(Scope::CatalogWrite)),
                    )
                    .route(
                        "/products/{id}",
                        web::get()
                            .to(products::get_by_id)
                            .wrap(auth.require(Scope::CatalogRead)),
                    )
                    .route(
                        "/products/{id}",
                        web::delete()
                            .to(products::archive_by_id)
                            .wrap(auth.require(Scope::CatalogWrite)),
                    ),
            )
            .service(SwaggerUi::new("/swagger/{_:.*}").url("/api-docs/openapi.json", openapi.clone()))
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(Problem::not_found("no such endpoint; see /swagger/index.html"))
            }))
    })
    .listen(listener)
    .map_err(|source| StartError::Bind {
        addr: "listener".to_owned(),
        source,
    })?;
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}
