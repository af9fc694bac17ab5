//! An object store that counts the requests a step makes, around a real one (a directory
//! or S3 server): tests assert how many reads, HEADs and PUTs a path costs.
use rvc_objects::{Metadata, Object, ObjectMeta, ObjectStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Forwards every call to `inner` and counts `get`, `head` and `put`.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    gets: AtomicUsize,
    heads: AtomicUsize,
    puts: AtomicUsize,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            gets: AtomicUsize::new(0),
            heads: AtomicUsize::new(0),
            puts: AtomicUsize::new(0),
        })
    }

    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::SeqCst)
    }

    pub fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }

    pub fn puts(&self) -> usize {
        self.puts.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CountingStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn ensure_bucket(&self) -> rvc_objects::Result<()> {
        self.inner.ensure_bucket().await
    }
    async fn put(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        content_type: &str,
        metadata: &Metadata,
    ) -> rvc_objects::Result<()> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(key, bytes, content_type, metadata).await
    }
    async fn get(&self, key: &str) -> rvc_objects::Result<Option<Object>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn head(&self, key: &str) -> rvc_objects::Result<Option<ObjectMeta>> {
        self.heads.fetch_add(1, Ordering::SeqCst);
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> rvc_objects::Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> rvc_objects::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
}

/// One object-store backend for a test: a real s3s-fs server or a temporary directory, so a
/// test runs the same assertions against both (`FsStore` is the embedded default, S3 the
/// production backend).
pub enum Backend {
    S3(crate::s3::TestS3),
    Fs(tempfile::TempDir),
}

impl Backend {
    pub async fn s3() -> Self {
        Self::S3(crate::s3::TestS3::start().await)
    }

    pub fn fs() -> Self {
        Self::Fs(tempfile::tempdir().unwrap())
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::S3(_) => "s3",
            Self::Fs(_) => "fs",
        }
    }

    /// A client of this backend, its bucket created.
    pub async fn store(&self) -> Arc<dyn ObjectStore> {
        let store: Arc<dyn ObjectStore> = match self {
            Self::S3(s3) => Arc::new(rvc_objects::S3Store::new(s3.config()).unwrap()),
            Self::Fs(dir) => Arc::new(rvc_objects::FsStore::new(dir.path())),
        };
        store.ensure_bucket().await.unwrap();
        store
    }

    /// The file holding an object's bytes (its mtime is the object's last_modified).
    pub fn object_file(&self, key: &str) -> std::path::PathBuf {
        match self {
            Self::S3(s3) => s3.object_path(&s3.bucket, key),
            Self::Fs(dir) => dir.path().join("data").join(key),
        }
    }

    /// Makes an object look `age` old.
    pub fn age(&self, key: &str, age: std::time::Duration) {
        let f = std::fs::File::options()
            .write(true)
            .open(self.object_file(key))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - age).unwrap();
    }

    /// Environment of a real binary for this backend.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::S3(s3) => s3.env(),
            Self::Fs(dir) => vec![
                ("S3_ENDPOINT", String::new()),
                ("OBJECT_STORE_DIR", dir.path().display().to_string()),
            ],
        }
    }
}

/// Every object key under `products/`.
pub async fn bucket_keys(store: &dyn ObjectStore) -> Vec<String> {
    store
        .list(rvc_domain::ImageKey::PREFIX)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}
