//! The vector index adapter: the one place rvc talks to Qdrant, through `qdrant-client` (gRPC).
//!
//! * [`VectorIndex::ensure_collection`] creates the collection (cosine distance, payload
//!   indexes on `product_id` and `product_version`) or checks that an existing one has the
//!   expected dimension ([`VectorIndexError::DimensionMismatch`] otherwise).
//! * Writes use `wait = true`: when they return, the points are applied (and, with
//!   `rvc-vector-index`, on disk). Point ids are deterministic ([`point_id`]), so replaying an
//!   upsert after a crash overwrites instead of duplicating.
//! * Tests run this code against `rvc-vector-index` (crate `rvc-vector-server`), a local
//!   server speaking the same gRPC protocol; production points `QDRANT_URL` at Qdrant.

mod args;
pub use args::QdrantArgs;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use qdrant_client::qdrant::{
    point_id::PointIdOptions, vector_output, vectors_config, Condition, CountPointsBuilder,
    CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeletePointsBuilder, Distance,
    FieldType, Filter, GetPointsBuilder, PointId, PointStruct, QueryBatchPointsBuilder,
    QueryPoints, QueryPointsBuilder, Range, ScoredPoint, ScrollPointsBuilder, UpsertPointsBuilder,
    Value, VectorParamsBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of the deterministic point ids:
/// `UUIDv5(NAMESPACE_URL, "urn:rvc:qdrant-point-id")` = `e2335712-d550-5cbb-9a0b-822fa8403eb1`.
/// Never change it: every stored point id derives from it.
pub const POINT_ID_NAMESPACE: Uuid = Uuid::from_u128(0xe2335712_d550_5cbb_9a0b_822fa8403eb1);

/// Payload field holding the product id (keyword index).
pub const FIELD_PRODUCT_ID: &str = "product_id";
/// Payload field holding the product version (integer index).
pub const FIELD_PRODUCT_VERSION: &str = "product_version";

/// Page size when listing point ids.
const SCROLL_PAGE: u32 = 256;
/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Deterministic id of the point for one image of one product under one model:
/// `UUIDv5(POINT_ID_NAMESPACE, "{product_id}/{sha256 lowercase hex}/{model_version}")`.
/// Re-vectorizing the same image with the same model yields the same id (idempotent upsert);
/// a new model version yields a new point.
pub fn point_id(product_id: Uuid, sha256: &str, model_version: &str) -> Uuid {
    let name = format!(
        "{}/{}/{}",
        product_id.as_hyphenated(),
        sha256.to_ascii_lowercase(),
        model_version
    );
    Uuid::new_v5(&POINT_ID_NAMESPACE, name.as_bytes())
}

/// The views of one catalog photo that the vectorizer indexes, each its own point with the
/// photo's payload. Recognition compares the regions of a checkout photo with these: the whole
/// photo matches a product that fills the frame, the central 60 % matches a product whose photo
/// has a margin of background around it (in `make eval`, without the centre view top-1 falls
/// by about 8 points; docs/recognition.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GalleryView {
    /// The whole photo: the point whose id is the photo's recorded `point_id`.
    Whole,
    /// The central 60 % of the photo (20 % margins on each side).
    Centre,
}

impl GalleryView {
    /// Every view, in the order the vectorizer asks the ML service for them.
    pub const ALL: [GalleryView; 2] = [GalleryView::Whole, GalleryView::Centre];

    /// The view as a box of the photo, in fractions: `(x, y, width, height)`.
    pub fn frac_box(self) -> (f32, f32, f32, f32) {
        match self {
            GalleryView::Whole => (0.0, 0.0, 1.0, 1.0),
            GalleryView::Centre => (0.2, 0.2, 0.6, 0.6),
        }
    }

    /// The view's name (`whole`, `centre`).
    pub fn name(self) -> &'static str {
        match self {
            GalleryView::Whole => "whole",
            GalleryView::Centre => "centre",
        }
    }

    /// Parses `whole`, `centre` or `center`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "whole" => Some(GalleryView::Whole),
            "centre" | "center" => Some(GalleryView::Centre),
            _ => None,
        }
    }

    /// The id of this view's point, derived from the photo's point id ([`point_id`], the one
    /// Postgres records): the whole view is that point, the others are
    /// `UUIDv5(photo point id, "view:{name}")`. Anything holding the recorded id (reconcile,
    /// a model migration) knows every point of the photo without another column.
    pub fn point_id(self, photo_point: Uuid) -> Uuid {
        match self {
            GalleryView::Whole => photo_point,
            v => Uuid::new_v5(&photo_point, format!("view:{}", v.name()).as_bytes()),
        }
    }

    /// The ids of every view's point of one photo, in [`GalleryView::ALL`] order.
    pub fn point_ids(photo_point: Uuid) -> [Uuid; 2] {
        Self::ALL.map(|v| v.point_id(photo_point))
    }
}

