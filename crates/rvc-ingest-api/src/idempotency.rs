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
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::bad_request(
            "Idempotency-Key must be 1-255 visible ASCII characters",
        ));
    }
    Ok(Some(s.to_owned()))
}

/// A response stored under a key.
#[derive(Debug, Clone)]
pub struct Stored {
    pub request_hash: String,
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// Serialises requests with the same key (transaction-scoped advisory lock), then looks it up.
pub async fn lock_and_find<C: GenericClient>(db: &C, key: &str) -> Result<Option<Stored>, Problem> {
    db.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
        &[&key],
    )
    .await?;
    let row = db
        .query_opt(
            "SELECT request_hash, response_status, response_headers, response_body
             FROM idempotency_keys WHERE idempotency_key = $1",
            &[&key],
        )
        .await?;
    Ok(row.map(|r| {
        let headers: serde_json::Value = r.get(2);
        Stored {
            request_hash: r.get(0),
            status: u16::try_from(r.get::<_, i16>(1)).unwrap_or(500),
            location: headers
                .get("location")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            body: r.get(3),
        }
    }))
}

pub async fn store<C: GenericClient>(db: &C, key: &str, s: &Stored) -> Result<(), Problem> {
    let headers = serde_json::json!({ "location": s.location });
    let status = i16::try_from(s.status).unwrap_or(500);
    db.execute(
        "INSERT INTO idempotency_keys (idempotency_key, request_hash, response_status, response_headers, response_body)
         VALUES ($1, $2, $3, $4, $5)",
        &[&key, &s.request_hash, &status, &headers, &s.body],
    )
    .await?;
    Ok(())
}
