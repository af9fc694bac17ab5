//! A fixed pool of inference threads behind a bounded admission queue.
//!
//! Every image holds one admission permit from the moment it is accepted until its worker has
//! finished with it, so at most `capacity` images (queued + running) are in memory. When no
//! permit is free the request is refused at once ([`MlError::Overloaded`] →
//! `RESOURCE_EXHAUSTED`) instead of queueing without bound.
use crate::embedder::Embedder;
use crate::error::MlError;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

type Reply = Result<Vec<f32>, MlError>;

struct Job {
    bytes: Vec<u8>,
    reply: oneshot::Sender<Reply>,
    enqueued: Instant,
    _permit: OwnedSemaphorePermit,
}

pub struct InferencePool {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    admission: Arc<Semaphore>,
    capacity: usize,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for InferencePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferencePool")
            .field("capacity", &self.capacity)
            .field("workers", &self.workers.len())
            .field("available", &self.admission.available_permits())
            .finish()
    }
}

impl InferencePool {
    /// Starts `workers` threads (each with its own tract state) and an admission queue of
    /// `capacity` images.
    pub fn start(
        embedder: Arc<Embedder>,
        workers: usize,
        capacity: usize,
    ) -> Result<Self, MlError> {
        if workers == 0 || capacity == 0 {
            return Err(MlError::Config(
                "ML_WORKERS and ML_QUEUE_CAPACITY must be at least 1".to_owned(),
            ));
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let state = embedder.new_state()?;
            let embedder = Arc::clone(&embedder);
            let rx = Arc::clone(&rx);
            let handle = std::thread::Builder::new()
                .name(format!("rvc-ml-infer-{i}"))
                .spawn(move || worker(i, &embedder, state, &rx))
                .map_err(MlError::Spawn)?;
            handles.push(handle);
        }
        tracing::info!(workers, capacity, "inference pool started");
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            admission: Arc::new(Semaphore::new(capacity)),
            capacity,
            workers: handles,
        })
    }

    /// Maximum number of images admitted at once (queued + running).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Embeds `images`, concurrently across the workers; results in input order. The whole
    /// batch is admitted or refused at once.
    pub async fn embed_all(&self, images: Vec<Vec<u8>>) -> Result<Vec<Reply>, MlError> {
        let n = images.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        if n > self.capacity {
            return Err(MlError::InvalidRequest(format!(
                "{n} images in one request exceed the queue capacity of {}",
                self.capacity
            )));
        }
        let count =
            u32::try_from(n).map_err(|_| MlError::InvalidRequest("batch too large".into()))?;
        let mut permits = Arc::clone(&self.admission)
            .try_acquire_many_owned(count)
            .map_err(|_| {
                metrics::counter!("ml_rejected_total", "reason" => "queue_full")
                    .increment(n as u64);
                MlError::Overloaded(format!(
                    "the inference queue ({} images) is full; retry later",
                    self.capacity
                ))
            })?;
        let mut receivers = Vec::with_capacity(n);
        {
            let guard = self.tx.lock().map_err(|_| MlError::ShuttingDown)?;
            let tx = guard.as_ref().ok_or(MlError::ShuttingDown)?;
            for bytes in images {
                let permit = permits.split(1).ok_or(MlError::ShuttingDown)?;
                let (reply, rx) = oneshot::channel();
                tx.send(Job {
                    bytes,
                    reply,
                    enqueued: Instant::now(),
                    _permit: permit,
                })
                .map_err(|_| MlError::ShuttingDown)?;
                receivers.push(rx);
            }
        }
        let mut out = Vec::with_capacity(n);
        for rx in receivers {
            out.push(rx.await.map_err(|_| MlError::ShuttingDown)?);
        }
        Ok(out)
    }

    /// Embeds one image.
    pub async fn embed(&self, image: Vec<u8>) -> Result<Vec<f32>, MlError> {
        self.embed_all(vec![image])
            .await?
            .into_iter()
            .next()
            .ok_or(MlError::ShuttingDown)?
    }
}

impl Drop for InferencePool {
    fn drop(&mut self) {
        // Closing the channel lets each worker finish what is queued and exit.
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(
    id: usize,
    embedder: &Embedder,
    mut state: crate::embedder::EmbedderState,
    rx: &Mutex<mpsc::Receiver<Job>>,
) {
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => break,
        };
        let Ok(job) = job else { break };
        let waited = job.enqueued.elapsed();
        if job.reply.is_closed() {
            // The caller went away (cancelled, deadline): skip the work.
            metrics::counter!("ml_images_total", "outcome" => "cancelled").increment(1);
            continue;
        }
        let started = Instant::now();
        // A panic inside decoding or inference must not take the thread down while health
        // still says SERVING: answer this image with an error and go on with a fresh state
        // (the old one may be half-written).
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            embedder.embed_with(&mut state, &job.bytes)
        })) {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                tracing::error!(worker = id, bytes = job.bytes.len(), panic = %what,
                    "inference panicked; worker continues with a fresh state");
                metrics::counter!("ml_worker_panics_total").increment(1);
                match embedder.new_state() {
                    Ok(fresh) => state = fresh,
                    Err(e) => {
                        tracing::error!(worker = id, error = %e, "cannot renew the inference state; worker stops");
                        let _ = job.reply.send(Err(MlError::Inference(format!(
                            "inference panicked: {what}"
                        ))));
                        break;
                    }
                }
                Err(MlError::Inference(format!("inference panicked: {what}")))
            }
        };
        let took = started.elapsed();
        record(&result, waited, took);
        match &result {
            Ok(_) => tracing::debug!(
                worker = id,
                bytes = job.bytes.len(),
                waited_ms = ms(waited),
                took_ms = ms(took),
                "embedded"
            ),
            Err(e) => {
                tracing::info!(worker = id, bytes = job.bytes.len(), error = %e, "image refused")
            }
        }
        let _ = job.reply.send(result);
    }
    tracing::debug!(worker = id, "inference worker stopped");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn record(result: &Reply, waited: Duration, took: Duration) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(MlError::InvalidImage(_)) => "invalid",
        Err(_) => "error",
    };
    metrics::counter!("ml_images_total", "outcome" => outcome).increment(1);
    metrics::histogram!("ml_queue_wait_seconds").record(waited.as_secs_f64());
    metrics::histogram!("ml_embed_seconds").record(took.as_secs_f64());
}
