//! The optional Redis connection (fred). Configured to fail fast: with fred's
//! defaults a command hangs while Redis is down and never reconnects.
//!
//! [`Redis`] is what the cache and the rate limiter use: every command runs
//! under [`COMMAND_TIMEOUT`], and a failure opens a short circuit breaker so
//! that while Redis is away requests do not each wait for a timeout. A
//! failure is logged and counted and comes back as `None`; it is never an
//! error for the caller, who falls back to the database or a local limit.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fred::prelude::*;

use crate::config::Secret;

/// How long any Redis command may take before it counts as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(100);

/// After a failure, commands are not even tried for this long; the next one
/// after it is the probe.
const BREAKER_OPEN: Duration = Duration::from_millis(250);

/// Builds a client that reconnects every 100 ms while Redis is away and starts
/// connecting in the background; a Redis that is down at start-up does not
/// stop the server.
///
/// `rediss://` is TLS (rustls), the server verified against the system's
/// roots, or against `ca_cert` (a PEM bundle) when given: a managed Redis
/// with a private CA.
pub fn connect(url: &Secret, ca_cert: Option<&std::path::Path>) -> anyhow::Result<Client> {
    use anyhow::Context as _;
    let mut config = Config::from_url(url.expose())?;
    if let Some(path) = ca_cert {
        anyhow::ensure!(
            config.tls.is_some(),
            "AZORA_REDIS_CA_CERT is set but AZORA_REDIS_URL is not rediss://"
        );
        let roots = crate::tls::client_roots(path)
            .with_context(|| format!("AZORA_REDIS_CA_CERT: {}", path.display()))?;
        config.tls = Some(fred::types::config::TlsConfig::from(roots));
    }
    let client = Builder::from_config(config)
        .with_connection_config(|connection| {
            connection.connection_timeout = COMMAND_TIMEOUT;
            connection.internal_command_timeout = COMMAND_TIMEOUT;
            connection.max_command_attempts = 1;
            // A command is one write awaiting its answer: never hold it
            // back for Nagle (over TLS, a value spread over several records
            // would otherwise wait for the server's delayed ACK).
            connection.tcp.nodelay = Some(true);
        })
        .set_policy(ReconnectPolicy::new_constant(0, 100))
        .build()?;
    client.connect();
    Ok(client)
}

/// True when Redis answers PING within [`COMMAND_TIMEOUT`].
pub async fn ping(client: &Client) -> bool {
    matches!(
        tokio::time::timeout(COMMAND_TIMEOUT, client.ping::<String>(None)).await,
        Ok(Ok(_))
    )
}

/// A Redis client whose commands are bounded and never fail a request.
#[derive(Clone)]
pub struct Redis {
    client: Client,
    state: Arc<BreakerState>,
}

struct BreakerState {
    started: Instant,
    /// Milliseconds since `started` before which no command is tried.
    open_until_ms: AtomicU64,
    failures: AtomicU64,
    /// Whether the last command failed, to log changes once, not per call.
    failing: AtomicBool,
}

impl Redis {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            state: Arc::new(BreakerState {
                started: Instant::now(),
                open_until_ms: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                failing: AtomicBool::new(false),
            }),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Commands that failed (error, timeout or skipped by the breaker) since
    /// start.
    pub fn failures(&self) -> u64 {
        self.state.failures.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        self.state.started.elapsed().as_millis() as u64
    }

    /// Runs one command (or pipeline, or script) within [`COMMAND_TIMEOUT`];
    /// `None` when it failed, timed out, or the breaker is open.
    pub async fn run<T, F>(&self, operation: &'static str, command: F) -> Option<T>
    where
        F: Future<Output = Result<T, Error>>,
    {
        if self.now_ms() < self.state.open_until_ms.load(Ordering::Relaxed) {
            self.state.failures.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.run_unguarded(operation, command).await
    }

    /// As [`Redis::run`] but tried even while the breaker is open: for the
    /// probes that close it.
    pub async fn run_unguarded<T, F>(&self, operation: &'static str, command: F) -> Option<T>
    where
        F: Future<Output = Result<T, Error>>,
    {
        let span = tracing::info_span!(
            target: crate::telemetry::TARGET,
            "redis",
            otel.name = operation,
            otel.kind = "client",
            db.system = "redis",
        );
        let outcome =
            tracing::Instrument::instrument(tokio::time::timeout(COMMAND_TIMEOUT, command), span)
                .await;
        let error = match outcome {
            Ok(Ok(value)) => {
                if self.state.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(operation, "redis answers again");
                }
                return Some(value);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        self.state.failures.fetch_add(1, Ordering::Relaxed);
        self.state.open_until_ms.store(
            self.now_ms() + BREAKER_OPEN.as_millis() as u64,
            Ordering::Relaxed,
        );
        if !self.state.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(operation, %error, "redis call failed; falling back until it answers");
        } else {
            tracing::debug!(operation, %error, "redis call failed");
        }
        None
    }
}
