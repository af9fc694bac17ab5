//! Conversions between Qdrant's gRPC messages (from `qdrant-client`) and `qdrant-edge` types.
//!
//! Filters and selectors go through Qdrant's REST JSON shape, which `qdrant-edge` types
//! deserialize natively: that keeps the condition semantics those of the engine itself.

use std::collections::HashMap;

use qdrant_client::qdrant::{
    self as pb, condition::ConditionOneOf, point_id::PointIdOptions, r#match::MatchValue,
    vector_output, vectors_output, with_payload_selector, with_vectors_selector,
};
use qdrant_edge::{
    Distance, Filter, Payload, PayloadFieldSchema, PayloadSchemaType, PointId,
    VectorStructInternal, WithPayloadInterface, WithVector,
};
use serde_json::{json, Map, Value as Json};
use tonic::Status;

pub fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "rvc-vector-index does not implement {what} (it serves only the Qdrant subset rvc uses; see the rvc-vector-server docs)"
    ))
}

pub fn point_id_from_pb(id: &pb::PointId) -> Result<PointId, Status> {
    match &id.point_id_options {
        Some(PointIdOptions::Num(n)) => Ok(PointId::NumId(*n)),
        Some(PointIdOptions::Uuid(s)) => uuid::Uuid::parse_str(s)
            .map(PointId::Uuid)
            .map_err(|e| Status::invalid_argument(format!("point id `{s}` is not a UUID: {e}"))),
        None => Err(Status::invalid_argument("point id is empty")),
    }
}

pub fn point_id_to_pb(id: PointId) -> pb::PointId {
    let opt = match id {
        PointId::NumId(n) => PointIdOptions::Num(n),
        PointId::Uuid(u) => PointIdOptions::Uuid(u.to_string()),
    };
    pb::PointId {
        point_id_options: Some(opt),
    }
}

fn point_id_json(id: &pb::PointId) -> Result<Json, Status> {
    Ok(match point_id_from_pb(id)? {
        PointId::NumId(n) => json!(n),
        PointId::Uuid(u) => json!(u.to_string()),
    })
}

pub fn distance_from_pb(d: i32) -> Result<Distance, Status> {
    match pb::Distance::try_from(d) {
        Ok(pb::Distance::Cosine) => Ok(Distance::Cosine),
        Ok(pb::Distance::Euclid) => Ok(Distance::Euclid),
        Ok(pb::Distance::Dot) => Ok(Distance::Dot),
        Ok(pb::Distance::Manhattan) => Ok(Distance::Manhattan),
        Ok(pb::Distance::UnknownDistance) | Err(_) => {
            Err(Status::invalid_argument(format!("unknown distance {d}")))
        }
    }
}

pub fn distance_to_pb(d: Distance) -> pb::Distance {
    match d {
        Distance::Cosine => pb::Distance::Cosine,
        Distance::Euclid => pb::Distance::Euclid,
        Distance::Dot => pb::Distance::Dot,
        Distance::Manhattan => pb::Distance::Manhattan,
    }
}

pub fn field_type_from_pb(t: i32) -> Result<PayloadFieldSchema, Status> {
    let ty = match pb::FieldType::try_from(t) {
        Ok(pb::FieldType::Keyword) => PayloadSchemaType::Keyword,
        Ok(pb::FieldType::Integer) => PayloadSchemaType::Integer,
        Ok(pb::FieldType::Float) => PayloadSchemaType::Float,
        Ok(pb::FieldType::Geo) => PayloadSchemaType::Geo,
        Ok(pb::FieldType::Text) => PayloadSchemaType::Text,
        Ok(pb::FieldType::Bool) => PayloadSchemaType::Bool,
        Ok(pb::FieldType::Datetime) => PayloadSchemaType::Datetime,
        Ok(pb::FieldType::Uuid) => PayloadSchemaType::Uuid,
        Err(_) => return Err(Status::invalid_argument(format!("unknown field type {t}"))),
    };
    Ok(PayloadFieldSchema::FieldType(ty))
}

pub fn schema_type_to_pb(t: PayloadSchemaType) -> pb::PayloadSchemaType {
    match t {
        PayloadSchemaType::Keyword => pb::PayloadSchemaType::Keyword,
        PayloadSchemaType::Integer => pb::PayloadSchemaType::Integer,
        PayloadSchemaType::Float => pb::PayloadSchemaType::Float,
        PayloadSchemaType::Geo => pb::PayloadSchemaType::Geo,
        PayloadSchemaType::Text => pb::PayloadSchemaType::Text,
        PayloadSchemaType::Bool => pb::PayloadSchemaType::Bool,
        PayloadSchemaType::Datetime => pb::PayloadSchemaType::Datetime,
        PayloadSchemaType::Uuid => pb::PayloadSchemaType::Uuid,
    }
}

