//! Typed, layered configuration: compiled defaults, then the environment
//! (`AZORA_*`, with `.env` honoured), then command-line flags — clap applies
//! exactly that precedence. Secrets (URLs that may carry passwords) never
//! print.
//!
//! [`Settings`] is the configuration as given. Numbers and addresses are
//! typed fields; the settings with a grammar of their own (rate limits, the
//! allocation split, AZR amounts) are kept as their text, so code (the
//! tests, the benchmark) sets them as one would in the environment, and are
//! parsed by [`Settings::validate`] into a [`Config`]: once, before anything
//! connects or starts. clap runs the same parsers as value parsers, so a bad
//! flag or variable is refused at parse time with the flag's name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

use crate::limits::RateLimits;
use crate::money::Amount;
use crate::treasury::domain::AllocationPolicy;

/// A value that must not reach logs: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`, for logs.
    pub fn redacted_url(&self) -> String {
        let url = &self.0;
        let Some((scheme, rest)) = url.split_once("://") else {
            return "***".into();
        };
        match rest.split_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.clone(),
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

/// Calls per second per key, by role; 0 is unlimited.
pub const DEFAULT_RATE_LIMIT: &str = "admin=0,treasurer=1000,auditor=1000,member=1000,service=1000";

/// The settings every subcommand shares.
#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// Address the gRPC server listens on.
    #[arg(
        long,
        env = "AZORA_LISTEN_ADDR",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub listen_addr: SocketAddr,

    /// Database: `postgres://user:pass@host/db` or `sqlite://file.db?mode=rwc`.
    /// TLS to PostgreSQL is libpq's parameters in the URL: `?sslmode=require`,
    /// `verify-ca` or `verify-full`, with `&sslrootcert=/path/ca.pem`.
    #[arg(
        long,
        env = "AZORA_DATABASE_URL",
        default_value = "sqlite://azora.db?mode=rwc",
        global = true
    )]
    pub database_url: Secret,

    /// Redis for the cache, e.g. `redis://127.0.0.1:6379`, or `rediss://…`
    /// for TLS; none when unset.
    #[arg(long, env = "AZORA_REDIS_URL", global = true)]
    pub redis_url: Option<Secret>,

    /// A PEM CA bundle to verify a `rediss://` server with, instead of the
    /// system's roots.
    #[arg(long, env = "AZORA_REDIS_CA_CERT", global = true)]
    pub redis_ca_cert: Option<PathBuf>,

    /// Maximum database connections in the pool.
    #[arg(
        long,
        env = "AZORA_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub database_max_connections: u32,

    /// How long a request waits for a database connection before it fails
    /// with UNAVAILABLE, in milliseconds.
    #[arg(
        long,
        env = "AZORA_DATABASE_TIMEOUT_MS",
        default_value_t = 3000,
        global = true
    )]
    pub database_timeout_ms: u64,

    /// How often the health prober checks each dependency, in milliseconds.
    #[arg(
        long,
        env = "AZORA_HEALTH_INTERVAL_MS",
        default_value_t = 1000,
        global = true
    )]
    pub health_interval_ms: u64,

    /// On SIGTERM/SIGINT, how long in-flight calls may take to finish before
    /// the server exits anyway, in milliseconds.
    #[arg(
        long,
        env = "AZORA_SHUTDOWN_GRACE_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub shutdown_grace_ms: u64,

    /// The mint allocation policy in basis points,
    /// `treasury,founder,burn,circulation`, summing to 10000. A change is
    /// stored as a new policy version at start-up; each mint records the
    /// version it used.
    #[arg(
        long,
        env = "AZORA_ALLOCATION_BP",
        default_value = "7000,1100,500,1400",
        value_parser = checked(parse::allocation_basis_points),
        global = true
    )]
    pub allocation_bp: String,

    /// Concurrent ledger writers, each applying one batch of queued commands
    /// per database transaction. SQLite serialises writers anyway.
    #[arg(long, env = "AZORA_LEDGER_WRITERS", default_value_t = 2, global = true)]
    pub ledger_writers: usize,

    /// How long an authenticated key may be reused without asking the
    /// database, in milliseconds; 0 asks every time. A key revoked through
    /// this replica stops working at once; through another, within this.
    #[arg(
        long,
        env = "AZORA_AUTH_CACHE_MS",
        default_value_t = 1000,
        global = true
    )]
    pub auth_cache_ms: u64,

    /// Open watch streams (WatchAlerts and WatchSession together) one API key
    /// may hold on this server; one more is refused RESOURCE_EXHAUSTED until
    /// one ends or its client goes away. 0 is unlimited.
    #[arg(
        long,
        env = "AZORA_STREAMS_PER_KEY",
        default_value_t = 16,
        global = true
    )]
    pub streams_per_key: usize,

    /// Compliance reports flag transfers above this many AZR by senders
    /// whose KYC is not verified.
    #[arg(
        long,
        env = "AZORA_KYC_TRANSFER_THRESHOLD",
        default_value = "10000",
        value_parser = checked(parse::azr("kyc_transfer_threshold")),
        global = true
    )]
    pub kyc_transfer_threshold: String,

    /// The largest knowledge reward one proof may pay, in AZR.
    #[arg(
        long,
        env = "AZORA_KNOWLEDGE_REWARD_MAX",
        default_value = "1000",
        value_parser = checked(parse::azr("knowledge_reward_max")),
        global = true
    )]
    pub knowledge_reward_max: String,

    /// Mining earnings up to this many AZR per session are minted at once
    /// (trusted rigs); larger ones, and all of them when unset (the default),
    /// wait as a pending claim until a treasurer confirms the USD inflow.
    #[arg(
        long,
        env = "AZORA_MINING_AUTO_CONFIRM_LIMIT",
        value_parser = checked(parse::azr("mining_auto_confirm_limit")),
        global = true
    )]
    pub mining_auto_confirm_limit: Option<String>,

    /// How often the invoice issuer looks for subscriptions whose next
    /// billing period has begun, in milliseconds. Every replica runs it.
    #[arg(
        long,
        env = "AZORA_BILLING_INTERVAL_MS",
        default_value_t = 60_000,
        global = true
    )]
    pub billing_interval_ms: u64,

    /// How long a cached read may live in Redis, in milliseconds: a backstop
    /// only, since every committed change invalidates what it affects.
    #[arg(
        long,
        env = "AZORA_CACHE_TTL_MS",
        default_value_t = 60_000,
        global = true
    )]
    pub cache_ttl_ms: u64,

    /// Calls per second each API key may make, per role:
    /// `admin=0,treasurer=1000,auditor=1000,member=1000,service=1000`;
    /// 0 (or a role left out) is unlimited. Counted across replicas in
    /// Redis; without Redis, per process.
    #[arg(
        long,
        env = "AZORA_RATE_LIMIT",
        default_value = DEFAULT_RATE_LIMIT,
        value_parser = checked(parse::rate_limits),
        global = true
    )]
    pub rate_limit: String,

    /// Calls this server handles at once; more are refused at once with
    /// RESOURCE_EXHAUSTED rather than queued. 0 is unlimited.
    #[arg(
        long,
        env = "AZORA_MAX_CONCURRENT_REQUESTS",
        default_value_t = 512,
        global = true
    )]
    pub max_concurrent_requests: usize,

    /// How long a call may take before it is cancelled, in milliseconds
    /// (streams: until the response starts).
    #[arg(
        long,
        env = "AZORA_REQUEST_TIMEOUT_MS",
        default_value_t = 30_000,
        global = true
    )]
    pub request_timeout_ms: u64,

    /// Log filter, in `tracing` EnvFilter syntax.
    #[arg(long, env = "AZORA_LOG", default_value = "info", global = true)]
    pub log: String,

    /// Log lines as JSON objects (one per line, for a log shipper) or as
    /// text; `auto` is text on a terminal and JSON otherwise.
    #[arg(
        long,
        env = "AZORA_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Auto,
        global = true
    )]
    pub log_format: LogFormat,

    /// Traces over OTLP/gRPC to this collector, e.g.
    /// `http://otel-collector:4317`. Off when unset.
    #[arg(long, env = "AZORA_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,

    #[command(flatten)]
    pub transport: TransportSettings,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

