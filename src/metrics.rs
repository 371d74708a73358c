//! Prometheus metrics, served in the text format on `AZORA_METRICS_ADDR`
//! (`GET /metrics`), off by default. One registry per server, so servers
//! sharing a process (the tests) never mix their figures.
//!
//! Names follow OpenTelemetry's RPC semantic conventions as Prometheus
//! spells them (`rpc.server.duration` → `rpc_server_duration_seconds`, the
//! attributes `rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code` as labels); azora's own are `azora_*`. No label
//! takes a caller-chosen value: a method path that is not one of the
//! server's RPCs counts as `rpc_service="unknown"`, so a client sending
//! random paths cannot grow the series without bound.
//!
//! What calls and the ledger writers observe is recorded as it happens;
//! what other parts keep anyway (the cache's and the guards' counts, the
//! pool, health, the audit chain's backlog) is read when scraped.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::health::HealthProber;
use crate::limits::{LoadShedding, RateLimiter};

/// Latency buckets, in seconds: 0.5 ms to ~33 s.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0005, 2.0, 17).expect("valid buckets")
}

/// What calls record.
#[derive(Clone)]
pub struct RpcMetrics {
    duration: HistogramVec,
    active: IntGaugeVec,
    known: Arc<HashSet<String>>,
}

impl RpcMetrics {
    /// `(service, method)` for a gRPC path, `("unknown", "unknown")` for a
    /// path that names none of this server's RPCs.
    fn labels<'a>(&self, path: &'a str) -> (&'a str, &'a str) {
        match path.strip_prefix('/').and_then(|rest| rest.split_once('/')) {
            Some(labels) if self.known.contains(path) => labels,
            _ => ("unknown", "unknown"),
        }
    }

    /// A call has started; it counts as active until the guard drops.
    pub fn started(&self, path: &str) -> ActiveCall {
        let (service, method) = self.labels(path);
        let active = self.active.with_label_values(&[service, method]);
        active.inc();
        ActiveCall { active }
    }

    pub fn finished(&self, path: &str, code: tonic::Code, elapsed: Duration) {
        let (service, method) = self.labels(path);
        let code = (code as i32).to_string();
        self.duration
            .with_label_values(&["grpc", service, method, &code])
            .observe(elapsed.as_secs_f64());
    }
}

/// Decrements the active-calls gauge when the call is over, however it
/// ends.
pub struct ActiveCall {
    active: IntGauge,
}

impl Drop for ActiveCall {
    fn drop(&mut self) {
        self.active.dec();
    }
}

/// What the ledger writers record per batch (one database transaction).
#[derive(Clone)]
pub struct LedgerMetrics {
    commands: Histogram,
    duration: Histogram,
}

impl LedgerMetrics {
    pub fn batch(&self, commands: usize, elapsed: Duration) {
        self.commands.observe(commands as f64);
        self.duration.observe(elapsed.as_secs_f64());
    }
}

impl Default for LedgerMetrics {
    /// Recorded nowhere: for a ledger outside a server.
    fn default() -> Self {
        Metrics::new().ledger
    }
}

/// The server's registry and what records into it.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub rpc: RpcMetrics,
    pub ledger: LedgerMetrics,
    scraped: Scraped,
}

/// The series filled in when scraped.
#[derive(Clone)]
struct Scraped {
    cache: IntCounterVec,
    refused: IntCounterVec,
    pool: IntGaugeVec,
    health: IntGaugeVec,
    audit_unchained: IntGauge,
    audit_lag: prometheus::Gauge,
    /// Counters are raised by the growth of the counts they mirror; one
    /// scrape at a time.
    last: Arc<Mutex<Counts>>,
}

#[derive(Default)]
struct Counts {
    hits: u64,
    misses: u64,
    bypassed: u64,
    rate_limited: u64,
    load_shed: u64,
}