/// Errors of the vector index adapter.
#[derive(Debug, thiserror::Error)]
pub enum VectorIndexError {
    #[error("cannot build a Qdrant client for {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: QdrantError,
    },
    #[error("collection `{collection}` has vector size {existing}, but the model produces {expected}: re-create the collection or use another QDRANT_COLLECTION")]
    DimensionMismatch {
        collection: String,
        existing: u64,
        expected: u64,
    },
    #[error("collection `{collection}` uses distance {existing}, expected Cosine")]
    DistanceMismatch {
        collection: String,
        existing: String,
    },
    #[error("collection `{collection}` has no single unnamed dense vector config (named vectors are not used by rvc)")]
    UnexpectedVectorsConfig { collection: String },
    #[error("collection `{0}` does not exist")]
    CollectionMissing(String),
    #[error("point {id}: vector has {got} dimensions, expected {expected}")]
    WrongVectorLength {
        id: Uuid,
        got: usize,
        expected: usize,
    },
    #[error("cannot encode payload of point {id}: {source}")]
    EncodePayload {
        id: Uuid,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot decode payload of point {id}: {reason}")]
    DecodePayload { id: String, reason: String },
    #[error("point id {0:?} is not a UUID")]
    UnexpectedPointId(String),
    #[error("Qdrant request `{op}` failed: {source}")]
    Qdrant {
        op: &'static str,
        #[source]
        source: QdrantError,
    },
}

impl VectorIndexError {
    /// Whether retrying later may succeed (transport problems, server unavailable,
    /// timeouts). Configuration and input errors are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Qdrant { source, .. } => match source {
                QdrantError::ResponseError { status } => matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Aborted
                        | tonic::Code::Internal
                        | tonic::Code::Unknown
                        | tonic::Code::Cancelled
                ),
                QdrantError::ResourceExhaustedError { .. } | QdrantError::Io(_) => true,
                _ => false,
            },
            _ => false,
        }
    }
}

fn qerr(op: &'static str) -> impl FnOnce(QdrantError) -> VectorIndexError {
    move |source| VectorIndexError::Qdrant { op, source }
}

/// Payload stored with every point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointPayload {
    pub product_id: Uuid,
    pub sku: String,
    pub product_version: i64,
    pub image_key: String,
    pub model_version: String,
    pub created_at: DateTime<Utc>,
}

/// One point to upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct PointRecord {
    /// Usually [`point_id`]`(product_id, sha256, model_version)`.
    pub id: Uuid,
    pub vector: Vec<f32>,
    pub payload: PointPayload,
}

/// One nearest-neighbour hit.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub id: Uuid,
    /// Cosine similarity (higher is closer).
    pub score: f32,
    pub payload: PointPayload,
}

/// Handle on one collection of a Qdrant(-protocol) server. Cheap to clone.
#[derive(Clone)]
pub struct VectorIndex {
    client: Qdrant,
    collection: String,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("url", &self.client.config.uri)
            .field("collection", &self.collection)
            .finish()
    }
}

impl VectorIndex {
    /// Build a client for `url` (gRPC, e.g. `http://127.0.0.1:6334`). Connects lazily:
    /// nothing is sent until the first call (use [`Self::health_check`] for readiness).
    pub fn connect(url: &str, collection: &str) -> Result<Self, VectorIndexError> {
        let client = Qdrant::from_url(url)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .skip_compatibility_check()
            .build()
            .map_err(|source| VectorIndexError::Connect {
                url: url.to_owned(),
                source,
            })?;
        Ok(Self {
            client,
            collection: collection.to_owned(),
        })
    }

    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The server's title and version.
    pub async fn health_check(&self) -> Result<(String, String), VectorIndexError> {
        let reply = self
            .client
            .health_check()
            .await
            .map_err(qerr("health_check"))?;
        Ok((reply.title, reply.version))
    }

