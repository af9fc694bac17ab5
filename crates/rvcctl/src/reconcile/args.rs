//! The command line of `rvcctl reconcile`.

#[derive(Debug, clap::Args)]
#[command(after_help = "Checks (Postgres):
  photo_missing_object_key     photos of a product whose status says images_stored, vectorized
                               or indexed, but without an object key   -> fix: upload_images
  indexed_photo_missing_point  photos of an indexed product without a vector point id
                                                                       -> fix: vectorize
  product_stuck                a product not indexed, with no pending/leased row for its
                               current version and no dead row waiting for an SRE (e.g. after
                               `outbox cancel`)                        -> fix: the next step
Checks against the object store (object_missing, object_unreferenced) and the vector index
(point_missing) run against the configured bucket (S3_* / OBJECT_STORE_DIR) and vector index
(QDRANT_URL); --no-objects / --no-vectors skip them, and one that cannot be reached is listed
as skipped.

--repair enqueues the fixing step (and moves a failed product back to the status before that
step), in one transaction with an outbox_audit row (action reconcile_enqueue) per new row.
It is idempotent: a finding already covered by a pending/leased row of the same product version
(same or earlier step) is reported as already_queued and nothing new is enqueued.

Exit code: 0 when there is no drift (or all of it is repaired / queued), 1 when drift remains.

Examples:
  rvcctl reconcile
  rvcctl reconcile --repair --actor alice
  rvcctl reconcile --output json")]
pub struct ReconcileArgs {
    /// Enqueue the steps that fix what is found.
    #[arg(long)]
    pub repair: bool,
    /// Who (stored in outbox_audit for repairs); default $USER, else "unknown".
    #[arg(long)]
    pub actor: Option<String>,
    /// Skip the object-store checks (missing and unreferenced objects).
    #[arg(long)]
    pub no_objects: bool,
    /// Skip the vector-index check (indexed products without their points).
    #[arg(long)]
    pub no_vectors: bool,
    #[command(flatten)]
    pub objects: rvc_objects::ObjectStoreConfig,
    /// Vector index (Qdrant gRPC) to check points against.
    #[command(flatten)]
    pub qdrant: rvc_vectors::QdrantArgs,
}
