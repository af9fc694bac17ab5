//! `Idempotency-Key`: a retry with the same key and the same content gets the stored response
//! byte for byte; the same key with different content is refused (422).
//!
//! "Same content" is the parsed form (fields and photo hashes), not the raw bytes: a client
//! retrying with a new multipart boundary is still the same request.
use crate::problem::Problem;
use actix_web::http::header::HeaderMap;
use tokio_postgres::GenericClient;

pub const HEADER: &str = "Idempotency-Key";

/// The key from the request, if any; 1-255 visible ASCII characters.
pub fn key_from(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| Problem::bad_request("Idempotency-Key must be visible ASCII"))?
        .trim();
    let key = rvc_domain::IdempotencyKey::parse(s).map_err(|_| {
        Problem::bad_request("Idempotency-Key must be 1-255 visible ASCII characters")
    })?;
    Ok(Some(key.into_string()))
}

/// A response stored under a key (the row lives in `rvc_store::idempotency`).
pub use rvc_store::idempotency::StoredResponse as Stored;

/// Serialises requests with the same key (transaction-scoped advisory lock), then looks it up.
pub async fn lock_and_find<C: GenericClient>(db: &C, key: &str) -> Result<Option<Stored>, Problem> {
    Ok(rvc_store::idempotency::lock_and_find(db, key).await?)
}

/// Stores the response under `key`, in the transaction that wrote what it answers.
pub async fn store<C: GenericClient>(db: &C, key: &str, s: &Stored) -> Result<(), Problem> {
    Ok(rvc_store::idempotency::store(db, key, s).await?)
}
