//! The `upload_images` step: staged photo bytes → object storage → object keys in Postgres.
use bytes::Bytes;
use futures::future::join_all;
use rvc_domain::{ImageFormat, ImageKey, OutboxKind};
use rvc_objects::{Metadata, ObjectStore, ObjectStoreError};
use rvc_outbox::{Job, Step, StepError};
use rvc_runtime::health::ReadyCheck;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// The user-metadata name that carries a photo's sha256 (`x-amz-meta-sha256` on S3).
pub const SHA256_METADATA: &str = "sha256";

/// The object key of a photo ([`ImageKey`]: `products/{product_id}/{sha256}.{ext}`), the
/// extension from its content type. `None` for a content type the catalog does not accept or
/// a sha256 that is not 64 lower-case hex digits.
pub fn photo_key(product_id: Uuid, sha256: &str, content_type: &str) -> Option<String> {
    let format = ImageFormat::from_content_type(content_type)?;
    ImageKey::new(product_id, sha256, format)
        .ok()
        .map(|k| k.to_string())
}

/// One photo of a product version, as `execute` loads it.
type Photo = rvc_store::points::PhotoToUpload;

/// A photo now in object storage: what `commit` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPhoto {
    pub ordinal: i16,
    pub key: String,
    /// False when the object was already there with the same sha256 and size (a re-run).
    pub put: bool,
}

/// What `execute` did for one product version.
#[derive(Debug, Clone, Default)]
pub struct Uploaded {
    /// Photos whose key `commit` records (those still staged when the step started).
    pub photos: Vec<StoredPhoto>,
    /// Photos already uploaded by an earlier run (staged bytes gone, key set): left alone.
    pub already_stored: usize,
    /// GC held the product's object lock when the photos were loaded: it may delete one of
    /// them after its PUT or HEAD, so `commit` checks each is still there (see
    /// [`rvc_store::objects::objects_lock_free`]).
    pub verify_at_commit: bool,
}

/// Puts a product version's staged photos in object storage under deterministic keys.
///
/// `execute` is idempotent: the key depends only on product id and content, and a photo whose
/// object is already there (same sha256 metadata and size, seen with HEAD) is not PUT again.
/// `commit` sets `object_key` and drops `staged_bytes`, in the engine's completion
/// transaction (which also marks the row done, moves the product to `images_stored` and
/// enqueues `vectorize`).
#[derive(Debug, Clone)]
pub struct UploadStep {
    pool: deadpool_postgres::Pool,
    store: Arc<dyn ObjectStore>,
}

/// A staged photo on its way to object storage.
struct PendingPut {
    ordinal: i16,
    key: String,
    sha256: String,
    content_type: String,
    bytes: Vec<u8>,
    /// HEAD the key first: the object may already be there (see `store_photo`).
    look_first: bool,
}

impl UploadStep {
    pub fn new(pool: deadpool_postgres::Pool, store: Arc<dyn ObjectStore>) -> Self {
        Self { pool, store }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Readiness of the object store: the bucket (or directory) answers (and exists).
    pub fn ready_check(&self) -> ReadyCheck {
        let store = self.store.clone();
        Arc::new(move || {
            let store = store.clone();
            Box::pin(async move {
                store
                    .ensure_bucket()
                    .await
                    .map_err(|e| format!("object store {}: {e}", store.location()))
            })
        })
    }

    /// The version's photos, and whether GC held the product's object lock at that moment
    /// (the two queries share one round trip).
    async fn load(&self, job: &Job) -> Result<(Vec<Photo>, bool), StepError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| StepError::retryable(format!("database connection: {e}")))?;
        let db = &**client;
        let (photos, lock_free) = futures::join!(
            rvc_store::points::photos_to_upload(db, job.product_id, job.product_version),
            rvc_store::objects::objects_lock_free(db, job.product_id),
        );
        let retry = |e: rvc_store::StoreError| StepError::retryable(e.to_string());
        Ok((photos.map_err(retry)?, !lock_free.map_err(retry)?))
    }

    /// PUTs one photo. When the object may already be there — a retry of the row (a claim
    /// after a failure or a crash), or a photo another version of the product stored (an
    /// edit or an un-archive that keeps it) — it first HEADs the key and skips the PUT when
    /// an identical object is there. A new photo on a first attempt is PUT without asking:
    /// an object under its key can only hold these very bytes (the key is their sha256), and
    /// skipping the HEAD saves a round trip per photo on the common path (issue 17). That a
    /// GC pass cannot have deleted it since is settled at commit (`verify_still_stored`).
    async fn store_photo(&self, job: &Job, photo: PendingPut) -> Result<StoredPhoto, StepError> {
        let PendingPut {
            ordinal,
            key,
            sha256,
            content_type,
            bytes,
            look_first,
        } = photo;
        let (sha256, content_type) = (sha256.as_str(), content_type.as_str());
        let size = bytes.len() as u64;
        let fail = |e: ObjectStoreError| self.classify(job, ordinal, &key, e);
        let existing = if look_first {
            self.store.head(&key).await.map_err(fail)?
        } else {
            None
        };
        if let Some(meta) = existing {
            if meta.size == size
                && meta.metadata.get(SHA256_METADATA).map(String::as_str) == Some(sha256)
            {
                metrics::counter!("rvc_uploader_put_skipped_total").increment(1);
                tracing::debug!(%key, "object already stored; PUT skipped");
                return Ok(StoredPhoto {
                    ordinal,
                    key,
                    put: false,
                });
            }
        }
        let metadata: Metadata = [(SHA256_METADATA.to_owned(), sha256.to_owned())].into();
        let started = Instant::now();
        self.store
            .put(&key, Bytes::from(bytes), content_type, &metadata)
            .await
            .map_err(fail)?;
        metrics::histogram!("rvc_uploader_put_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("rvc_uploader_put_total").increment(1);
        metrics::counter!("rvc_uploader_put_bytes_total").increment(size);
        Ok(StoredPhoto {
            ordinal,
            key,
            put: true,
        })
    }

    /// Retryable store errors (network, timeouts, 5xx) back off and retry; the rest
    /// (credentials, missing bucket, invalid key) dead-letter the row with a message that
    /// names the bucket and endpoint (never the credentials).
    fn classify(&self, job: &Job, ordinal: i16, key: &str, e: ObjectStoreError) -> StepError {
        let msg = format!(
            "photo {ordinal} of product {} v{} to {} (key {key}): {e}",
            job.product_id,
            job.product_version,
            self.store.location()
        );
        if !e.is_retryable() {
            tracing::error!(product_id = %job.product_id, product_version = job.product_version,
                location = %self.store.location(), error = %e,
                "object store refused the upload; not retrying (check credentials and bucket)");
        }
        StepError::classify(e.is_retryable(), msg)
    }

    /// When GC held the product's object lock as `execute` loaded the photos, it may have
    /// deleted one of them after our HEAD or PUT (it decided before this version existed).
    /// Under the lock (GC deletes a product's keys only while holding it), check that every
    /// object is still there before the staged bytes go: an object found missing keeps its
    /// bytes, and the retry PUTs it again. Once the commit lands, the row refers to the key
    /// and GC keeps it. When the lock was free at the load, any later GC pass sees this
    /// version's rows and deletes none of its photos, so the check is skipped (issue 17: it
    /// was a HEAD per photo on every upload).
    async fn verify_still_stored(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        job: &Job,
        photos: &[StoredPhoto],
    ) -> Result<(), StepError> {
        rvc_store::objects::lock_product_objects(tx, job.product_id)
            .await
            .map_err(|e| StepError::retryable(e.to_string()))?;
        let heads = join_all(photos.iter().map(|p| async move {
            let present = self
                .store
                .head(&p.key)
                .await
                .map_err(|e| self.classify(job, p.ordinal, &p.key, e))?;
            Ok::<_, StepError>((p, present.is_some()))
        }))
        .await;
        for h in heads {
            let (p, present) = h?;
            if !present {
                metrics::counter!("rvc_uploader_vanished_before_commit_total").increment(1);
                return Err(StepError::retryable(format!(
                    "photo {} of product {} v{}: object {} disappeared before the upload committed \
                     (collected as an orphan or superseded object); staged bytes kept, it is PUT again",
                    p.ordinal, job.product_id, job.product_version, p.key
                )));
            }
        }
        Ok(())
    }
}

