//! The `upload_images` step of the pipeline, on the outbox engine (`rvc-outbox`).
//!
//! For each claimed `upload_images` row (one product version) [`UploadStep`]:
//! 1. loads the version's photos (`staged_bytes`, `sha256`, `content_type`);
//! 2. PUTs each still-staged photo to `products/{product_id}/{sha256}.{ext}` with its
//!    Content-Type and `sha256` user metadata; on a retry of the row, unless HEAD shows the
//!    same object is already there (a re-run after a crash writes nothing new);
//! 3. in `commit`, inside the engine's completion transaction, sets `object_key` and drops
//!    `staged_bytes`; the engine marks the row done, moves the product to `images_stored` and
//!    enqueues `vectorize` in that same transaction.
//!
//! Object-store errors that a retry can fix (network, timeouts, 5xx) back off and retry;
//! credentials or a missing bucket dead-letter the row at once with a message naming the
//! bucket and endpoint. Collecting objects nobody needs any more is `rvc-maintenance`'s job.

pub mod step;

pub use step::{photo_key, StoredPhoto, UploadStep, Uploaded, SHA256_METADATA};

/// Default address of `/healthz`, `/readyz` and `/metrics`.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9101";