/// gRPC filter -> engine filter (through Qdrant's REST JSON shape).
pub fn filter_from_pb(filter: Option<&pb::Filter>) -> Result<Option<Filter>, Status> {
    let Some(f) = filter else {
        return Ok(None);
    };
    let json = filter_json(f)?;
    serde_json::from_value(json)
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("invalid filter: {e}")))
}

fn filter_json(f: &pb::Filter) -> Result<Json, Status> {
    if f.min_should.is_some() {
        return Err(unimplemented("filter `min_should`"));
    }
    let mut out = Map::new();
    for (key, conds) in [
        ("must", &f.must),
        ("should", &f.should),
        ("must_not", &f.must_not),
    ] {
        if !conds.is_empty() {
            let list = conds
                .iter()
                .map(condition_json)
                .collect::<Result<Vec<_>, _>>()?;
            out.insert(key.to_owned(), Json::Array(list));
        }
    }
    Ok(Json::Object(out))
}

fn condition_json(c: &pb::Condition) -> Result<Json, Status> {
    match &c.condition_one_of {
        Some(ConditionOneOf::Field(fc)) => field_condition_json(fc),
        Some(ConditionOneOf::HasId(h)) => {
            let ids = h
                .has_id
                .iter()
                .map(point_id_json)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(json!({ "has_id": ids }))
        }
        Some(ConditionOneOf::Filter(f)) => filter_json(f),
        Some(ConditionOneOf::IsEmpty(e)) => Ok(json!({ "is_empty": { "key": e.key } })),
        Some(ConditionOneOf::IsNull(n)) => Ok(json!({ "is_null": { "key": n.key } })),
        Some(ConditionOneOf::Nested(_)) => Err(unimplemented("nested conditions")),
        Some(ConditionOneOf::HasVector(_)) => Err(unimplemented("has_vector conditions")),
        Some(ConditionOneOf::Slice(_)) => Err(unimplemented("slice conditions")),
        None => Err(Status::invalid_argument("empty filter condition")),
    }
}

fn field_condition_json(fc: &pb::FieldCondition) -> Result<Json, Status> {
    if fc.geo_bounding_box.is_some()
        || fc.geo_radius.is_some()
        || fc.geo_polygon.is_some()
        || fc.values_count.is_some()
        || fc.datetime_range.is_some()
    {
        return Err(unimplemented(
            "geo, values_count and datetime_range field conditions",
        ));
    }
    if fc.is_empty == Some(true) {
        return Ok(json!({ "is_empty": { "key": fc.key } }));
    }
    if fc.is_null == Some(true) {
        return Ok(json!({ "is_null": { "key": fc.key } }));
    }
    let mut out = Map::new();
    out.insert("key".into(), json!(fc.key));
    let mut any = false;
    if let Some(m) = &fc.r#match {
        let mv = match &m.match_value {
            Some(MatchValue::Keyword(s)) => json!({ "value": s }),
            Some(MatchValue::Integer(i)) => json!({ "value": i }),
            Some(MatchValue::Boolean(b)) => json!({ "value": b }),
            Some(MatchValue::Text(s)) => json!({ "text": s }),
            Some(MatchValue::Keywords(k)) => json!({ "any": k.strings }),
            Some(MatchValue::Integers(i)) => json!({ "any": i.integers }),
            Some(MatchValue::ExceptKeywords(k)) => json!({ "except": k.strings }),
            Some(MatchValue::ExceptIntegers(i)) => json!({ "except": i.integers }),
            Some(_) => return Err(unimplemented("phrase/text_any/prefix/substring matches")),
            None => return Err(Status::invalid_argument("empty match")),
        };
        out.insert("match".into(), mv);
        any = true;
    }
    if let Some(r) = &fc.range {
        let mut rm = Map::new();
        for (k, v) in [("lt", r.lt), ("gt", r.gt), ("gte", r.gte), ("lte", r.lte)] {
            if let Some(v) = v {
                rm.insert(k.into(), json!(v));
            }
        }
        out.insert("range".into(), Json::Object(rm));
        any = true;
    }
    if !any {
        return Err(Status::invalid_argument(format!(
            "field condition on `{}` has no match or range",
            fc.key
        )));
    }
    Ok(Json::Object(out))
}