    /// Create the collection (cosine, `dim`) with payload indexes if it is missing; check the
    /// dimension and distance of an existing one. Idempotent and safe to race.
    pub async fn ensure_collection(&self, dim: u64) -> Result<(), VectorIndexError> {
        let exists = self
            .client
            .collection_exists(&self.collection)
            .await
            .map_err(qerr("collection_exists"))?;
        if !exists {
            let created = self
                .client
                .create_collection(
                    CreateCollectionBuilder::new(&self.collection)
                        .vectors_config(VectorParamsBuilder::new(dim, Distance::Cosine)),
                )
                .await;
            match created {
                Ok(_) => {
                    tracing::info!(collection = %self.collection, dim, "created vector collection")
                }
                Err(e) => {
                    // Someone else may have created it in between: fall through to the check.
                    let now_exists = self
                        .client
                        .collection_exists(&self.collection)
                        .await
                        .map_err(qerr("collection_exists"))?;
                    if !now_exists {
                        return Err(qerr("create_collection")(e));
                    }
                }
            }
        }

        let existing_dim = self.check_collection(dim).await?;
        tracing::debug!(collection = %self.collection, dim = existing_dim, "vector collection ready");
        Ok(())
    }

    /// Verify vectors config and make sure the payload indexes exist; returns the dimension.
    async fn check_collection(&self, dim: u64) -> Result<u64, VectorIndexError> {
        let info = self
            .client
            .collection_info(&self.collection)
            .await
            .map_err(qerr("collection_info"))?
            .result
            .ok_or_else(|| VectorIndexError::CollectionMissing(self.collection.clone()))?;
        let params = info
            .config
            .as_ref()
            .and_then(|c| c.params.as_ref())
            .and_then(|p| p.vectors_config.as_ref())
            .and_then(|v| v.config.as_ref());
        let Some(vectors_config::Config::Params(params)) = params else {
            return Err(VectorIndexError::UnexpectedVectorsConfig {
                collection: self.collection.clone(),
            });
        };
        if params.size != dim {
            return Err(VectorIndexError::DimensionMismatch {
                collection: self.collection.clone(),
                existing: params.size,
                expected: dim,
            });
        }
        if params.distance != Distance::Cosine as i32 {
            let existing = Distance::try_from(params.distance)
                .map(|d| d.as_str_name().to_owned())
                .unwrap_or_else(|_| params.distance.to_string());
            return Err(VectorIndexError::DistanceMismatch {
                collection: self.collection.clone(),
                existing,
            });
        }
        for (field, ty) in [
            (FIELD_PRODUCT_ID, FieldType::Keyword),
            (FIELD_PRODUCT_VERSION, FieldType::Integer),
        ] {
            if !info.payload_schema.contains_key(field) {
                self.client
                    .create_field_index(
                        CreateFieldIndexCollectionBuilder::new(&self.collection, field, ty)
                            .wait(true),
                    )
                    .await
                    .map_err(qerr("create_field_index"))?;
                tracing::info!(collection = %self.collection, field, "created payload index");
            }
        }
        Ok(params.size)
    }

    /// Upsert points with `wait = true`. Same ids twice overwrite (no duplicates).
    pub async fn upsert(&self, points: Vec<PointRecord>) -> Result<(), VectorIndexError> {
        if points.is_empty() {
            return Ok(());
        }
        let n = points.len();
        let mut structs = Vec::with_capacity(n);
        for p in points {
            let json = serde_json::to_value(&p.payload)
                .map_err(|source| VectorIndexError::EncodePayload { id: p.id, source })?;
            let payload = Payload::try_from(json).map_err(|e| VectorIndexError::DecodePayload {
                id: p.id.to_string(),
                reason: e.to_string(),
            })?;
            structs.push(PointStruct::new(p.id.to_string(), p.vector, payload));
        }
        self.client
            .upsert_points(UpsertPointsBuilder::new(&self.collection, structs).wait(true))
            .await
            .map_err(qerr("upsert_points"))?;
        tracing::debug!(collection = %self.collection, points = n, "upserted points");
        Ok(())
    }

    /// Delete the points of `product_id` whose `product_version` is below `version`.
    pub async fn delete_product_versions_below(
        &self,
        product_id: Uuid,
        version: i64,
    ) -> Result<(), VectorIndexError> {
        let filter = Filter::must([
            product_filter_condition(product_id),
            Condition::range(
                FIELD_PRODUCT_VERSION,
                Range {
                    lt: Some(version as f64),
                    ..Default::default()
                },
            ),
        ]);
        self.delete_by_filter(filter).await
    }

