//! The read cache in Redis: cache-aside for hot reads, shared by every
//! replica, and the only place that knows its key format and serialisation.
//!
//! # Consistency: generations, not deletes
//!
//! Deleting an entry after a commit races with a reader that read the
//! database before the commit and stores its (old) value after the delete.
//! Instead every entry depends on one or more *generation* counters
//! ([`Generation`]) and a global *epoch*, and its value is stored under
//! `azora:c:{entry}` *tagged* with the epoch and generations it was read
//! under (`{epoch}:{gen}…|{json}`).
//!
//! - A reader fetches the epoch, the generations and the tagged value in one
//!   `MGET`; it is a hit only when the tag equals the current epoch and
//!   generations. On a miss it reads the database and stores the value tagged
//!   with what it fetched *before* reading, with a TTL
//!   (`AZORA_CACHE_TTL_MS`) as a backstop.
//! - A writer, after its commit and before it answers, increments the
//!   generations its change affects ([`Cache::invalidate`]). A slow reader
//!   that read the database before the commit can only store a value tagged
//!   with an old generation, which no lookup accepts, so a read that starts
//!   after a write has answered — on any replica — never sees the old value.
//! - If an invalidation cannot reach Redis, this replica stops using the
//!   cache (it is *suspect*) and keeps trying to increment the epoch; once
//!   that succeeds every entry of every replica is out of reach (they read
//!   the epoch on each lookup) and the cache is used again.
//! - A Redis restarted empty has no values, and generations and epoch start
//!   again at 0: nothing old can be found.
//!
//! Generation and epoch keys have no TTL, values do: run Redis with
//! `noeviction` or a `volatile-*` eviction policy, so that only values are
//! ever evicted (an evicted generation would restart at 0).
//!
//! # Who must invalidate
//!
//! Every write that changes something an [`Entry`] returns. The ledger
//! ([`crate::treasury::ledger`]) invalidates after each batch it commits;
//! code that calls [`crate::treasury::ledger::apply_in`] inside its own
//! transaction receives an [`Invalidation`] with the outcomes and must pass it
//! to [`Cache::invalidate`] after its commit and before answering.
//!
//! # Authorization
//!
//! The cache holds database rows, never answers for a caller: operations
//! check the caller first (or check ownership on the cached row, for wallets)
//! exactly as they do on a database read.
//!
//! Redis is optional: [`Cache::disabled`] reads the database every time.
//! Every Redis call is bounded by [`crate::redis::COMMAND_TIMEOUT`]; a
//! failure is logged and counted, and the read falls back to the database.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use fred::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::Error;
use crate::redis::Redis;

const EPOCH_KEY: &str = "azora:epoch";

/// What a cached read returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `GetUser`: the user row.
    User(Uuid),
    /// `GetWallet`: the wallet row with its balances.
    Wallet(Uuid),
    /// `GetBalance` (now): the wallet's owner, balance and creation time.
    WalletBalance(Uuid),
    /// `GetTreasurySummary`, under one allocation policy version.
    TreasurySummary { policy_version: i32 },
    /// `GetMiningPerformance` for one miner (or all) over a window.
    MiningPerformance {
        miner: Option<Uuid>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

impl Entry {
    fn name(&self) -> String {
        match self {
            Entry::User(id) => format!("user:{id}"),
            Entry::Wallet(id) => format!("wallet:{id}"),
            Entry::WalletBalance(id) => format!("balance:{id}"),
            Entry::TreasurySummary { policy_version } => format!("summary:{policy_version}"),
            Entry::MiningPerformance { miner, start, end } => format!(
                "performance:{}:{}:{}",
                miner.map_or_else(|| "all".to_owned(), |miner| miner.to_string()),
                start.timestamp_micros(),
                end.timestamp_micros()
            ),
        }
    }

    /// The generations this entry's value depends on.
    fn generations(&self) -> Vec<Generation> {
        match self {
            Entry::User(id) => vec![Generation::User(*id)],
            Entry::Wallet(id) | Entry::WalletBalance(id) => vec![Generation::Wallet(*id)],
            Entry::TreasurySummary { .. } => vec![Generation::Ledger],
            Entry::MiningPerformance {
                miner: Some(miner), ..
            } => vec![Generation::Miner(*miner)],
            Entry::MiningPerformance { miner: None, .. } => vec![Generation::Mining],
        }
    }
}

/// A counter that a change increments to make entries depending on it
/// unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Generation {
    /// A user row (profile, role, KYC).
    User(Uuid),
    /// A wallet row and its balances.
    Wallet(Uuid),
    /// Anything in the ledger: system balances, transaction totals.
    Ledger,
    /// One miner's samples.
    Miner(Uuid),
    /// Any miner's samples.
    Mining,
}

