//! The local-directory backend: the embedded default when no S3 endpoint is configured.
//!
//! Layout under the root directory:
//! - `data/<key>`: the object bytes (key segments become directories);
//! - `meta/<key>.json`: a sidecar with content type and user metadata;
//! - `tmp/`: files being written. A write goes to `tmp/`, is fsynced, then renamed into
//!   place, so readers see the old or the new object, never a torn one. The sidecar is
//!   renamed in before the data: the data rename is the commit point.
use crate::error::{ObjectStoreError, Result};
use crate::key::{validate_key, validate_metadata, validate_prefix};
use crate::{Metadata, Object, ObjectMeta, ObjectStore};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Sidecar {
    content_type: String,
    #[serde(default)]
    metadata: Metadata,
}

/// Objects as files in a directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// A store rooted at `root`; call [`ObjectStore::ensure_bucket`] to create the directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn data_path(&self, key: &str) -> PathBuf {
        self.data_dir().join(key)
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.root.join("meta").join(format!("{key}.json"))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{}.part", uuid::Uuid::new_v4().simple()))
    }

    /// Turns a "not found" on an object path into `NoSuchBucket` when the store itself is missing.
    fn missing_store_or(&self, err: ObjectStoreError) -> ObjectStoreError {
        if !self.data_dir().is_dir() {
            ObjectStoreError::NoSuchBucket {
                bucket: self.root.display().to_string(),
            }
        } else {
            err
        }
    }

    /// `NoSuchBucket` when the store directory was never created (or was removed).
    fn check_store(&self) -> Result<()> {
        if self.data_dir().is_dir() {
            Ok(())
        } else {
            Err(ObjectStoreError::NoSuchBucket {
                bucket: self.root.display().to_string(),
            })
        }
    }

    fn write_atomically(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.tmp_path();
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            if e.kind() == std::io::ErrorKind::NotFound {
                return Err(self.missing_store_or(ObjectStoreError::io("write", &tmp, e)));
            }
            return Err(ObjectStoreError::io("write", &tmp, e));
        }
        if let Some(parent) = dest.parent() {
            if let Err(e) = std::fs::create_dir_all(parent) {
                let _ = std::fs::remove_file(&tmp);
                return Err(ObjectStoreError::io("create directory", parent, e));
            }
        }
        std::fs::rename(&tmp, dest).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ObjectStoreError::io("rename into", dest, e)
        })
    }

    fn put_blocking(&self, key: &str, bytes: &[u8], sidecar: &Sidecar) -> Result<()> {
        self.check_store()?;
        let json = serde_json::to_vec(sidecar).map_err(|e| ObjectStoreError::Protocol {
            op: "put",
            message: format!("encoding sidecar: {e}"),
        })?;
        self.write_atomically(&self.meta_path(key), &json)?;
        self.write_atomically(&self.data_path(key), bytes)
    }

    fn head_blocking(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.data_path(key);
        let md = match std::fs::metadata(&path) {
            Ok(md) if md.is_file() => md,
            Ok(_) => return Ok(None),
            Err(e) if is_not_found(&e) => {
                self.check_store()?;
                return Ok(None);
            }
            Err(e) => return Err(ObjectStoreError::io("stat", &path, e)),
        };
        let sidecar = self.read_sidecar(key)?;
        Ok(Some(ObjectMeta {
            key: key.to_owned(),
            size: md.len(),
            last_modified: mtime(&md),
            content_type: sidecar.as_ref().map(|s| s.content_type.clone()),
            metadata: sidecar.map(|s| s.metadata).unwrap_or_default(),
            etag: None,
        }))
    }

    fn read_sidecar(&self, key: &str) -> Result<Option<Sidecar>> {
        let path = self.meta_path(key);
        match std::fs::read(&path) {
            Ok(buf) => {
                serde_json::from_slice(&buf)
                    .map(Some)
                    .map_err(|e| ObjectStoreError::Protocol {
                        op: "read sidecar",
                        message: format!("{}: {e}", path.display()),
                    })
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(ObjectStoreError::io("read", &path, e)),
        }
    }

    fn get_blocking(&self, key: &str) -> Result<Option<Object>> {
        let path = self.data_path(key);
        // Open first, then stat the open file, so bytes and size/mtime belong to one version.
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => {
                self.check_store()?;
                return Ok(None);
            }
            Err(e) => return Err(ObjectStoreError::io("open", &path, e)),
        };
        let md = file
            .metadata()
            .map_err(|e| ObjectStoreError::io("stat", &path, e))?;
        if !md.is_file() {
            return Ok(None);
        }
        let mut buf = Vec::with_capacity(usize::try_from(md.len()).unwrap_or(0));
        std::io::Read::read_to_end(&mut file, &mut buf)
            .map_err(|e| ObjectStoreError::io("read", &path, e))?;
        let sidecar = self.read_sidecar(key)?;
        Ok(Some(Object {
            meta: ObjectMeta {
                key: key.to_owned(),
                size: buf.len() as u64,
                last_modified: mtime(&md),
                content_type: sidecar.as_ref().map(|s| s.content_type.clone()),
                metadata: sidecar.map(|s| s.metadata).unwrap_or_default(),
                etag: None,
            },
            bytes: Bytes::from(buf),
        }))
    }

    fn delete_blocking(&self, key: &str) -> Result<()> {
        self.check_store()?;
        let data = self.data_path(key);
        match std::fs::remove_file(&data) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(ObjectStoreError::io("remove", &data, e)),
        }
        let meta = self.meta_path(key);
        match std::fs::remove_file(&meta) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(ObjectStoreError::io("remove", &meta, e)),
        }
        // Prune now-empty parent directories so a later key may reuse the name as a file.
        prune_empty_parents(&data, &self.data_dir());
        prune_empty_parents(&meta, &self.root.join("meta"));
        Ok(())
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.check_store()?;
        let data_dir = self.data_dir();
        // Only walk the deepest directory the prefix pins down.
        let start = match prefix.rfind('/') {
            Some(i) => data_dir.join(&prefix[..i]),
            None => data_dir.clone(),
        };
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(it) => it,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(ObjectStoreError::io("read directory", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| ObjectStoreError::io("read directory", &dir, e))?;
                let path = entry.path();
                let ft = entry
                    .file_type()
                    .map_err(|e| ObjectStoreError::io("stat", &path, e))?;
                if ft.is_dir() {
                    stack.push(path);
                    continue;
                }
                if !ft.is_file() {
                    continue;
                }
                let Some(key) = relative_key(&data_dir, &path) else {
                    continue;
                };
                if !key.starts_with(prefix) {
                    continue;
                }
                let md = match entry.metadata() {
                    Ok(md) => md,
                    Err(e) if is_not_found(&e) => continue, // deleted meanwhile
                    Err(e) => return Err(ObjectStoreError::io("stat", &path, e)),
                };
                out.push(ObjectMeta {
                    key,
                    size: md.len(),
                    last_modified: mtime(&md),
                    content_type: None,
                    metadata: Metadata::new(),
                    etag: None,
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(FsStore) -> Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(this))
            .await
            .map_err(|e| ObjectStoreError::Io {
                op: "blocking task",
                path: String::new(),
                source: std::io::Error::other(e.to_string()),
            })?
    }
}

