//! `grpc.health.v1`, driven by a background prober.
//!
//! Entries: `""` and `readiness` follow the database; `liveness` is SERVING
//! while the process runs; each service's full name follows the database it
//! needs; `postgres` or `sqlite`, and `redis` when configured, report each
//! connection. tonic-health never derives `""` from the others, so the prober
//! sets every entry itself.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub const READINESS: &str = "readiness";
pub const LIVENESS: &str = "liveness";
pub const REDIS: &str = "redis";

/// How long one database ping may take before it counts as down.
const DATABASE_PING_TIMEOUT: Duration = Duration::from_millis(1000);

/// Every this many probes, a snapshot of each dependency goes to
/// `system_health`.
const SNAPSHOT_EVERY: u64 = 10;

/// What the prober remembers between probes, to raise alerts on changes.
#[derive(Default)]
struct Memory {
    probes: u64,
    database_down_since: Option<chrono::DateTime<chrono::Utc>>,
    redis_up: Option<bool>,
}

#[derive(Clone)]
pub struct HealthProber {
    memory: std::sync::Arc<tokio::sync::Mutex<Memory>>,
    reporter: HealthReporter,
    db: DatabaseConnection,
    database_entry: &'static str,
    redis: Option<fred::prelude::Client>,
    services: Vec<&'static str>,
    interval: Duration,
}

fn status(up: bool) -> ServingStatus {
    if up {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

impl HealthProber {
    pub fn new(
        reporter: HealthReporter,
        db: DatabaseConnection,
        redis: Option<fred::prelude::Client>,
        services: Vec<&'static str>,
        interval: Duration,
    ) -> Self {
        let database_entry = crate::db::backend_name(&db);
        Self {
            memory: Default::default(),
            reporter,
            db,
            database_entry,
            redis,
            services,
            interval,
        }
    }

    /// Every entry this server reports.
    pub fn entries(&self) -> Vec<&'static str> {
        let mut entries = vec!["", READINESS, LIVENESS, self.database_entry];
        entries.extend(self.services.iter().copied());
        if self.redis.is_some() {
            entries.push(REDIS);
        }
        entries
    }

    /// Probes once and publishes the result; records snapshots and raises
    /// alerts when a dependency goes down (the database's once it is back,
    /// since alerts live in the database).
    pub async fn probe(&self) {
        let started = std::time::Instant::now();
        let database_up = matches!(
            tokio::time::timeout(DATABASE_PING_TIMEOUT, self.db.ping()).await,
            Ok(Ok(()))
        );
        let database_latency = started.elapsed().as_micros() as i64;
        let database = status(database_up);
        self.reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        for entry in ["", READINESS, self.database_entry]
            .into_iter()
            .chain(self.services.iter().copied())
        {
            self.reporter.set_service_status(entry, database).await;
        }
        let mut redis_probe = None;
        if let Some(redis) = &self.redis {
            let started = std::time::Instant::now();
            let up = crate::redis::ping(redis).await;
            self.reporter.set_service_status(REDIS, status(up)).await;
            redis_probe = Some((up, started.elapsed().as_micros() as i64));
        }
        if let Err(error) = self
            .remember(database_up, database_latency, redis_probe)
            .await
        {
            tracing::debug!(%error, "could not record health");
        }
    }

    async fn remember(
        &self,
        database_up: bool,
        database_latency: i64,
        redis: Option<(bool, i64)>,
    ) -> Result<(), crate::Error> {
        use crate::compliance::alerts::{self, Severity, record_health};
        let mut memory = self.memory.lock().await;
        memory.probes += 1;
        let now = chrono::Utc::now();
        if !database_up {
            memory.database_down_since.get_or_insert(now);
            return Ok(());
        }
        if let Some(since) = memory.database_down_since.take() {
            let message = format!(
                "the {} database was unreachable from {} until {}",
                self.database_entry,
                since.to_rfc3339(),
                now.to_rfc3339()
            );
            alerts::raise(&self.db, Severity::Critical, self.database_entry, &message).await?;
        }
        if let Some((up, _)) = redis {
            if memory.redis_up != Some(false) && !up {
                alerts::raise(
                    &self.db,
                    Severity::Warning,
                    REDIS,
                    "redis stopped answering; serving without the cache",
                )
                .await?;
            }
            memory.redis_up = Some(up);
        }
        if memory.probes % SNAPSHOT_EVERY == 1 {
            record_health(&self.db, self.database_entry, true, Some(database_latency)).await?;
            if let Some((up, latency)) = redis {
                record_health(&self.db, REDIS, up, up.then_some(latency)).await?;
            }
        }
        Ok(())
    }

    /// Probes every interval until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => self.probe().await,
            }
        }
    }

    /// For shutdown: every entry goes NOT_SERVING, so watchers and load
    /// balancers see it, and then the entries are removed, which ends every
    /// open `Watch` stream so the drain is not held up by them.
    /// Each entry and whether it reports SERVING now.
    pub async fn statuses(&self) -> Vec<(&'static str, bool)> {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_server::Health;
        let health = tonic_health::server::HealthService::from_health_reporter(self.reporter());
        let mut statuses = Vec::new();
        for entry in self.entries() {
            let request = tonic::Request::new(HealthCheckRequest {
                service: entry.to_owned(),
            });
            let serving = health.check(request).await.is_ok_and(|response| {
                response.into_inner().status == ServingStatus::Serving as i32
            });
            statuses.push((entry, serving));
        }
        statuses
    }

    /// The reporter behind this prober's statuses, for another health
    /// service that must report the same.
    pub fn reporter(&self) -> HealthReporter {
        self.reporter.clone()
    }

    /// Every entry NOT_SERVING; the statuses stay, so checks and watches
    /// see it.
    pub async fn report_not_serving(&self) {
        for entry in self.entries() {
            self.reporter
                .set_service_status(entry, ServingStatus::NotServing)
                .await;
        }
    }

    pub async fn shut_down(&self) {
        self.report_not_serving().await;
        // Let watchers receive NOT_SERVING before their streams end.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut reporter = self.reporter.clone();
        for entry in self.entries() {
            reporter.clear_service_status(entry).await;
        }
    }
}
