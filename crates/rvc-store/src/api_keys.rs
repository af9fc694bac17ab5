//! API keys (`api_keys`, migration V3): only the SHA-256 of a key is stored; the secret is
//! shown once, when the key is created. Parsing, hashing and checking keys live in `rvc-auth`.
use crate::{DbContext, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

/// One stored key (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    /// The public part of the key (`rvc_<id>_…`).
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub key_sha256: Vec<u8>,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What [`insert`] writes.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub key_sha256: &'a [u8],
    pub scopes: &'a [String],
    pub expires_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT id, name, key_sha256, scopes, created_at, last_used_at, expires_at,
                             revoked_at FROM api_keys";

fn record(r: &tokio_postgres::Row) -> Result<ApiKeyRecord, StoreError> {
    const CTX: &str = "api key row";
    Ok(ApiKeyRecord {
        id: r.try_get("id").ctx(CTX)?,
        name: r.try_get("name").ctx(CTX)?,
        key_sha256: r.try_get("key_sha256").ctx(CTX)?,
        scopes: r.try_get("scopes").ctx(CTX)?,
        created_at: r.try_get("created_at").ctx(CTX)?,
        last_used_at: r.try_get("last_used_at").ctx(CTX)?,
        expires_at: r.try_get("expires_at").ctx(CTX)?,
        revoked_at: r.try_get("revoked_at").ctx(CTX)?,
    })
}

pub async fn insert<C: GenericClient>(
    db: &C,
    k: &NewApiKey<'_>,
) -> Result<ApiKeyRecord, StoreError> {
    let row = db
        .query_one(
            "INSERT INTO api_keys (id, name, key_sha256, scopes, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING id, name, key_sha256, scopes, created_at, last_used_at, expires_at,
                       revoked_at",
            &[&k.id, &k.name, &k.key_sha256, &k.scopes, &k.expires_at],
        )
        .await
        .ctx("insert api key")?;
    record(&row)
}

/// The key whose public id is `id`, revoked or not.
pub async fn find<C: GenericClient>(db: &C, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
    db.query_opt(&format!("{SELECT} WHERE id = $1"), &[&id])
        .await
        .ctx("find api key")?
        .as_ref()
        .map(record)
        .transpose()
}

/// Every key, newest first; revoked ones only when `include_revoked`.
pub async fn list<C: GenericClient>(
    db: &C,
    include_revoked: bool,
) -> Result<Vec<ApiKeyRecord>, StoreError> {
    db.query(
        &format!("{SELECT} WHERE $1 OR revoked_at IS NULL ORDER BY created_at DESC, id"),
        &[&include_revoked],
    )
    .await
    .ctx("list api keys")?
    .iter()
    .map(record)
    .collect()
}

/// Revokes `id` (idempotent: an already revoked key keeps its first revocation time).
/// `None` when there is no such key.
pub async fn revoke<C: GenericClient>(
    db: &C,
    id: &str,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    db.query_opt(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
         RETURNING id, name, key_sha256, scopes, created_at, last_used_at, expires_at,
                   revoked_at",
        &[&id],
    )
    .await
    .ctx("revoke api key")?
    .as_ref()
    .map(record)
    .transpose()
}

/// Records a use of `id`, writing only when the stored time is older than `min_interval_secs`
/// (so a busy key costs at most one small UPDATE per interval, whatever the replicas do).
/// Returns whether a row was written.
pub async fn touch<C: GenericClient>(
    db: &C,
    id: &str,
    min_interval_secs: f64,
) -> Result<bool, StoreError> {
    let n = db
        .execute(
            "UPDATE api_keys SET last_used_at = now()
             WHERE id = $1
               AND (last_used_at IS NULL
                    OR last_used_at < now() - make_interval(secs => $2))",
            &[&id, &min_interval_secs],
        )
        .await
        .ctx("touch api key")?;
    Ok(n == 1)
}
