//! Token buckets per (key, scope).
//!
//! With a Redis URL the buckets live in Redis and every replica draws from the same bucket:
//! one Lua script (EVALSHA, loaded on first use) refills and takes a token atomically, using
//! the Redis server's clock (`TIME`), so replica clocks do not matter. Without Redis, or while
//! Redis does not answer, each replica keeps its own buckets in memory (the limit then holds
//! per replica; Redis errors are logged at most every 30 s).
use crate::config::RateSpec;
use crate::scope::Scope;
use fred::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refill, take one token; returns {allowed (0|1), milliseconds until a token is available}.
const TOKEN_BUCKET_LUA: &str = r#"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate / 1000)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait}
"#;

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("invalid REDIS_URL: {0}")]
    Config(String),
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// In-memory buckets of one replica.
#[derive(Default)]
pub struct LocalBuckets {
    buckets: Mutex<HashMap<(String, Scope), Bucket>>,
}

/// Most buckets kept in memory; idle full buckets are dropped beyond this.
const MAX_LOCAL_BUCKETS: usize = 100_000;

impl LocalBuckets {
    pub fn take(&self, key_id: &str, scope: Scope, spec: RateSpec) -> Result<(), Duration> {
        self.take_at(key_id, scope, spec, Instant::now())
    }

    fn take_at(
        &self,
        key_id: &str,
        scope: Scope,
        spec: RateSpec,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_LOCAL_BUCKETS {
            // a bucket that would be full again is the same as no bucket
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * spec.per_sec
                    < spec.burst
            });
        }
        let b = map.entry((key_id.to_owned(), scope)).or_insert(Bucket {
            tokens: spec.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * spec.per_sec).min(spec.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / spec.per_sec))
        }
    }
}

/// Where the buckets live.
pub struct RateLimiter {
    redis: Option<(Client, fred::types::scripts::Script)>,
    local: LocalBuckets,
    last_warning: AtomicU64,
    started: Instant,
}

impl RateLimiter {
    /// Buckets in this process only.
    pub fn local() -> Self {
        Self {
            redis: None,
            local: LocalBuckets::default(),
            last_warning: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Buckets in Redis at `url`; fails when Redis cannot be reached now (an explicit URL that
    /// does not work is a configuration error).
    pub async fn redis(url: &str) -> Result<Self, LimiterError> {
        let config = Config::from_url(url).map_err(|e| LimiterError::Config(e.to_string()))?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_millis(500);
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()?;
        client.init().await?;
        let script = fred::types::scripts::Script::from_lua(TOKEN_BUCKET_LUA);
        script.load(&client).await?;
        Ok(Self {
            redis: Some((client, script)),
            ..Self::local()
        })
    }

    pub fn shared(&self) -> bool {
        self.redis.is_some()
    }

    /// Takes a token of `key_id`'s bucket for `scope`; `Err(wait)` when it is empty.
    pub async fn take(&self, key_id: &str, scope: Scope, spec: RateSpec) -> Result<(), Duration> {
        if spec.unlimited() {
            return Ok(());
        }
        if let Some((client, script)) = &self.redis {
            let key = format!("rvc:ratelimit:{scope}:{key_id}");
            let res: Result<(i64, i64), _> = script
                .evalsha_with_reload(client, vec![key], vec![spec.per_sec, spec.burst])
                .await;
            match res {
                Ok((1, _)) => return Ok(()),
                Ok((_, wait_ms)) => {
                    return Err(Duration::from_millis(
                        u64::try_from(wait_ms).unwrap_or(1000),
                    ))
                }
                Err(e) => self.warn(&e),
            }
        }
        self.local.take(key_id, scope, spec)
    }

    fn warn(&self, e: &fred::error::Error) {
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 30)
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %e, "rate limiter: Redis unavailable, limiting per replica until it answers");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn local_bucket_allows_burst_then_refills() {
        let b = LocalBuckets::default();
        let spec = RateSpec {
            per_sec: 2.0,
            burst: 3.0,
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.take_at("k", Scope::CatalogRead, spec, t0).is_ok());
        }
        let wait = b.take_at("k", Scope::CatalogRead, spec, t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // another key and another scope have their own buckets
        assert!(b.take_at("other", Scope::CatalogRead, spec, t0).is_ok());
        assert!(b.take_at("k", Scope::CatalogWrite, spec, t0).is_ok());
        // half a second later one token is back
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.take_at("k", Scope::CatalogRead, spec, t1).is_ok());
        assert!(b.take_at("k", Scope::CatalogRead, spec, t1).is_err());
    }
}
