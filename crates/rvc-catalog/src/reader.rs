//! Product lookups by id: cache-aside over Redis with revision-stamped conditional fills,
//! single-flight loads and a silent fall-back to Postgres when Redis is down or untrusted.
use crate::model::Product;
use futures::future::BoxFuture;
use rvc_cache::{CacheError, Entry, Fill, ProductCache};
use rvc_store::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Store(#[from] rvc_store::StoreError),
}

impl CatalogError {
    /// The database could not be reached (as opposed to a query that failed).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CatalogError::Store(rvc_store::StoreError::Pool(_)))
    }
}

/// Called by a loader between its Postgres read and its cache write (tests pause a reader
/// there to force the stale-set race). `None` in production.
pub type AfterLoadHook = Arc<dyn Fn(Vec<Uuid>) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
pub struct ReaderOptions {
    /// A fill whose Postgres read started longer ago than this is skipped: it must stay
    /// below the tombstone TTL so a tombstone outlives every fill that could undercut it.
    pub fill_max_age: Duration,
    /// Whether an invalidator runs in this process: the cache is then trusted only after it
    /// drained the pending invalidations (at start and after every Redis error). Without
    /// one, the cache is trusted again as soon as Redis is connected.
    pub invalidator_in_process: bool,
    pub after_load: Option<AfterLoadHook>,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            fill_max_age: Duration::from_secs(2),
            invalidator_in_process: true,
            after_load: None,
        }
    }
}

/// Products found (in request order, duplicates once) and the ids that do not exist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lookup {
    pub products: Vec<Product>,
    pub not_found: Vec<Uuid>,
}

type Flight = watch::Receiver<Option<Arc<Option<Product>>>>;

/// Counters a test or a benchmark can read without scraping /metrics.
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Products loaded from Postgres by a cache-miss leader (one per id per flight).
    pub pg_loads: AtomicU64,
    pub fills_written: AtomicU64,
    /// Fills Redis refused because a newer revision or tombstone was stored.
    pub fills_refused: AtomicU64,
    pub fallbacks: AtomicU64,
    /// Readers currently waiting on another reader's load of the same id.
    pub followers_waiting: AtomicUsize,
}

/// The read side's lookup service (shared by gRPC and HTTP).
pub struct Catalog {
    pool: PgPool,
    cache: Arc<dyn ProductCache>,
    opts: ReaderOptions,
    flights: Mutex<HashMap<Uuid, Flight>>,
    /// Bumped on every cache error; the cache is trusted while `trusted_gen == generation`.
    generation: AtomicU64,
    trusted_gen: AtomicU64,
    degraded_logged: AtomicBool,
    wake_invalidator: Arc<Notify>,
    pub stats: ReaderStats,
}

