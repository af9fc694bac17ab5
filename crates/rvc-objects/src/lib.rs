//! Object storage for product images.
//!
//! [`ObjectStore`] is the small async interface the workers use; [`S3Store`] talks to any
//! S3-compatible server through rust-s3 (path-style), [`FsStore`] keeps objects in a local
//! directory (the embedded default when `S3_ENDPOINT` is unset). [`from_config`] picks one
//! from [`ObjectStoreConfig`] and logs which.
//!
//! Keys are validated the same way by both backends ([`validate_key`]); product images use
//! the deterministic [`product_image_key`].

pub mod config;
pub mod error;
pub mod fs;
pub mod key;
pub mod s3;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

pub use config::{from_config, open_tolerant, ObjectStoreConfig};
pub use error::{ObjectStoreError, Result};
pub use fs::FsStore;
pub use key::{
    product_image_key, product_prefix, validate_key, validate_metadata, MAX_KEY_LEN,
    MAX_METADATA_BYTES,
};
pub use s3::{S3Config, S3Store};

/// User metadata (`x-amz-meta-*` on S3): lowercase names, printable ASCII values.
pub type Metadata = BTreeMap<String, String>;

/// What `head` and `list` tell about an object. `list` fills only `key`, `size`,
/// `last_modified` (and `etag` where the backend has one): `content_type` is `None` and
/// `metadata` empty there, as in S3's ListObjectsV2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    pub content_type: Option<String>,
    pub metadata: Metadata,
    pub etag: Option<String>,
}

/// An object's bytes together with its metadata.
#[derive(Debug, Clone)]
pub struct Object {
    pub meta: ObjectMeta,
    pub bytes: Bytes,
}

/// The object-store operations the pipeline needs. Every implementation:
/// - validates keys with [`validate_key`] and metadata with [`validate_metadata`];
/// - `put` replaces an existing object with the same key (last writer wins, no duplicates);
/// - `get`/`head` return `Ok(None)` for a missing object;
/// - `delete` of a missing key is `Ok(())`;
/// - `list` returns every object under the prefix, sorted by key, following all pages.
#[async_trait::async_trait]
pub trait ObjectStore: Send + Sync + std::fmt::Debug {
    /// `"s3"` or `"fs"`, for logs and metrics labels.
    fn backend(&self) -> &'static str;

    /// Human-readable location for logs (`s3://bucket@endpoint` or a directory); no secrets.
    fn location(&self) -> String;

    /// Creates the bucket (or directory) when it is missing; a no-op when it exists.
    async fn ensure_bucket(&self) -> Result<()>;

    /// Stores `bytes` under `key`, replacing any existing object.
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        metadata: &Metadata,
    ) -> Result<()>;

    /// The object's bytes and metadata, `None` when there is no such object.
    async fn get(&self, key: &str) -> Result<Option<Object>>;

    /// The object's metadata, `None` when there is no such object.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Removes the object; deleting a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Every object whose key starts with `prefix` (`""` for all), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
}