/// gRPC payload -> engine payload.
pub fn payload_from_pb(payload: HashMap<String, pb::Value>) -> Payload {
    let map: Map<String, Json> = payload
        .into_iter()
        .map(|(k, v)| (k, v.into_json()))
        .collect();
    Payload(map)
}

/// Engine payload -> gRPC payload.
pub fn payload_to_pb(payload: Option<Payload>) -> HashMap<String, pb::Value> {
    payload
        .map(|p| {
            p.0.into_iter()
                .map(|(k, v)| (k, pb::Value::from(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// The one dense vector of a point (the unnamed vector).
#[allow(deprecated)]
pub fn dense_from_pb_vectors(v: Option<pb::Vectors>) -> Result<Vec<f32>, Status> {
    use qdrant_client::qdrant::{vector, vectors};
    let Some(v) = v else {
        return Err(Status::invalid_argument("point has no vector"));
    };
    match v.vectors_options {
        Some(vectors::VectorsOptions::Vector(vec)) => match vec.vector {
            Some(vector::Vector::Dense(d)) => Ok(d.data),
            Some(_) => Err(unimplemented("sparse, multi-dense and inference vectors")),
            None => {
                if vec.indices.is_some() || vec.vectors_count.is_some() {
                    return Err(unimplemented("sparse and multi-dense vectors"));
                }
                Ok(vec.data)
            }
        },
        Some(vectors::VectorsOptions::Vectors(_)) => Err(unimplemented("named vectors")),
        None => Err(Status::invalid_argument("point has no vector")),
    }
}

/// Engine vector -> gRPC vectors output.
#[allow(deprecated)]
pub fn vectors_to_pb(v: Option<VectorStructInternal>) -> Option<pb::VectorsOutput> {
    match v? {
        VectorStructInternal::Single(data) => Some(pb::VectorsOutput {
            vectors_options: Some(vectors_output::VectorsOptions::Vector(pb::VectorOutput {
                data: Vec::new(),
                indices: None,
                vectors_count: None,
                vector: Some(vector_output::Vector::Dense(pb::DenseVector { data })),
            })),
        }),
        // Only the unnamed dense vector is ever stored by this server.
        _ => None,
    }
}

pub fn with_payload_from_pb(
    sel: Option<&pb::WithPayloadSelector>,
    default: bool,
) -> Result<WithPayloadInterface, Status> {
    let json = match sel.and_then(|s| s.selector_options.as_ref()) {
        None => return Ok(WithPayloadInterface::Bool(default)),
        Some(with_payload_selector::SelectorOptions::Enable(b)) => {
            return Ok(WithPayloadInterface::Bool(*b))
        }
        Some(with_payload_selector::SelectorOptions::Include(i)) => {
            json!({ "include": i.fields })
        }
        Some(with_payload_selector::SelectorOptions::Exclude(e)) => {
            json!({ "exclude": e.fields })
        }
    };
    serde_json::from_value(json)
        .map_err(|e| Status::invalid_argument(format!("invalid payload selector: {e}")))
}

pub fn with_vector_from_pb(sel: Option<&pb::WithVectorsSelector>) -> Result<WithVector, Status> {
    match sel.and_then(|s| s.selector_options.as_ref()) {
        None => Ok(WithVector::Bool(false)),
        Some(with_vectors_selector::SelectorOptions::Enable(b)) => Ok(WithVector::Bool(*b)),
        Some(with_vectors_selector::SelectorOptions::Include(_)) => {
            Err(unimplemented("selecting named vectors"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use qdrant_client::qdrant::{Condition, Range};

    #[test]
    fn filter_with_match_range_and_must_not_parses() {
        let f = pb::Filter {
            must: vec![
                Condition::matches("product_id", "abc".to_string()),
                Condition::range(
                    "product_version",
                    Range {
                        lt: Some(3.0),
                        ..Default::default()
                    },
                ),
            ],
            must_not: vec![Condition::has_id([7u64])],
            ..Default::default()
        };
        let parsed = filter_from_pb(Some(&f)).unwrap().unwrap();
        assert_eq!(parsed.must.as_ref().map(Vec::len), Some(2));
        assert_eq!(parsed.must_not.as_ref().map(Vec::len), Some(1));
        assert!(parsed.should.is_none());
    }

    #[test]
    fn min_should_is_unimplemented() {
        let f = pb::Filter {
            min_should: Some(pb::MinShould::default()),
            ..Default::default()
        };
        let err = filter_from_pb(Some(&f)).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
    }
}
