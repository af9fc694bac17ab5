//! `qdrant.Points`: upsert, delete, get, scroll, count and search points.
use super::*;

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
        let search = Nearest {
            vector: req.vector,
            filter: req.filter,
            limit: usize::try_from(req.limit).unwrap_or(usize::MAX),
            offset: usize::try_from(req.offset.unwrap_or(0)).unwrap_or(usize::MAX),
            score_threshold: req.score_threshold,
            with_payload: req.with_payload,
            with_vectors: req.with_vectors,
        };
        let result = self
            .nearest(&req.collection_name, vec![search])
            .await?
            .pop()
            .unwrap_or_default();
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
        let collection = req.collection_name.clone();
        let result = self
            .nearest(&collection, vec![nearest_of_query(req)?])
            .await?
            .pop()
            .unwrap_or_default();
        Ok(Response::new(pb::QueryResponse {
            result,
            time: elapsed(start),
            usage: None,
        }))
    }

    /// Several nearest queries on the batch's collection in one engine task (recognition
    /// searches every region of a photo with one call). As in Qdrant, each query's own
    /// `collection_name` is not consulted.
    async fn query_batch(
        &self,
        request: Request<pb::QueryBatchPoints>,
    ) -> Result<Response<pb::QueryBatchResponse>, Status> {
        let start = Instant::now();
        let req = request.into_inner();
        let searches = req
            .query_points
            .into_iter()
            .map(nearest_of_query)
            .collect::<Result<Vec<_>, Status>>()?;
        let result = self
            .nearest(&req.collection_name, searches)
            .await?
            .into_iter()
            .map(|result| pb::BatchResult { result })
            .collect();
        Ok(Response::new(pb::QueryBatchResponse {
            result,
            time: elapsed(start),
            usage: None,
        }))
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

/// The search a `QueryPoints` asks for; only nearest(dense vector) queries are served.
fn nearest_of_query(req: pb::QueryPoints) -> Result<Nearest, Status> {
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
    Ok(Nearest {
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
}