impl Generation {
    fn key(self) -> String {
        match self {
            Generation::User(id) => format!("azora:g:user:{id}"),
            Generation::Wallet(id) => format!("azora:g:wallet:{id}"),
            Generation::Ledger => "azora:g:ledger".to_owned(),
            Generation::Miner(id) => format!("azora:g:miner:{id}"),
            Generation::Mining => "azora:g:mining".to_owned(),
        }
    }
}

/// The generations a committed change affects. Pass it to
/// [`Cache::invalidate`] after the commit and before answering.
#[must_use = "pass it to Cache::invalidate after the commit, or cached reads stay stale"]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invalidation(BTreeSet<Generation>);

impl Invalidation {
    pub fn of(generations: impl IntoIterator<Item = Generation>) -> Self {
        Self(generations.into_iter().collect())
    }

    pub fn add(&mut self, generation: Generation) {
        self.0.insert(generation);
    }

    pub fn merge(&mut self, other: Invalidation) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn generations(&self) -> impl Iterator<Item = Generation> + '_ {
        self.0.iter().copied()
    }
}

/// Hits, misses and failures since start, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Lookups that went to the database because Redis failed or this
    /// replica did not trust the cache.
    pub bypassed: u64,
    pub failed_invalidations: u64,
}

/// The cache; cheap to clone. A disabled cache reads the database every time.
#[derive(Clone)]
pub struct Cache {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    redis: Redis,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    bypassed: AtomicU64,
    /// Invalidations that failed, and how many of them an epoch increment
    /// has covered; the cache is trusted only when they are equal.
    failed_invalidations: AtomicU64,
    covered_failures: AtomicU64,
    repairing: AtomicBool,
}

impl fmt::Debug for Cache {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Cache")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl Cache {
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// A cache that is distrusted until it has moved the epoch on: a
    /// process that starts cannot know whether an invalidation was lost (its
    /// predecessor may have died between a commit and the increment), and
    /// neither can one that reconnects to Redis (which may have restarted
    /// from a snapshot holding old generations). Moving the epoch puts every
    /// replica's entries out of reach, so a read after the restart is fresh
    /// everywhere. Must be called inside a Tokio runtime.
    pub fn new(redis: Redis, ttl: Duration) -> Self {
        let inner = Arc::new(Inner {
            redis,
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            failed_invalidations: AtomicU64::new(1),
            covered_failures: AtomicU64::new(0),
            repairing: AtomicBool::new(false),
        });
        Inner::start_repair(inner.clone());
        let mut reconnects = inner.redis.client().reconnect_rx();
        let watched = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while reconnects.recv().await.is_ok() {
                let Some(inner) = watched.upgrade() else {
                    return;
                };
                inner.failed_invalidations.fetch_add(1, Ordering::SeqCst);
                Inner::start_repair(inner);
            }
        });
        Self { inner: Some(inner) }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn stats(&self) -> CacheStats {
        match &self.inner {
            None => CacheStats::default(),
            Some(inner) => CacheStats {
                hits: inner.hits.load(Ordering::Relaxed),
                misses: inner.misses.load(Ordering::Relaxed),
                bypassed: inner.bypassed.load(Ordering::Relaxed),
                failed_invalidations: inner.failed_invalidations.load(Ordering::Relaxed),
            },
        }
    }

    /// The cached value of `entry`, or `load`'s (stored for the next reader
    /// when it is `Some`). Never fails because of Redis.
    pub async fn get_or_load<T, F, Fut>(&self, entry: Entry, load: F) -> Result<Option<T>, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, Error>>,
    {
        let Some(inner) = &self.inner else {
            return load().await;
        };
        if inner.suspect() {
            inner.bypassed.fetch_add(1, Ordering::Relaxed);
            return load().await;
        }
        let key = format!("azora:c:{}", entry.name());
        let Some((tag, cached)) = inner.lookup(&key, &entry).await else {
            inner.bypassed.fetch_add(1, Ordering::Relaxed);
            return load().await;
        };
        if let Some(bytes) = cached {
            match serde_json::from_slice(&bytes) {
                Ok(value) => {
                    inner.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(value));
                }
                // An entry written by another version of azora: read the
                // database and overwrite it.
                Err(error) => tracing::debug!(%error, key, "unreadable cache entry"),
            }
        }
        inner.misses.fetch_add(1, Ordering::Relaxed);
        let loaded = load().await?;
        if let Some(value) = &loaded {
            match serde_json::to_vec(value) {
                Ok(bytes) => inner.store(key, tag, bytes).await,
                Err(error) => tracing::warn!(%error, "cannot serialise a cache entry"),
            }
        }
        Ok(loaded)
    }

    /// Makes every entry depending on these generations unreachable, on every
    /// replica. Call after the commit and before answering. If Redis cannot
    /// be reached, this replica stops trusting the cache until it has moved
    /// the global epoch on.
    pub async fn invalidate(&self, invalidation: Invalidation) {
        let Some(inner) = &self.inner else { return };
        if invalidation.is_empty() {
            return;
        }
        let keys: Vec<String> = invalidation.generations().map(Generation::key).collect();
        let client = inner.redis.client().clone();
        let incremented = inner
            .redis
            .run("cache invalidate", async move {
                let pipeline = client.pipeline();
                for key in keys {
                    pipeline.incr::<(), _>(key).await?;
                }
                pipeline.all::<Vec<i64>>().await
            })
            .await;
        if incremented.is_none() {
            inner.failed_invalidations.fetch_add(1, Ordering::SeqCst);
            Inner::start_repair(inner.clone());
        }
    }
}

