//! The tonic service implementations (`qdrant.Qdrant`, `qdrant.Collections`, `qdrant.Points`).

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

/// Nearest-neighbour search shared by `Search` and `Query`.
struct Nearest {
    collection: String,
    vector: Vec<f32>,
    filter: Option<pb::Filter>,
    limit: usize,
    offset: usize,
    score_threshold: Option<f32>,
    with_payload: Option<pb::WithPayloadSelector>,
    with_vectors: Option<pb::WithVectorsSelector>,
}

impl VectorService {
    async fn nearest(&self, n: Nearest) -> Result<Vec<pb::ScoredPoint>, Status> {
        let coll = self.collection(&n.collection)?;
        check_dim(&coll, &n.vector)?;
        let req = SearchRequest {
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
        };
        let hits =
            blocking(move || coll.read(|shard| Ok(shard.search(req)?)).map_err(to_status)).await?;
        Ok(hits
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

#[tonic::async_trait]
impl Collections for VectorService {
    async fn get(
        &self,
        request: Request<pb::GetCollectionInfoRequest>,
    ) -> Result<Response<pb::GetCollectionInfoResponse>, Status> {
        let start = Instant::now();
        let coll = self.collection(&request.into_inner().collection_name)?;
        let (dim, distance) = (coll.dim, coll.distance);
        let info = blocking(move || coll.read(|s| Ok(s.info())).map_err(to_status)).await?;
        let payload_schema = info
            .payload_schema
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    pb::PayloadSchemaInfo {
                        data_type: convert::schema_type_to_pb(v.data_type) as i32,
                        params: None,
                        points: Some(v.points as u64),
                    },
                )
            })
            .collect();
        #[allow(deprecated)]
        let params = pb::CollectionParams {
            shard_number: 1,
            on_disk_payload: false,
            vectors_config: Some(pb::VectorsConfig {
                config: Some(vectors_config::Config::Params(pb::VectorParams {
                    size: dim as u64,
                    distance: convert::distance_to_pb(distance) as i32,
                    ..Default::default()
                })),
            }),
            replication_factor: Some(1),
            write_consistency_factor: Some(1),
            ..Default::default()
        };
        let result = pb::CollectionInfo {
            status: pb::CollectionStatus::Green as i32,
            optimizer_status: Some(pb::OptimizerStatus {
                ok: true,
                error: String::new(),
            }),
            segments_count: info.segments_count as u64,
            config: Some(pb::CollectionConfig {
                params: Some(params),
                ..Default::default()
            }),
            payload_schema,
            points_count: Some(info.points_count as u64),
            indexed_vectors_count: Some(info.indexed_vectors_count as u64),
            ..Default::default()
        };
        Ok(Response::new(pb::GetCollectionInfoResponse {
            result: Some(result),
            time: elapsed(start),
        }))
    }

