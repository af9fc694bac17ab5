//! Shared helpers of the uploader tests: the fixtures of `rvc-test-support` (real PNG photos,
//! products seeded through the real ingest transaction, both object-store backends) and a
//! worker of the real upload step, driven batch by batch.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use rvc_image_uploader::UploadStep;
use rvc_objects::ObjectStore;
use rvc_outbox::{Outbox, Worker, WorkerConfig};
use rvc_test_support::TestDb;
use std::sync::Arc;

pub use rvc_test_support::images::png;
pub use rvc_test_support::objects::{bucket_keys, Backend};
pub use rvc_test_support::outbox::{drain, fast_worker_config as worker_config};
pub use rvc_test_support::products::{ingest_one, product, referenced_keys, seed};

pub fn worker(db: &TestDb, store: Arc<dyn ObjectStore>, cfg: WorkerConfig) -> Worker<UploadStep> {
    Worker::new(
        Outbox::new(
            db.pool.clone(),
            "uploader-test",
            rvc_store::pipeline::hooks(),
        ),
        Arc::new(UploadStep::new(db.pool.clone(), store)),
        cfg,
    )
}
