//! The publish [`Step`]: a claimed batch of `publish` rows becomes one Kafka produce call.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rvc_domain::OutboxKind;
use rvc_kafka::{parse_brokers, Delivered, KafkaOptions, KafkaProducer, OutRecord, TopicSpec};
use rvc_outbox::{Job, Step, StepError};
use rvc_runtime::health::ReadyCheck;
use rvc_vectors::VectorIndex;
use uuid::Uuid;

use crate::error::{DbContext, RelayError};
use crate::event::{upsert_record, EventInput, ImageRow, ProductRow};

/// Kafka settings (`#[command(flatten)]` into the binary's args).
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, `host:port[,host:port]`.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Topic of the product change events.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "catalog.product-events")]
    pub kafka_topic: String,
    /// Partitions of the topic when the relay creates it (an existing topic keeps its own).
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = 6)]
    pub kafka_partitions: i32,
    /// Replication factor of the topic when the relay creates it.
    #[arg(long, env = "KAFKA_REPLICATION", default_value_t = 1)]
    pub kafka_replication: i16,
    /// Upper bound of one Kafka call (connect, metadata, produce), retries included, in seconds.
    #[arg(long, env = "KAFKA_REQUEST_TIMEOUT_SECS", default_value_t = 10.0)]
    pub kafka_request_timeout_secs: f64,
    /// At start, how long to wait for the broker to answer, in seconds.
    #[arg(long, env = "KAFKA_STARTUP_WAIT_SECS", default_value_t = 60)]
    pub kafka_startup_wait_secs: u64,
}

impl KafkaArgs {
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            kafka_brokers: brokers.into(),
            kafka_topic: topic.into(),
            kafka_partitions: 6,
            kafka_replication: 1,
            kafka_request_timeout_secs: 10.0,
            kafka_startup_wait_secs: 60,
        }
    }
}

/// Where the embedding vectors come from (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct EmbeddingArgs {
    /// Put the embedding vectors into the events (read from the vector index). With `false`
    /// the events carry point id and model version only.
    #[arg(long, env = "RELAY_INCLUDE_VECTORS", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_include_vectors: bool,
    /// gRPC URL of Qdrant (or of the local `rvc-vector-index`).
    #[arg(long, env = "QDRANT_URL", default_value = "http://127.0.0.1:6334")]
    pub qdrant_url: String,
    /// Collection holding one point per product photo.
    #[arg(long, env = "QDRANT_COLLECTION", default_value = "product_images")]
    pub qdrant_collection: String,
}

impl EmbeddingArgs {
    /// Vectors from `url` / `collection`.
    pub fn new(url: impl Into<String>, collection: impl Into<String>) -> Self {
        Self {
            relay_include_vectors: true,
            qdrant_url: url.into(),
            qdrant_collection: collection.into(),
        }
    }

    /// Events without vectors (no vector index needed).
    pub fn without_vectors() -> Self {
        Self {
            relay_include_vectors: false,
            qdrant_url: String::new(),
            qdrant_collection: String::new(),
        }
    }
}

/// What the step learned about one row from Postgres.
struct Snapshot {
    product: ProductRow,
    recorded_at: DateTime<Utc>,
    images: Vec<ImageRow>,
}

/// The publish [`Step`].
pub struct PublishStep {
    pool: Pool,
    producer: Arc<KafkaProducer>,
    index: Option<VectorIndex>,
}

