//! The tonic service implementations: `qdrant.Qdrant` and the helpers shared by
//! [`collections`] (`qdrant.Collections`) and [`points`] (`qdrant.Points`).

use std::sync::Arc;
use std::time::Instant;

use qdrant_client::qdrant::{
    self as pb, collections_server::Collections, points_selector::PointsSelectorOneOf,
    points_server::Points, qdrant_server::Qdrant, query, vector_input, vectors_config,
};
use qdrant_edge::{
    CountRequest, CreateIndex, FieldIndexOperations, JsonPath, NamedQuery, PointInsertOperations,
    PointOperations, PointStructPersisted, QueryEnum, ScrollRequest, SearchRequest,
    UpdateOperation, VectorInternal, VectorStructPersisted,
};
use tonic::{Request, Response, Status};

use crate::convert::{self, unimplemented};
use crate::store::{Collection, Store, StoreError};

#[derive(Clone)]
pub struct VectorService {
    store: Arc<Store>,
}

impl VectorService {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    fn collection(&self, name: &str) -> Result<Arc<Collection>, Status> {
        self.store.get(name).map_err(to_status)
    }
}

fn to_status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(name) => {
            Status::not_found(format!("Not found: Collection `{name}` doesn't exist!"))
        }
        StoreError::AlreadyExists(name) => {
            Status::already_exists(format!("Collection `{name}` already exists!"))
        }
        StoreError::InvalidArgument(m) => Status::invalid_argument(m),
        StoreError::Engine(op) => {
            use qdrant_edge::OperationError as O;
            match op {
                O::WrongVectorDimension { .. }
                | O::ValidationError { .. }
                | O::TypeError { .. }
                | O::VectorNameNotExists { .. }
                | O::WrongSparse
                | O::WrongMulti => Status::invalid_argument(op.to_string()),
                O::PointIdError { .. } => Status::not_found(op.to_string()),
                other => {
                    tracing::error!(error = %other, "engine error");
                    Status::internal(other.to_string())
                }
            }
        }
        other => {
            tracing::error!(error = %other, "store error");
            Status::internal(other.to_string())
        }
    }
}

/// Run blocking engine work off the async runtime.
async fn blocking<T, F>(f: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Status> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("engine task failed: {e}")))?
}

fn elapsed(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

fn completed(start: Instant) -> pb::PointsOperationResponse {
    pb::PointsOperationResponse {
        result: Some(pb::UpdateResult {
            operation_id: None,
            status: pb::UpdateStatus::Completed as i32,
        }),
        time: elapsed(start),
        usage: None,
    }
}

fn no_shard_key(sel: Option<&pb::ShardKeySelector>) -> Result<(), Status> {
    if sel.is_some() {
        return Err(unimplemented("shard key selectors"));
    }
    Ok(())
}

fn check_dim(coll: &Collection, v: &[f32]) -> Result<(), Status> {
    if v.len() != coll.dim {
        return Err(Status::invalid_argument(format!(
            "Wrong input: Vector dimension error: expected dim: {}, got {}",
            coll.dim,
            v.len()
        )));
    }
    Ok(())
}

/// One nearest-neighbour search (of `Search`, `Query` or one entry of `QueryBatch`).
struct Nearest {
    vector: Vec<f32>,
    filter: Option<pb::Filter>,
    limit: usize,
    offset: usize,
    score_threshold: Option<f32>,
    with_payload: Option<pb::WithPayloadSelector>,
    with_vectors: Option<pb::WithVectorsSelector>,
}

impl VectorService {
    /// Runs `searches` on `collection` in one engine task (one shard read lock); one result
    /// list per search, in order.
    async fn nearest(
        &self,
        collection: &str,
        searches: Vec<Nearest>,
    ) -> Result<Vec<Vec<pb::ScoredPoint>>, Status> {
        let coll = self.collection(collection)?;
        let reqs = searches
            .into_iter()
            .map(|n| {
                check_dim(&coll, &n.vector)?;
                Ok(SearchRequest {
                    query: QueryEnum::Nearest(NamedQuery {
                        query: VectorInternal::Dense(n.vector),
                        using: None,
                    }),
                    filter: convert::filter_from_pb(n.filter.as_ref())?,
                    params: None,
                    limit: n.limit,
                    offset: n.offset,
                    with_payload: Some(convert::with_payload_from_pb(
                        n.with_payload.as_ref(),
                        false,
                    )?),
                    with_vector: Some(convert::with_vector_from_pb(n.with_vectors.as_ref())?),
                    score_threshold: n.score_threshold,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let hits = blocking(move || {
            coll.read(|shard| {
                reqs.into_iter()
                    .map(|r| Ok(shard.search(r)?))
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .map_err(to_status)
        })
        .await?;
        Ok(hits
            .into_iter()
            .map(|points| {
                points
                    .into_iter()
                    .map(|p| pb::ScoredPoint {
                        id: Some(convert::point_id_to_pb(p.id)),
                        payload: convert::payload_to_pb(p.payload),
                        score: p.score,
                        version: p.version,
                        vectors: convert::vectors_to_pb(p.vector),
                        shard_key: None,
                        order_value: None,
                    })
                    .collect()
            })
            .collect())
    }
}

fn retrieved(records: Vec<qdrant_edge::Record>) -> Vec<pb::RetrievedPoint> {
    records
        .into_iter()
        .map(|r| pb::RetrievedPoint {
            id: Some(convert::point_id_to_pb(r.id)),
            payload: convert::payload_to_pb(r.payload),
            vectors: convert::vectors_to_pb(r.vector),
            shard_key: None,
            order_value: None,
        })
        .collect()
}

#[tonic::async_trait]
impl Qdrant for VectorService {
    async fn health_check(
        &self,
        _request: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckReply>, Status> {
        Ok(Response::new(pb::HealthCheckReply {
            title: format!(
                "rvc-vector-index {} (Qdrant gRPC subset over qdrant-edge 0.7.1)",
                env!("CARGO_PKG_VERSION")
            ),
            version: crate::PROTOCOL_VERSION.to_owned(),
            commit: None,
        }))
    }
}

mod collections;
mod points;
