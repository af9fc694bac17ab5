//! The read side's product cache: Redis through `fred`, one string key per product.
//!
//! Every stored value is stamped with the product's **revision** (a number Postgres bumps on
//! every committed change of the row): `"<revision>|<json>"` is a cached product,
//! `"<revision>|"` a **tombstone** saying "revision N was committed; nothing older may be
//! cached". Both writes are Lua scripts (EVALSHA, reloaded after a Redis restart):
//!
//! * a reader's **fill** writes only when the stored revision is older than the one it read
//!   (an equal tombstone is replaced, an equal value left alone), so the classic stale set —
//!   a reader loads revision 1, the writer commits 2 and invalidates, the reader then writes
//!   1 — is refused by Redis itself;
//! * an **invalidation** writes a short-lived tombstone unless the stored entry is already at
//!   that revision or newer.
//!
//! Values expire after a TTL (the last net, not the mechanism). The [`ProductCache`] trait
//! is what `rvc-catalog`, the ingest API and the tests share; [`RedisCache`] is the real one
//! and [`NoCache`] switches caching off (the Postgres-only baseline of the benchmark).
use fred::prelude::*;
use fred::types::scripts::Script;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid REDIS_URL: {0}")]
    Config(String),
    #[error("redis is not connected")]
    Disconnected,
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
}

/// What the cache holds for one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A cached product (its serialized form) at `revision`.
    Value { revision: i64, value: String },
    /// Revision `revision` was committed after whatever was cached: a miss.
    Tombstone { revision: i64 },
}

impl Entry {
    pub fn revision(&self) -> i64 {
        match self {
            Entry::Value { revision, .. } | Entry::Tombstone { revision } => *revision,
        }
    }

    /// Parses a stored string; `None` for anything that is not ours.
    pub fn decode(raw: &str) -> Option<Self> {
        let (rev, rest) = raw.split_once('|')?;
        let revision = rev.parse().ok()?;
        Some(if rest.is_empty() {
            Entry::Tombstone { revision }
        } else {
            Entry::Value {
                revision,
                value: rest.to_owned(),
            }
        })
    }
}

/// A value to write when the cache holds nothing newer.
#[derive(Debug, Clone)]
pub struct Fill {
    pub id: Uuid,
    pub revision: i64,
    pub value: String,
}

/// The product cache as the read side uses it.
#[async_trait::async_trait]
pub trait ProductCache: Send + Sync + 'static {
    /// One entry per id, in order (`None`: nothing cached).
    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Option<Entry>>, CacheError>;
    /// Writes each fill unless a newer revision or tombstone is stored; returns how many
    /// were written (the rest were refused as stale or already present).
    async fn fill_many(&self, fills: &[Fill]) -> Result<usize, CacheError>;
    /// Writes a tombstone at each `(id, revision)` unless the entry is already that new.
    async fn invalidate_many(&self, items: &[(Uuid, i64)]) -> Result<(), CacheError>;
    /// Whether reads should try the cache at all (false: caching is off or disconnected).
    fn is_available(&self) -> bool;
    /// False only for [`NoCache`]: reading around it is the configuration, not a fallback.
    fn is_enabled(&self) -> bool {
        true
    }
}

/// Caching switched off: every read goes to Postgres.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

#[async_trait::async_trait]
impl ProductCache for NoCache {
    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Option<Entry>>, CacheError> {
        Ok(vec![None; ids.len()])
    }
    async fn fill_many(&self, _: &[Fill]) -> Result<usize, CacheError> {
        Ok(0)
    }
    async fn invalidate_many(&self, _: &[(Uuid, i64)]) -> Result<(), CacheError> {
        Ok(())
    }
    fn is_available(&self) -> bool {
        false
    }
    fn is_enabled(&self) -> bool {
        false
    }
}

/// Connection and timing settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// e.g. `redis://127.0.0.1:6379/0`
    pub url: String,
    /// Prepended to every key (`rvc:` in production; tests use their own).
    pub prefix: String,
    /// Lifetime of a cached product (the last net: invalidation is the mechanism).
    pub value_ttl: Duration,
    /// Lifetime of a tombstone; must exceed the longest time a reader may hold a value
    /// between its Postgres read and its fill (the catalog skips fills older than half of it).
    pub tombstone_ttl: Duration,
    /// Per-command timeout; a slower Redis counts as down for that read.
    pub command_timeout: Duration,
}

impl CacheConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "rvc:".to_owned(),
            value_ttl: Duration::from_secs(300),
            tombstone_ttl: Duration::from_secs(10),
            command_timeout: Duration::from_millis(250),
        }
    }
}

/// Fill: KEYS = product keys; ARGV = ttl_ms, then (revision, value) per key.
const FILL_LUA: &str = r#"
local written = 0
for i, key in ipairs(KEYS) do
  local rev = tonumber(ARGV[2 * i])
  local cur = redis.call('GET', key)
  local ok = true
  if cur then
    local r = tonumber(string.match(cur, '^(%d+)|'))
    if r then
      local tomb = string.sub(cur, -1) == '|'
      if r > rev or (r == rev and not tomb) then ok = false end
    end
  end
  if ok then
    redis.call('SET', key, ARGV[2 * i] .. '|' .. ARGV[2 * i + 1], 'PX', ARGV[1])
    written = written + 1
  end
end
return written
"#;

