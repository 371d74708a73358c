//! The server as a library type: `azora serve` and the tests start exactly
//! this, the tests on port 0.
//!
//! Three steps. The settings are parsed and checked once
//! ([`Settings::validate`], which clap's value parsers mirror).
//! [`Application::build`] connects, migrates, stores the allocation policy,
//! binds, and assembles every service, guard and background worker; it
//! starts none of the workers, and connects to Redis only after its last
//! step that can fail, so a failed build leaves nothing running.
//! [`Application::run_until_stopped`] starts the workers, serves, and drains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;

use crate::auth::{Authentication, Authenticator, GuardLayer, KeyCache};
use crate::billing::{Billing, BillingApi};
use crate::cache::Cache;
use crate::compensation::{Compensations, FounderCompensationApi};
use crate::compliance::{Compliance, ComplianceApi};
use crate::config::{Config, Settings};
use crate::health::HealthProber;
use crate::identity::{Identity, IdentityApi};
use crate::limits::{LoadShedding, RateLimiter};
use crate::mining::{Mining, MiningApi};
use crate::proto;
use crate::proto::ReadOnlyMethods;
use crate::proto::compliance::compliance_service_server::ComplianceServiceServer;
use crate::proto::identity::identity_service_server::IdentityServiceServer;
use crate::proto::mining::mining_service_server::MiningServiceServer;
use crate::proto::treasury::billing_service_server::BillingServiceServer;
use crate::proto::treasury::founder_compensation_service_server::FounderCompensationServiceServer;
use crate::proto::treasury::knowledge_reward_service_server::KnowledgeRewardServiceServer;
use crate::proto::treasury::treasury_service_server::TreasuryServiceServer;
use crate::rewards::{KnowledgeRewardApi, Rewards};
use crate::streams::Watchers;
use crate::tls::ReloadingTls;
use crate::treasury::domain::AllocationPolicy;
use crate::treasury::operations::ensure_policy;
use crate::treasury::{Treasury, TreasuryApi};

/// How often the audit chainer links newly written events.
const AUDIT_CHAIN_INTERVAL: Duration = Duration::from_millis(200);

/// A server that is built and bound but not yet serving.
pub struct Application {
    settings: Settings,
    listener: TcpListener,
    /// TLS on `listener`, when configured.
    tls: Option<ReloadingTls>,
    /// The plaintext health-only listener, when configured.
    health_listener: Option<(TcpListener, HealthReporter)>,
    /// The metrics listener, when configured.
    metrics_listener: Option<TcpListener>,
    metrics: crate::metrics::Metrics,
    /// What a scrape reads besides the registry.
    scraped: crate::metrics::Sources,
    db: DatabaseConnection,
    routes: Routes,
    guards: Guards,
    workers: Workers,
    /// Ends the accept loop and every open watch stream.
    stop_serving: CancellationToken,
}

/// What every service is built from.
struct Shared {
    db: DatabaseConnection,
    policy: AllocationPolicy,
    cache: Cache,
    key_cache: Arc<KeyCache>,
    stop_serving: CancellationToken,
}

/// The guards every call passes, outside in (see [`serve`]).
struct Guards {
    load_shedding: LoadShedding,
    authentication: Authentication,
    rate_limit: RateLimiter,
}

/// The background loops: assembled by `build`, started with serving,
/// stopped and awaited when the drain begins.
struct Workers {
    prober: HealthProber,
    db: DatabaseConnection,
    billing: Billing,
    billing_interval: Duration,
}

struct RunningWorkers {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// The prober's loop, stopped first when draining: it must not report
    /// SERVING again once the drain has begun.
    probing: (CancellationToken, Option<JoinHandle<()>>),
    prober: HealthProber,
}