/// How the gRPC port is served: TLS, HTTP/2 connection management, message
/// sizes and draining. Durations are in milliseconds; 0 turns one off.
#[derive(Args, Clone, Debug)]
pub struct TransportSettings {
    /// TLS on the gRPC port: the server's PEM certificate chain, leaf first.
    /// Plaintext when unset. Read again every AZORA_TLS_RELOAD_INTERVAL_MS
    /// and on SIGHUP.
    #[arg(long, env = "AZORA_TLS_CERT", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of AZORA_TLS_CERT.
    #[arg(long, env = "AZORA_TLS_KEY", global = true)]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: a PEM CA bundle; clients without a certificate it signed
    /// are refused in the handshake.
    #[arg(long, env = "AZORA_TLS_CLIENT_CA", global = true)]
    pub tls_client_ca: Option<PathBuf>,

    /// How often the TLS files are read again, in milliseconds.
    #[arg(
        long,
        env = "AZORA_TLS_RELOAD_INTERVAL_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub tls_reload_interval_ms: u64,

    /// A second, plaintext listener serving only `grpc.health.v1`, for
    /// probes that cannot speak TLS (Kubernetes' `grpc` probes). Off when
    /// unset.
    #[arg(long, env = "AZORA_HEALTH_LISTEN_ADDR", global = true)]
    pub health_listen_addr: Option<SocketAddr>,

