//! Building a `ProductChangeEvent` and its Kafka record from what Postgres holds (pure code).
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use prost::Message;
use rvc_kafka::OutRecord;
use rvc_proto::events::{
    product_change_event::Operation, DeleteReason, Embedding, ProductChangeEvent, ProductDelete,
    ProductImage, ProductUpsert,
};
use uuid::Uuid;

/// `content-type` header of every record.
pub const CONTENT_TYPE: &str = "application/x-protobuf; proto=rvc.events.v1.ProductChangeEvent";
/// `event_type` header of an upsert.
pub const EVENT_TYPE_UPSERT: &str = "upsert";
/// `event_type` header of a delete (the product was archived).
pub const EVENT_TYPE_DELETE: &str = "delete";

/// Header names (lower case, as written on every record).
pub mod header {
    pub const EVENT_ID: &str = "event_id";
    pub const EVENT_TYPE: &str = "event_type";
    pub const PRODUCT_ID: &str = "product_id";
    pub const PRODUCT_VERSION: &str = "product_version";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const TRACEPARENT: &str = "traceparent";
}

// The rows an event is built from (read by `rvc_store::publish`).
pub use rvc_store::publish::{ImageRow, ProductRow};

/// Everything one event is made of.
#[derive(Debug, Clone)]
pub struct EventInput<'a> {
    pub event_id: Uuid,
    /// When the change was recorded (the publish row's `created_at`): stable across re-sends.
    pub recorded_at: DateTime<Utc>,
    /// The version this event announces (the outbox row's version).
    pub version: i32,
    pub product: &'a ProductRow,
    /// Photos of `version`, in ordinal order.
    pub images: &'a [ImageRow],
    /// Embedding vectors by point id (absent: published without the vector).
    pub vectors: &'a HashMap<Uuid, Vec<f32>>,
    pub traceparent: Option<&'a str>,
}

/// The upsert event for one product version.
pub fn upsert_event(input: &EventInput<'_>) -> ProductChangeEvent {
    let p = input.product;
    let images = input
        .images
        .iter()
        .map(|img| ProductImage {
            image_key: img.object_key.clone().unwrap_or_default(),
            sha256: img.sha256.clone(),
            content_type: img.content_type.clone(),
            width: u32::try_from(img.width).unwrap_or(0),
            height: u32::try_from(img.height).unwrap_or(0),
            embedding: img.point_id.map(|pid| Embedding {
                vector: input.vectors.get(&pid).cloned().unwrap_or_default(),
                model_version: img.model_version.clone().unwrap_or_default(),
                point_id: pid.to_string(),
            }),
        })
        .collect();
    ProductChangeEvent {
        event_id: input.event_id.to_string(),
        event_timestamp: Some(timestamp(input.recorded_at)),
        operation: Some(Operation::Upsert(ProductUpsert {
            product_id: p.id.to_string(),
            version: i64::from(input.version),
            sku: p.sku.clone(),
            name: p.name.clone(),
            category: p.category.clone(),
            price_minor: p.price_minor,
            currency: p.currency.clone(),
            images,
        })),
    }
}

/// The delete event of an archive version: product id, the version, SKU and when it was
/// archived (`archived_at`; the row's recording time when the row does not carry it).
pub fn delete_event(
    input: &EventInput<'_>,
    archived_at: Option<DateTime<Utc>>,
) -> ProductChangeEvent {
    let p = input.product;
    ProductChangeEvent {
        event_id: input.event_id.to_string(),
        event_timestamp: Some(timestamp(input.recorded_at)),
        operation: Some(Operation::Delete(ProductDelete {
            product_id: p.id.to_string(),
            version: i64::from(input.version),
            sku: p.sku.clone(),
            archived_at: Some(timestamp(archived_at.unwrap_or(input.recorded_at))),
            reason: DeleteReason::Archived as i32,
        })),
    }
}

/// The Kafka record of a delete (headers as an upsert's, `event_type` = `delete`).
pub fn delete_record(input: &EventInput<'_>, archived_at: Option<DateTime<Utc>>) -> OutRecord {
    record(input, delete_event(input, archived_at), EVENT_TYPE_DELETE)
}

/// The Kafka record of an upsert: key = product id, value = the protobuf, headers.
pub fn upsert_record(input: &EventInput<'_>) -> OutRecord {
    record(input, upsert_event(input), EVENT_TYPE_UPSERT)
}

fn record(input: &EventInput<'_>, event: ProductChangeEvent, event_type: &str) -> OutRecord {
    let mut headers = BTreeMap::new();
    headers.insert(
        header::EVENT_ID.to_owned(),
        input.event_id.to_string().into_bytes(),
    );
    headers.insert(
        header::EVENT_TYPE.to_owned(),
        event_type.as_bytes().to_vec(),
    );
    headers.insert(
        header::PRODUCT_ID.to_owned(),
        input.product.id.to_string().into_bytes(),
    );
    headers.insert(
        header::PRODUCT_VERSION.to_owned(),
        input.version.to_string().into_bytes(),
    );
    headers.insert(
        header::CONTENT_TYPE.to_owned(),
        CONTENT_TYPE.as_bytes().to_vec(),
    );
    if let Some(tp) = input.traceparent {
        headers.insert(header::TRACEPARENT.to_owned(), tp.as_bytes().to_vec());
    }
    OutRecord {
        key: product_key(input.product.id),
        value: event.encode_to_vec(),
        headers,
        timestamp: input.recorded_at,
    }
}