impl std::fmt::Debug for PublishStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishStep")
            .field("topic", &self.producer.topic())
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl PublishStep {
    /// Connects to Kafka (waiting up to `KAFKA_STARTUP_WAIT_SECS` for the broker), creates the
    /// topic if it is missing, and connects the vector index when vectors are included.
    pub async fn start(
        pool: Pool,
        kafka: &KafkaArgs,
        embeddings: &EmbeddingArgs,
    ) -> Result<Self, RelayError> {
        if kafka.kafka_partitions <= 0 || kafka.kafka_replication <= 0 {
            return Err(RelayError::Config(
                "KAFKA_PARTITIONS and KAFKA_REPLICATION must be positive".into(),
            ));
        }
        let brokers = parse_brokers(&kafka.kafka_brokers);
        if brokers.is_empty() {
            return Err(RelayError::Config("KAFKA_BROKERS is empty".into()));
        }
        let spec = TopicSpec {
            partitions: kafka.kafka_partitions,
            replication: kafka.kafka_replication,
        };
        let opts = KafkaOptions {
            client_id: "rvc-relay".into(),
            request_timeout: Duration::from_secs_f64(
                kafka.kafka_request_timeout_secs.clamp(0.5, 600.0),
            ),
            // A broker that lost its topic (in-memory storage restarted) gets it back.
            auto_create_topic: Some(spec),
            ..KafkaOptions::default()
        };
        let deadline = Instant::now() + Duration::from_secs(kafka.kafka_startup_wait_secs);
        let mut delay = Duration::from_millis(200);
        let producer = loop {
            let attempt = async {
                let p = KafkaProducer::connect(brokers.clone(), &kafka.kafka_topic, opts.clone())
                    .await?;
                let n = p.ensure_topic(spec.partitions, spec.replication).await?;
                Ok::<_, rvc_kafka::KafkaError>((p, n))
            };
            match attempt.await {
                Ok((p, n)) => {
                    tracing::info!(brokers = %kafka.kafka_brokers, topic = %kafka.kafka_topic,
                        partitions = n, "kafka topic ready");
                    break p;
                }
                Err(e) if e.is_retryable() && Instant::now() + delay < deadline => {
                    tracing::info!(brokers = %kafka.kafka_brokers, error = %e, "kafka not answering yet; waiting");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let index = if embeddings.relay_include_vectors {
            let index =
                VectorIndex::connect(&embeddings.qdrant_url, &embeddings.qdrant_collection)?;
            tracing::info!(url = %embeddings.qdrant_url, collection = %embeddings.qdrant_collection,
                "events carry embedding vectors read from the vector index");
            Some(index)
        } else {
            tracing::info!("events carry point ids and model versions, no vectors (RELAY_INCLUDE_VECTORS=false)");
            None
        };
        Ok(Self::new(pool, Arc::new(producer), index))
    }

    /// A step over an existing producer (tests, benchmarks).
    pub fn new(pool: Pool, producer: Arc<KafkaProducer>, index: Option<VectorIndex>) -> Self {
        Self {
            pool,
            producer,
            index,
        }
    }

    pub fn producer(&self) -> &Arc<KafkaProducer> {
        &self.producer
    }

    /// Readiness: a Kafka broker answers, and the vector index too (when vectors are
    /// included). It also gates claiming: no publish attempt is spent while Kafka is down.
    pub fn ready_check(&self) -> Option<ReadyCheck> {
        let (producer, index) = (self.producer.clone(), self.index.clone());
        Some(Arc::new(move || {
            let (producer, index) = (producer.clone(), index.clone());
            Box::pin(async move {
                producer
                    .health_check()
                    .await
                    .map_err(|e| format!("kafka: {e}"))?;
                if let Some(index) = index {
                    index
                        .health_check()
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("vector index: {e}"))?;
                }
                Ok(())
            })
        }))
    }

    /// Reads the products, the publish rows' creation times and the photos of each row's version.
    async fn load(&self, jobs: &[Job]) -> Result<HashMap<Uuid, Snapshot>, RelayError> {
        let client = self.pool.get().await?;
        let event_ids: Vec<Uuid> = jobs.iter().map(|j| j.event_id).collect();
        let product_ids: Vec<Uuid> = jobs.iter().map(|j| j.product_id).collect();
        let versions: Vec<i32> = jobs.iter().map(|j| j.product_version).collect();
        let rows = client
            .query(
                "SELECT o.event_id, o.created_at, p.id, p.sku, p.name, c.name, p.price_minor,
                        p.currency::text, p.version
                 FROM outbox o
                 JOIN products p ON p.id = o.product_id
                 JOIN categories c ON c.id = p.category_id
                 WHERE o.event_id = ANY($1)",
                &[&event_ids],
            )
            .await
            .ctx("load products")?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            out.insert(
                r.get::<_, Uuid>(0),
                Snapshot {
                    recorded_at: r.get(1),
                    product: ProductRow {
                        id: r.get(2),
                        sku: r.get(3),
                        name: r.get(4),
                        category: r.get(5),
                        price_minor: r.get(6),
                        currency: r.get(7),
                        version: r.get(8),
                    },
                    images: Vec::new(),
                },
            );
        }
        let images = client
            .query(
                "SELECT i.product_id, i.version, i.ordinal, i.sha256, i.content_type, i.width,
                        i.height, i.object_key, i.point_id, i.model_version
                 FROM product_images i
                 JOIN unnest($1::uuid[], $2::int[]) AS t(id, version)
                   ON i.product_id = t.id AND i.version = t.version
                 ORDER BY i.product_id, i.version, i.ordinal",
                &[&product_ids, &versions],
            )
            .await
            .ctx("load images")?;
        let mut by_version: HashMap<(Uuid, i32), Vec<ImageRow>> = HashMap::new();
        for r in images {
            by_version
                .entry((r.get(0), r.get(1)))
                .or_default()
                .push(ImageRow {
                    ordinal: r.get(2),
                    sha256: r.get(3),
                    content_type: r.get(4),
                    width: r.get(5),
                    height: r.get(6),
                    object_key: r.get(7),
                    point_id: r.get(8),
                    model_version: r.get(9),
                });
        }
        for job in jobs {
            if let Some(s) = out.get_mut(&job.event_id) {
                s.images = by_version
                    .get(&(job.product_id, job.product_version))
                    .cloned()
                    .unwrap_or_default();
            }
        }
        Ok(out)
    }

    /// Builds and produces the batch; one result per job, in job order.
    async fn publish(&self, jobs: &[Job]) -> Vec<Result<Delivered, StepError>> {
        let snapshots = match self.load(jobs).await {
            Ok(s) => s,
            Err(e) => return all(jobs.len(), &step_error(&e)),
        };
        let point_ids: Vec<Uuid> = snapshots
            .values()
            .flat_map(|s| s.images.iter().filter_map(|i| i.point_id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let vectors = match &self.index {
            Some(index) if !point_ids.is_empty() => match index.vectors(&point_ids).await {
                Ok(v) => v,
                Err(e) => {
                    let e = RelayError::from(e);
                    return all(jobs.len(), &step_error(&e));
                }
            },
            _ => HashMap::new(),
        };

        // One record per job that could be built; the others fail on their own.
        let mut results: Vec<Option<Result<Delivered, StepError>>> = vec![None; jobs.len()];
        let mut records: Vec<OutRecord> = Vec::with_capacity(jobs.len());
        let mut slots: Vec<usize> = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            let Some(snap) = snapshots.get(&job.event_id) else {
                results[i] = Some(Err(StepError::permanent(format!(
                    "product {} of publish row {} does not exist",
                    job.product_id, job.event_id
                ))));
                continue;
            };
            if self.index.is_some() && snap.product.version == job.product_version {
                // The current version's points must be in the index (the vectorizer wrote them
                // before this row existed). Superseded versions may have lost theirs to the
                // vectorizer's clean-up: those go out without the vector (docs/events.md).
                let missing: Vec<Uuid> = snap
                    .images
                    .iter()
                    .filter_map(|i| i.point_id)
                    .filter(|p| !vectors.contains_key(p))
                    .collect();
                if !missing.is_empty() {
                    results[i] = Some(Err(StepError::retryable(format!(
                        "vector index has no point for {} photo(s) of the current version: {missing:?}",
                        missing.len()
                    ))));
                    continue;
                }
            }
            records.push(upsert_record(&EventInput {
                event_id: job.event_id,
                recorded_at: snap.recorded_at,
                version: job.product_version,
                product: &snap.product,
                images: &snap.images,
                vectors: &vectors,
                traceparent: job.traceparent.as_deref(),
            }));
            slots.push(i);
        }

        if !records.is_empty() {
            let n = records.len();
            let started = Instant::now();
            let outcome = self.producer.produce(records.clone()).await;
            metrics::histogram!("rvc_relay_produce_seconds").record(started.elapsed());
            match outcome {
                Ok(delivered) => {
                    metrics::counter!("rvc_relay_events_published_total").increment(n as u64);
                    metrics::histogram!("rvc_relay_batch_records").record(n as f64);
                    tracing::debug!(
                        records = n,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "produced batch"
                    );
                    for (slot, d) in slots.iter().zip(delivered) {
                        results[*slot] = Some(Ok(d));
                    }
                }
                Err(e) if e.is_retryable() || n == 1 => {
                    metrics::counter!("rvc_relay_produce_errors_total").increment(1);
                    let err = step_error(&RelayError::from(e));
                    tracing::warn!(records = n, error = %err, "produce failed");
                    for slot in &slots {
                        results[*slot] = Some(Err(err.clone()));
                    }
                }
                Err(e) => {
                    // A permanent error for a whole batch (a record too large ...): find the
                    // culprit by sending the records one by one, so the others still go out.
                    metrics::counter!("rvc_relay_produce_errors_total").increment(1);
                    tracing::warn!(records = n, error = %e, "batch refused; producing records one by one");
                    for (slot, record) in slots.iter().zip(records) {
                        let r = match self.producer.produce(vec![record]).await {
                            Ok(mut d) => d.pop().ok_or_else(|| {
                                StepError::retryable("broker acknowledged no record")
                            }),
                            Err(e) => Err(step_error(&RelayError::from(e))),
                        };
                        results[*slot] = Some(r);
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StepError::retryable("row was not processed"))))
            .collect()
    }
}

fn step_error(e: &RelayError) -> StepError {
    if e.is_retryable() {
        StepError::retryable(e)
    } else {
        StepError::permanent(e)
    }
}

fn all(n: usize, e: &StepError) -> Vec<Result<Delivered, StepError>> {
    (0..n).map(|_| Err(e.clone())).collect()
}

impl Step for PublishStep {
    type Output = Delivered;
    /// Completing the row and moving the product to `indexed` is all the engine does.
    const COMMIT_WRITES: bool = false;

    fn kind(&self) -> OutboxKind {
        OutboxKind::Publish
    }

    fn ordered_per_product(&self) -> bool {
        true
    }

    async fn execute(&self, job: &Job) -> Result<Delivered, StepError> {
        self.publish(std::slice::from_ref(job))
            .await
            .pop()
            .unwrap_or_else(|| Err(StepError::retryable("row was not processed")))
    }

    /// The whole claimed batch goes out in ONE produce call (records grouped per partition,
    /// each product's records in version order).
    async fn execute_batch(
        &self,
        jobs: &[Job],
        _concurrency: usize,
    ) -> Vec<Result<Delivered, StepError>> {
        self.publish(jobs).await
    }

    async fn commit(
        &self,
        _tx: &tokio_postgres::Transaction<'_>,
        job: &Job,
        output: Delivered,
    ) -> Result<(), StepError> {
        tracing::debug!(event_id = %job.event_id, partition = output.partition, offset = output.offset,
            "event acknowledged");
        Ok(())
    }
}
