//! Collections on disk: one `qdrant_edge::EdgeShard` per collection directory.
//!
//! Every shard sits behind an `RwLock<Option<EdgeShard>>`: reads (search, retrieve, scroll,
//! count) share it, writes (update + flush) take it exclusively. Exclusive writes matter:
//! `EdgeShard::flush` `try_lock`s the WAL and panics if another update holds it. `None` means
//! the collection was deleted while a request still held a handle to it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use qdrant_edge::{
    Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParamsBuilder, OperationError,
    DEFAULT_VECTOR_NAME,
};

const COLLECTIONS_DIR: &str = "collections";
const STAGING_DIR: &str = ".staging";
const TRASH_DIR: &str = ".trash";
const LOCK_FILE: &str = ".lock";

/// Errors of the collection store; the gRPC layer maps them to status codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("collection `{0}` not found")]
    NotFound(String),
    #[error("collection `{0}` already exists")]
    AlreadyExists(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("data dir {path} is locked by another rvc-vector-index process")]
    Locked { path: PathBuf },
    #[error("io on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("engine: {0}")]
    Engine(#[from] OperationError),
    #[error("internal: {0}")]
    Internal(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One collection: its shard and the parameters fixed at creation.
#[derive(Debug)]
pub struct Collection {
    pub name: String,
    pub dim: usize,
    pub distance: Distance,
    shard: RwLock<Option<EdgeShard>>,
}

impl Collection {
    /// Run a read-only operation on the shard.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&EdgeShard) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self
            .shard
            .read()
            .map_err(|_| StoreError::Internal("shard lock poisoned".into()))?;
        match guard.as_ref() {
            Some(shard) => f(shard),
            None => Err(StoreError::NotFound(self.name.clone())),
        }
    }

    /// Run a write on the shard exclusively, then flush WAL and segments to disk.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&EdgeShard) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self
            .shard
            .write()
            .map_err(|_| StoreError::Internal("shard lock poisoned".into()))?;
        match guard.as_ref() {
            Some(shard) => {
                let out = f(shard);
                // Flush even when `f` failed half-way: whatever reached the segments is made
                // durable so memory and disk agree.
                shard.flush();
                out
            }
            None => Err(StoreError::NotFound(self.name.clone())),
        }
    }

    /// Take the shard out (flushing it on drop); later requests see `NotFound`.
    fn close(&self) {
        if let Ok(mut guard) = self.shard.write() {
            drop(guard.take());
        }
    }
}

/// All collections under one data dir.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    collections: RwLock<HashMap<String, Arc<Collection>>>,
    /// Serializes create/delete (directory renames).
    admin: Mutex<()>,
    _lock: File,
}

