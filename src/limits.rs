//! Per-key rate limits and load shedding: two [`Guard`]s, the rate limit
//! behind authentication and load shedding in front of it.
//!
//! Each API key may make up to its role's limit of calls per second
//! (`AZORA_RATE_LIMIT`). The count is kept in Redis, so it holds across
//! replicas: one fixed one-second window per key, `INCR` and `PEXPIRE` in one
//! pipelined round trip. When Redis does not answer within its timeout, each
//! replica falls back to a token bucket of the same limit in its own memory —
//! neither unlimited nor refusing everything; across N replicas the effective
//! limit is then up to N times the configured one.
//!
//! A refused call gets RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo`
//! giving the time until the window (or bucket) allows another call.
//! Health and reflection never reach this layer's limits (they carry no
//! [`Principal`]).
//!
//! [`LoadShedding`] is the server-wide limit on calls in progress: a call
//! beyond it is refused at once, never queued.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::*;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

use crate::auth::{Guard, Principal, Role, is_public};
use crate::error::ERROR_DOMAIN;
use crate::redis::Redis;

/// Calls per second allowed per key, by role; `None` is unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    per_role: HashMap<Role, u32>,
}

impl RateLimits {
    /// Parses `role=calls_per_second,…`; a role left out, or 0, is unlimited.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut per_role = HashMap::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (role, limit) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not role=calls_per_second"))?;
            let role = Role::parse(role.trim()).ok_or_else(|| {
                format!("{role:?} is not a role (admin, treasurer, auditor, member, service)")
            })?;
            let limit: u32 = limit
                .trim()
                .parse()
                .map_err(|_| format!("{limit:?} is not a number of calls per second"))?;
            if limit > 0 {
                per_role.insert(role, limit);
            }
        }
        Ok(Self { per_role })
    }

    pub fn for_role(&self, role: Role) -> Option<u32> {
        self.per_role.get(&role).copied()
    }
}

impl std::str::FromStr for RateLimits {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

/// A refused call: when to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub retry_after: Duration,
}

/// Counts calls per key, in Redis when it answers and in memory otherwise.
#[derive(Clone)]
pub struct RateLimiter {
    limits: Arc<RateLimits>,
    redis: Option<Redis>,
    local: Arc<Mutex<HashMap<Uuid, Bucket>>>,
    /// Calls refused since start.
    refused: Arc<AtomicU64>,
}

/// A token bucket: `limit` calls of burst, refilled at `limit` per second.
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// More distinct keys than this in the local fallback and it starts over.
const LOCAL_CAPACITY: usize = 100_000;

const WINDOW_MS: u64 = 1000;

impl RateLimiter {
    pub fn new(limits: RateLimits, redis: Option<Redis>) -> Self {
        Self {
            limits: Arc::new(limits),
            redis,
            local: Default::default(),
            refused: Default::default(),
        }
    }

    /// Calls refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts one call of `principal`'s key; `Err` when it is over the limit.
    pub async fn count_call(&self, principal: &Principal) -> Result<(), Exceeded> {
        let Some(limit) = self.limits.for_role(principal.role) else {
            return Ok(());
        };
        if let Some(redis) = &self.redis
            && let Some(outcome) = Self::check_shared(redis, principal.api_key_id, limit).await
        {
            return outcome;
        }
        self.check_local(principal.api_key_id, limit)
    }

    /// `None` when Redis did not answer.
    async fn check_shared(redis: &Redis, key_id: Uuid, limit: u32) -> Option<Result<(), Exceeded>> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_millis() as u64;
        let window = now_ms / WINDOW_MS;
        let key = format!("azora:rl:{key_id}:{window}");
        let client = redis.client().clone();
        let count: i64 = redis
            .run("rate limit", async move {
                let pipeline = client.pipeline();
                pipeline.incr::<(), _>(&key).await?;
                pipeline
                    .pexpire::<(), _>(&key, 2 * WINDOW_MS as i64, None)
                    .await?;
                let (count, _): (i64, i64) = pipeline.all().await?;
                Ok(count)
            })
            .await?;
        Some(if count > i64::from(limit) {
            Err(Exceeded {
                retry_after: Duration::from_millis((window + 1) * WINDOW_MS - now_ms),
            })
        } else {
            Ok(())
        })
    }

    fn check_local(&self, key_id: Uuid, limit: u32) -> Result<(), Exceeded> {
        let limit = f64::from(limit);
        let now = Instant::now();
        let mut buckets = self
            .local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= LOCAL_CAPACITY && !buckets.contains_key(&key_id) {
            buckets.clear();
        }
        let bucket = buckets.entry(key_id).or_insert(Bucket {
            tokens: limit,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * limit;
        bucket.tokens = (bucket.tokens + refill).min(limit);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Exceeded {
                retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) / limit),
            })
        }
    }
}