impl Catalog {
    pub fn new(pool: PgPool, cache: Arc<dyn ProductCache>, opts: ReaderOptions) -> Self {
        let trusted_gen = if opts.invalidator_in_process { 0 } else { 1 };
        Self {
            pool,
            cache,
            opts,
            flights: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(1),
            trusted_gen: AtomicU64::new(trusted_gen),
            degraded_logged: AtomicBool::new(false),
            wake_invalidator: Arc::new(Notify::new()),
            stats: ReaderStats::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn cache(&self) -> &Arc<dyn ProductCache> {
        &self.cache
    }

    /// Notified when a reader saw a cache error (the invalidator then runs a pass at once).
    pub fn invalidator_wake(&self) -> Arc<Notify> {
        self.wake_invalidator.clone()
    }

    /// The error generation an invalidator pass starts from (see [`Self::mark_drained`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// An invalidator applied every pending invalidation that existed when generation `gen`
    /// was current: if no cache error happened since, the cache may be used again.
    pub fn mark_drained(&self, gen: u64) {
        if self.generation.load(Ordering::SeqCst) == gen && self.cache.is_available() {
            let before = self.trusted_gen.swap(gen, Ordering::SeqCst);
            if before != gen {
                metrics::gauge!("rvc_catalog_cache_trusted").set(1.0);
                if self.degraded_logged.swap(false, Ordering::SeqCst) {
                    tracing::info!("cache back in use: Redis reachable and invalidations applied");
                }
            }
        }
    }

    /// Whether reads may use the cache now.
    pub fn cache_trusted(&self) -> bool {
        if !self.cache.is_available() {
            return false;
        }
        let gen = self.generation.load(Ordering::SeqCst);
        if self.trusted_gen.load(Ordering::SeqCst) == gen {
            return true;
        }
        if !self.opts.invalidator_in_process {
            self.mark_drained(gen);
            return self.trusted_gen.load(Ordering::SeqCst) == gen;
        }
        false
    }

    fn cache_failed(&self, op: &'static str, e: &CacheError) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        metrics::gauge!("rvc_catalog_cache_trusted").set(0.0);
        metrics::counter!("rvc_catalog_cache_errors_total", "op" => op).increment(1);
        if !self.degraded_logged.swap(true, Ordering::SeqCst) {
            tracing::warn!(op, error = %e, "cache unavailable: reading from Postgres until Redis is back and invalidations are applied");
        } else {
            tracing::debug!(op, error = %e, "cache error");
        }
        self.wake_invalidator.notify_one();
    }

    /// Looks `ids` up (at most a few hundred): cache first, Postgres for the rest.
    pub async fn get_products(&self, ids: &[Uuid]) -> Result<Lookup, CatalogError> {
        let mut seen = HashSet::with_capacity(ids.len());
        let ids: Vec<Uuid> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        let mut found: HashMap<Uuid, Product> = HashMap::with_capacity(ids.len());
        let use_cache = self.cache_trusted();
        let mut misses = Vec::new();
        if use_cache {
            match self.cache.get_many(&ids).await {
                Ok(entries) => {
                    for (id, entry) in ids.iter().zip(entries) {
                        match entry.and_then(|e| match e {
                            Entry::Value { value, .. } => {
                                serde_json::from_str::<Product>(&value).ok()
                            }
                            Entry::Tombstone { .. } => None,
                        }) {
                            Some(p) => {
                                found.insert(*id, p);
                            }
                            None => misses.push(*id),
                        }
                    }
                }
                Err(e) => {
                    self.cache_failed("get", &e);
                    self.fallback(ids.len());
                    misses.clone_from(&ids);
                }
            }
        } else {
            self.fallback(ids.len());
            misses.clone_from(&ids);
        }
        let hits = (ids.len() - misses.len()) as u64;
        self.stats.hits.fetch_add(hits, Ordering::Relaxed);
        self.stats
            .misses
            .fetch_add(misses.len() as u64, Ordering::Relaxed);
        metrics::counter!("rvc_catalog_cache_requests_total", "result" => "hit").increment(hits);
        metrics::counter!("rvc_catalog_cache_requests_total", "result" => "miss")
            .increment(misses.len() as u64);
        if !misses.is_empty() {
            let loaded = self.load(&misses, use_cache).await?;
            for (id, p) in loaded {
                if let Some(p) = p {
                    found.insert(id, p);
                }
            }
        }
        let mut out = Lookup::default();
        for id in ids {
            match found.remove(&id) {
                Some(p) => out.products.push(p),
                None => out.not_found.push(id),
            }
        }
        Ok(out)
    }

    fn fallback(&self, n: usize) {
        if !self.cache.is_enabled() {
            return;
        }
        self.stats.fallbacks.fetch_add(n as u64, Ordering::Relaxed);
        metrics::counter!("rvc_catalog_cache_fallback_total").increment(n as u64);
        if !self.cache.is_available() && !self.degraded_logged.swap(true, Ordering::SeqCst) {
            metrics::gauge!("rvc_catalog_cache_trusted").set(0.0);
            tracing::warn!("cache not connected: reading from Postgres until Redis is back");
        }
    }

    /// Loads `ids` from Postgres, once per id across concurrent callers of this process: the
    /// first caller of an id leads (one query for all its ids), later ones wait for its result.
    async fn load(
        &self,
        ids: &[Uuid],
        fill: bool,
    ) -> Result<Vec<(Uuid, Option<Product>)>, CatalogError> {
        let mut lead = Vec::new();
        let mut senders = Vec::new();
        let mut follow = Vec::new();
        {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            for id in ids {
                match flights.get(id) {
                    Some(rx) => follow.push((*id, rx.clone())),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        flights.insert(*id, rx);
                        lead.push(*id);
                        senders.push(tx);
                    }
                }
            }
        }
        let guard = FlightGuard {
            flights: &self.flights,
            ids: lead.clone(),
        };
        let mut out = Vec::with_capacity(ids.len());
        if !lead.is_empty() {
            let started = Instant::now();
            let rows = self.load_from_pg(&lead).await?;
            if let Some(hook) = &self.opts.after_load {
                hook(lead.clone()).await;
            }
            let mut by_id: HashMap<Uuid, Product> = rows.into_iter().map(|p| (p.id, p)).collect();
            let mut fills = Vec::new();
            for (id, tx) in lead.iter().zip(senders) {
                let p = by_id.remove(id);
                if let Some(p) = &p {
                    if let Ok(value) = serde_json::to_string(p) {
                        fills.push(Fill {
                            id: *id,
                            revision: p.revision,
                            value,
                        });
                    }
                }
                let _ = tx.send(Some(Arc::new(p.clone())));
                out.push((*id, p));
            }
            drop(guard);
            if fill && !fills.is_empty() {
                self.fill(fills, started).await;
            }
        } else {
            drop(guard);
        }
        for (id, mut rx) in follow {
            self.stats.followers_waiting.fetch_add(1, Ordering::SeqCst);
            let shared = rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|v| v.clone());
            self.stats.followers_waiting.fetch_sub(1, Ordering::SeqCst);
            match shared {
                Some(p) => out.push((id, p.as_ref().clone())),
                None => {
                    // the leader failed or was cancelled: load it ourselves (no fill)
                    let mut rows = self.load_from_pg(&[id]).await?;
                    out.push((id, rows.pop()));
                }
            }
        }
        Ok(out)
    }

