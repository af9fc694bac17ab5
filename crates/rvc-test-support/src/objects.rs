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