impl Application {
    /// Checks the settings, connects to the database, applies pending
    /// migrations when `migrate` is set, binds the listen address, and
    /// assembles the server. Nothing keeps running if this fails.
    pub async fn build(settings: Settings, migrate: bool) -> anyhow::Result<Self> {
        let config = settings.validate()?;
        let settings = &config.settings;
        // Before connecting: a certificate that does not load is a
        // configuration error, and the quickest one to report.
        let tls = match &config.tls {
            Some(files) => Some(
                ReloadingTls::load(files.clone())
                    .await
                    .context("loading the TLS files")?,
            ),
            None => None,
        };
        let db = connect_database(settings, migrate).await?;
        let policy = ensure_policy(&db, config.allocation_basis_points)
            .await
            .context("storing the allocation policy (are migrations applied?)")?;
        let public = public_routes()?;
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
        let metrics_listener = match settings.transport.metrics_addr {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (metrics)"))?,
            ),
            None => None,
        };
        let health_listener = match settings.transport.health_listen_addr {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (health)"))?,
            ),
            None => None,
        };
        // Last, as the client starts connecting in the background.
        let redis = settings
            .redis_url
            .as_ref()
            .map(|url| crate::redis::connect(url, settings.redis_ca_cert.as_deref()))
            .transpose()
            .context("configuring redis")?;
        let mut application = Self::assemble(config, listener, db, redis, policy, public);
        application.tls = tls;
        application.health_listener =
            health_listener.map(|listener| (listener, application.workers.prober.reporter()));
        application.metrics_listener = metrics_listener;
        Ok(application)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address of the metrics listener, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The address of the plaintext health-only listener, when configured.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_listener
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    pub fn database(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Builds every service, guard and worker; cannot fail.
    fn assemble(
        config: Config,
        listener: TcpListener,
        db: DatabaseConnection,
        redis: Option<fred::prelude::Client>,
        policy: AllocationPolicy,
        (reporter, mut routes): (HealthReporter, RoutesBuilder),
    ) -> Self {
        let settings = &config.settings;
        let shared_redis = redis.clone().map(crate::redis::Redis::new);
        let shared = Shared {
            db: db.clone(),
            policy,
            cache: match &shared_redis {
                Some(redis) => Cache::new(redis.clone(), settings.cache_ttl()),
                None => Cache::disabled(),
            },
            key_cache: KeyCache::new(settings.auth_cache_ttl()),
            stop_serving: CancellationToken::new(),
        };
        let metrics = crate::metrics::Metrics::new();
        let billing = Billing::new(db.clone(), policy, shared.cache.clone());
        let services = add_services(&mut routes, &config, &shared, billing.clone(), &metrics);
        let prober = HealthProber::new(
            reporter,
            db.clone(),
            redis,
            services,
            settings.health_interval(),
        );
        let workers = Workers {
            prober,
            db: db.clone(),
            billing,
            billing_interval: settings.billing_interval(),
        };
        let guards = Guards {
            load_shedding: LoadShedding::new(settings.max_concurrent_requests),
            authentication: Authentication::new(
                Authenticator::new(db.clone(), shared.key_cache),
                ReadOnlyMethods::of_this_crate(),
            ),
            rate_limit: RateLimiter::new(config.rate_limits, shared_redis),
        };
        let scraped = crate::metrics::Sources {
            db: db.clone(),
            cache: shared.cache,
            prober: workers.prober.clone(),
            load_shedding: guards.load_shedding.clone(),
            rate_limit: guards.rate_limit.clone(),
        };
        Self {
            settings: config.settings,
            listener,
            tls: None,
            health_listener: None,
            metrics_listener: None,
            metrics,
            scraped,
            db,
            routes: routes.routes(),
            guards,
            workers,
            stop_serving: shared.stop_serving,
        }
    }

    /// Serves until `shutdown` completes, then drains: health goes
    /// NOT_SERVING, calls are still taken for the drain delay, then no new
    /// connections are accepted, in-flight calls finish, and after the
    /// grace period the server stops regardless.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            settings,
            listener,
            tls,
            health_listener,
            metrics_listener,
            metrics,
            scraped,
            db,
            routes,
            guards,
            workers,
            stop_serving,
        } = self;
        let mut workers = workers.start().await;
        if let Some(tls) = &tls {
            let stop = workers.stop.clone();
            let interval = settings.transport.tls_reload_interval();
            workers
                .tasks
                .push(tokio::spawn(tls.clone().watch(interval, stop)));
        }
        // Until the main port stops, not with the workers: probes must see
        // NOT_SERVING during the drain, not a refused connection.
        let health = health_listener.map(|(listener, reporter)| {
            tokio::spawn(serve_health(listener, reporter, stop_serving.clone()))
        });
        // Scraped to the end too: the drain is worth watching.
        let scraping = metrics_listener.map(|listener| {
            let metrics = metrics.clone();
            tokio::spawn(crate::metrics::serve(
                listener,
                metrics,
                scraped,
                stop_serving.clone(),
            ))
        });
        // The bound address: with port 0, not the configured one.
        let address = listener.local_addr().ok();
        let server = serve(
            routes,
            guards,
            listener,
            tls,
            &settings,
            metrics.rpc.clone(),
            stop_serving.clone(),
        );
        tokio::pin!(server);

        tracing::info!(
            address = %address.unwrap_or(settings.listen_addr),
            tls = settings.transport.tls_cert.is_some(),
            database = %settings.database_url.redacted_url(),
            "serving"
        );
        tokio::select! {
            result = &mut server => {
                workers.stop.cancel();
                return result.context("the server stopped");
            }
            () = shutdown => {}
        }

        tracing::info!(
            drain_delay_ms = settings.transport.shutdown_drain_delay_ms,
            grace_ms = settings.shutdown_grace_ms,
            "shutting down"
        );
        workers.report_not_serving().await;
        // Still serving: whoever routes calls here learns of NOT_SERVING
        // some time after it is reported.
        tokio::select! {
            result = &mut server => return result.context("the server stopped"),
            () = tokio::time::sleep(settings.transport.shutdown_drain_delay()) => {}
        }
        workers.stop().await;
        stop_serving.cancel();
        match tokio::time::timeout(settings.shutdown_grace(), &mut server).await {
            Ok(result) => result.context("the server stopped")?,
            Err(_) => tracing::warn!("calls still open after the grace period; stopping anyway"),
        }
        for task in [health, scraping].into_iter().flatten() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
        db.close().await.ok();
        tracing::info!("stopped");
        Ok(())
    }
}