/// The record key of a product: its id in hyphenated lower-case text.
pub fn product_key(product_id: Uuid) -> Vec<u8> {
    product_id.as_hyphenated().to_string().into_bytes()
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use chrono::TimeZone;

    fn product() -> ProductRow {
        ProductRow {
            id: Uuid::parse_str("0190f0a6-7c1e-7b4e-9d2a-3f5e6a7b8c9d").unwrap(),
            sku: "SKU-1".into(),
            name: "Mug".into(),
            category: "kitchen".into(),
            price_minor: 1299,
            currency: "EUR".into(),
            version: 3,
        }
    }

    #[test]
    fn record_round_trips_and_carries_headers() {
        let p = product();
        let pid = Uuid::new_v4();
        let images = vec![
            ImageRow {
                ordinal: 0,
                sha256: "a".repeat(64),
                content_type: "image/jpeg".into(),
                width: 640,
                height: 480,
                object_key: Some("products/x/a.jpg".into()),
                point_id: Some(pid),
                model_version: Some("m@1".into()),
            },
            ImageRow {
                ordinal: 1,
                sha256: "b".repeat(64),
                content_type: "image/png".into(),
                width: 10,
                height: 20,
                object_key: None,
                point_id: None,
                model_version: None,
            },
        ];
        let vectors = HashMap::from([(pid, vec![0.5_f32, -1.0])]);
        let event_id = Uuid::now_v7();
        let at = Utc.timestamp_opt(1_700_000_000, 123_000_000).unwrap();
        let input = EventInput {
            event_id,
            recorded_at: at,
            version: 2,
            product: &p,
            images: &images,
            vectors: &vectors,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        };
        let rec = upsert_record(&input);
        assert_eq!(rec.key, p.id.to_string().into_bytes());
        assert_eq!(rec.timestamp, at);
        assert_eq!(
            rec.headers[header::EVENT_ID],
            event_id.to_string().as_bytes()
        );
        assert_eq!(rec.headers[header::PRODUCT_VERSION], b"2");
        assert_eq!(rec.headers[header::EVENT_TYPE], b"upsert");
        assert_eq!(rec.headers[header::CONTENT_TYPE], CONTENT_TYPE.as_bytes());
        assert!(rec.headers.contains_key(header::TRACEPARENT));

        let ev = ProductChangeEvent::decode(rec.value.as_slice()).unwrap();
        assert_eq!(ev.event_id, event_id.to_string());
        assert_eq!(ev.event_timestamp.unwrap().nanos, 123_000_000);
        let Some(Operation::Upsert(u)) = ev.operation else {
            panic!("not an upsert")
        };
        // the row's version, not the product's current one
        assert_eq!(u.version, 2);
        assert_eq!(u.price_minor, 1299);
        assert_eq!(u.images.len(), 2);
        let e = u.images[0].embedding.as_ref().unwrap();
        assert_eq!(e.vector, vec![0.5, -1.0]);
        assert_eq!(e.point_id, pid.to_string());
        assert_eq!(e.model_version, "m@1");
        assert!(u.images[1].embedding.is_none());
        assert_eq!(u.images[1].image_key, "");
    }

    #[test]
    fn delete_record_carries_the_archive_version() {
        let p = product();
        let vectors = HashMap::new();
        let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let archived = Utc.timestamp_opt(1_699_999_990, 0).unwrap();
        let input = EventInput {
            event_id: Uuid::now_v7(),
            recorded_at: at,
            version: 4,
            product: &p,
            images: &[],
            vectors: &vectors,
            traceparent: None,
        };
        let rec = delete_record(&input, Some(archived));
        assert_eq!(rec.headers[header::EVENT_TYPE], b"delete");
        assert_eq!(rec.headers[header::PRODUCT_VERSION], b"4");
        assert_eq!(rec.key, p.id.to_string().into_bytes());
        let ev = ProductChangeEvent::decode(rec.value.as_slice()).unwrap();
        let Some(Operation::Delete(d)) = ev.operation else {
            panic!("not a delete")
        };
        assert_eq!(d.version, 4);
        assert_eq!(d.sku, "SKU-1");
        assert_eq!(d.product_id, p.id.to_string());
        assert_eq!(d.archived_at.unwrap().seconds, 1_699_999_990);
        assert_eq!(d.reason, DeleteReason::Archived as i32);
    }

    #[test]
    fn same_input_encodes_to_the_same_bytes() {
        let p = product();
        let vectors = HashMap::new();
        let input = EventInput {
            event_id: Uuid::now_v7(),
            recorded_at: Utc::now(),
            version: 3,
            product: &p,
            images: &[],
            vectors: &vectors,
            traceparent: None,
        };
        let a = upsert_record(&input);
        let b = upsert_record(&input);
        assert_eq!(a, b);
        assert!(!a.headers.contains_key(header::TRACEPARENT));
    }
}
