//! Checking a presented key: parse, cached lookup, constant-time hash comparison, revocation,
//! expiry, scope, rate limit, and a cheap `last_used_at`.
use crate::config::{AuthArgs, AuthMode};
use crate::error::AuthError;
use crate::key::{bearer, PresentedKey};
use crate::ratelimit::{LimiterError, RateLimiter};
use crate::scope::{Scope, Scopes};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `last_used_at` is written at most this often per key (per replica, and the UPDATE itself
/// skips rows touched within it, so also across replicas).
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// Most cached lookups; the cache is emptied of stale entries (then cleared) beyond it.
const MAX_CACHED: usize = 10_000;

/// Who is calling: put into the request's extensions after a successful check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's public id (safe to log).
    pub key_id: String,
    pub name: String,
    pub scopes: Scopes,
}

#[derive(Debug)]
struct KeyEntry {
    name: String,
    sha256: Vec<u8>,
    scopes: Scopes,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

#[derive(Clone)]
struct Cached {
    at: Instant,
    entry: Option<Arc<KeyEntry>>,
}

struct Inner {
    args: AuthArgs,
    pool: Pool,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    touched: Mutex<HashMap<String, Instant>>,
    limiter: RateLimiter,
}

/// Checks keys; cheap to clone (shared state).
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("rate limiter: {0}")]
    Limiter(#[from] LimiterError),
}

impl Authenticator {
    /// Builds the checker. Connects to Redis when `REDIS_URL` is set (and fails if it cannot).
    /// With `AUTH_MODE=disabled` it logs a loud warning: nothing is protected.
    pub async fn build(args: AuthArgs, pool: Pool) -> Result<Self, BuildError> {
        let limiter = match &args.rate_limit_redis_url {
            Some(url) if !url.trim().is_empty() => RateLimiter::redis(url).await?,
            _ => RateLimiter::local(),
        };
        match args.auth_mode {
            AuthMode::Disabled => {
                tracing::warn!("AUTH_MODE=disabled: API KEYS ARE NOT CHECKED. Anyone who reaches this port can write the catalog. Use only for experiments on loopback.");
                eprintln!("\n*** WARNING: AUTH_MODE=disabled: API keys are NOT checked; every request is allowed. Never run this way outside loopback experiments. ***\n");
            }
            AuthMode::Enforce => tracing::info!(
                cache_ttl_secs = args.auth_cache_ttl_secs,
                rate_limits = if limiter.shared() {
                    "shared through Redis"
                } else {
                    "per replica"
                },
                "API keys enforced; a revocation takes effect within the cache TTL"
            ),
        }
        Ok(Self {
            inner: Arc::new(Inner {
                ttl: Duration::from_secs(args.auth_cache_ttl_secs),
                args,
                pool,
                cache: Mutex::new(HashMap::new()),
                touched: Mutex::new(HashMap::new()),
                limiter,
            }),
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.inner.args.auth_mode
    }

    /// The revocation bound: how long a cached lookup is trusted.
    pub fn cache_ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// Checks the `Authorization` value (`Bearer <key>`) for `needed`, then takes a token of
    /// the key's bucket for that scope. Never logs the value.
    pub async fn check(
        &self,
        authorization: Option<&[u8]>,
        needed: Scope,
    ) -> Result<Principal, AuthError> {
        let result = self.check_inner(authorization, needed).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        metrics::counter!("rvc_auth_checks_total", "scope" => needed.as_str(), "outcome" => outcome)
            .increment(1);
        result
    }

    async fn check_inner(
        &self,
        authorization: Option<&[u8]>,
        needed: Scope,
    ) -> Result<Principal, AuthError> {
        if self.inner.args.auth_mode == AuthMode::Disabled {
            return Ok(Principal {
                key_id: "-".into(),
                name: "auth-disabled".into(),
                scopes: Scopes::from_strs(&["admin"]),
            });
        }
        let token = authorization.and_then(bearer).ok_or(AuthError::Missing)?;
        let key = PresentedKey::parse(token).map_err(|e| {
            tracing::debug!(reason = %e, "malformed API key refused");
            AuthError::Invalid
        })?;
        let Some(entry) = self.lookup(key.id()).await? else {
            tracing::info!(key_id = key.id(), "unknown API key refused");
            return Err(AuthError::Invalid);
        };
        if !key.matches(&entry.sha256) {
            tracing::info!(key_id = key.id(), "API key with a wrong secret refused");
            return Err(AuthError::Invalid);
        }
        if entry.revoked_at.is_some() {
            tracing::info!(key_id = key.id(), name = %entry.name, "revoked API key refused");
            return Err(AuthError::Revoked);
        }
        if entry.expires_at.is_some_and(|t| t <= Utc::now()) {
            tracing::info!(key_id = key.id(), name = %entry.name, "expired API key refused");
            return Err(AuthError::Expired);
        }
        if !entry.scopes.grants(needed) {
            tracing::info!(key_id = key.id(), name = %entry.name, needed = %needed, "API key lacks the scope");
            return Err(AuthError::Forbidden(needed));
        }
        let spec = self.inner.args.rate_for(needed);
        if let Err(wait) = self.inner.limiter.take(key.id(), needed, spec).await {
            tracing::debug!(key_id = key.id(), scope = %needed, wait_ms = wait.as_millis() as u64, "rate limited");
            return Err(AuthError::RateLimited(wait));
        }
        self.touch(key.id());
        Ok(Principal {
            key_id: key.id().to_owned(),
            name: entry.name.clone(),
            scopes: entry.scopes,
        })
    }

    async fn lookup(&self, id: &str) -> Result<Option<Arc<KeyEntry>>, AuthError> {
        {
            let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = cache.get(id) {
                if c.at.elapsed() < self.inner.ttl {
                    return Ok(c.entry.clone());
                }
            }
        }
        let client = self.inner.pool.get().await.map_err(|e| {
            tracing::error!(error = %e, "API key lookup: no database connection");
            AuthError::Unavailable
        })?;
        let record = rvc_store::api_keys::find(&**client, id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "API key lookup failed");
                AuthError::Unavailable
            })?;
        let entry = record.map(|r| {
            Arc::new(KeyEntry {
                scopes: Scopes::from_strs(&r.scopes),
                name: r.name,
                sha256: r.key_sha256,
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
            })
        });
        let now = Instant::now();
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            let ttl = self.inner.ttl;
            cache.retain(|_, c| now.duration_since(c.at) < ttl);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(
            id.to_owned(),
            Cached {
                at: now,
                entry: entry.clone(),
            },
        );
        Ok(entry)
    }

    /// Updates `last_used_at` in the background, at most once per [`TOUCH_INTERVAL`] per key.
    fn touch(&self, id: &str) {
        let now = Instant::now();
        {
            let mut touched = self.inner.touched.lock().unwrap_or_else(|e| e.into_inner());
            if touched
                .get(id)
                .is_some_and(|t| now.duration_since(*t) < TOUCH_INTERVAL)
            {
                return;
            }
            if touched.len() >= MAX_CACHED {
                touched.retain(|_, t| now.duration_since(*t) < TOUCH_INTERVAL);
            }
            touched.insert(id.to_owned(), now);
        }
        let pool = self.inner.pool.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let res = match pool.get().await {
                Ok(c) => rvc_store::api_keys::touch(&**c, &id, TOUCH_INTERVAL.as_secs_f64())
                    .await
                    .map(|_| ()),
                Err(e) => Err(rvc_store::StoreError::Pool(e)),
            };
            if let Err(e) = res {
                tracing::warn!(key_id = %id, error = %e, "could not record the API key's last use");
            }
        });
    }
}
