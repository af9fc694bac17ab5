//! The publish [`Step`]: a claimed batch of `publish` rows becomes one Kafka produce call.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rvc_domain::{OutboxKind, VersionChange};
use rvc_kafka::{
    parse_brokers, Delivered, KafkaArgs, KafkaOptions, KafkaProducer, OutRecord, TopicSpec,
};
use rvc_outbox::{Job, Step, StepError};
use rvc_runtime::health::ReadyCheck;
use rvc_vectors::{QdrantArgs, VectorIndex};
use uuid::Uuid;

use crate::error::RelayError;
use crate::event::{delete_record, upsert_record, EventInput};
use rvc_store::publish::{RowRef, Snapshot};

/// Where the embedding vectors come from (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct EmbeddingArgs {
    /// Put the embedding vectors into the events (read from the vector index). With `false`
    /// the events carry point id and model version only.
    #[arg(long, env = "RELAY_INCLUDE_VECTORS", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_include_vectors: bool,
    #[command(flatten)]
    pub qdrant: QdrantArgs,
}

impl EmbeddingArgs {
    /// Vectors from `url` / `collection`.
    pub fn new(url: impl Into<String>, collection: impl Into<String>) -> Self {
        Self {
            relay_include_vectors: true,
            qdrant: QdrantArgs::new(url, collection),
        }
    }

    /// Events without vectors (no vector index needed).
    pub fn without_vectors() -> Self {
        Self {
            relay_include_vectors: false,
            qdrant: QdrantArgs::new("", ""),
        }
    }
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
        let producer = rvc_runtime::retry::until_deadline(
            "kafka",
            Duration::from_secs(kafka.kafka_startup_wait_secs),
            rvc_kafka::KafkaError::is_retryable,
            || async {
                let p = KafkaProducer::connect(brokers.clone(), &kafka.kafka_topic, opts.clone())
                    .await?;
                let n = p.ensure_topic(spec.partitions, spec.replication).await?;
                tracing::info!(brokers = %kafka.kafka_brokers, topic = %kafka.kafka_topic,
                    partitions = n, "kafka topic ready");
                Ok::<_, rvc_kafka::KafkaError>(p)
            },
        )
        .await?;
        let index = if embeddings.relay_include_vectors {
            let index = embeddings.qdrant.connect()?;
            tracing::info!(url = %embeddings.qdrant.qdrant_url, collection = %embeddings.qdrant.qdrant_collection,
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
        let rows: Vec<RowRef> = jobs
            .iter()
            .map(|j| RowRef {
                event_id: j.event_id,
                product_id: j.product_id,
                version: j.product_version,
            })
            .collect();
        Ok(rvc_store::publish::load(&**client, &rows).await?)
    }

    /// The vectors of `point_ids`, each read from the collection of the model that made it
    /// (the models table; a photo recorded before models were, or of an unknown model, is
    /// looked up in the configured collection). After a model switch the photos name the new
    /// model's points, which live in its collection.
    async fn vectors(
        &self,
        index: &VectorIndex,
        snapshots: &HashMap<Uuid, Snapshot>,
        point_ids: Vec<Uuid>,
    ) -> Result<HashMap<Uuid, Vec<f32>>, RelayError> {
        let collections: HashMap<String, String> = {
            let client = self.pool.get().await?;
            rvc_store::models::list(&**client)
                .await?
                .into_iter()
                .filter(|m| m.dropped_at.is_none())
                .map(|m| (m.model_version, m.collection))
                .collect()
        };
        let mut by_collection: HashMap<&str, Vec<Uuid>> = HashMap::new();
        let model_of: HashMap<Uuid, Option<&str>> = snapshots
            .values()
            .flat_map(|s| s.images.iter())
            .filter_map(|i| Some((i.point_id?, i.model_version.as_deref())))
            .collect();
        for id in point_ids {
            let collection = model_of
                .get(&id)
                .copied()
                .flatten()
                .and_then(|mv| collections.get(mv))
                .map_or(index.collection(), String::as_str);
            by_collection.entry(collection).or_default().push(id);
        }
        let mut out = HashMap::new();
        for (collection, ids) in by_collection {
            let found = if collection == index.collection() {
                index.vectors(&ids).await?
            } else {
                index.with_collection(collection).vectors(&ids).await?
            };
            out.extend(found);
        }
        Ok(out)
    }

    /// Builds and produces the batch; one result per job, in job order.
    async fn publish(&self, jobs: &[Job]) -> Vec<Result<Delivered, StepError>> {
        // One `outbox_step` span per row (linked to the trace of its ingest request, as the
        // other steps' spans are), open while the batch is built and produced.
        let _spans: Vec<tracing::Span> = jobs.iter().map(rvc_outbox::step_span).collect();
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
            Some(index) if !point_ids.is_empty() => {
                match self.vectors(index, &snapshots, point_ids).await {
                    Ok(v) => v,
                    Err(e) => return all(jobs.len(), &step_error(&e)),
                }
            }
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
            let change = match job.change() {
                Ok(c) => c,
                Err(e) => {
                    results[i] = Some(Err(StepError::permanent(format!(
                        "publish row {}: {e}",
                        job.event_id
                    ))));
                    continue;
                }
            };
            let input = EventInput {
                event_id: job.event_id,
                recorded_at: snap.recorded_at,
                version: job.product_version,
                product: &snap.product,
                images: &snap.images,
                vectors: &vectors,
                traceparent: job.traceparent.as_deref(),
            };
            if change == VersionChange::Archive {
                records.push(delete_record(&input, archived_at_of(&job.payload)));
                slots.push(i);
                continue;
            }
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
            records.push(upsert_record(&input));
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

/// The `archived_at` an archive row's payload carries (`rvc_store::archive` sets it).
fn archived_at_of(payload: &serde_json::Value) -> Option<DateTime<Utc>> {
    payload
        .get("archived_at")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn step_error(e: &RelayError) -> StepError {
    StepError::classify(e.is_retryable(), e)
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
