//! Argument groups shared by the binaries (`#[command(flatten)]`), each bound to its
//! environment variable so `--help` lists the variable and its default.
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TelemetryArgs {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// Log filter, tracing-subscriber EnvFilter syntax (also read from RUST_LOG).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,
    /// OTLP/gRPC collector for traces, e.g. http://127.0.0.1:4317. Unset: spans are only logged.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,
}

#[derive(Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL (the single source of truth).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/rvc",
        hide_env_values = true
    )]
    pub database_url: SecretString,
    /// Maximum connections in the pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,
}

impl DatabaseArgs {
    pub fn url(&self) -> &str {
        self.database_url.expose_secret()
    }
}

impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("database_url", &redact_url(self.url()))
            .field("database_pool_size", &self.database_pool_size)
            .finish()
    }
}

/// A database URL for log lines, rebuilt from the parsed configuration so no form of it
/// leaks a password: `postgres://user:secret@host/db`, `postgres://u@h/db?password=secret`
/// and the key=value form `host=h user=u password=secret` all come out as
/// `postgres://user:***@host:port/db`. Text that does not parse is not echoed at all.
pub fn redact_url(url: &str) -> String {
    let Ok(cfg) = url.parse::<tokio_postgres::Config>() else {
        return "<unparseable DATABASE_URL>".to_owned();
    };
    let user = cfg.get_user().unwrap_or("");
    let auth = match (user.is_empty(), cfg.get_password().is_some()) {
        (_, true) => format!("{user}:***@"),
        (false, false) => format!("{user}@"),
        (true, false) => String::new(),
    };
    let ports = cfg.get_ports();
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }
        })
        .collect();
    let db = cfg.get_dbname().unwrap_or("");
    format!("postgres://{auth}{}/{db}", hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_every_form() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5433/db"),
            "postgres://u:***@h:5433/db"
        );
        let plain = redact_url("postgres://u@h/db");
        assert!(
            plain.starts_with("postgres://u@h") && plain.ends_with("/db"),
            "{plain}"
        );
        // Issue 11, item 9: these were logged verbatim.
        for url in [
            "host=h user=u password=s3cret dbname=db",
            "postgres://u@h:5433/db?password=s3cret",
            "postgres://u:s3cret@h/db?sslmode=disable",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains("s3cret"), "{url} -> {shown}");
            assert!(shown.starts_with("postgres://u:***@h"), "{url} -> {shown}");
            assert!(shown.ends_with("/db"), "{url} -> {shown}");
        }
        assert!(!redact_url("not a url s3cret").contains("s3cret"));
    }
}
