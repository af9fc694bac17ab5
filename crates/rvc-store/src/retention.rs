//! Age-based pruning of tables that only grow otherwise.
use crate::{DbContext, StoreError};
use std::time::Duration;
use tokio_postgres::GenericClient;

/// Deletes stored Idempotency-Key responses older than `retention`, in chunks (a retry of a
/// request older than that is treated as a new request). Returns how many went.
pub async fn prune_idempotency_keys<C: GenericClient>(
    db: &C,
    retention: Duration,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let n = db
            .execute(
                "DELETE FROM idempotency_keys WHERE idempotency_key IN (
                   SELECT idempotency_key FROM idempotency_keys
                   WHERE created_at < now() - make_interval(secs => $1)
                   LIMIT 5000)",
                &[&retention.as_secs_f64()],
            )
            .await
            .ctx("prune idempotency keys")?;
        total += n;
        if n < 5000 {
            return Ok(total);
        }
    }
}
