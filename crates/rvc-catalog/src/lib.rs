//! `rvc-catalog`, the read side: tonic `rvc.catalog.v1.ProductService` (with gRPC health and
//! reflection) on `GRPC_ADDR`, HTTP reads, health, metrics, OpenAPI and Swagger UI on
//! `CATALOG_HTTP_ADDR`, and the cache invalidator, over one [`reader::Catalog`].
//!
//! How the cache stays fresh is described in docs/decisions.md ("Read side cache") and
//! docs/read-api.md.

pub mod config;
pub mod grpc;
pub mod http;
pub mod invalidator;
pub mod model;
pub mod reader;

pub use config::{CacheArgs, Config};
pub use reader::{Catalog, Lookup, ReaderOptions};

use actix_web::dev::{Server, Service};
use actix_web::{web, App, HttpServer};
use rvc_cache::{NoCache, ProductCache, RedisCache};
use rvc_proto::catalog::product_service_server::ProductServiceServer;
use rvc_runtime::health::ReadyCheck;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] rvc_store::StoreError),
    #[error(transparent)]
    Cache(#[from] rvc_cache::CacheError),
    #[error(transparent)]
    Runtime(#[from] rvc_runtime::RuntimeError),
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("gRPC reflection: {0}")]
    Reflection(String),
    #[error("gRPC server: {0}")]
    Grpc(String),
}

/// The cache `config` asks for: Redis when `REDIS_URL` is set, otherwise none.
pub async fn cache_from(args: &CacheArgs) -> Result<Arc<dyn ProductCache>, StartError> {
    match args.url() {
        Some(url) => {
            let cache = RedisCache::connect(args.cache_config(url), Duration::from_secs(2)).await?;
            Ok(Arc::new(cache))
        }
        None => {
            tracing::warn!("REDIS_URL unset: product cache off, every read goes to Postgres");
            Ok(Arc::new(NoCache))
        }
    }
}

/// The running service: bound addresses, and a stop handle.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub catalog: Arc<Catalog>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    http: actix_web::dev::ServerHandle,
}

impl Running {
    /// Stops everything (graceful) and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.http.stop(true).await;
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Waits until `shutdown` (the token given to [`start`]) is cancelled, then stops.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.stop().await;
    }
}

/// Starts gRPC, HTTP and (when configured) the invalidator on the current tokio runtime.
pub async fn start(
    config: &Config,
    cache: Arc<dyn ProductCache>,
    opts: ReaderOptions,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let pool = rvc_store::pool(config.db.url(), config.db.database_pool_size)?;
    let opts = ReaderOptions {
        invalidator_in_process: config.cache.cache_invalidator,
        fill_max_age: Duration::from_secs(config.cache.cache_tombstone_ttl_secs.max(1)) / 2,
        ..opts
    };
    let catalog = Arc::new(Catalog::new(pool.clone(), cache, opts));
    let mut tasks = Vec::new();

    if config.cache.cache_invalidator {
        let pg = rvc_store::pg_config(config.db.url())?;
        let cfg = invalidator::InvalidatorConfig {
            poll_interval: Duration::from_millis(config.cache.cache_invalidator_poll_ms.max(10)),
            ..Default::default()
        };
        tasks.push(tokio::spawn(invalidator::run(
            catalog.clone(),
            pg,
            cfg,
            shutdown.clone(),
        )));
    }

    // gRPC
    let grpc_listener = tokio::net::TcpListener::bind(&config.grpc_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.grpc_addr.clone(),
            source,
        })?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            addr: config.grpc_addr.clone(),
            source,
        })?;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ProductServiceServer<grpc::ProductGrpc>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rvc_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| StartError::Reflection(e.to_string()))?;
    let products = ProductServiceServer::new(grpc::ProductGrpc {
        catalog: catalog.clone(),
        max_ids: config.max_ids,
    });
    let grpc_shutdown = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        // TCP_NODELAY: without it a small reply waits ~40 ms for the client's delayed ACK
        let incoming =
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let result = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(products)
            .serve_with_incoming_shutdown(incoming, grpc_shutdown.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server stopped with an error");
        }
    }));

    // HTTP
    let listener = TcpListener::bind(&config.http_addr).map_err(|source| StartError::Bind {
        addr: config.http_addr.clone(),
        source,
    })?;
    let http_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.http_addr.clone(),
        source,
    })?;
    let server = http_server(
        listener,
        catalog.clone(),
        config.max_ids,
        config.http_workers,
    )?;
    let http = server.handle();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "HTTP server stopped with an error");
        }
    }));
    tracing::info!(%grpc_addr, %http_addr, "rvc-catalog listening");
    Ok(Running {
        grpc_addr,
        http_addr,
        catalog,
        shutdown,
        tasks,
        http,
    })
}

fn readiness(pool: rvc_store::PgPool) -> ReadyCheck {
    Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            rvc_store::ping(&pool).await.map_err(|e| e.to_string())?;
            match rvc_store::migrations::is_current(&pool).await {
                Ok(true) => Ok(()),
                Ok(false) => Err("migrations not applied: run `rvcctl migrate`".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        })
    })
}

fn http_server(
    listener: TcpListener,
    catalog: Arc<Catalog>,
    max_ids: usize,
    workers: usize,
) -> Result<Server, StartError> {
    let health = rvc_runtime::health::app_state(readiness(catalog.pool().clone()))?;
    let state = web::Data::new(http::HttpState { catalog, max_ids });
    let openapi = http::ApiDoc::openapi();
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
                http::Problem::bad_request(format!("invalid query string: {e}")).into()
            }))
            .app_data(web::JsonConfig::default().limit(256 * 1024).error_handler(|e, _| {
                http::Problem::bad_request(format!("invalid JSON body: {e}")).into()
            }))
            .configure(rvc_runtime::health::configure)
            .service(
                web::scope("/api/v1")
                    .route("/products", web::get().to(http::list))
                    .route("/products:batchGet", web::post().to(http::batch_get)),
            )
            .service(SwaggerUi::new("/swagger/{_:.*}").url("/api-docs/openapi.json", openapi.clone()))
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(http::Problem::not_found("no such endpoint; see /swagger/index.html"))
            }))
    })
    .disable_signals()
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