impl Cache {
    /// For a write whose outcome is unknown (it timed out, perhaps after
    /// its commit): stop trusting the cache until the epoch has moved on.
    pub async fn distrust(&self) {
        if let Some(inner) = &self.inner {
            inner.failed_invalidations.fetch_add(1, Ordering::SeqCst);
            Inner::start_repair(inner.clone());
        }
    }
}

impl Inner {
    fn suspect(&self) -> bool {
        self.failed_invalidations.load(Ordering::SeqCst)
            != self.covered_failures.load(Ordering::SeqCst)
    }

    /// `Some((tag, value))` when Redis answered: the tag of the current
    /// epoch and generations, and the value stored under exactly that tag
    /// (`None` on a miss).
    async fn lookup(&self, key: &str, entry: &Entry) -> Option<(String, Option<Vec<u8>>)> {
        let mut keys: Vec<String> = Vec::with_capacity(4);
        keys.push(EPOCH_KEY.to_owned());
        keys.extend(entry.generations().into_iter().map(Generation::key));
        keys.push(key.to_owned());
        let client = self.redis.client().clone();
        let mut values: Vec<Value> = self
            .redis
            .run("cache lookup", async move { client.mget(keys).await })
            .await?;
        let stored = values.pop()?;
        let mut tag = String::new();
        for counter in values {
            if !tag.is_empty() {
                tag.push(':');
            }
            match counter {
                Value::Null => tag.push('0'),
                other => tag.push_str(&other.as_string()?),
            }
        }
        let value = stored.as_bytes().and_then(|bytes| {
            let separator = bytes.iter().position(|byte| *byte == b'|')?;
            (bytes[..separator] == *tag.as_bytes()).then(|| bytes[separator + 1..].to_vec())
        });
        Some((tag, value))
    }

    async fn store(&self, key: String, tag: String, json: Vec<u8>) {
        let mut bytes = tag.into_bytes();
        bytes.push(b'|');
        bytes.extend(json);
        let client = self.redis.client().clone();
        let ttl = self.ttl.as_millis().max(1) as i64;
        self.redis
            .run("cache store", async move {
                client
                    .set::<(), _, _>(key, bytes, Some(Expiration::PX(ttl)), None, false)
                    .await
            })
            .await;
    }

    /// Until an epoch increment succeeds after the latest failed
    /// invalidation, retries every 100 ms (one task at a time).
    fn start_repair(inner: Arc<Inner>) {
        if inner.repairing.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(async move {
            loop {
                let failures = inner.failed_invalidations.load(Ordering::SeqCst);
                let client = inner.redis.client().clone();
                let moved = inner
                    .redis
                    .run_unguarded("cache epoch", async move {
                        client.incr::<i64, _>(EPOCH_KEY).await
                    })
                    .await;
                if let Some(epoch) = moved {
                    inner.covered_failures.fetch_max(failures, Ordering::SeqCst);
                    if !inner.suspect() {
                        tracing::info!(
                            epoch,
                            "cache epoch moved on after failed invalidations; using the cache again"
                        );
                        inner.repairing.store(false, Ordering::SeqCst);
                        // A failure may have slipped in between the check and
                        // the store: look again.
                        if !inner.suspect() || inner.repairing.swap(true, Ordering::SeqCst) {
                            return;
                        }
                        continue;
                    }
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_depend_on_the_generations_their_writers_increment() {
        let id = Uuid::nil();
        assert_eq!(
            Entry::WalletBalance(id).generations(),
            Entry::Wallet(id).generations()
        );
        assert_eq!(Entry::WalletBalance(id).name(), format!("balance:{id}"));
        assert_eq!(
            Entry::TreasurySummary { policy_version: 3 }.generations(),
            vec![Generation::Ledger]
        );
        let mut invalidation = Invalidation::default();
        invalidation.add(Generation::Ledger);
        invalidation.merge(Invalidation::of([
            Generation::Ledger,
            Generation::Wallet(id),
        ]));
        assert_eq!(invalidation.generations().count(), 2);
    }
}
