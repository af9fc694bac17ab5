//! A lease lock in Redis, so that a scheduled maintenance job (orphan collection, outbox
//! pruning) runs on one replica at a time even when every replica schedules it.
//!
//! `SET key token NX PX ttl` takes the lock; releasing deletes the key only if it still holds
//! our token (a Lua compare-and-delete), so a holder whose lease expired cannot release the
//! next holder's lock. The lease bounds how long a crashed holder blocks the others.
//!
//! Postgres stays the source of truth: the jobs this guards are safe to run twice (they
//! re-check references before deleting), the lock only avoids duplicate work.
use fred::prelude::*;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("invalid REDIS_URL: {0}")]
    Config(String),
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
}

/// A connection used to take and release named leases.
#[derive(Clone)]
pub struct RedisLock {
    client: Client,
}

/// Proof of holding `key` until `ttl` after it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockGuard {
    pub key: String,
    pub token: String,
}

const RELEASE: &str = r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

impl RedisLock {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`).
    pub async fn connect(url: &str) -> Result<Self, LockError> {
        let config = Config::from_url(url).map_err(|e| LockError::Config(e.to_string()))?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(5);
                c.internal_command_timeout = Duration::from_secs(5);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_secs(5);
            })
            .build()?;
        client.init().await?;
        Ok(Self { client })
    }

    /// Takes `key` for `ttl` unless somebody else holds it.
    pub async fn try_acquire(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<LockGuard>, LockError> {
        let token = uuid::Uuid::new_v4().to_string();
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let set: Option<String> = self
            .client
            .set(
                key,
                token.as_str(),
                Some(Expiration::PX(ms)),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        Ok(set.map(|_| LockGuard {
            key: key.to_owned(),
            token,
        }))
    }

    /// Releases `guard` if it still holds the lock; returns whether it did.
    pub async fn release(&self, guard: &LockGuard) -> Result<bool, LockError> {
        let deleted: i64 = self
            .client
            .eval(
                RELEASE,
                vec![guard.key.as_str()],
                vec![guard.token.as_str()],
            )
            .await?;
        Ok(deleted == 1)
    }
}
