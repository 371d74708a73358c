//! The server as a library type: `azora serve` and the tests start exactly
//! this, the tests on port 0.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::auth::{AuthLayer, Authenticator, KeyCache};
use crate::billing::{Billing, BillingApi};
use crate::cache::Cache;
use crate::compensation::{Compensations, FounderCompensationApi};
use crate::compliance::{Compliance, ComplianceApi};
use crate::config::Settings;
use crate::health::HealthProber;
use crate::identity::{Identity, IdentityApi};
use crate::limits::{ConcurrencyLimitLayer, RateLimitLayer, RateLimiter, RateLimits};
use crate::mining::{Mining, MiningApi};
use crate::proto;
use crate::proto::compliance::compliance_service_server::ComplianceServiceServer;
use crate::proto::identity::identity_service_server::IdentityServiceServer;
use crate::proto::mining::mining_service_server::MiningServiceServer;
use crate::proto::treasury::billing_service_server::BillingServiceServer;
use crate::proto::treasury::founder_compensation_service_server::FounderCompensationServiceServer;
use crate::proto::treasury::knowledge_reward_service_server::KnowledgeRewardServiceServer;
use crate::proto::treasury::treasury_service_server::TreasuryServiceServer;
use crate::rewards::{KnowledgeRewardApi, Rewards};
use crate::streams::Watchers;
use crate::treasury::domain::AllocationPolicy;
use crate::treasury::operations::ensure_policy;
use crate::treasury::{Treasury, TreasuryApi};

/// Largest request or response message, in bytes.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

pub struct Application {
    settings: Settings,
    listener: TcpListener,
    db: DatabaseConnection,
    redis: Option<fred::prelude::Client>,
    policy: AllocationPolicy,
}