    /// Prometheus metrics over HTTP (`GET /metrics`) on this address. Off
    /// when unset.
    #[arg(long, env = "AZORA_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,

    /// Largest request or response message, in bytes.
    #[arg(
        long,
        env = "AZORA_MAX_MESSAGE_BYTES",
        default_value_t = DEFAULT_MAX_MESSAGE_BYTES,
        global = true
    )]
    pub max_message_bytes: usize,

    /// How often an idle connection is pinged (HTTP/2 PING), so that dead
    /// peers and silently dropped connections are noticed.
    #[arg(
        long,
        env = "AZORA_HTTP2_KEEPALIVE_INTERVAL_MS",
        default_value_t = 60_000,
        global = true
    )]
    pub http2_keepalive_interval_ms: u64,

    /// How long a PING may go unanswered before the connection is closed.
    #[arg(
        long,
        env = "AZORA_HTTP2_KEEPALIVE_TIMEOUT_MS",
        default_value_t = 20_000,
        global = true
    )]
    pub http2_keepalive_timeout_ms: u64,

    /// After this long a connection is asked to go away (HTTP/2 GOAWAY;
    /// clients reconnect, through the load balancer, to any replica), so
    /// long-lived connections spread over replicas added later. Calls open
    /// on it finish first: a watch stream keeps its connection until it
    /// ends (tonic's forced close after a grace period skips the GOAWAY, so
    /// it is not used).
    #[arg(
        long,
        env = "AZORA_MAX_CONNECTION_AGE_MS",
        default_value_t = 0,
        global = true
    )]
    pub max_connection_age_ms: u64,

    /// On SIGTERM, how long health reports NOT_SERVING while the server
    /// still accepts connections and calls, before it stops accepting and
    /// drains: load balancers and Kubernetes remove an endpoint some
    /// seconds after it goes unready, and calls sent meanwhile must not be
    /// refused.
    #[arg(
        long,
        env = "AZORA_SHUTDOWN_DRAIN_DELAY_MS",
        default_value_t = 0,
        global = true
    )]
    pub shutdown_drain_delay_ms: u64,
}

/// The default of AZORA_MAX_MESSAGE_BYTES.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_reload_interval_ms: 10_000,
            health_listen_addr: None,
            metrics_addr: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            http2_keepalive_interval_ms: 60_000,
            http2_keepalive_timeout_ms: 20_000,
            max_connection_age_ms: 0,
            shutdown_drain_delay_ms: 0,
        }
    }
}

