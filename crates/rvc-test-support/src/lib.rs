//! Real dependencies for tests, each on a free loopback port, torn down on drop.
//!
//! Test-only code: `unwrap`/`expect` are fine here, a failure to start a dependency is a
//! failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cpu;
pub mod images;
pub mod kafka;
pub mod latency;
pub mod net;
pub mod objects;
pub mod outbox;
pub mod paths;
pub mod postgres;
pub mod process;
pub mod products;
pub mod proxy;
pub mod recognition;
pub mod s3;
pub mod wait;

pub use postgres::TestDb;
pub use wait::{wait_for, wait_until};

/// Installs a test tracing subscriber once (honours RUST_LOG).
pub fn init_tracing() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}
