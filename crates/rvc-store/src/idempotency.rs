//! Stored responses for `Idempotency-Key` (the ingest API's retries): one row per key, looked
//! up under a transaction-scoped lock so two requests with one key run one after the other.
//! Pruning by age is in [`crate::retention`].
use crate::{DbContext, StoreError};
use tokio_postgres::GenericClient;

/// Second key of the advisory lock on an idempotency key (`hashtextextended(key, 7)`).
const LOCK_SEED: i64 = 7;

/// A response stored under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    /// Hash of the request's content (fields and photo hashes), to refuse a key reused for a
    /// different request.
    pub request_hash: String,
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// Serialises requests with the same key (a transaction-scoped advisory lock, released when
/// `tx` ends), then looks the key up.
pub async fn lock_and_find<C: GenericClient>(
    tx: &C,
    key: &str,
) -> Result<Option<StoredResponse>, StoreError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, $2))",
        &[&key, &LOCK_SEED],
    )
    .await
    .ctx("idempotency key lock")?;
    let row = tx
        .query_opt(
            "SELECT request_hash, response_status, response_headers, response_body
             FROM idempotency_keys WHERE idempotency_key = $1",
            &[&key],
        )
        .await
        .ctx("idempotency key lookup")?;
    let Some(r) = row else {
        return Ok(None);
    };
    let headers: serde_json::Value = r.try_get("response_headers").ctx("idempotency row")?;
    let status: i16 = r.try_get("response_status").ctx("idempotency row")?;
    Ok(Some(StoredResponse {
        request_hash: r.try_get("request_hash").ctx("idempotency row")?,
        status: u16::try_from(status)
            .map_err(|_| StoreError::Corrupt(format!("stored response status {status}")))?,
        location: headers
            .get("location")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        body: r.try_get("response_body").ctx("idempotency row")?,
    }))
}

/// Stores `response` under `key` (in the transaction that wrote what it answers).
pub async fn store<C: GenericClient>(
    tx: &C,
    key: &str,
    response: &StoredResponse,
) -> Result<(), StoreError> {
    let headers = serde_json::json!({ "location": response.location });
    let status = i16::try_from(response.status)
        .map_err(|_| StoreError::Corrupt(format!("response status {}", response.status)))?;
    tx.execute(
        "INSERT INTO idempotency_keys
           (idempotency_key, request_hash, response_status, response_headers, response_body)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &key,
            &response.request_hash,
            &status,
            &headers,
            &response.body,
        ],
    )
    .await
    .ctx("store idempotency key")?;
    Ok(())
}