impl Application {
    /// Connects to the database (and Redis, when configured), applies pending
    /// migrations when `migrate` is set, and binds the listen address.
    pub async fn build(settings: Settings, migrate: bool) -> anyhow::Result<Self> {
        let db = crate::db::connect(&settings).await.with_context(|| {
            format!("cannot connect to {}", settings.database_url.redacted_url())
        })?;
        if migrate {
            Migrator::up(&db, None)
                .await
                .context("applying migrations")?;
        }
        let redis = settings
            .redis_url
            .as_ref()
            .map(crate::redis::connect)
            .transpose()
            .context("configuring redis")?;
        RateLimits::parse(&settings.rate_limit)
            .map_err(|why| anyhow::anyhow!("AZORA_RATE_LIMIT: {why}"))?;
        let basis_points = AllocationPolicy::parse_basis_points(&settings.allocation_bp)
            .map_err(|why| anyhow::anyhow!("AZORA_ALLOCATION_BP: {why}"))?;
        let policy = ensure_policy(&db, basis_points)
            .await
            .context("storing the allocation policy (are migrations applied?)")?;
        let listener = TcpListener::bind(settings.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
        Ok(Self {
            settings,
            listener,
            db,
            redis,
            policy,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn database(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Serves until `shutdown` completes, then drains: health goes
    /// NOT_SERVING, no new connections are accepted, in-flight calls finish,
    /// and after the grace period the server stops regardless.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Self {
            settings,
            listener,
            db,
            redis,
            policy,
        } = self;
        let shared_redis = redis.clone().map(crate::redis::Redis::new);
        let cache = match &shared_redis {
            Some(redis) => Cache::new(redis.clone(), settings.cache_ttl()),
            None => Cache::disabled(),
        };
        let rate_limits = RateLimits::parse(&settings.rate_limit)
            .map_err(|why| anyhow::anyhow!("AZORA_RATE_LIMIT: {why}"))?;
        let rate_limiter = RateLimiter::new(rate_limits, shared_redis);
        let treasury = Treasury::new(
            db.clone(),
            policy,
            settings.ledger_writers,
            cache.clone(),
            settings.database_timeout(),
        );
        let (reporter, health_service) = tonic_health::server::health_reporter();
        let services = vec![
            <IdentityServiceServer<IdentityApi> as NamedService>::NAME,
            <TreasuryServiceServer<TreasuryApi> as NamedService>::NAME,
            <MiningServiceServer<MiningApi> as NamedService>::NAME,
            <ComplianceServiceServer<ComplianceApi> as NamedService>::NAME,
            <FounderCompensationServiceServer<FounderCompensationApi> as NamedService>::NAME,
            <KnowledgeRewardServiceServer<KnowledgeRewardApi> as NamedService>::NAME,
            <BillingServiceServer<BillingApi> as NamedService>::NAME,
        ];
        let prober = HealthProber::new(
            reporter,
            db.clone(),
            redis,
            services,
            settings.health_interval(),
        );
        prober.probe().await;
        let stop_probing = CancellationToken::new();
        let probing = tokio::spawn(prober.clone().run(stop_probing.clone()));
        let chaining = tokio::spawn(crate::audit::run_chainer(
            db.clone(),
            std::time::Duration::from_millis(200),
            stop_probing.clone(),
        ));

        let billing = Billing::new(db.clone(), policy, cache.clone());
        let issuing = tokio::spawn(crate::billing::run_issuer(
            billing.clone(),
            settings.billing_interval(),
            stop_probing.clone(),
        ));

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc error details, so grpcurl can print them.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let key_cache = KeyCache::new(settings.auth_cache_ttl());
        let identity = IdentityServiceServer::new(IdentityApi::new(Identity::with_key_cache(
            db.clone(),
            key_cache.clone(),
            cache.clone(),
        )))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let stop_serving = CancellationToken::new();
        let auto_confirm_limit = settings
            .mining_auto_confirm_limit
            .as_deref()
            .map(|limit| crate::money::Amount::parse("mining_auto_confirm_limit", limit))
            .transpose()
            .map_err(|violation| {
                anyhow::anyhow!("AZORA_MINING_AUTO_CONFIRM_LIMIT {}", violation.description)
            })?;
        // One registry for both watch services: the per-key stream cap
        // counts WatchAlerts and WatchSession streams together.
        let watchers = Watchers::new(
            db.clone(),
            settings.streams_per_key,
            settings.auth_cache_ttl(),
        );
        let mining = MiningServiceServer::new(MiningApi::new(
            Mining::new(db.clone(), policy, cache.clone(), auto_confirm_limit),
            watchers.clone(),
            stop_serving.clone(),
        ))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let kyc_threshold =
            crate::money::Amount::parse("kyc_transfer_threshold", &settings.kyc_transfer_threshold)
                .map_err(|violation| {
                    anyhow::anyhow!("AZORA_KYC_TRANSFER_THRESHOLD {}", violation.description)
                })?;
        let compliance = ComplianceServiceServer::new(ComplianceApi::new(
            Compliance::new(db.clone(), kyc_threshold.micros()),
            watchers,
            stop_serving.clone(),
        ))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let treasury = TreasuryServiceServer::new(TreasuryApi::new(treasury))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let compensation = FounderCompensationServiceServer::new(FounderCompensationApi::new(
            Compensations::new(db.clone(), policy, cache.clone()),
        ))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let knowledge_reward_max =
            crate::money::Amount::parse("knowledge_reward_max", &settings.knowledge_reward_max)
                .map_err(|violation| {
                    anyhow::anyhow!("AZORA_KNOWLEDGE_REWARD_MAX {}", violation.description)
                })?;
        let rewards = KnowledgeRewardServiceServer::new(KnowledgeRewardApi::new(Rewards::new(
            db.clone(),
            policy,
            knowledge_reward_max,
            cache.clone(),
        )))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let billing = BillingServiceServer::new(BillingApi::new(billing))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);

        // Outside in: a call without a request message is INVALID_ARGUMENT
        // (tonic says INTERNAL), refuse at once what the concurrency limit cannot take
        // (RESOURCE_EXHAUSTED, never queued), authenticate, rate-limit the
        // key. The timeout bounds each call until its response starts, so
        // server streams (WatchSession, WatchAlerts) outlive it.
        let layers = tower::ServiceBuilder::new()
            .layer(crate::codec::MissingMessageLayer)
            .layer(ConcurrencyLimitLayer::new(settings.max_concurrent_requests))
            .layer(AuthLayer::new(Authenticator::new(db.clone(), key_cache)))
            .layer(RateLimitLayer::new(rate_limiter));
        let server = Server::builder()
            .timeout(settings.request_timeout())
            .layer(layers)
            .add_service(health_service)
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(identity)
            .add_service(treasury)
            .add_service(mining)
            .add_service(compliance)
            .add_service(compensation)
            .add_service(rewards)
            .add_service(billing)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                stop_serving.clone().cancelled_owned(),
            );
        tokio::pin!(server);

        tracing::info!(address = %settings.listen_addr, database = %settings.database_url.redacted_url(), "serving");
        tokio::select! {
            result = &mut server => {
                stop_probing.cancel();
                return result.context("the server stopped");
            }
            () = shutdown => {}
        }

        tracing::info!(grace_ms = settings.shutdown_grace_ms, "shutting down");
        stop_probing.cancel();
        let _ = probing.await;
        let _ = chaining.await;
        let _ = issuing.await;
        prober.shut_down().await;
        stop_serving.cancel();
        match tokio::time::timeout(settings.shutdown_grace(), &mut server).await {
            Ok(result) => result.context("the server stopped")?,
            Err(_) => tracing::warn!("calls still open after the grace period; stopping anyway"),
        }
        db.close().await.ok();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