/// Invalidate: KEYS = product keys; ARGV = ttl_ms, then one revision per key.
const INVALIDATE_LUA: &str = r#"
for i, key in ipairs(KEYS) do
  local rev = tonumber(ARGV[i + 1])
  local cur = redis.call('GET', key)
  local r = nil
  if cur then r = tonumber(string.match(cur, '^(%d+)|')) end
  if not r or r < rev then
    redis.call('SET', key, ARGV[i + 1] .. '|', 'PX', ARGV[1])
  end
end
return #KEYS
"#;

/// The cache in Redis.
#[derive(Clone)]
pub struct RedisCache {
    client: Client,
    cfg: Arc<CacheConfig>,
    fill: Script,
    invalidate: Script,
}

impl RedisCache {
    /// Creates the client and starts connecting in the background; waits up to `wait` for
    /// the first connection. A Redis that is down at start is not an error: the client keeps
    /// reconnecting and reads use Postgres meanwhile.
    pub async fn connect(cfg: CacheConfig, wait: Duration) -> Result<Self, CacheError> {
        let mut config =
            Config::from_url(&cfg.url).map_err(|e| CacheError::Config(e.to_string()))?;
        config.fail_fast = false;
        let timeout = cfg.command_timeout;
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(2);
                c.internal_command_timeout = Duration::from_secs(2);
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
            })
            .set_policy(ReconnectPolicy::new_constant(0, 250))
            .build()?;
        client.connect();
        match tokio::time::timeout(wait, client.wait_for_connect()).await {
            Ok(Ok(())) => tracing::info!(url = %redact(&cfg.url), "connected to Redis"),
            Ok(Err(e)) => tracing::warn!(url = %redact(&cfg.url), error = %e,
                "Redis not reachable at start; reading from Postgres until it is"),
            Err(_) => tracing::warn!(url = %redact(&cfg.url),
                "Redis not reachable at start; reading from Postgres until it is"),
        }
        Ok(Self {
            client,
            cfg: Arc::new(cfg),
            fill: Script::from_lua(FILL_LUA),
            invalidate: Script::from_lua(INVALIDATE_LUA),
        })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.cfg
    }

    /// The Redis key of a product.
    pub fn key(&self, id: Uuid) -> String {
        format!("{}product:{}", self.cfg.prefix, id)
    }

    /// The underlying client (benchmarks compare against a raw MGET).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Raw MGET of the keys of `ids` (the benchmark's lower bound).
    pub async fn raw_mget(&self, ids: &[Uuid]) -> Result<Vec<Option<String>>, CacheError> {
        let keys: Vec<String> = ids.iter().map(|id| self.key(*id)).collect();
        if keys.len() == 1 {
            return Ok(vec![self.client.get(keys[0].as_str()).await?]);
        }
        Ok(self.client.mget(keys).await?)
    }

    fn ensure_connected(&self) -> Result<(), CacheError> {
        if self.client.is_connected() {
            Ok(())
        } else {
            Err(CacheError::Disconnected)
        }
    }

    fn ms(d: Duration) -> i64 {
        i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
    }

    /// Closes the connection.
    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }
}

#[async_trait::async_trait]
impl ProductCache for RedisCache {
    async fn get_many(&self, ids: &[Uuid]) -> Result<Vec<Option<Entry>>, CacheError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_connected()?;
        let raw = self.raw_mget(ids).await?;
        if raw.len() != ids.len() {
            return Err(CacheError::Protocol(format!(
                "MGET of {} keys returned {} values",
                ids.len(),
                raw.len()
            )));
        }
        Ok(raw
            .into_iter()
            .map(|r| r.as_deref().and_then(Entry::decode))
            .collect())
    }

    async fn fill_many(&self, fills: &[Fill]) -> Result<usize, CacheError> {
        if fills.is_empty() {
            return Ok(0);
        }
        self.ensure_connected()?;
        let keys: Vec<String> = fills.iter().map(|f| self.key(f.id)).collect();
        let mut args: Vec<String> = Vec::with_capacity(1 + 2 * fills.len());
        args.push(Self::ms(self.cfg.value_ttl).to_string());
        for f in fills {
            args.push(f.revision.to_string());
            args.push(f.value.clone());
        }
        let written: i64 = self
            .fill
            .evalsha_with_reload(&self.client, keys, args)
            .await?;
        Ok(usize::try_from(written).unwrap_or(0))
    }

    async fn invalidate_many(&self, items: &[(Uuid, i64)]) -> Result<(), CacheError> {
        if items.is_empty() {
            return Ok(());
        }
        self.ensure_connected()?;
        let keys: Vec<String> = items.iter().map(|(id, _)| self.key(*id)).collect();
        let mut args: Vec<String> = Vec::with_capacity(1 + items.len());
        args.push(Self::ms(self.cfg.tombstone_ttl).to_string());
        args.extend(items.iter().map(|(_, rev)| rev.to_string()));
        let _: i64 = self
            .invalidate
            .evalsha_with_reload(&self.client, keys, args)
            .await?;
        Ok(())
    }

    fn is_available(&self) -> bool {
        self.client.is_connected()
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`, for log lines.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_values_and_tombstones() {
        assert_eq!(
            Entry::decode("7|{\"a\":1}"),
            Some(Entry::Value {
                revision: 7,
                value: "{\"a\":1}".into()
            })
        );
        assert_eq!(Entry::decode("9|"), Some(Entry::Tombstone { revision: 9 }));
        assert_eq!(Entry::decode("garbage"), None);
        assert_eq!(Entry::decode("x|{}"), None);
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("redis://u:pw@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
    }
}
