/// Errors of the outbox itself (database access).
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Db(#[from] rvc_runtime::db::DbError),
    #[error("could not get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("outbox row has an invalid {field}: {value}")]
    Corrupt { field: &'static str, value: String },
    /// The owner's [`crate::RowHooks`] failed (the finishing transaction is not committed).
    #[error("row hook ({what}): {source}")]
    Hook {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub(crate) use rvc_runtime::db::DbContext;

/// Reads a text column into a domain type parsed from text (`OutboxKind`, `OutboxState`): a
/// type mismatch or an unknown value is an error, never a panic.
pub(crate) fn text_col<T: std::str::FromStr>(
    row: &tokio_postgres::Row,
    col: &'static str,
    ctx: &'static str,
) -> Result<T, OutboxError> {
    let text: String = row.try_get(col).ctx(ctx)?;
    text.parse().map_err(|_| OutboxError::Corrupt {
        field: col,
        value: text,
    })
}

/// How a step failed. Retryable failures go back to `pending` with backoff until
/// `max_attempts`; permanent ones (poison input) go `dead` at once.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    #[error("{0}")]
    Retryable(String),
    #[error("{0}")]
    Permanent(String),
}

impl StepError {
    pub fn retryable(msg: impl std::fmt::Display) -> Self {
        Self::Retryable(msg.to_string())
    }
    pub fn permanent(msg: impl std::fmt::Display) -> Self {
        Self::Permanent(msg.to_string())
    }
    /// An adapter's error as a step error: retryable when the adapter says a retry can fix it
    /// (network, timeouts, 5xx), permanent otherwise (poison input, refused credentials).
    pub fn classify(retryable: bool, msg: impl std::fmt::Display) -> Self {
        if retryable {
            Self::retryable(msg)
        } else {
            Self::permanent(msg)
        }
    }
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable(m) | Self::Permanent(m) => m,
        }
    }
}

impl From<OutboxError> for StepError {
    fn from(e: OutboxError) -> Self {
        StepError::Retryable(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StepError {
    fn from(e: tokio_postgres::Error) -> Self {
        StepError::Retryable(format!("database: {e}"))
    }
}