fn is_not_found(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

fn mtime(md: &std::fs::Metadata) -> DateTime<Utc> {
    md.modified()
        .map(DateTime::<Utc>::from)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn relative_key(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

fn prune_empty_parents(path: &Path, stop: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) {
            break;
        }
        if std::fs::remove_dir(d).is_err() {
            break; // not empty (or raced with a writer): keep it
        }
        dir = d.parent();
    }
}

#[async_trait::async_trait]
impl ObjectStore for FsStore {
    fn backend(&self) -> &'static str {
        "fs"
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn ensure_bucket(&self) -> Result<()> {
        self.blocking(|s| {
            for d in [s.data_dir(), s.root.join("meta"), s.root.join("tmp")] {
                std::fs::create_dir_all(&d)
                    .map_err(|e| ObjectStoreError::io("create directory", &d, e))?;
            }
            Ok(())
        })
        .await
    }

    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        metadata: &Metadata,
    ) -> Result<()> {
        validate_key(key)?;
        validate_metadata(content_type, metadata)?;
        let key = key.to_owned();
        let sidecar = Sidecar {
            content_type: content_type.to_owned(),
            metadata: metadata.clone(),
        };
        self.blocking(move |s| s.put_blocking(&key, &bytes, &sidecar))
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<Object>> {
        validate_key(key)?;
        let key = key.to_owned();
        self.blocking(move |s| s.get_blocking(&key)).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        validate_key(key)?;
        let key = key.to_owned();
        self.blocking(move |s| s.head_blocking(&key)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let key = key.to_owned();
        self.blocking(move |s| s.delete_blocking(&key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_owned();
        self.blocking(move |s| s.list_blocking(&prefix)).await
    }
}
