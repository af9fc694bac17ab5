//! API keys for the catalog's HTTP and gRPC surfaces (issue #15).
//!
//! * Keys are `rvc_<id>_<secret>` ([`key`]); Postgres stores only their SHA-256
//!   (`rvc_store::api_keys`), compared in constant time.
//! * [`Authenticator::check`] parses `Authorization: Bearer <key>`, looks the id up through a
//!   cache of `AUTH_CACHE_TTL_SECS` (default 10 s: the bound on how late a revocation takes
//!   effect), checks revocation, expiry and scope, takes a rate-limit token and records the use
//!   at most once a minute.
//! * One actix-web middleware ([`Authenticator::require`]) and one tonic interceptor layer
//!   ([`Authenticator::grpc_layer`]) apply it per route.
//!
//! Mounting it (actix):
//! ```ignore
//! let auth = rvc_auth::Authenticator::build(config.auth.clone(), pool.clone()).await?;
//! App::new().service(web::scope("/api/v1")
//!     .route("/products", web::get().to(list).wrap(auth.require(Scope::CatalogRead))))
//! ```
//! and tonic:
//! ```ignore
//! Server::builder()
//!     .layer(auth.grpc_layer(|path| match path {
//!         p if p.starts_with("/grpc.health.") => None,
//!         p if p.starts_with("/rvc.catalog.v1.RecognitionService/") => Some(Scope::Recognize),
//!         _ => Some(Scope::CatalogRead),
//!     }))
//!     .add_service(...)
//! ```
//! Keys are never logged: only their public id (`key_id`).

pub mod actix;
pub mod authenticator;
pub mod config;
pub mod create;
pub mod error;
pub mod grpc;
pub mod key;
pub mod openapi;
pub mod ratelimit;
pub mod scope;

pub use authenticator::{Authenticator, BuildError, Principal};
pub use config::{AuthArgs, AuthMode, RateSpec};
pub use create::{create_key, CreatedKey};
pub use error::AuthError;
pub use scope::{Scope, Scopes};