    async fn load_from_pg(&self, ids: &[Uuid]) -> Result<Vec<Product>, CatalogError> {
        let client = self.pool.get().await.map_err(rvc_store::StoreError::from)?;
        let rows = rvc_store::catalog::products_by_ids(&**client, ids).await?;
        self.stats
            .pg_loads
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        metrics::counter!("rvc_catalog_pg_loads_total").increment(ids.len() as u64);
        Ok(rows.into_iter().map(Product::from).collect())
    }

    async fn fill(&self, fills: Vec<Fill>, started: Instant) {
        if started.elapsed() > self.opts.fill_max_age {
            metrics::counter!("rvc_catalog_cache_fills_skipped_total", "reason" => "slow_load")
                .increment(fills.len() as u64);
            tracing::debug!(n = fills.len(), "load took too long: not filling the cache");
            return;
        }
        if !self.cache_trusted() {
            return;
        }
        match self.cache.fill_many(&fills).await {
            Ok(written) => {
                let refused = fills.len().saturating_sub(written) as u64;
                self.stats
                    .fills_written
                    .fetch_add(written as u64, Ordering::Relaxed);
                self.stats
                    .fills_refused
                    .fetch_add(refused, Ordering::Relaxed);
                metrics::counter!("rvc_catalog_cache_fills_total").increment(written as u64);
                if refused > 0 {
                    metrics::counter!("rvc_catalog_cache_fills_refused_total").increment(refused);
                }
            }
            Err(e) => self.cache_failed("fill", &e),
        }
    }
}

/// Removes a leader's flights when it finishes, fails or is cancelled.
struct FlightGuard<'a> {
    flights: &'a Mutex<HashMap<Uuid, Flight>>,
    ids: Vec<Uuid>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        for id in &self.ids {
            flights.remove(id);
        }
    }
}
