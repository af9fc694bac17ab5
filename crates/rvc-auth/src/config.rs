//! The auth settings every API binary flattens into its configuration.
use crate::scope::Scope;
use std::str::FromStr;

/// `enforce` or `disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Every API route needs a key with the route's scope (the default, also for `make run`).
    Enforce,
    /// No key checks at all: for experiments on loopback only; logged loudly at start.
    Disabled,
}

/// A token bucket: `per_sec` tokens a second, at most `burst` saved up. `0` disables it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    pub per_sec: f64,
    pub burst: f64,
}

impl RateSpec {
    pub fn unlimited(&self) -> bool {
        self.per_sec <= 0.0
    }
}

impl FromStr for RateSpec {
    type Err = String;

    /// `RATE[:BURST]`, e.g. `20:40` (20 a second, bursts of 40) or `0` (unlimited). BURST
    /// defaults to RATE (at least 1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{s:?}: expected RATE[:BURST] in requests per second, e.g. 20:40 (0 = unlimited)"
            )
        };
        let (rate, burst) = match s.trim().split_once(':') {
            Some((r, b)) => (r, Some(b)),
            None => (s.trim(), None),
        };
        let per_sec: f64 = rate.trim().parse().map_err(|_| bad())?;
        let burst: f64 = match burst {
            Some(b) => b.trim().parse().map_err(|_| bad())?,
            None => per_sec.max(1.0),
        };
        if !per_sec.is_finite()
            || !burst.is_finite()
            || per_sec < 0.0
            || burst < 1.0 && per_sec > 0.0
        {
            return Err(bad());
        }
        Ok(Self { per_sec, burst })
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// `enforce`: API routes need `Authorization: Bearer <key>` with the route's scope.
    /// `disabled`: no checks, only allowed on a loopback address, logged loudly.
    #[arg(long, env = "AUTH_MODE", value_enum, default_value = "enforce")]
    pub auth_mode: AuthMode,
    /// Seconds a key lookup is cached: a revoked or changed key takes effect within this bound.
    #[arg(long, env = "AUTH_CACHE_TTL_SECS", default_value_t = 10)]
    pub auth_cache_ttl_secs: u64,
    /// Rate limit per key on routes needing catalog:write (RATE[:BURST] per second, 0 = off).
    #[arg(long, env = "RATE_LIMIT_CATALOG_WRITE", default_value = "20:40")]
    pub rate_limit_catalog_write: RateSpec,
    /// Rate limit per key on routes needing catalog:read.
    #[arg(long, env = "RATE_LIMIT_CATALOG_READ", default_value = "200:400")]
    pub rate_limit_catalog_read: RateSpec,
    /// Rate limit per key on routes needing recognize.
    #[arg(long, env = "RATE_LIMIT_RECOGNIZE", default_value = "20:40")]
    pub rate_limit_recognize: RateSpec,
    /// Rate limit per key on routes needing admin.
    #[arg(long, env = "RATE_LIMIT_ADMIN", default_value = "50:100")]
    pub rate_limit_admin: RateSpec,
    /// Redis holding the rate-limit buckets, shared by every replica (REDIS_URL). Unset: each
    /// replica keeps its own buckets (the limit is then per replica).
    #[arg(long = "rate-limit-redis-url", env = "REDIS_URL")]
    pub rate_limit_redis_url: Option<String>,
}

impl Default for AuthArgs {
    /// The defaults of the `#[arg]` attributes above (stated once, there).
    fn default() -> Self {
        rvc_runtime::args::defaults()
    }
}

impl AuthArgs {
    pub fn rate_for(&self, scope: Scope) -> RateSpec {
        match scope {
            Scope::CatalogWrite => self.rate_limit_catalog_write,
            Scope::CatalogRead => self.rate_limit_catalog_read,
            Scope::Recognize => self.rate_limit_recognize,
            Scope::Admin => self.rate_limit_admin,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rate_specs() {
        assert_eq!(
            "20:40".parse::<RateSpec>().unwrap(),
            RateSpec {
                per_sec: 20.0,
                burst: 40.0
            }
        );
        assert_eq!(
            "0.5".parse::<RateSpec>().unwrap(),
            RateSpec {
                per_sec: 0.5,
                burst: 1.0
            }
        );
        assert!("0".parse::<RateSpec>().unwrap().unlimited());
        for bad in ["", "x", "-1", "5:0", "NaN", "inf:3"] {
            assert!(bad.parse::<RateSpec>().is_err(), "{bad}");
        }
    }
}