impl Store {
    /// Open (or initialize) the data dir and load every collection in it.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => StoreError::Locked {
                path: root.to_path_buf(),
            },
            fs::TryLockError::Error(source) => StoreError::Io {
                path: lock_path.clone(),
                source,
            },
        })?;

        for dir in [STAGING_DIR, TRASH_DIR] {
            let p = root.join(dir);
            if p.exists() {
                fs::remove_dir_all(&p).map_err(io_err(&p))?;
            }
        }
        let cdir = root.join(COLLECTIONS_DIR);
        fs::create_dir_all(&cdir).map_err(io_err(&cdir))?;

        let mut collections = HashMap::new();
        for entry in fs::read_dir(&cdir).map_err(io_err(&cdir))? {
            let entry = entry.map_err(io_err(&cdir))?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if !path.is_dir() || validate_name(&name).is_err() {
                tracing::warn!(path = %path.display(), "skipping unexpected entry in collections dir");
                continue;
            }
            let shard = EdgeShard::load(&path, None)?;
            let coll = collection_from_shard(name.clone(), shard)?;
            tracing::info!(
                collection = %name,
                dim = coll.dim,
                distance = ?coll.distance,
                "loaded collection"
            );
            collections.insert(name, Arc::new(coll));
        }

        Ok(Self {
            root: root.to_path_buf(),
            collections: RwLock::new(collections),
            admin: Mutex::new(()),
            _lock: lock,
        })
    }

    pub fn collection_count(&self) -> usize {
        self.collections.read().map(|c| c.len()).unwrap_or(0)
    }

    pub fn get(&self, name: &str) -> Result<Arc<Collection>, StoreError> {
        let map = self
            .collections
            .read()
            .map_err(|_| StoreError::Internal("collections lock poisoned".into()))?;
        map.get(name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))
    }

    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let map = self
            .collections
            .read()
            .map_err(|_| StoreError::Internal("collections lock poisoned".into()))?;
        let mut names: Vec<String> = map.keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    /// Create a collection with one unnamed dense vector.
    pub fn create(&self, name: &str, dim: usize, distance: Distance) -> Result<(), StoreError> {
        validate_name(name)?;
        if dim == 0 {
            return Err(StoreError::InvalidArgument(
                "vector size must be at least 1".into(),
            ));
        }
        let _admin = self
            .admin
            .lock()
            .map_err(|_| StoreError::Internal("admin lock poisoned".into()))?;
        if self.get(name).is_ok() {
            return Err(StoreError::AlreadyExists(name.to_owned()));
        }

        let staging = self
            .root
            .join(STAGING_DIR)
            .join(format!("{name}-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&staging).map_err(io_err(&staging))?;
        let config = EdgeConfigBuilder::new()
            .vector(
                DEFAULT_VECTOR_NAME,
                EdgeVectorParamsBuilder::new(dim, distance).build(),
            )
            .build();
        // Build under staging, close (flushes on drop), then move into place atomically.
        drop(EdgeShard::new(&staging, config)?);
        let final_path = self.root.join(COLLECTIONS_DIR).join(name);
        fs::rename(&staging, &final_path).map_err(io_err(&final_path))?;
        sync_dir(&self.root.join(COLLECTIONS_DIR))?;

        let shard = EdgeShard::load(&final_path, None)?;
        let coll = collection_from_shard(name.to_owned(), shard)?;
        self.collections
            .write()
            .map_err(|_| StoreError::Internal("collections lock poisoned".into()))?
            .insert(name.to_owned(), Arc::new(coll));
        tracing::info!(collection = %name, dim, ?distance, "created collection");
        Ok(())
    }

    /// Delete a collection; `Ok(false)` when it did not exist.
    pub fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let _admin = self
            .admin
            .lock()
            .map_err(|_| StoreError::Internal("admin lock poisoned".into()))?;
        let removed = self
            .collections
            .write()
            .map_err(|_| StoreError::Internal("collections lock poisoned".into()))?
            .remove(name);
        let Some(coll) = removed else {
            return Ok(false);
        };
        coll.close();
        let path = self.root.join(COLLECTIONS_DIR).join(name);
        let trash_root = self.root.join(TRASH_DIR);
        fs::create_dir_all(&trash_root).map_err(io_err(&trash_root))?;
        let trash = trash_root.join(format!("{name}-{}", uuid::Uuid::new_v4()));
        fs::rename(&path, &trash).map_err(io_err(&path))?;
        sync_dir(&self.root.join(COLLECTIONS_DIR))?;
        fs::remove_dir_all(&trash).map_err(io_err(&trash))?;
        tracing::info!(collection = %name, "deleted collection");
        Ok(true)
    }

    /// Flush and close every collection (graceful shutdown).
    pub fn close(&self) {
        if let Ok(map) = self.collections.read() {
            for coll in map.values() {
                coll.close();
            }
        }
    }
}

fn collection_from_shard(name: String, shard: EdgeShard) -> Result<Collection, StoreError> {
    let (dim, distance) = {
        let cfg = shard.config();
        let params = cfg.vectors.get(DEFAULT_VECTOR_NAME).ok_or_else(|| {
            StoreError::Internal(format!(
                "collection `{name}` has no unnamed dense vector in its config"
            ))
        })?;
        (params.size, params.distance)
    };
    Ok(Collection {
        name,
        dim,
        distance,
        shard: RwLock::new(Some(shard)),
    })
}

/// Qdrant-like collection names, also safe as a directory name.
fn validate_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidArgument(format!(
            "collection name `{name}` must be 1-255 chars of [A-Za-z0-9_.-] and not start with '.'"
        )))
    }
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}