fn registered<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "rpc_server_duration_seconds",
                    "Duration of gRPC calls, from the request to the end of the response.",
                )
                .buckets(latency_buckets()),
                &[
                    "rpc_system",
                    "rpc_service",
                    "rpc_method",
                    "rpc_grpc_status_code",
                ],
            )
            .expect("valid metric"),
        );
        let active = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new("rpc_server_active_requests", "gRPC calls in progress."),
                &["rpc_service", "rpc_method"],
            )
            .expect("valid metric"),
        );
        let commands = registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "azora_ledger_batch_commands",
                    "Ledger commands per batch (one database transaction).",
                )
                .buckets(prometheus::exponential_buckets(1.0, 2.0, 12).expect("valid buckets")),
            )
            .expect("valid metric"),
        );
        let batch_duration = registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "azora_ledger_batch_duration_seconds",
                    "Time a ledger batch takes in the database, to its commit.",
                )
                .buckets(latency_buckets()),
            )
            .expect("valid metric"),
        );
        let scraped = Scraped {
            cache: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "azora_cache_lookups_total",
                        "Cached reads by result: hit, miss, or bypassed (Redis failed or not trusted).",
                    ),
                    &["result"],
                )
                .expect("valid metric"),
            ),
            refused: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "azora_refused_calls_total",
                        "Calls refused RESOURCE_EXHAUSTED, by reason: rate_limited, load_shed.",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            ),
            pool: registered(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "azora_db_pool_connections",
                        "Database connections by state: in_use, idle, max.",
                    ),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            health: registered(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "azora_health_serving",
                        "1 when the grpc.health.v1 entry reports SERVING, else 0.",
                    ),
                    &["entry"],
                )
                .expect("valid metric"),
            ),
            audit_unchained: registered(
                &registry,
                IntGauge::new(
                    "azora_audit_unchained_events",
                    "Audit events recorded and not yet linked into the hash chain.",
                )
                .expect("valid metric"),
            ),
            audit_lag: registered(
                &registry,
                prometheus::Gauge::new(
                    "azora_audit_chain_lag_seconds",
                    "Age of the oldest audit event not yet chained; 0 when none waits.",
                )
                .expect("valid metric"),
            ),
            last: Default::default(),
        };
        let build = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new("azora_build_info", "The running build; always 1."),
                &["version"],
            )
            .expect("valid metric"),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Self {
            registry,
            rpc: RpcMetrics {
                duration,
                active,
                known: Arc::new(known_methods()),
            },
            ledger: LedgerMetrics {
                commands,
                duration: batch_duration,
            },
            scraped,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Every RPC this server serves, as gRPC paths.
fn known_methods() -> HashSet<String> {
    let mut known: HashSet<String> = crate::proto::descriptor_pool()
        .services()
        .flat_map(|service| {
            let name = service.full_name().to_owned();
            service
                .methods()
                .map(|method| format!("/{name}/{}", method.name()))
                .collect::<Vec<_>>()
        })
        .collect();
    known.extend(
        [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ]
        .map(String::from),
    );
    known
}

/// What a scrape reads besides the registry.
#[derive(Clone)]
pub struct Sources {
    pub db: DatabaseConnection,
    pub cache: Cache,
    pub prober: HealthProber,
    pub load_shedding: LoadShedding,
    pub rate_limit: RateLimiter,
}

/// How long a scrape waits for the audit backlog query.
const AUDIT_QUERY_TIMEOUT: Duration = Duration::from_millis(1000);

impl Metrics {
    /// The text a scrape returns.
    pub async fn render(&self, sources: &Sources) -> String {
        self.refresh(sources).await;
        let mut text = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut text) {
            tracing::warn!(%error, "encoding the metrics");
        }
        String::from_utf8(text).unwrap_or_default()
    }

    async fn refresh(&self, sources: &Sources) {
        let scraped = &self.scraped;
        let cache = sources.cache.stats();
        {
            let mut last = scraped
                .last
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let raise = |counter: &IntCounterVec, label: &str, now: u64, seen: &mut u64| {
                counter
                    .with_label_values(&[label])
                    .inc_by(now.saturating_sub(*seen));
                *seen = now.max(*seen);
            };
            let last = &mut *last;
            raise(&scraped.cache, "hit", cache.hits, &mut last.hits);
            raise(&scraped.cache, "miss", cache.misses, &mut last.misses);
            raise(
                &scraped.cache,
                "bypassed",
                cache.bypassed,
                &mut last.bypassed,
            );
            let rate_limited = sources.rate_limit.refused();
            raise(
                &scraped.refused,
                "rate_limited",
                rate_limited,
                &mut last.rate_limited,
            );
            let load_shed = sources.load_shedding.refused();
            raise(
                &scraped.refused,
                "load_shed",
                load_shed,
                &mut last.load_shed,
            );
        }
        let pool = crate::db::pool_state(&sources.db);
        scraped.pool.with_label_values(&["in_use"]).set(pool.in_use);
        scraped.pool.with_label_values(&["idle"]).set(pool.idle);
        scraped.pool.with_label_values(&["max"]).set(pool.max);
        for (entry, serving) in sources.prober.statuses().await {
            let entry = if entry.is_empty() { "(server)" } else { entry };
            scraped
                .health
                .with_label_values(&[entry])
                .set(i64::from(serving));
        }
        match tokio::time::timeout(AUDIT_QUERY_TIMEOUT, crate::audit::backlog(&sources.db)).await {
            Ok(Ok(backlog)) => {
                scraped.audit_unchained.set(backlog.events);
                let lag = backlog
                    .oldest
                    .map(|oldest| (chrono::Utc::now() - oldest).as_seconds_f64().max(0.0))
                    .unwrap_or(0.0);
                scraped.audit_lag.set(lag);
            }
            Ok(Err(error)) => tracing::debug!(%error, "reading the audit backlog for metrics"),
            Err(_) => tracing::debug!("reading the audit backlog for metrics timed out"),
        }
    }
}

/// Serves `GET /metrics` on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    sources: Sources,
    stop: CancellationToken,
) {
    use axum::routing::get;
    let state = Arc::new((metrics, sources));
    let app = axum::Router::new().route(
        "/metrics",
        get(|axum::extract::State(state): axum::extract::State<Arc<(Metrics, Sources)>>| async move {
            let (metrics, sources) = &*state;
            (
                [(
                    http::header::CONTENT_TYPE,
                    prometheus::TEXT_FORMAT,
                )],
                metrics.render(sources).await,
            )
        }),
    )
    .with_state(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "the metrics listener stopped");
    }
}