impl Step for UploadStep {
    type Output = Uploaded;

    fn kind(&self) -> OutboxKind {
        OutboxKind::UploadImages
    }

    async fn execute(&self, job: &Job) -> Result<Uploaded, StepError> {
        let (photos, verify_at_commit) = self.load(job).await?;
        let mut out = Uploaded {
            verify_at_commit,
            ..Uploaded::default()
        };
        let mut puts = Vec::new();
        for p in photos {
            let Some(bytes) = p.staged else {
                if p.object_key.is_some() {
                    out.already_stored += 1;
                    continue;
                }
                // The schema's CHECK forbids this; report it rather than guess.
                return Err(StepError::permanent(format!(
                    "photo {} of product {} v{} has neither staged bytes nor an object key",
                    p.ordinal, job.product_id, job.product_version
                )));
            };
            let Some(format) = ImageFormat::from_content_type(&p.content_type) else {
                return Err(StepError::permanent(format!(
                    "photo {} of product {} v{} has unsupported content type {:?}",
                    p.ordinal, job.product_id, job.product_version, p.content_type
                )));
            };
            if rvc_domain::sha256_hex(&bytes) != p.sha256 {
                return Err(StepError::permanent(format!(
                    "staged bytes of photo {} of product {} v{} do not match their sha256 {}",
                    p.ordinal, job.product_id, job.product_version, p.sha256
                )));
            }
            // The sha256 is the hex digest of the bytes (checked above), so the key is valid.
            let key = ImageKey::new(job.product_id, &p.sha256, format)
                .map_err(|e| StepError::permanent(e.to_string()))?
                .to_string();
            puts.push(PendingPut {
                ordinal: p.ordinal,
                key,
                look_first: job.attempts > 1 || p.stored_before,
                sha256: p.sha256,
                content_type: p.content_type,
                bytes,
            });
        }
        let results = join_all(
            puts.into_iter()
                .map(|photo| async move { self.store_photo(job, photo).await }),
        )
        .await;
        // Report a permanent error over a retryable one: retrying cannot fix it.
        let mut retryable = None;
        for r in results {
            match r {
                Ok(p) => out.photos.push(p),
                Err(e @ StepError::Permanent(_)) => return Err(e),
                Err(e) => retryable = retryable.or(Some(e)),
            }
        }
        if let Some(e) = retryable {
            return Err(e);
        }
        Ok(out)
    }

    async fn commit(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        job: &Job,
        output: Uploaded,
    ) -> Result<(), StepError> {
        if output.photos.is_empty() {
            return Ok(());
        }
        if output.verify_at_commit {
            self.verify_still_stored(tx, job, &output.photos).await?;
        }
        let stored: Vec<(i16, &str)> = output
            .photos
            .iter()
            .map(|p| (p.ordinal, p.key.as_str()))
            .collect();
        rvc_store::points::record_object_keys(tx, job.product_id, job.product_version, &stored)
            .await
            .map_err(|e| StepError::retryable(e.to_string()))
    }
}
