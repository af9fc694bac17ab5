//! The web console of the read side, mounted by `rvc-catalog` at `/console` (issue #16).
//!
//! * **Static files** (`assets/`: HTML, one script, one stylesheet; no framework, no CDN) are
//!   compiled into the binary with `include_str!` and served without a key.
//! * **Data** comes from JSON routes that need an API key (`Authorization: Bearer`, rvc-auth):
//!   the catalog's own `GET /api/v1/products` (list) and `POST /api/v1/recognize`, plus the
//!   console's routes below. The page asks for the key once and keeps it in the tab's
//!   `sessionStorage`.
//!
//! | route | scope | what |
//! | --- | --- | --- |
//! | `GET /console/api/products/{id or sku}` | `catalog:read` | the product, its photos and its redacted step timeline (`rvc_store::products::PublicProductView`) |
//! | `GET /console/api/products/{id}/images/{sha256}` | `catalog:read` | a photo of the current version, read from object storage |
//! | `GET /console/api/outbox` | `admin` | rows by step and state, oldest claimable age, the newest dead rows with their public error |
//!
//! Mounting (actix-web), inside `HttpServer::new`:
//! ```ignore
//! App::new().configure(|cfg| rvc_console::configure(cfg, console.clone()))
//! ```

mod api;
mod assets;

pub use api::{DeadRow, OutboxView, Problem};

use actix_web::web;
use rvc_auth::{Authenticator, Scope};
use rvc_objects::ObjectStore;
use std::sync::Arc;

/// What the console's routes need; cheap to clone (one per HTTP worker).
#[derive(Clone)]
pub struct ConsoleState {
    pub pool: deadpool_postgres::Pool,
    /// Where the photos are (the uploader's bucket).
    pub objects: Arc<dyn ObjectStore>,
    /// Checks the key of every data route.
    pub auth: Authenticator,
}

impl std::fmt::Debug for ConsoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleState")
            .field("objects", &self.objects.location())
            .finish_non_exhaustive()
    }
}

/// The object store `config` names, without contacting it (the read side starts, and serves
/// its reads, while object storage is down; a photo then answers 503).
pub fn open_objects(
    config: &rvc_objects::ObjectStoreConfig,
) -> Result<Arc<dyn ObjectStore>, rvc_objects::ObjectStoreError> {
    Ok(match config.s3() {
        Some(s3) => Arc::new(rvc_objects::S3Store::new(s3)?),
        None => Arc::new(rvc_objects::FsStore::new(&config.object_store_dir)),
    })
}

/// Most dead rows `GET /console/api/outbox` lists.
pub const MAX_DEAD_ROWS: i64 = 200;

/// Mounts `/console` (static files, public) and `/console/api/...` (key required).
pub fn configure(cfg: &mut web::ServiceConfig, state: ConsoleState) {
    let auth = state.auth.clone();
    cfg.service(
        web::scope("/console")
            .app_data(web::Data::new(state))
            .service(
                web::scope("/api")
                    .route(
                        "/products/{product}",
                        web::get()
                            .to(api::product)
                            .wrap(auth.require(Scope::CatalogRead)),
                    )
                    .route(
                        "/products/{id}/images/{sha256}",
                        web::get()
                            .to(api::image)
                            .wrap(auth.require(Scope::CatalogRead)),
                    )
                    .route(
                        "/outbox",
                        web::get().to(api::outbox).wrap(auth.require(Scope::Admin)),
                    )
                    .default_service(web::to(api::no_such_route)),
            )
            .route("", web::get().to(assets::redirect_to_index))
            .route("/", web::get().to(assets::index))
            .route("/{file}", web::get().to(assets::file)),
    );
}
