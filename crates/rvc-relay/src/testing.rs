//! Fixtures for the relay's tests and benchmark: products already `vectorized`, with photos
//! and pending `publish` rows, written straight into Postgres; and checks over the topic.
use std::collections::{BTreeMap, HashMap, HashSet};

use prost::Message;
use rvc_kafka::FetchedRecord;
use rvc_proto::events::{product_change_event::Operation, ProductChangeEvent};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::error::{DbContext, RelayError};

/// The traceparent stored on seeded rows of product `i` (valid W3C format).
pub fn seeded_traceparent(product_id: Uuid) -> String {
    format!("00-{}-00f067aa0ba902b7-01", product_id.simple())
}

/// Inserts `products` products, each at version `versions` with `photos` photos per version
/// (object key, point id and model version set) and one pending `publish` row per version.
/// Returns the product ids.
pub async fn seed_publish_rows<C: GenericClient>(
    db: &C,
    products: usize,
    versions: i32,
    photos: i32,
) -> Result<Vec<Uuid>, RelayError> {
    let ids: Vec<Uuid> = (0..products).map(|_| Uuid::now_v7()).collect();
    let tps: Vec<String> = ids.iter().map(|id| seeded_traceparent(*id)).collect();
    db.execute(
        "INSERT INTO categories (name) VALUES ('seeded') ON CONFLICT (name) DO NOTHING",
        &[],
    )
    .await
    .ctx("seed category")?;
    db.execute(
        "INSERT INTO products (id, sku, name, category_id, price_minor, currency, version,
                               content_hash, status)
         SELECT t.id, 'SKU-' || t.id, 'Product ' || t.n, c.id, 100 + t.n, 'EUR', $2, 'seeded',
                'vectorized'
         FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n), categories c
         WHERE c.name = 'seeded'",
        &[&ids, &versions],
    )
    .await
    .ctx("seed products")?;
    db.execute(
        "INSERT INTO product_images (product_id, version, ordinal, sha256, content_type, width,
                                     height, size_bytes, object_key, point_id, model_version)
         SELECT s.id, s.v, s.o, s.sha, 'image/jpeg', 640 + s.o, 480, 1000,
                'products/' || s.id || '/' || s.sha || '.jpg', gen_random_uuid(), 'seeded@1'
         FROM (SELECT t.id, v, o::smallint AS o,
                      encode(sha256((t.id::text || '/' || v || '/' || o)::bytea), 'hex') AS sha
               FROM unnest($1::uuid[]) AS t(id), generate_series(1, $2) v,
                    generate_series(0, $3 - 1) o) s",
        &[&ids, &versions, &photos],
    )
    .await
    .ctx("seed images")?;
    db.execute(
        "INSERT INTO outbox (event_id, product_id, product_version, kind, traceparent)
         SELECT gen_random_uuid(), t.id, v, 'publish', t.tp
         FROM unnest($1::uuid[], $2::text[]) AS t(id, tp), generate_series(1, $3) v
         ORDER BY v",
        &[&ids, &tps, &versions],
    )
    .await
    .ctx("seed outbox")?;
    Ok(ids)
}

/// One decoded event with its record metadata.
#[derive(Debug, Clone)]
pub struct SeenEvent {
    pub partition: i32,
    pub offset: i64,
    pub event_id: String,
    pub product_id: String,
    pub version: i64,
    pub headers: BTreeMap<String, Vec<u8>>,
    pub event: ProductChangeEvent,
}

/// Decodes every record (panics are the caller's: returns an error string for a bad one).
pub fn decode_all(records: &[FetchedRecord]) -> Result<Vec<SeenEvent>, String> {
    records
        .iter()
        .map(|r| {
            let value = r
                .value
                .as_deref()
                .ok_or_else(|| format!("record {}:{} has no value", r.partition, r.offset))?;
            let event = ProductChangeEvent::decode(value)
                .map_err(|e| format!("record {}:{} does not decode: {e}", r.partition, r.offset))?;
            let (product_id, version) = match &event.operation {
                Some(Operation::Upsert(u)) => (u.product_id.clone(), u.version),
                Some(Operation::Delete(d)) => (d.product_id.clone(), d.version),
                None => {
                    return Err(format!(
                        "record {}:{} has no operation",
                        r.partition, r.offset
                    ))
                }
            };
            Ok(SeenEvent {
                partition: r.partition,
                offset: r.offset,
                event_id: event.event_id.clone(),
                product_id,
                version,
                headers: r.headers.clone(),
                event: event.clone(),
            })
        })
        .collect()
}

/// What the at-least-once rules say about a topic's events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub records: usize,
    pub distinct_event_ids: usize,
    /// Records whose event id appeared at an earlier offset of the same partition.
    pub duplicates: usize,
    /// Problems found (empty = every rule holds).
    pub violations: Vec<String>,
}

/// Checks the rules consumers rely on: a (product, version) has exactly one event id; a
/// duplicate repeats an already-seen event id and the same content; after dropping
/// duplicates, each product's versions strictly increase in offset order.
pub fn check_delivery(events: &[SeenEvent]) -> DeliveryReport {
    let mut sorted: Vec<&SeenEvent> = events.iter().collect();
    sorted.sort_by_key(|e| (e.partition, e.offset));
    let mut report = DeliveryReport {
        records: events.len(),
        ..Default::default()
    };
    let mut seen: HashMap<&str, &SeenEvent> = HashMap::new();
    let mut id_of_version: HashMap<(&str, i64), &str> = HashMap::new();
    let mut last_version: HashMap<&str, i64> = HashMap::new();
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    for e in sorted {
        if let Some(first) = seen.get(e.event_id.as_str()) {
            report.duplicates += 1;
            if first.event != e.event {
                report.violations.push(format!(
                    "event {} re-sent with different content",
                    e.event_id
                ));
            }
            continue;
        }
        seen.insert(&e.event_id, e);
        if let Some(other) = id_of_version.insert((&e.product_id, e.version), &e.event_id) {
            report.violations.push(format!(
                "product {} version {} has two event ids: {other} and {}",
                e.product_id, e.version, e.event_id
            ));
        }
        if let Some(p) = partition_of.insert(&e.product_id, e.partition) {
            if p != e.partition {
                report.violations.push(format!(
                    "product {} on partitions {p} and {}",
                    e.product_id, e.partition
                ));
            }
        }
        if let Some(prev) = last_version.insert(&e.product_id, e.version) {
            if e.version <= prev {
                report.violations.push(format!(
                    "product {}: version {} after version {prev} (offset {})",
                    e.product_id, e.version, e.offset
                ));
            }
        }
    }
    report.distinct_event_ids = seen.len();
    report
}

/// Event ids of `records` (distinct).
pub fn event_ids(events: &[SeenEvent]) -> HashSet<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}