async fn connect_database(
    settings: &Settings,
    migrate: bool,
) -> anyhow::Result<DatabaseConnection> {
    let db = crate::db::connect(settings)
        .await
        .with_context(|| format!("cannot connect to {}", settings.database_url.redacted_url()))?;
    if migrate {
        Migrator::up(&db, None)
            .await
            .context("applying migrations")?;
    }
    Ok(db)
}

/// Health and reflection: the services that need no credentials.
fn public_routes() -> anyhow::Result<(HealthReporter, RoutesBuilder)> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc error details, so grpcurl can print them.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let mut routes = RoutesBuilder::default();
    routes
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);
    Ok((reporter, routes))
}

fn service_name<S: NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// Adds each server to `routes` with the same message-size limits and
/// compression and returns their names, for health: one list, so no
/// service is served without them. gzip and zstd are accepted, and a
/// response is compressed only when the client asked for it
/// (`grpc-accept-encoding`).
macro_rules! add_with_message_limits {
    ($routes:expr, $limit:expr, $($server:expr),+ $(,)?) => {{
        let mut names = Vec::new();
        $(
            let server = $server
                .max_decoding_message_size($limit)
                .max_encoding_message_size($limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd);
            names.push(service_name(&server));
            $routes.add_service(server);
        )+
        names
    }};
}

/// Adds azora's own services to `routes`; returns their names.
fn add_services(
    routes: &mut RoutesBuilder,
    config: &Config,
    shared: &Shared,
    billing: Billing,
    metrics: &crate::metrics::Metrics,
) -> Vec<&'static str> {
    let Shared {
        db,
        policy,
        cache,
        key_cache,
        stop_serving,
    } = shared;
    let (db, policy, settings) = (db.clone(), *policy, &config.settings);
    let identity = Identity::with_key_cache(db.clone(), key_cache.clone(), cache.clone());
    let treasury = Treasury::new(
        db.clone(),
        policy,
        settings.ledger_writers,
        cache.clone(),
        settings.database_timeout(),
        metrics.ledger.clone(),
    );
    let auto_confirm_limit = config.mining_auto_confirm_limit;
    let mining = Mining::new(db.clone(), policy, cache.clone(), auto_confirm_limit);
    let compliance = Compliance::new(db.clone(), config.kyc_transfer_threshold.micros());
    let compensations = Compensations::new(db.clone(), policy, cache.clone());
    let reward_max = config.knowledge_reward_max;
    let rewards = Rewards::new(db.clone(), policy, reward_max, cache.clone());
    // One registry for both watch services: the per-key stream cap
    // counts WatchAlerts and WatchSession streams together.
    let watchers = Watchers::new(db, settings.streams_per_key, settings.auth_cache_ttl());
    add_with_message_limits!(
        routes,
        settings.transport.max_message_bytes,
        IdentityServiceServer::new(IdentityApi::new(identity)),
        TreasuryServiceServer::new(TreasuryApi::new(treasury)),
        MiningServiceServer::new(MiningApi::new(
            mining,
            watchers.clone(),
            stop_serving.clone()
        )),
        ComplianceServiceServer::new(ComplianceApi::new(
            compliance,
            watchers,
            stop_serving.clone()
        )),
        FounderCompensationServiceServer::new(FounderCompensationApi::new(compensations)),
        KnowledgeRewardServiceServer::new(KnowledgeRewardApi::new(rewards)),
        BillingServiceServer::new(BillingApi::new(billing)),
    )
}