    async fn list(
        &self,
        _request: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let start = Instant::now();
        let collections = self
            .store
            .names()
            .map_err(to_status)?
            .into_iter()
            .map(|name| pb::CollectionDescription { name })
            .collect();
        Ok(Response::new(pb::ListCollectionsResponse {
            collections,
            time: elapsed(start),
        }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateCollection>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        if req.sparse_vectors_config.is_some() {
            return Err(unimplemented("sparse vectors"));
        }
        if req.sharding_method.is_some() {
            return Err(unimplemented("custom sharding"));
        }
        let params = match req.vectors_config.and_then(|c| c.config) {
            Some(vectors_config::Config::Params(p)) => p,
            Some(vectors_config::Config::ParamsMap(_)) => {
                return Err(unimplemented("named vectors (vectors config map)"))
            }
            None => {
                return Err(Status::invalid_argument(
                    "vectors_config with size and distance is required",
                ))
            }
        };
        if params.multivector_config.is_some() {
            return Err(unimplemented("multi-vectors"));
        }
        let distance = convert::distance_from_pb(params.distance)?;
        let dim = usize::try_from(params.size)
            .map_err(|_| Status::invalid_argument("vector size too large"))?;
        let store = Arc::clone(&self.store);
        let name = req.collection_name;
        blocking(move || store.create(&name, dim, distance).map_err(to_status)).await?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: true,
            time: elapsed(start),
        }))
    }

    async fn update(
        &self,
        _request: Request<pb::UpdateCollection>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        Err(unimplemented("Collections/Update"))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteCollection>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        let store = Arc::clone(&self.store);
        let result = blocking(move || store.delete(&name).map_err(to_status)).await?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result,
            time: elapsed(start),
        }))
    }

    async fn update_aliases(
        &self,
        _request: Request<pb::ChangeAliases>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        Err(unimplemented("aliases"))
    }

    async fn list_collection_aliases(
        &self,
        _request: Request<pb::ListCollectionAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        Err(unimplemented("aliases"))
    }

    async fn list_aliases(
        &self,
        _request: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        Err(unimplemented("aliases"))
    }

    async fn collection_cluster_info(
        &self,
        _request: Request<pb::CollectionClusterInfoRequest>,
    ) -> Result<Response<pb::CollectionClusterInfoResponse>, Status> {
        Err(unimplemented("cluster info"))
    }

    async fn collection_exists(
        &self,
        request: Request<pb::CollectionExistsRequest>,
    ) -> Result<Response<pb::CollectionExistsResponse>, Status> {
        let start = Instant::now();
        let exists = self
            .store
            .get(&request.into_inner().collection_name)
            .is_ok();
        Ok(Response::new(pb::CollectionExistsResponse {
            result: Some(pb::CollectionExists { exists }),
            time: elapsed(start),
        }))
    }

    async fn update_collection_cluster_setup(
        &self,
        _request: Request<pb::UpdateCollectionClusterSetupRequest>,
    ) -> Result<Response<pb::UpdateCollectionClusterSetupResponse>, Status> {
        Err(unimplemented("cluster setup"))
    }

    async fn create_shard_key(
        &self,
        _request: Request<pb::CreateShardKeyRequest>,
    ) -> Result<Response<pb::CreateShardKeyResponse>, Status> {
        Err(unimplemented("shard keys"))
    }

    async fn delete_shard_key(
        &self,
        _request: Request<pb::DeleteShardKeyRequest>,
    ) -> Result<Response<pb::DeleteShardKeyResponse>, Status> {
        Err(unimplemented("shard keys"))
    }

    async fn list_shard_keys(
        &self,
        _request: Request<pb::ListShardKeysRequest>,
    ) -> Result<Response<pb::ListShardKeysResponse>, Status> {
        Err(unimplemented("shard keys"))
    }
}

#[tonic::async_trait]
impl Points for VectorService {
    async fn upsert(
        &self,
        request: Request<pb::UpsertPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        no_shard_key(req.shard_key_selector.as_ref())?;
        if req.update_filter.is_some() {
            return Err(unimplemented("conditional upserts (update_filter)"));
        }
        if req
            .update_mode
            .is_some_and(|m| m != pb::UpdateMode::Upsert as i32)
        {
            return Err(unimplemented("update modes other than upsert"));
        }
        let coll = self.collection(&req.collection_name)?;
        let n = req.points.len();
        let mut points = Vec::with_capacity(n);
        for p in req.points {
            let id = convert::point_id_from_pb(
                p.id.as_ref()
                    .ok_or_else(|| Status::invalid_argument("point without id"))?,
            )?;
            let vector = convert::dense_from_pb_vectors(p.vectors)?;
            check_dim(&coll, &vector)?;
            points.push(PointStructPersisted {
                id,
                vector: VectorStructPersisted::Single(vector),
                payload: Some(convert::payload_from_pb(p.payload)),
            });
        }
        if points.is_empty() {
            return Ok(Response::new(completed(start)));
        }
        let op = UpdateOperation::PointOperation(PointOperations::UpsertPoints(
            PointInsertOperations::PointsList(points),
        ));
        blocking(move || coll.write(|s| Ok(s.update(op)?)).map_err(to_status)).await?;
        tracing::debug!(
            points = n,
            ms = start.elapsed().as_millis() as u64,
            "upserted"
        );
        Ok(Response::new(completed(start)))
    }