impl TransportSettings {
    /// The TLS files, when TLS is configured; both or neither of the
    /// certificate and key, and a client CA only with them.
    pub fn tls_files(&self) -> Result<Option<crate::tls::TlsFiles>, InvalidSetting> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            })),
            (Some(_), None) => Err(InvalidSetting {
                variable: "AZORA_TLS_KEY",
                reason: "AZORA_TLS_CERT is set: its key is needed too".into(),
            }),
            (None, Some(_)) => Err(InvalidSetting {
                variable: "AZORA_TLS_CERT",
                reason: "AZORA_TLS_KEY is set: its certificate is needed too".into(),
            }),
            (None, None) if self.tls_client_ca.is_some() => Err(InvalidSetting {
                variable: "AZORA_TLS_CLIENT_CA",
                reason: "mutual TLS needs TLS: set AZORA_TLS_CERT and AZORA_TLS_KEY".into(),
            }),
            (None, None) => Ok(None),
        }
    }

    pub fn tls_reload_interval(&self) -> Duration {
        Duration::from_millis(self.tls_reload_interval_ms.max(1))
    }

    pub fn http2_keepalive_interval(&self) -> Option<Duration> {
        nonzero_millis(self.http2_keepalive_interval_ms)
    }

    pub fn http2_keepalive_timeout(&self) -> Option<Duration> {
        nonzero_millis(self.http2_keepalive_timeout_ms)
    }

    pub fn max_connection_age(&self) -> Option<Duration> {
        nonzero_millis(self.max_connection_age_ms)
    }

    pub fn shutdown_drain_delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_drain_delay_ms)
    }
}

fn nonzero_millis(millis: u64) -> Option<Duration> {
    (millis > 0).then(|| Duration::from_millis(millis))
}

/// Settings known good: [`Settings`] with every setting that has a grammar
/// parsed into its type. [`Settings::validate`] is the only way to one.
#[derive(Clone, Debug)]
pub struct Config {
    pub settings: Settings,
    pub rate_limits: RateLimits,
    /// treasury, founder, burn, circulation; summing to 10000.
    pub allocation_basis_points: [i32; 4],
    pub kyc_transfer_threshold: Amount,
    pub knowledge_reward_max: Amount,
    pub mining_auto_confirm_limit: Option<Amount>,
    /// TLS on the gRPC port, when configured.
    pub tls: Option<crate::tls::TlsFiles>,
}

/// A setting whose value does not parse, named by its variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct InvalidSetting {
    pub variable: &'static str,
    pub reason: String,
}

/// The parsers of the settings with a grammar: clap runs them on flags and
/// variables, [`Settings::validate`] on whatever the settings hold.
pub mod parse {
    use super::{AllocationPolicy, Amount, RateLimits};

    /// `role=calls_per_second,…`
    pub fn rate_limits(text: &str) -> Result<RateLimits, String> {
        RateLimits::parse(text)
    }

    /// `treasury,founder,burn,circulation` in basis points, summing to 10000.
    pub fn allocation_basis_points(text: &str) -> Result<[i32; 4], String> {
        AllocationPolicy::parse_basis_points(text)
    }

    /// A positive amount of AZR, e.g. `10000` or `0.5`.
    pub fn azr(field: &'static str) -> impl Fn(&str) -> Result<Amount, String> + Clone {
        move |text| Amount::parse(field, text).map_err(|violation| violation.description)
    }
}

/// A clap value parser that refuses what `parse` refuses and keeps the text.
fn checked<T>(
    parse: impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static,
) -> impl clap::builder::TypedValueParser<Value = String> {
    move |text: &str| parse(text).map(|_| text.to_owned())
}

fn named<T>(variable: &'static str, parsed: Result<T, String>) -> Result<T, InvalidSetting> {
    parsed.map_err(|reason| InvalidSetting { variable, reason })
}

impl Settings {
    /// Parses every setting that has a grammar; the first that does not
    /// parse is the error. Nothing is connected or started before this.
    pub fn validate(self) -> Result<Config, InvalidSetting> {
        let mining_auto_confirm_limit = match &self.mining_auto_confirm_limit {
            Some(limit) => Some(named(
                "AZORA_MINING_AUTO_CONFIRM_LIMIT",
                parse::azr("mining_auto_confirm_limit")(limit),
            )?),
            None => None,
        };
        if self.transport.max_message_bytes == 0 {
            return Err(InvalidSetting {
                variable: "AZORA_MAX_MESSAGE_BYTES",
                reason: "must be above 0".into(),
            });
        }
        Ok(Config {
            tls: self.transport.tls_files()?,
            rate_limits: named("AZORA_RATE_LIMIT", parse::rate_limits(&self.rate_limit))?,
            allocation_basis_points: named(
                "AZORA_ALLOCATION_BP",
                parse::allocation_basis_points(&self.allocation_bp),
            )?,
            kyc_transfer_threshold: named(
                "AZORA_KYC_TRANSFER_THRESHOLD",
                parse::azr("kyc_transfer_threshold")(&self.kyc_transfer_threshold),
            )?,
            knowledge_reward_max: named(
                "AZORA_KNOWLEDGE_REWARD_MAX",
                parse::azr("knowledge_reward_max")(&self.knowledge_reward_max),
            )?,
            mining_auto_confirm_limit,
            settings: self,
        })
    }

