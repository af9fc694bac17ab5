//! Shared plumbing of the rvc binaries: configuration arguments, `.env` loading, logging and
//! tracing, Prometheus metrics, the health/metrics HTTP endpoint of workers and shutdown signals.

pub mod args;
pub mod db;
pub mod health;
pub mod retry;
pub mod shutdown;
pub mod telemetry;

pub use args::{DatabaseArgs, LogFormat, TelemetryArgs};

/// Loads `.env` from the working directory (or the nearest parent that has one) if there is
/// one; variables already set win. A file that cannot be parsed is an error naming its path,
/// line number and variable (never the value, which may be a secret): silently dropping the
/// whole file would leave every other setting in it unapplied.
pub fn load_dotenv() -> Result<(), RuntimeError> {
    let Some(path) = find_dotenv() else {
        return Ok(());
    };
    match dotenvy::from_path(&path) {
        Ok(()) => {
            eprintln!("loaded environment from {}", path.display());
            Ok(())
        }
        Err(dotenvy::Error::LineParse(line, _)) => {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            Err(RuntimeError::DotEnv {
                path: path.display().to_string(),
                detail: describe_bad_line(&text, &line),
            })
        }
        Err(e) => Err(RuntimeError::DotEnv {
            path: path.display().to_string(),
            detail: e.to_string(),
        }),
    }
}

fn find_dotenv() -> Option<std::path::PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|dir| dir.join(".env"))
        .find(|candidate| candidate.is_file())
}

/// "line N (VARIABLE) …" for the text dotenvy rejected (the line, or the part of it from where
/// parsing failed); the value itself is never repeated, since it may be a secret.
fn describe_bad_line(file: &str, bad: &str) -> String {
    let fragment = bad.lines().next().unwrap_or(bad).trim();
    let found = file
        .lines()
        .enumerate()
        .find(|(_, line)| !fragment.is_empty() && line.contains(fragment));
    let (number, name) = match found {
        Some((i, line)) => (
            (i + 1).to_string(),
            line.split('=').next().unwrap_or("").trim().to_owned(),
        ),
        None => ("?".to_owned(), "?".to_owned()),
    };
    format!(
        "line {number} ({name}) cannot be parsed; quote values that hold spaces, globs or \
         `#` (for example {name}=\"...\")"
    )
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not read {path}: {detail}")]
    DotEnv { path: String, detail: String },
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
