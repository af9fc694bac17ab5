//! Choosing a backend from the environment.
use crate::error::Result;
use crate::{FsStore, ObjectStore, S3Config, S3Store};
use secrecy::SecretString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Object-store settings, flattened into each binary's clap args (`#[command(flatten)]`).
///
/// With `S3_ENDPOINT` set the S3 backend is used; without it objects go to the local
/// directory `OBJECT_STORE_DIR`.
#[derive(Clone, clap::Args)]
pub struct ObjectStoreConfig {
    /// S3-compatible endpoint, e.g. http://127.0.0.1:9000. Unset: objects are kept in OBJECT_STORE_DIR.
    #[arg(long, env = "S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Bucket holding the product images (created at start when missing).
    #[arg(long, env = "S3_BUCKET", default_value = "rvc-images")]
    pub s3_bucket: String,
    /// Region used to sign requests.
    #[arg(long, env = "S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Access key id.
    #[arg(long, env = "S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<SecretString>,
    /// Secret access key.
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<SecretString>,
    /// Per-request timeout for S3 calls, in seconds.
    #[arg(long, env = "S3_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub s3_request_timeout_secs: u64,
    /// Local directory used when S3_ENDPOINT is unset.
    #[arg(long, env = "OBJECT_STORE_DIR", default_value = "var/objects")]
    pub object_store_dir: PathBuf,
}

impl std::fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_region", &self.s3_region)
            .field(
                "s3_access_key_id",
                &self.s3_access_key_id.as_ref().map(|_| "***"),
            )
            .field(
                "s3_secret_access_key",
                &self.s3_secret_access_key.as_ref().map(|_| "***"),
            )
            .field("s3_request_timeout_secs", &self.s3_request_timeout_secs)
            .field("object_store_dir", &self.object_store_dir)
            .finish()
    }
}

impl ObjectStoreConfig {
    /// A config for the local directory backend.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            s3_endpoint: None,
            s3_bucket: "rvc-images".to_owned(),
            s3_region: "us-east-1".to_owned(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_request_timeout_secs: 30,
            object_store_dir: dir.into(),
        }
    }

    /// The S3 settings, when `S3_ENDPOINT` is set (and not blank).
    pub fn s3(&self) -> Option<S3Config> {
        let endpoint = self.s3_endpoint.as_deref()?.trim();
        if endpoint.is_empty() {
            return None;
        }
        Some(S3Config {
            endpoint: endpoint.to_owned(),
            region: self.s3_region.clone(),
            bucket: self.s3_bucket.clone(),
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            request_timeout: Duration::from_secs(self.s3_request_timeout_secs.max(1)),
        })
    }
}

/// Builds the configured store, makes sure its bucket (or directory) exists, and logs which
/// backend is in use. S3 when `S3_ENDPOINT` is set, else the directory `OBJECT_STORE_DIR`.
pub async fn from_config(config: &ObjectStoreConfig) -> Result<Arc<dyn ObjectStore>> {
    let store = build(config)?;
    store.ensure_bucket().await?;
    tracing::info!(
        backend = store.backend(),
        location = %store.location(),
        "object store ready"
    );
    Ok(store)
}

/// [`from_config`] for a long-running worker: only a configuration error fails. An
/// unreachable store or refused credentials are logged and the store is returned anyway (the
/// worker's readiness reports the store, and its rows retry or dead-letter with the reason,
/// visible in `rvcctl`).
pub async fn open_tolerant(config: &ObjectStoreConfig) -> Result<Arc<dyn ObjectStore>> {
    let store = build(config)?;
    match store.ensure_bucket().await {
        Ok(()) => tracing::info!(backend = store.backend(), location = %store.location(),
            "object store ready"),
        Err(e) if e.is_retryable() => tracing::warn!(backend = store.backend(),
            location = %store.location(), error = %e,
            "object store unreachable at start; retrying until it answers"),
        Err(e) => tracing::error!(backend = store.backend(), location = %store.location(),
            error = %e, "object store refused us at start (credentials? bucket?)"),
    }
    Ok(store)
}

/// The configured client, nothing asked of it yet.
fn build(config: &ObjectStoreConfig) -> Result<Arc<dyn ObjectStore>> {
    Ok(match config.s3() {
        Some(s3) => Arc::new(S3Store::new(s3)?),
        None => Arc::new(FsStore::new(&config.object_store_dir)),
    })
}