    /// The compiled defaults, with the given database; what tests start from.
    pub fn with_database(database_url: impl Into<String>) -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: Secret::new(database_url),
            redis_url: None,
            redis_ca_cert: None,
            database_max_connections: 16,
            database_timeout_ms: 3000,
            health_interval_ms: 1000,
            shutdown_grace_ms: 10_000,
            allocation_bp: "7000,1100,500,1400".into(),
            ledger_writers: 2,
            auth_cache_ms: 1000,
            streams_per_key: 16,
            kyc_transfer_threshold: "10000".into(),
            knowledge_reward_max: "1000".into(),
            mining_auto_confirm_limit: None,
            billing_interval_ms: 60_000,
            cache_ttl_ms: 60_000,
            rate_limit: DEFAULT_RATE_LIMIT.into(),
            max_concurrent_requests: 512,
            request_timeout_ms: 30_000,
            log: "info".into(),
            log_format: LogFormat::Auto,
            otlp_endpoint: None,
            transport: TransportSettings::default(),
        }
    }

    pub fn database_timeout(&self) -> Duration {
        Duration::from_millis(self.database_timeout_ms)
    }

    pub fn health_interval(&self) -> Duration {
        Duration::from_millis(self.health_interval_ms)
    }

    pub fn auth_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.auth_cache_ms)
    }

    pub fn billing_interval(&self) -> Duration {
        Duration::from_millis(self.billing_interval_ms)
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_urls_lose_their_password() {
        let url = Secret::new("postgres://azora:hunter2@db:5432/azora");
        assert_eq!(format!("{url:?}"), "Secret(***)");
        assert_eq!(url.redacted_url(), "postgres://azora:***@db:5432/azora");
        assert!(!url.redacted_url().contains("hunter2"));
    }

    #[test]
    fn validation_parses_every_setting_with_a_grammar_and_names_the_one_that_fails() {
        let config = Settings::with_database("sqlite::memory:")
            .validate()
            .unwrap();
        assert_eq!(config.allocation_basis_points, [7000, 1100, 500, 1400]);
        assert_eq!(config.rate_limits.for_role(crate::auth::Role::Admin), None);
        assert_eq!(config.mining_auto_confirm_limit, None);

        let refused = |configure: fn(&mut Settings)| {
            let mut settings = Settings::with_database("sqlite::memory:");
            configure(&mut settings);
            settings.validate().unwrap_err().to_string()
        };
        assert!(
            refused(|settings| settings.rate_limit = "boss=3".into())
                .starts_with("AZORA_RATE_LIMIT: ")
        );
        assert!(
            refused(|settings| settings.allocation_bp = "5000,5000".into())
                .starts_with("AZORA_ALLOCATION_BP: ")
        );
        assert!(
            refused(|settings| settings.kyc_transfer_threshold = "ten".into())
                .starts_with("AZORA_KYC_TRANSFER_THRESHOLD: ")
        );
        assert!(
            refused(|settings| settings.knowledge_reward_max = "0".into())
                .starts_with("AZORA_KNOWLEDGE_REWARD_MAX: ")
        );
        assert!(
            refused(|settings| settings.mining_auto_confirm_limit = Some("-1".into()))
                .starts_with("AZORA_MINING_AUTO_CONFIRM_LIMIT: ")
        );
        assert!(
            refused(|settings| settings.transport.tls_cert = Some("server.pem".into()))
                .starts_with("AZORA_TLS_KEY: ")
        );
        assert!(
            refused(|settings| settings.transport.tls_key = Some("server.key".into()))
                .starts_with("AZORA_TLS_CERT: ")
        );
        assert!(
            refused(|settings| settings.transport.tls_client_ca = Some("ca.pem".into()))
                .starts_with("AZORA_TLS_CLIENT_CA: ")
        );
        assert!(
            refused(|settings| settings.transport.max_message_bytes = 0)
                .starts_with("AZORA_MAX_MESSAGE_BYTES: ")
        );
    }
}
