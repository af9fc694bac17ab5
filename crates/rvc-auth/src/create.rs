//! Creating a key: generate, store the hash, hand the secret back once.
use crate::key::{generate, GeneratedKey};
use crate::scope::Scope;
use chrono::{DateTime, Utc};
use rvc_store::api_keys::{ApiKeyRecord, NewApiKey};
use tokio_postgres::GenericClient;

/// A key just created: `key` is the only copy of the secret.
pub struct CreatedKey {
    pub key: GeneratedKey,
    pub record: ApiKeyRecord,
}

/// Generates a key with `scopes` and stores its hash.
pub async fn create_key<C: GenericClient>(
    db: &C,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
) -> Result<CreatedKey, rvc_store::StoreError> {
    let key = generate();
    let mut names: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    let record = rvc_store::api_keys::insert(
        db,
        &NewApiKey {
            id: &key.id,
            name,
            key_sha256: &key.sha256,
            scopes: &names,
            expires_at,
        },
    )
    .await?;
    Ok(CreatedKey { key, record })
}