    /// Delete every point of `product_id`.
    pub async fn delete_product(&self, product_id: Uuid) -> Result<(), VectorIndexError> {
        self.delete_by_filter(Filter::must([product_filter_condition(product_id)]))
            .await
    }

    /// A client for another collection on the same server (one collection per model).
    pub fn with_collection(&self, collection: &str) -> Self {
        Self {
            client: self.client.clone(),
            collection: collection.to_owned(),
        }
    }

    /// Whether the collection exists.
    pub async fn collection_exists(&self) -> Result<bool, VectorIndexError> {
        self.client
            .collection_exists(&self.collection)
            .await
            .map_err(qerr("collection_exists"))
    }

    /// Drops the whole collection (a retired model's); a missing one is not an error.
    pub async fn delete_collection(&self) -> Result<(), VectorIndexError> {
        if !self.collection_exists().await? {
            return Ok(());
        }
        self.client
            .delete_collection(&self.collection)
            .await
            .map_err(qerr("delete_collection"))?;
        tracing::info!(collection = %self.collection, "dropped vector collection");
        Ok(())
    }

    async fn delete_by_filter(&self, filter: Filter) -> Result<(), VectorIndexError> {
        self.client
            .delete_points(
                DeletePointsBuilder::new(&self.collection)
                    .points(filter)
                    .wait(true),
            )
            .await
            .map_err(qerr("delete_points"))?;
        Ok(())
    }

    /// Exact number of points of `product_id`, or of the whole collection when `None`.
    pub async fn count(&self, product_id: Option<Uuid>) -> Result<u64, VectorIndexError> {
        let mut req = CountPointsBuilder::new(&self.collection).exact(true);
        if let Some(pid) = product_id {
            req = req.filter(Filter::must([product_filter_condition(pid)]));
        }
        let resp = self.client.count(req).await.map_err(qerr("count"))?;
        Ok(resp.result.map_or(0, |r| r.count))
    }