impl From<Exceeded> for tonic::Status {
    fn from(exceeded: Exceeded) -> Self {
        use tonic_types::{ErrorDetails, StatusExt};
        let mut details = ErrorDetails::with_retry_info(Some(exceeded.retry_after));
        details.set_error_info(
            "RATE_LIMITED",
            ERROR_DOMAIN,
            std::collections::HashMap::<String, String>::new(),
        );
        tonic::Status::with_error_details(
            tonic::Code::ResourceExhausted,
            format!(
                "too many calls with this key; retry in {} ms",
                exceeded.retry_after.as_millis()
            ),
            details,
        )
    }
}

/// The per-key rate limit, as a guard inside authentication.
impl Guard for RateLimiter {
    type Pass = ();

    /// Counts the call against its key; calls without a [`Principal`]
    /// (health, reflection) are not counted.
    async fn check(&self, request: &mut http::request::Parts) -> Result<(), tonic::Status> {
        match request.extensions.get::<Principal>() {
            Some(principal) => self.count_call(principal).await.map_err(|exceeded| {
                self.refused.fetch_add(1, Ordering::Relaxed);
                exceeded.into()
            }),
            None => Ok(()),
        }
    }
}

/// At most `limit` calls in progress across every connection; one more is
/// refused at once with RESOURCE_EXHAUSTED (load shedding: never queued).
/// Health and reflection are exempt, so probes keep answering under
/// overload. A call holds its slot until its response starts (a server
/// stream then no longer counts; a client stream counts while it uploads).
#[derive(Clone)]
pub struct LoadShedding {
    slots: Arc<tokio::sync::Semaphore>,
    refused: Arc<AtomicU64>,
}

impl LoadShedding {
    /// `limit` 0 is unlimited.
    /// Calls refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn new(limit: usize) -> Self {
        let limit = match limit {
            0 => tokio::sync::Semaphore::MAX_PERMITS,
            limit => limit.min(tokio::sync::Semaphore::MAX_PERMITS),
        };
        Self {
            slots: Arc::new(tokio::sync::Semaphore::new(limit)),
            refused: Default::default(),
        }
    }

    fn take_slot(&self, path: &str) -> Result<Option<OwnedSemaphorePermit>, tonic::Status> {
        if is_public(path) {
            return Ok(None);
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok(Some(slot)),
            Err(_) => {
                let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                if refused.is_power_of_two() {
                    tracing::warn!(refused, "at the concurrency limit; refusing calls");
                }
                Err(tonic::Status::resource_exhausted(
                    "the server is at its limit of concurrent calls; retry later",
                ))
            }
        }
    }
}

impl Guard for LoadShedding {
    /// The call's slot, released when the response starts.
    type Pass = Option<OwnedSemaphorePermit>;

    fn check(
        &self,
        request: &mut http::request::Parts,
    ) -> impl Future<Output = Result<Self::Pass, tonic::Status>> + Send {
        std::future::ready(self.take_slot(request.uri.path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_per_role_and_zero_is_unlimited() {
        let limits = RateLimits::parse("admin=0, member=5,service=7").unwrap();
        assert_eq!(limits.for_role(Role::Admin), None);
        assert_eq!(limits.for_role(Role::Member), Some(5));
        assert_eq!(limits.for_role(Role::Service), Some(7));
        assert_eq!(limits.for_role(Role::Auditor), None);
        assert!(RateLimits::parse("member").is_err());
        assert!(RateLimits::parse("boss=3").is_err());
        assert!(RateLimits::parse("member=-1").is_err());
        assert_eq!(RateLimits::parse("").unwrap(), RateLimits::default());
    }

    #[test]
    fn the_local_fallback_allows_the_limit_then_refuses_with_a_delay() {
        let limiter = RateLimiter::new(RateLimits::parse("member=3").unwrap(), None);
        let key = Uuid::now_v7();
        for _ in 0..3 {
            assert!(limiter.check_local(key, 3).is_ok());
        }
        let refused = limiter.check_local(key, 3).unwrap_err();
        assert!(refused.retry_after <= Duration::from_millis(334));
        assert!(
            limiter.check_local(Uuid::now_v7(), 3).is_ok(),
            "other keys are unaffected"
        );
    }
}
