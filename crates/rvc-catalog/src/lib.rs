//! `rvc-catalog`, the read side: tonic `rvc.catalog.v1.ProductService` and
//! `rvc.catalog.v1.RecognitionService` (with gRPC health and reflection) on `GRPC_ADDR`, HTTP
//! reads, `POST /api/v1/recognize`, health, metrics, OpenAPI and Swagger UI on
//! `CATALOG_HTTP_ADDR`, and the cache invalidator, over one [`reader::Catalog`]. Every API
//! route and RPC needs an API key with its scope (rvc-auth; [`openapi::http_scope`],
//! [`openapi::grpc_scope`]); health, metrics, the OpenAPI document, Swagger UI, gRPC health
//! and reflection are open.
//!
//! How the cache stays fresh is described in docs/decisions.md ("Read side cache") and
//! docs/read-api.md.

pub mod config;
pub mod grpc;
pub mod http;
pub mod invalidator;
pub mod model;
pub mod openapi;
pub mod reader;
pub mod recognition;

pub use config::{CacheArgs, Config, RecognitionArgs};
pub use reader::{Catalog, Lookup, ReaderOptions};

use actix_web::dev::{Server, Service};
use actix_web::{web, App, HttpServer};
use rvc_auth::{AuthMode, Authenticator, Scope};
use rvc_cache::{NoCache, ProductCache, RedisCache};
use rvc_proto::catalog::product_service_server::ProductServiceServer;
use rvc_proto::catalog::recognition_service_server::RecognitionServiceServer;
use rvc_recognition::grpc::RecognitionGrpc;
use rvc_recognition::http::{HttpLimits, RecognizeState};
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
    #[error(transparent)]
    Auth(#[from] rvc_auth::BuildError),
    #[error("AUTH_MODE=disabled is only allowed on loopback addresses, not {0}")]
    AuthDisabledOffLoopback(SocketAddr),
    #[error("recognition: {0}")]
    Recognition(#[from] rvc_recognition::RecognitionError),
    #[error("object storage: {0}")]
    Objects(#[from] rvc_objects::ObjectStoreError),
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
    /// Where /healthz, /readyz and /metrics are served when METRICS_ADDR is set.
    pub metrics_addr: Option<SocketAddr>,
    pub catalog: Arc<Catalog>,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    http: actix_web::dev::ServerHandle,
    health: Option<actix_web::dev::ServerHandle>,
}

impl Running {
    /// Stops everything (graceful) and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.http.stop(true).await;
        if let Some(h) = self.health {
            h.stop(true).await;
        }
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
/// Recognition's backends (ML service, vector index) are not contacted here: recognition
/// answers 503 / UNAVAILABLE while they are unreachable.
pub async fn start(
    config: &Config,
    cache: Arc<dyn ProductCache>,
    opts: ReaderOptions,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let pool = rvc_runtime::db::pool(&config.db).map_err(rvc_store::StoreError::from)?;
    let opts = ReaderOptions {
        invalidator_in_process: config.cache.cache_invalidator,
        fill_max_age: Duration::from_secs(config.cache.cache_tombstone_ttl_secs.max(1)) / 2,
        ..opts
    };
    let catalog = Arc::new(Catalog::new(pool.clone(), cache, opts));
    let auth = Authenticator::build(config.auth.clone(), pool.clone()).await?;
    let recognizer = recognition::recognizer(&config.recognition, catalog.clone())?;
    // recognition follows the active model of the models table (a model migration's switch)
    let follower = recognition::spawn_model_follower(
        pool.clone(),
        recognizer.clone(),
        config.recognition.clone(),
        shutdown.clone(),
    );
    // the web console (/console): photos from object storage, not contacted at start
    let console = rvc_console::ConsoleState {
        pool: pool.clone(),
        objects: rvc_console::open_objects(&config.objects)?,
        auth: auth.clone(),
    };
    let mut tasks = vec![follower];

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
    health_reporter
        .set_serving::<RecognitionServiceServer<RecognitionGrpc>>()
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
    let recognition = RecognitionGrpc::new(recognizer.clone()).into_server();

    // HTTP
    let listener = TcpListener::bind(&config.http_addr).map_err(|source| StartError::Bind {
        addr: config.http_addr.clone(),
        source,
    })?;
    let http_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.http_addr.clone(),
        source,
    })?;
    if auth.mode() == AuthMode::Disabled {
        for addr in [grpc_addr, http_addr] {
            if !addr.ip().is_loopback() {
                return Err(StartError::AuthDisabledOffLoopback(addr));
            }
        }
    }
    let separate_health = config
        .metrics_addr
        .as_deref()
        .filter(|m| !m.trim().is_empty());
    let server = http_server(
        listener,
        HttpParts {
            catalog: catalog.clone(),
            max_ids: config.max_ids,
            workers: config.http_workers,
            auth: auth.clone(),
            recognize: RecognizeState {
                recognizer,
                limits: HttpLimits::default(),
            },
            health_here: separate_health.is_none(),
            console,
        },
    )?;
    let mut metrics_addr = None;
    let mut health = None;
    if let Some(m) = separate_health {
        let (bound, health_server) = rvc_runtime::health::serve(m, readiness(pool.clone()))?;
        tracing::info!(addr = %bound, "health and metrics on their own address");
        metrics_addr = Some(bound);
        health = Some(health_server.handle());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = health_server.await {
                tracing::error!(error = %e, "health server stopped with an error");
            }
        }));
    }
    let http = server.handle();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "HTTP server stopped with an error");
        }
    }));

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

    let grpc_shutdown = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        // TCP_NODELAY: without it a small reply waits ~40 ms for the client's delayed ACK
        let incoming =
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
        let result = tonic::transport::Server::builder()
            .layer(auth.grpc_layer(openapi::grpc_scope))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(products)
            .add_service(recognition)
            .serve_with_incoming_shutdown(incoming, grpc_shutdown.cancelled_owned())
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "gRPC server stopped with an error");
        }
    }));

    tracing::info!(%grpc_addr, %http_addr, "rvc-catalog listening");
    Ok(Running {
        grpc_addr,
        http_addr,
        metrics_addr,
        catalog,
        shutdown,
        tasks,
        http,
        health,
    })
}

