//! Shared plumbing of the rvc binaries: configuration arguments, `.env` loading, logging and
//! tracing, Prometheus metrics, the health/metrics HTTP endpoint of workers and shutdown signals.

pub mod args;
pub mod health;
pub mod shutdown;
pub mod telemetry;

pub use args::{DatabaseArgs, LogFormat, TelemetryArgs};

/// Loads `.env` from the working directory if there is one. Variables already set win.
pub fn load_dotenv() {
    match dotenvy::dotenv() {
        Ok(path) => eprintln!("loaded environment from {}", path.display()),
        Err(e) if e.not_found() => {}
        Err(e) => eprintln!("warning: could not read .env: {e}"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not install the tracing subscriber: {0}")]
    Tracing(String),
    #[error("could not install the Prometheus recorder: {0}")]
    Metrics(String),
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}
