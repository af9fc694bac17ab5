//! A fixed pool of inference threads behind a bounded admission queue.
//!
//! Every image holds one admission permit from the moment it is accepted until its worker has
//! finished with it, so at most `capacity` images (queued + running) are in memory. When no
//! permit is free the request is refused at once ([`MlError::Overloaded`] →
//! `RESOURCE_EXHAUSTED`) instead of queueing without bound.
use crate::embedder::{Embedder, EmbedderState};
use crate::error::MlError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

type Reply = Result<Vec<f32>, MlError>;

/// What an inference thread runs: the model ([`Embedder`]) in production; the pool's own
/// tests use engines that panic or cannot renew their state, which a real model cannot be
/// made to do on demand.
pub trait Inference: Send + Sync + 'static {
    /// Per-thread execution state.
    type State: Send + 'static;
    fn new_state(&self) -> Result<Self::State, MlError>;
    fn embed_with(&self, state: &mut Self::State, bytes: &[u8]) -> Result<Vec<f32>, MlError>;
}

impl Inference for Embedder {
    type State = EmbedderState;

    fn new_state(&self) -> Result<EmbedderState, MlError> {
        Embedder::new_state(self)
    }

    fn embed_with(&self, state: &mut EmbedderState, bytes: &[u8]) -> Result<Vec<f32>, MlError> {
        Embedder::embed_with(self, state, bytes)
    }
}

/// Counts a thread as live until it ends, however it ends (a panic outside the guarded
/// inference included).
struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let left = self.0.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        metrics::gauge!("ml_workers_live").set(left as f64);
    }
}

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
    live: Arc<AtomicUsize>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for InferencePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferencePool")
            .field("capacity", &self.capacity)
            .field("workers", &self.workers.len())
            .field("live", &self.live_workers())
            .field("available", &self.admission.available_permits())
            .finish()
    }
}

impl InferencePool {
    /// Starts `workers` threads (each with its own tract state) and an admission queue of
    /// `capacity` images.
    pub fn start<E: Inference>(
        embedder: Arc<E>,
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
        let live = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::with_capacity(workers);
        for i in 0..workers {
            let state = embedder.new_state()?;
            let embedder = Arc::clone(&embedder);
            let rx = Arc::clone(&rx);
            live.fetch_add(1, Ordering::SeqCst);
            let guard = LiveGuard(Arc::clone(&live));
            let handle = std::thread::Builder::new()
                .name(format!("rvc-ml-infer-{i}"))
                .spawn(move || {
                    let _live = guard;
                    worker(i, &*embedder, state, &rx);
                })
                .map_err(MlError::Spawn)?;
            handles.push(handle);
        }
        metrics::gauge!("ml_workers_live").set(workers as f64);
        tracing::info!(workers, capacity, "inference pool started");
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            admission: Arc::new(Semaphore::new(capacity)),
            capacity,
            live,
            workers: handles,
        })
    }

    /// Inference threads still running. Zero means no image can be embedded any more: the
    /// service reports NOT_SERVING (see `service::serve_with_health`).
    pub fn live_workers(&self) -> usize {
        self.live.load(Ordering::SeqCst)
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

fn worker<E: Inference>(
    id: usize,
    embedder: &E,
    mut state: E::State,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// A stand-in engine (a real model cannot be made to panic on demand): the vector is the
    /// input's length; the bytes `panic` panic inside inference; the state renewal after
    /// `states` states fails.
    struct Echo {
        states: usize,
        made: AtomicUsize,
    }

    impl Echo {
        fn new(states: usize) -> Arc<Self> {
            Arc::new(Self {
                states,
                made: AtomicUsize::new(0),
            })
        }
    }

    impl Inference for Echo {
        type State = ();

        fn new_state(&self) -> Result<(), MlError> {
            if self.made.fetch_add(1, Ordering::SeqCst) < self.states {
                Ok(())
            } else {
                Err(MlError::Inference("no state left".to_owned()))
            }
        }

        fn embed_with(&self, _: &mut (), bytes: &[u8]) -> Result<Vec<f32>, MlError> {
            if bytes == b"panic" {
                panic!("inference blew up");
            }
            Ok(vec![bytes.len() as f32])
        }
    }

    async fn wait_live(pool: &InferencePool, want: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.live_workers() != want {
            assert!(
                Instant::now() < deadline,
                "live workers stay at {}",
                pool.live_workers()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_panicking_inference_is_answered_and_its_worker_goes_on() {
        let pool = InferencePool::start(Echo::new(usize::MAX), 1, 4).unwrap();
        let err = pool.embed(b"panic".to_vec()).await.unwrap_err();
        assert!(
            matches!(&err, MlError::Inference(m) if m.contains("inference blew up")),
            "{err:?}"
        );
        // The only worker is still there, with a fresh state.
        assert_eq!(pool.embed(b"abc".to_vec()).await.unwrap(), vec![3.0]);
        assert_eq!(pool.live_workers(), 1);
    }

    #[tokio::test]
    async fn workers_that_cannot_recover_leave_the_live_count_and_then_calls_fail_fast() {
        // Two workers, two states: the renewal after any panic fails and that worker stops.
        let pool = InferencePool::start(Echo::new(2), 2, 4).unwrap();
        assert_eq!(pool.live_workers(), 2);
        assert!(pool.embed(b"panic".to_vec()).await.is_err());
        wait_live(&pool, 1).await;
        assert_eq!(pool.embed(b"ab".to_vec()).await.unwrap(), vec![2.0]);
        assert!(pool.embed(b"panic".to_vec()).await.is_err());
        wait_live(&pool, 0).await;
        // No worker: an error at once (the health check reports NOT_SERVING), never a hang.
        let r = tokio::time::timeout(Duration::from_secs(5), pool.embed(b"x".to_vec())).await;
        assert!(matches!(r, Ok(Err(_))), "{r:?}");
    }
}
