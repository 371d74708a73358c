//! The rules every long-lived server stream (`WatchAlerts`, `WatchSession`)
//! follows, in one place:
//!
//! - **A stream lives no longer than its key.** The authentication layer
//!   checks a key once, when the call starts; a stream can outlive that by
//!   hours. So an open stream re-reads its key from the database every half
//!   key-cache TTL (`AZORA_AUTH_CACHE_MS`; every poll when that is 0) and ends
//!   with UNAUTHENTICATED once the key is revoked, expired or gone: within the
//!   same bound in which other calls with that key start failing. The end is
//!   audited like a refused call (outcome `unauthenticated`).
//! - **A key holds a bounded number of streams.** Each open stream holds a
//!   [`WatchPermit`] counted against its key (`AZORA_STREAMS_PER_KEY`); one
//!   over the cap is refused RESOURCE_EXHAUSTED at open. The permit is
//!   released when it is dropped, which happens with the task feeding the
//!   stream: when the stream ends, when the client goes away (the task
//!   notices within one poll), and at shutdown. The count is per replica.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::audit;
use crate::auth::Principal;
use crate::error::Error;
use crate::identity::directory;

/// Open streams per key, shared by every watcher of this process.
#[derive(Clone)]
pub struct Watchers {
    db: DatabaseConnection,
    per_key: usize,
    recheck_every: Duration,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl Watchers {
    /// `per_key` 0 is unlimited. `key_cache_ttl` is the authentication
    /// layer's: streams re-check their key twice per TTL.
    pub fn new(db: DatabaseConnection, per_key: usize, key_cache_ttl: Duration) -> Self {
        Self {
            db,
            per_key,
            recheck_every: key_cache_ttl / 2,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Takes one of the caller's stream slots, or refuses with
    /// RESOURCE_EXHAUSTED when the key already holds `per_key` streams.
    pub fn open(&self, caller: &Principal) -> Result<WatchPermit, Error> {
        let key = caller.api_key_id;
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key).or_default();
        if self.per_key > 0 && *count >= self.per_key {
            return Err(Error::ResourceExhausted {
                reason: "TOO_MANY_STREAMS",
                message: format!(
                    "this key already has {} open streams, the most allowed; close one first",
                    self.per_key
                ),
            });
        }
        *count += 1;
        Ok(WatchPermit {
            caller: caller.clone(),
            key,
            db: self.db.clone(),
            recheck_every: self.recheck_every,
            last_checked: Instant::now(),
            open: self.open.clone(),
        })
    }
}

/// One open stream's slot and its key's periodic re-check; dropping it
/// frees the slot.
pub struct WatchPermit {
    caller: Principal,
    key: Uuid,
    db: DatabaseConnection,
    recheck_every: Duration,
    last_checked: Instant,
    open: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl WatchPermit {
    /// UNAUTHENTICATED once the key is revoked, expired or deleted. Reads the
    /// key only when a re-check is due. A database that does not answer
    /// does not end the stream: the check is tried again at the next poll.
    pub async fn check_key(&mut self) -> Result<(), Error> {
        if self.last_checked.elapsed() < self.recheck_every {
            return Ok(());
        }
        match directory::find_api_key(&self.db, self.key).await {
            Ok(Some(key)) if key.is_active(Utc::now()) => {
                self.last_checked = Instant::now();
                Ok(())
            }
            Ok(_) => {
                if let Err(error) =
                    audit::record_denied(&self.db, &self.caller, audit::Outcome::Unauthenticated)
                        .await
                {
                    tracing::warn!(%error, "could not audit a stream ended for its key");
                }
                Err(Error::Unauthenticated)
            }
            Err(error) => {
                tracing::warn!(%error, "a stream could not re-check its key; will retry");
                Ok(())
            }
        }
    }
}

impl Drop for WatchPermit {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}
