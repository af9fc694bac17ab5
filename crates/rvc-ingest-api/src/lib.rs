//! The catalog's HTTP API.
//!
//! `POST /api/v1/products` validates a multipart form while it streams in, then writes the
//! product, its staged photos and an `upload_images` outbox row in one Postgres transaction;
//! the workers take it from there. [`Application`] can be started on port 0 in tests.

pub mod config;
pub mod form;
pub mod idempotency;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod startup;

pub use config::{Config, Limits};
pub use startup::{AppState, Application};
