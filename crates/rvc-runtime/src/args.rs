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
    /// Spans that are traced (get an OpenTelemetry context, a `traceparent` and, with an OTLP
    /// endpoint, are exported), EnvFilter syntax. Independent of RUST_LOG, which only filters
    /// log lines: `RUST_LOG=warn` keeps the traces.
    #[arg(long, env = "TRACE_FILTER", default_value = "info")]
    pub trace_filter: String,
    /// OTLP/gRPC collector for traces, e.g. http://127.0.0.1:4317. Unset: spans are not exported
    /// (they still get trace ids: the `traceparent` is stored and propagated).
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
    /// How long a task may wait for a free connection, in milliseconds; then it gets an
    /// error (a request answers 503, a step retries) instead of queueing without bound.
    #[arg(long, env = "DATABASE_POOL_WAIT_MS", default_value_t = 5000)]
    pub database_pool_wait_ms: u64,
}

impl DatabaseArgs {
    pub fn url(&self) -> &str {
        self.database_url.expose_secret()
    }

    pub fn pool_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.database_pool_wait_ms)
    }
}

impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("database_url", &redact_url(self.url()))
            .field("database_pool_size", &self.database_pool_size)
            .field("database_pool_wait_ms", &self.database_pool_wait_ms)
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

/// `T` with every field at the default its `#[arg(default_value…)]` attribute states, the
/// environment ignored. Defaults are written once, in the attribute; `Default` impls and the
/// constructors tests use start from this.
///
/// # Panics
/// When `T` has a required argument without a default: a programming error, which every
/// caller's unit test catches (see the tests below and in each crate).
#[allow(clippy::expect_used)]
pub fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    // Only a name for clap's messages; no program is run.
    const NAME: &str = "defaults";
    let cmd = T::augment_args(clap::Command::new(NAME).no_binary_name(true))
        .mut_args(|a| a.env(None::<&'static str>));
    let matches = cmd
        .try_get_matches_from(std::iter::empty::<String>())
        .expect("every argument of a defaults() type has a default");
    T::from_arg_matches(&matches).expect("defaults match the argument types")
}

#[cfg(test)]
mod defaults_tests {
    use super::*;

    #[test]
    fn defaults_come_from_the_attributes_not_the_environment() {
        // A variable set in this process must not leak into the defaults.
        std::env::set_var("DATABASE_POOL_SIZE", "3");
        let db: DatabaseArgs = defaults();
        assert_eq!(db.database_pool_size, 16);
        assert_eq!(db.database_pool_wait_ms, 5000);
        assert_eq!(db.url(), "postgres://postgres@127.0.0.1:5432/rvc");
    }
}
