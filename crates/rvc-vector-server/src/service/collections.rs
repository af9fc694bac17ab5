//! `qdrant.Collections`: create, list, describe and delete collections.
use super::*;

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