    /// Ids of every point of `product_id` (paged scroll), sorted.
    pub async fn product_point_ids(&self, product_id: Uuid) -> Result<Vec<Uuid>, VectorIndexError> {
        let mut ids = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut req = ScrollPointsBuilder::new(&self.collection)
                .filter(Filter::must([product_filter_condition(product_id)]))
                .limit(SCROLL_PAGE)
                .with_payload(false)
                .with_vectors(false);
            if let Some(o) = offset.take() {
                req = req.offset(o);
            }
            let resp = self.client.scroll(req).await.map_err(qerr("scroll"))?;
            for p in resp.result {
                ids.push(uuid_of(p.id)?);
            }
            match resp.next_page_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The dense vectors of the points `ids` that exist (one `Get` request, no payload).
    /// Ids the index does not hold are absent from the map. Used by the relay to put the
    /// embeddings into the published events.
    pub async fn vectors(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<f32>>, VectorIndexError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let pids: Vec<PointId> = ids.iter().map(|id| PointId::from(id.to_string())).collect();
        let resp = self
            .client
            .get_points(
                GetPointsBuilder::new(&self.collection, pids)
                    .with_payload(false)
                    .with_vectors(true),
            )
            .await
            .map_err(qerr("get_points"))?;
        let mut out = HashMap::with_capacity(resp.result.len());
        for p in resp.result {
            let id = uuid_of(p.id)?;
            if let Some(vector_output::Vector::Dense(d)) = p.vectors.and_then(|v| v.get_vector()) {
                out.insert(id, d.data);
            }
        }
        Ok(out)
    }

    /// The `limit` nearest points to `vector` (cosine), best first, with payload.
    pub async fn search(
        &self,
        vector: Vec<f32>,
        limit: u64,
    ) -> Result<Vec<SearchHit>, VectorIndexError> {
        let resp = self
            .client
            .query(self.nearest_query(vector, limit))
            .await
            .map_err(qerr("query"))?;
        hits(resp.result)
    }

    /// [`Self::search`] of every vector in one request (Qdrant's `QueryBatch`): one list of
    /// hits per vector, in order. Recognition searches every region of a photo this way.
    pub async fn search_many(
        &self,
        vectors: Vec<Vec<f32>>,
        limit: u64,
    ) -> Result<Vec<Vec<SearchHit>>, VectorIndexError> {
        if vectors.is_empty() {
            return Ok(Vec::new());
        }
        let queries: Vec<QueryPoints> = vectors
            .into_iter()
            .map(|v| self.nearest_query(v, limit))
            .collect();
        let resp = self
            .client
            .query_batch(QueryBatchPointsBuilder::new(&self.collection, queries))
            .await
            .map_err(qerr("query_batch"))?;
        resp.result.into_iter().map(|r| hits(r.result)).collect()
    }

    fn nearest_query(&self, vector: Vec<f32>, limit: u64) -> QueryPoints {
        QueryPointsBuilder::new(&self.collection)
            .query(vector)
            .limit(limit)
            .with_payload(true)
            .build()
    }
}

fn hits(points: Vec<ScoredPoint>) -> Result<Vec<SearchHit>, VectorIndexError> {
    points
        .into_iter()
        .map(|p| {
            let id = uuid_of(p.id)?;
            let payload = decode_payload(&id.to_string(), p.payload)?;
            Ok(SearchHit {
                id,
                score: p.score,
                payload,
            })
        })
        .collect()
}

fn product_filter_condition(product_id: Uuid) -> Condition {
    Condition::matches(FIELD_PRODUCT_ID, product_id.to_string())
}

fn uuid_of(id: Option<PointId>) -> Result<Uuid, VectorIndexError> {
    match id.and_then(|p| p.point_id_options) {
        Some(PointIdOptions::Uuid(s)) => {
            Uuid::parse_str(&s).map_err(|_| VectorIndexError::UnexpectedPointId(s))
        }
        Some(PointIdOptions::Num(n)) => Err(VectorIndexError::UnexpectedPointId(n.to_string())),
        None => Err(VectorIndexError::UnexpectedPointId(String::new())),
    }
}

fn decode_payload(
    id: &str,
    payload: HashMap<String, Value>,
) -> Result<PointPayload, VectorIndexError> {
    let json: serde_json::Map<String, serde_json::Value> = payload
        .into_iter()
        .map(|(k, v)| (k, v.into_json()))
        .collect();
    serde_json::from_value(serde_json::Value::Object(json)).map_err(|e| {
        VectorIndexError::DecodePayload {
            id: id.to_owned(),
            reason: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn namespace_is_the_documented_derivation() {
        assert_eq!(
            POINT_ID_NAMESPACE,
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:rvc:qdrant-point-id")
        );
    }

    #[test]
    fn point_id_is_deterministic_and_sensitive_to_each_part() {
        let p = Uuid::parse_str("0190f0a6-7c1e-7b4e-9d2a-3f5e6a7b8c9d").unwrap();
        let sha = "ab".repeat(32);
        let id = point_id(p, &sha, "efficientnet-lite0@1");
        assert_eq!(id, point_id(p, &sha.to_uppercase(), "efficientnet-lite0@1"));
        assert_eq!(id.get_version_num(), 5);
        assert_ne!(id, point_id(p, &sha, "efficientnet-lite0@2"));
        assert_ne!(id, point_id(p, &"cd".repeat(32), "efficientnet-lite0@1"));
        assert_ne!(id, point_id(Uuid::nil(), &sha, "efficientnet-lite0@1"));
        // Pinned value (computed independently with Python's uuid.uuid5): changing the
        // derivation would orphan every stored point.
        assert_eq!(id.to_string(), "de6af308-f2bd-59b8-a754-d9620a1eb88c");
    }

    #[test]
    fn a_photos_view_points_derive_from_its_recorded_point_id() {
        let photo = point_id(Uuid::nil(), &"ab".repeat(32), "m@1");
        let [whole, centre] = GalleryView::point_ids(photo);
        assert_eq!(whole, photo);
        assert_ne!(centre, photo);
        assert_eq!(centre, GalleryView::Centre.point_id(photo));
        assert_eq!(centre.get_version_num(), 5);
        assert_ne!(
            centre,
            GalleryView::Centre.point_id(point_id(Uuid::nil(), &"cd".repeat(32), "m@1"))
        );
        // Pinned (computed independently with Python's uuid.uuid5): changing the derivation
        // would orphan every stored centre point.
        assert_eq!(photo.to_string(), "92e52cf3-03aa-5c94-b5a1-220271b0b721");
        assert_eq!(centre.to_string(), "cb734868-4e46-5813-b6e8-4151073b6e79");
        assert_eq!(GalleryView::parse("center"), Some(GalleryView::Centre));
        assert_eq!(GalleryView::parse("side"), None);
    }
}