    async fn delete(
        &self,
        request: Request<pb::DeletePoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        no_shard_key(req.shard_key_selector.as_ref())?;
        let coll = self.collection(&req.collection_name)?;
        let op = match req.points.and_then(|p| p.points_selector_one_of) {
            Some(PointsSelectorOneOf::Points(list)) => {
                let ids = list
                    .ids
                    .iter()
                    .map(convert::point_id_from_pb)
                    .collect::<Result<Vec<_>, _>>()?;
                PointOperations::DeletePoints { ids }
            }
            Some(PointsSelectorOneOf::Filter(f)) => {
                let filter = convert::filter_from_pb(Some(&f))?
                    .ok_or_else(|| Status::invalid_argument("empty filter"))?;
                PointOperations::DeletePointsByFilter(filter)
            }
            None => return Err(Status::invalid_argument("points selector is required")),
        };
        let op = UpdateOperation::PointOperation(op);
        blocking(move || coll.write(|s| Ok(s.update(op)?)).map_err(to_status)).await?;
        Ok(Response::new(completed(start)))
    }

    async fn get(
        &self,
        request: Request<pb::GetPoints>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        no_shard_key(req.shard_key_selector.as_ref())?;
        let coll = self.collection(&req.collection_name)?;
        let ids = req
            .ids
            .iter()
            .map(convert::point_id_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
        let with_payload = convert::with_payload_from_pb(req.with_payload.as_ref(), false)?;
        let with_vector = convert::with_vector_from_pb(req.with_vectors.as_ref())?;
        let records = blocking(move || {
            coll.read(|s| Ok(s.retrieve(&ids, Some(with_payload), Some(with_vector))?))
                .map_err(to_status)
        })
        .await?;
        Ok(Response::new(pb::GetResponse {
            result: retrieved(records),
            time: elapsed(start),
            usage: None,
        }))
    }

    async fn update_vectors(
        &self,
        _request: Request<pb::UpdatePointVectors>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        Err(unimplemented("Points/UpdateVectors"))
    }

    async fn delete_vectors(
        &self,
        _request: Request<pb::DeletePointVectors>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        Err(unimplemented("Points/DeleteVectors"))
    }

    async fn set_payload(
        &self,
        _request: Request<pb::SetPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        Err(unimplemented("Points/SetPayload"))
    }

    async fn overwrite_payload(
        &self,
        _request: Request<pb::SetPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        Err(unimplemented("Points/OverwritePayload"))
    }

    async fn delete_payload(
        &self,
        _request: Request<pb::DeletePayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        Err(unimplemented("Points/DeletePayload"))
    }

    async fn clear_payload(
        &self,
        _request: Request<pb::ClearPayloadPoints>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        Err(unimplemented("Points/ClearPayload"))
    }

    async fn create_field_index(
        &self,
        request: Request<pb::CreateFieldIndexCollection>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        let coll = self.collection(&req.collection_name)?;
        let field_type = req
            .field_type
            .ok_or_else(|| Status::invalid_argument("field_type is required"))?;
        let schema = convert::field_type_from_pb(field_type)?;
        let field_name: JsonPath = req.field_name.parse().map_err(|_| {
            Status::invalid_argument(format!("invalid field name `{}`", req.field_name))
        })?;
        let op =
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
                field_name,
                field_schema: Some(schema),
            }));
        blocking(move || coll.write(|s| Ok(s.update(op)?)).map_err(to_status)).await?;
        Ok(Response::new(completed(start)))
    }

    async fn delete_field_index(
        &self,
        request: Request<pb::DeleteFieldIndexCollection>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        let coll = self.collection(&req.collection_name)?;
        let field_name: JsonPath = req.field_name.parse().map_err(|_| {
            Status::invalid_argument(format!("invalid field name `{}`", req.field_name))
        })?;
        let op =
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::DeleteIndex(field_name));
        blocking(move || coll.write(|s| Ok(s.update(op)?)).map_err(to_status)).await?;
        Ok(Response::new(completed(start)))
    }

    async fn create_vector_name(
        &self,
        _request: Request<pb::CreateVectorNameRequest>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        Err(unimplemented("Points/CreateVectorName"))
    }

    async fn delete_vector_name(
        &self,
        _request: Request<pb::DeleteVectorNameRequest>,
    ) -> Result<Response<pb::PointsOperationResponse>, Status> {
        Err(unimplemented("Points/DeleteVectorName"))
    }

    async fn search(
        &self,
        request: Request<pb::SearchPoints>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        no_shard_key(req.shard_key_selector.as_ref())?;
        if req.vector_name.as_deref().is_some_and(|n| !n.is_empty()) {
            return Err(unimplemented("named vectors"));
        }
        if req.sparse_indices.is_some() {
            return Err(unimplemented("sparse vectors"));
        }
        let result = self
            .nearest(Nearest {
                collection: req.collection_name,
                vector: req.vector,
                filter: req.filter,
                limit: usize::try_from(req.limit).unwrap_or(usize::MAX),
                offset: usize::try_from(req.offset.unwrap_or(0)).unwrap_or(usize::MAX),
                score_threshold: req.score_threshold,
                with_payload: req.with_payload,
                with_vectors: req.with_vectors,
            })
            .await?;
        Ok(Response::new(pb::SearchResponse {
            result,
            time: elapsed(start),
            usage: None,
        }))
    }

    async fn search_batch(
        &self,
        _request: Request<pb::SearchBatchPoints>,
    ) -> Result<Response<pb::SearchBatchResponse>, Status> {
        Err(unimplemented("Points/SearchBatch"))
    }

    async fn search_groups(
        &self,
        _request: Request<pb::SearchPointGroups>,
    ) -> Result<Response<pb::SearchGroupsResponse>, Status> {
        Err(unimplemented("Points/SearchGroups"))
    }

    async fn scroll(
        &self,
        request: Request<pb::ScrollPoints>,
    ) -> Result<Response<pb::ScrollResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        no_shard_key(req.shard_key_selector.as_ref())?;
        if req.order_by.is_some() {
            return Err(unimplemented("scroll order_by"));
        }
        let coll = self.collection(&req.collection_name)?;
        let scroll = ScrollRequest {
            offset: req
                .offset
                .as_ref()
                .map(convert::point_id_from_pb)
                .transpose()?,
            limit: Some(req.limit.map_or(10, |l| l as usize).max(1)),
            filter: convert::filter_from_pb(req.filter.as_ref())?,
            with_payload: Some(convert::with_payload_from_pb(
                req.with_payload.as_ref(),
                true,
            )?),
            with_vector: convert::with_vector_from_pb(req.with_vectors.as_ref())?,
            order_by: None,
        };
        let (records, next) =
            blocking(move || coll.read(|s| Ok(s.scroll(scroll)?)).map_err(to_status)).await?;
        Ok(Response::new(pb::ScrollResponse {
            next_page_offset: next.map(convert::point_id_to_pb),
            result: retrieved(records),
            time: elapsed(start),
            usage: None,
        }))
    }

    async fn recommend(
        &self,
        _request: Request<pb::RecommendPoints>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        Err(unimplemented("Points/Recommend"))
    }

    async fn recommend_batch(
        &self,
        _request: Request<pb::RecommendBatchPoints>,
    ) -> Result<Response<pb::RecommendBatchResponse>, Status> {
        Err(unimplemented("Points/RecommendBatch"))
    }

    async fn recommend_groups(
        &self,
        _request: Request<pb::RecommendPointGroups>,
    ) -> Result<Response<pb::RecommendGroupsResponse>, Status> {
        Err(unimplemented("Points/RecommendGroups"))
    }

    async fn discover(
        &self,
        _request: Request<pb::DiscoverPoints>,
    ) -> Result<Response<pb::DiscoverResponse>, Status> {
        Err(unimplemented("Points/Discover"))
    }

    async fn discover_batch(
        &self,
        _request: Request<pb::DiscoverBatchPoints>,
    ) -> Result<Response<pb::DiscoverBatchResponse>, Status> {
        Err(unimplemented("Points/DiscoverBatch"))
    }

    async fn count(
        &self,
        request: Request<pb::CountPoints>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        no_shard_key(req.shard_key_selector.as_ref())?;
        let coll = self.collection(&req.collection_name)?;
        let count_req = CountRequest {
            filter: convert::filter_from_pb(req.filter.as_ref())?,
            exact: true,
        };
        let count =
            blocking(move || coll.read(|s| Ok(s.count(count_req)?)).map_err(to_status)).await?;
        Ok(Response::new(pb::CountResponse {
            result: Some(pb::CountResult {
                count: count as u64,
            }),
            time: elapsed(start),
            usage: None,
        }))
    }

    async fn update_batch(
        &self,
        _request: Request<pb::UpdateBatchPoints>,
    ) -> Result<Response<pb::UpdateBatchResponse>, Status> {
        Err(unimplemented("Points/UpdateBatch"))
    }

    async fn query(
        &self,
        request: Request<pb::QueryPoints>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        no_shard_key(req.shard_key_selector.as_ref())?;
        if !req.prefetch.is_empty() {
            return Err(unimplemented("query prefetch"));
        }
        if req.lookup_from.is_some() {
            return Err(unimplemented("query lookup_from"));
        }
        if req.using.as_deref().is_some_and(|n| !n.is_empty()) {
            return Err(unimplemented("named vectors"));
        }
        let vector = match req.query.and_then(|q| q.variant) {
            Some(query::Variant::Nearest(pb::VectorInput {
                variant: Some(vector_input::Variant::Dense(d)),
            })) => d.data,
            Some(_) => return Err(unimplemented("queries other than nearest(dense vector)")),
            None => return Err(unimplemented("queries without a query vector")),
        };
        let result = self
            .nearest(Nearest {
                collection: req.collection_name,
                vector,
                filter: req.filter,
                limit: req
                    .limit
                    .map_or(10, |l| usize::try_from(l).unwrap_or(usize::MAX)),
                offset: usize::try_from(req.offset.unwrap_or(0)).unwrap_or(usize::MAX),
                score_threshold: req.score_threshold,
                with_payload: req.with_payload,
                with_vectors: req.with_vectors,
            })
            .await?;
        Ok(Response::new(pb::QueryResponse {
            result,
            time: elapsed(start),
            usage: None,
        }))
    }

    async fn query_batch(
        &self,
        _request: Request<pb::QueryBatchPoints>,
    ) -> Result<Response<pb::QueryBatchResponse>, Status> {
        Err(unimplemented("Points/QueryBatch"))
    }

    async fn query_groups(
        &self,
        _request: Request<pb::QueryPointGroups>,
    ) -> Result<Response<pb::QueryGroupsResponse>, Status> {
        Err(unimplemented("Points/QueryGroups"))
    }

    async fn facet(
        &self,
        _request: Request<pb::FacetCounts>,
    ) -> Result<Response<pb::FacetResponse>, Status> {
        Err(unimplemented("Points/Facet"))
    }

    async fn search_matrix_pairs(
        &self,
        _request: Request<pb::SearchMatrixPoints>,
    ) -> Result<Response<pb::SearchMatrixPairsResponse>, Status> {
        Err(unimplemented("Points/SearchMatrixPairs"))
    }

    async fn search_matrix_offsets(
        &self,
        _request: Request<pb::SearchMatrixPoints>,
    ) -> Result<Response<pb::SearchMatrixOffsetsResponse>, Status> {
        Err(unimplemented("Points/SearchMatrixOffsets"))
    }
}