/// The server on `listener`, over TLS when `tls` is set, until `stop` is
/// cancelled.
async fn serve(
    routes: Routes,
    guards: Guards,
    listener: TcpListener,
    tls: Option<ReloadingTls>,
    settings: &Settings,
    metrics: crate::metrics::RpcMetrics,
    stop: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    // Outside in: the access line of every call, refused ones included; a
    // call without a request message is INVALID_ARGUMENT
    // (tonic says INTERNAL), refuse at once what the concurrency limit cannot take
    // (RESOURCE_EXHAUSTED, never queued), authenticate, rate-limit the
    // key. The timeout bounds each call until its response starts, so
    // server streams (WatchSession, WatchAlerts) outlive it.
    let layers = tower::ServiceBuilder::new()
        .layer(crate::access::AccessLogLayer::new(metrics))
        .layer(crate::codec::MissingMessageLayer)
        .layer(GuardLayer::new(guards.load_shedding))
        .layer(GuardLayer::new(guards.authentication))
        .layer(GuardLayer::new(guards.rate_limit));
    let transport = &settings.transport;
    let mut server = Server::builder()
        .timeout(settings.request_timeout())
        .http2_keepalive_interval(transport.http2_keepalive_interval())
        .http2_keepalive_timeout(transport.http2_keepalive_timeout());
    if let Some(age) = transport.max_connection_age() {
        server = server.max_connection_age(age);
    }
    let router = server.layer(layers).add_routes(routes);
    match tls {
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
        }
        Some(tls) => {
            let incoming = crate::tls::incoming(listener, tls, stop.clone());
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await
        }
    }
}

/// `grpc.health.v1` alone, in plaintext, on its own listener: for probes
/// that cannot speak TLS. It reports what the main port's health reports
/// (one set of statuses), and carries nothing that needs credentials.
async fn serve_health(listener: TcpListener, reporter: HealthReporter, stop: CancellationToken) {
    let health = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(reporter),
    );
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = Server::builder()
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "the health listener stopped");
    }
}

impl Workers {
    /// Publishes a first health probe, then starts every loop.
    async fn start(self) -> RunningWorkers {
        self.prober.probe().await;
        let stop = CancellationToken::new();
        let stop_probing = stop.child_token();
        let probing = tokio::spawn(self.prober.clone().run(stop_probing.clone()));
        let tasks = vec![
            tokio::spawn(crate::audit::run_chainer(
                self.db,
                AUDIT_CHAIN_INTERVAL,
                stop.clone(),
            )),
            tokio::spawn(crate::billing::run_issuer(
                self.billing,
                self.billing_interval,
                stop.clone(),
            )),
        ];
        RunningWorkers {
            stop,
            tasks,
            probing: (stop_probing, Some(probing)),
            prober: self.prober,
        }
    }
}

impl RunningWorkers {
    /// Stops probing and reports every health entry NOT_SERVING; the other
    /// loops go on.
    async fn report_not_serving(&mut self) {
        let (stop, probing) = &mut self.probing;
        stop.cancel();
        if let Some(probing) = probing.take() {
            let _ = probing.await;
        }
        self.prober.report_not_serving().await;
    }

    /// Stops every loop and waits for it; then every health entry goes
    /// NOT_SERVING and open health watches end.
    async fn stop(self) {
        self.stop.cancel();
        if let Some(probing) = self.probing.1 {
            let _ = probing.await;
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.prober.shut_down().await;
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives
/// between "serving" and the first poll must drain, not kill the process.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(terminate) => {}
                () = wait(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        tokio::signal::ctrl_c().await.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settings_are_checked_before_anything_connects() {
        // Nothing listens on port 1: a connection attempt would fail
        // differently.
        let mut settings = Settings::with_database("postgres://nobody@127.0.0.1:1/nothing");
        settings.rate_limit = "member=fast".into();
        let error = Application::build(settings, true)
            .await
            .err()
            .expect("invalid settings are refused");
        assert!(
            error.to_string().starts_with("AZORA_RATE_LIMIT: "),
            "{error:#}"
        );
    }
}