/// Readiness answers with a public reason only; the driver's error goes to the log. It covers
/// the product reads (Postgres); recognition's backends are not part of it (reads keep serving
/// while the ML service is down; recognition then answers 503).
fn readiness(pool: rvc_store::PgPool) -> ReadyCheck {
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

/// What the HTTP server is built from.
struct HttpParts {
    catalog: Arc<Catalog>,
    max_ids: usize,
    workers: usize,
    auth: Authenticator,
    recognize: RecognizeState,
    /// Serve /healthz, /readyz, /metrics here (false when METRICS_ADDR has them).
    health_here: bool,
    console: rvc_console::ConsoleState,
}

fn http_server(listener: TcpListener, parts: HttpParts) -> Result<Server, StartError> {
    let HttpParts {
        catalog,
        max_ids,
        workers,
        auth,
        recognize,
        health_here,
        console,
    } = parts;
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
            .configure(|cfg| {
                if health_here {
                    rvc_runtime::health::configure(cfg)
                }
            })
            // Every API route names its scope (rvc-auth: 401/403/429 problem+json); the
            // scopes are the ones openapi::http_scope documents. Recognition comes before the
            // /api/v1 scope, which would otherwise take its path.
            .service(
                rvc_recognition::http::resource(recognize.clone())
                    .wrap(auth.require(Scope::Recognize)),
            )
            // the web console: static files open, its data routes need a key
            .configure(|cfg| rvc_console::configure(cfg, console.clone()))
            .service(
                web::scope("/api/v1")
                    .route(
                        "/products",
                        web::get()
                            .to(http::list)
                            .wrap(auth.require(Scope::CatalogRead)),
                    )
                    .route(
                        "/products:batchGet",
                        web::post()
                            .to(http::batch_get)
                            .wrap(auth.require(Scope::CatalogRead)),
                    ),
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
