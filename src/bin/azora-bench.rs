//! Benchmarks of azora over real gRPC against real PostgreSQL.
//!
//! `azora-bench transfers` starts the server (the same `Application` that
//! `azora serve` runs) on a fresh PostgreSQL database, creates wallets with
//! owners and keys, and drives Transfer RPCs from concurrent clients for a
//! fixed time. In the same run it drives the equivalent plain transfer SQL
//! (lock and update two wallet rows, insert one entry row, commit) straight
//! against the same PostgreSQL with as many connections, as the ceiling, and
//! prints both with the ratio.
//!
//! `azora-bench reads` measures, in one run, `GetBalance` served from the
//! Redis cache, the same without a cache (from PostgreSQL), and an empty RPC
//! (`grpc.health.v1.Health/Check`) as the ceiling of the gRPC layer, plus an
//! authenticated call refused before any I/O, to separate authentication
//! from the cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use azora::config::Settings;
use azora::identity::Identity;
use azora::proto::identity as ipb;
use azora::proto::identity::identity_service_client::IdentityServiceClient;
use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use azora::proto::types::Decimal;
use azora::startup::Application;
use clap::{Parser, Subcommand};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::ConnectionTrait;
use sea_orm::sqlx::{self, postgres::PgPoolOptions};
use tonic::Request;
use tonic::transport::Channel;

#[derive(Parser)]
#[command(
    name = "azora-bench",
    about = "Benchmarks azora over gRPC against PostgreSQL."
)]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Transfer RPCs against the plain-SQL ceiling.
    Transfers {
        /// Concurrent clients (and raw-SQL connections).
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// How long each phase runs, e.g. `10s`.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Wallets the transfers move money among.
        #[arg(long, default_value_t = 1000)]
        wallets: usize,
        /// gRPC channels the clients share.
        #[arg(long, default_value_t = 4)]
        channels: usize,
        /// Concurrent ledger writers in the server.
        #[arg(long, default_value_t = 2)]
        writers: usize,
        /// PostgreSQL server; the bench creates its own database on it.
        #[arg(
            long,
            env = "AZORA_BENCH_POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432"
        )]
        postgres_url: String,
    },
    /// GetBalance cached (Redis) and uncached against an empty RPC.
    Reads {
        /// Concurrent clients.
        #[arg(long, default_value_t = 32)]
        clients: usize,
        /// How long each phase runs, e.g. `10s`.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Wallets (each with its owner's member key) the reads spread over.
        #[arg(long, default_value_t = 100)]
        wallets: usize,
        /// gRPC channels the clients share.
        #[arg(long, default_value_t = 2)]
        channels: usize,
        /// PostgreSQL server; the bench creates its own database on it.
        #[arg(
            long,
            env = "AZORA_BENCH_POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432"
        )]
        postgres_url: String,
    },
    /// Mining samples streamed by concurrent rigs (RecordStatistics).
    Samples {
        /// Concurrent rigs, each with its own session, streaming in a loop.
        #[arg(long, default_value_t = 16)]
        rigs: usize,
        /// How long to stream, e.g. `10s`.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Samples per stream (one RecordStatistics call).
        #[arg(long, default_value_t = 5000)]
        stream: usize,
        /// Samples per stream message.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// PostgreSQL server; the bench creates its own database on it.
        #[arg(
            long,
            env = "AZORA_BENCH_POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432"
        )]
        postgres_url: String,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 10s"))?;
    match unit {
        "s" | "" => Ok(Duration::from_secs(value)),
        "ms" => Ok(Duration::from_millis(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("unknown unit in {text:?}; use ms, s or m")),
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn authed<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii key"),
    );
    request
}

struct Phase {
    completed: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * percentile).round() as usize;
        f64::from(self.latencies_us[index]) / 1000.0
    }

    fn describe(&self, name: &str) -> String {
        format!(
            "{name:<18} {:>8} in {:>5.1} s = {:>7.0}/s   p50 {:>6.2} ms   p99 {:>6.2} ms   errors {}",
            self.completed,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.errors
        )
    }
}

fn merge(results: Vec<(usize, usize, Vec<u32>)>, elapsed: Duration) -> Phase {
    let mut phase = Phase {
        completed: 0,
        errors: 0,
        elapsed,
        latencies_us: Vec::new(),
    };
    for (completed, errors, latencies) in results {
        phase.completed += completed;
        phase.errors += errors;
        phase.latencies_us.extend(latencies);
    }
    phase.latencies_us.sort_unstable();
    phase
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    let postgres_url = match &command {
        Bench::Transfers { postgres_url, .. }
        | Bench::Samples { postgres_url, .. }
        | Bench::Reads { postgres_url, .. } => postgres_url.clone(),
    };
    let database = format!("azora_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(format!("{postgres_url}/postgres"))
        .await
        .context("connecting to PostgreSQL")?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {database}"))
        .await?;
    let database_url = format!("{postgres_url}/{database}");
    let outcome = match command {
        Bench::Transfers {
            clients,
            duration,
            wallets,
            channels,
            writers,
            ..
        } => run(clients, duration, wallets, channels, writers, &database_url).await,
        Bench::Samples {
            rigs,
            duration,
            stream,
            batch,
            ..
        } => samples(rigs, duration, stream, batch, &database_url).await,
        Bench::Reads {
            clients,
            duration,
            wallets,
            channels,
            ..
        } => reads(clients, duration, wallets, channels, &database_url).await,
    };
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
        .ok();
    outcome
}

/// A user with a key of `role` and one wallet: (key, wallet id).
async fn create_holder(
    identity: &mut IdentityServiceClient<Channel>,
    admin_key: &str,
    username: &str,
    role: ipb::Role,
    index: usize,
) -> anyhow::Result<(String, String)> {
    let user = identity
        .create_user(authed(
            admin_key,
            ipb::CreateUserRequest {
                username: username.to_owned(),
                user_type: ipb::UserType::Student as i32,
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .user
        .context("user")?;
    let key = identity
        .create_api_key(authed(
            admin_key,
            ipb::CreateApiKeyRequest {
                user_id: user.id.clone(),
                role: role as i32,
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .secret;
    let wallet = identity
        .create_wallet(authed(
            admin_key,
            ipb::CreateWalletRequest {
                owner_id: user.id,
                address: format!("0x{:040x}", index + 1),
                label: String::new(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .wallet
        .context("wallet")?;
    Ok((key, wallet.id))
}

type Server = (
    std::net::SocketAddr,
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

/// Starts the server on `database_url` and bootstraps an admin key.
async fn start_server(database_url: &str, writers: usize) -> anyhow::Result<Server> {
    start_configured(database_url, None, |settings| {
        settings.ledger_writers = writers
    })
    .await
}

/// Starts the server on `database_url`; bootstraps an admin key unless one is
/// given (a second server on the same database).
async fn start_configured(
    database_url: &str,
    admin_key: Option<String>,
    configure: impl FnOnce(&mut Settings),
) -> anyhow::Result<Server> {
    let mut settings = Settings::with_database(database_url);
    settings.log = "warn".into();
    configure(&mut settings);
    let application = Application::build(settings, true).await?;
    let address = application.local_addr();
    let admin_key = match admin_key {
        Some(key) => key,
        None => {
            Identity::new(application.database().clone())
                .bootstrap_admin("bench-admin", None)
                .await?
                .1
                .secret
        }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Ok((address, admin_key, stop, server))
}

async fn samples(
    rigs: usize,
    duration: Duration,
    stream_size: usize,
    batch: usize,
    database_url: &str,
) -> anyhow::Result<()> {
    use azora::proto::mining as mpb;
    use azora::proto::mining::mining_service_client::MiningServiceClient;

    let (address, admin_key, stop, server) = start_server(database_url, 2).await?;
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut mining = MiningServiceClient::new(channel.clone());
    let mut sessions = Vec::new();
    for index in 0..rigs {
        let (key, wallet) = create_holder(
            &mut identity,
            &admin_key,
            &format!("rig{index:04}"),
            ipb::Role::Service,
            index,
        )
        .await?;
        let session = mining
            .start_session(authed(
                &key,
                mpb::StartSessionRequest {
                    wallet_id: wallet,
                    algorithm: "sha256".into(),
                    pool_name: "bench".into(),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner()
            .session
            .context("session")?;
        sessions.push((key, session.id));
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (key, session) in sessions {
        let channel = Channel::from_shared(format!("http://{address}"))?
            .connect()
            .await?;
        tasks.spawn(async move {
            let mut mining = MiningServiceClient::new(channel);
            let (mut stored, mut errors, mut latencies) = (0usize, 0usize, Vec::new());
            while Instant::now() < deadline {
                let now = chrono::Utc::now();
                let messages: Vec<mpb::RecordStatisticsRequest> = (0..stream_size)
                    .collect::<Vec<_>>()
                    .chunks(batch.max(1))
                    .map(|chunk| mpb::RecordStatisticsRequest {
                        session_id: session.clone(),
                        samples: chunk
                            .iter()
                            .map(|index| mpb::Sample {
                                sample_time: Some(timestamp(
                                    now + chrono::Duration::microseconds(*index as i64),
                                )),
                                hashrate_mhs: 95.0 + (*index % 10) as f64,
                                power_watts: 1250.0,
                                temperature_celsius: 64.0,
                                shares_accepted: 3,
                                shares_rejected: 0,
                                difficulty: 1.2e12,
                                network_hashrate_mhs: 4.0e11,
                                earnings_usd: Some(Decimal {
                                    value: "0.000125".into(),
                                }),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect();
                let sent = Instant::now();
                match mining
                    .record_statistics(authed(&key, tokio_stream::iter(messages)))
                    .await
                {
                    Ok(response) => {
                        stored += response.into_inner().samples_stored as usize;
                        latencies.push(sent.elapsed().as_micros() as u32);
                    }
                    Err(_) => errors += 1,
                }
            }
            (stored, errors, latencies)
        });
    }
    let phase = merge(tasks.join_all().await, started.elapsed());
    let _ = stop.send(());
    server.await??;
    println!(
        "azora-bench samples: {rigs} rigs, streams of {stream_size} samples in messages of {batch}, PostgreSQL"
    );
    println!(
        "RecordStatistics {:>9} samples in {:>5.1} s = {:>8.0} samples/s (target >= 20000); per stream p50 {:.1} ms, p99 {:.1} ms; failed streams {}",
        phase.completed,
        phase.elapsed.as_secs_f64(),
        phase.rate(),
        phase.percentile_ms(0.50),
        phase.percentile_ms(0.99),
        phase.errors
    );
    println!(
        "command: cargo run --release --bin azora-bench -- samples --rigs {rigs} --duration {}s --stream {stream_size} --batch {batch}",
        duration.as_secs()
    );
    Ok(())
}

async fn run(
    clients: usize,
    duration: Duration,
    wallet_count: usize,
    channel_count: usize,
    writers: usize,
    database_url: &str,
) -> anyhow::Result<()> {
    let (address, admin_key, stop, server) = start_server(database_url, writers).await?;
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;

    eprintln!("setting up {wallet_count} wallets with owners and keys…");
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut treasury = TreasuryServiceClient::new(channel.clone());
    let mut accounts = Vec::with_capacity(wallet_count);
    for index in 0..wallet_count {
        let (key, wallet) = create_holder(
            &mut identity,
            &admin_key,
            &format!("bench{index:05}"),
            ipb::Role::Member,
            index,
        )
        .await?;
        treasury
            .deposit(authed(
                &admin_key,
                tpb::DepositRequest {
                    request_id: format!("fund-{index}"),
                    to_wallet_id: wallet.clone(),
                    amount: Some(Decimal {
                        value: "1000000".into(),
                    }),
                    ..Default::default()
                },
            ))
            .await?;
        accounts.push((key, wallet));
    }
    let accounts = Arc::new(accounts);

    // gRPC phase.
    let mut channels = Vec::new();
    for _ in 0..channel_count.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{address}"))?
                .connect()
                .await?,
        );
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let mut treasury = TreasuryServiceClient::new(channels[client % channels.len()].clone());
        let accounts = accounts.clone();
        tasks.spawn(async move {
            let mut random = StdRng::from_rng(&mut rand::rng());
            let (mut completed, mut errors, mut latencies) = (0usize, 0usize, Vec::new());
            while Instant::now() < deadline {
                let from = random.random_range(0..accounts.len());
                let mut to = random.random_range(0..accounts.len() - 1);
                if to >= from {
                    to += 1;
                }
                let request = authed(
                    &accounts[from].0,
                    tpb::TransferRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        from_wallet_id: accounts[from].1.clone(),
                        to_wallet_id: accounts[to].1.clone(),
                        amount: Some(Decimal {
                            value: format!("0.{:06}", random.random_range(1..1_000_000)),
                        }),
                        ..Default::default()
                    },
                );
                let sent = Instant::now();
                match treasury.transfer(request).await {
                    Ok(_) => {
                        completed += 1;
                        latencies.push(sent.elapsed().as_micros() as u32);
                    }
                    Err(_) => errors += 1,
                }
            }
            (completed, errors, latencies)
        });
    }
    let grpc = merge(tasks.join_all().await, started.elapsed());

    let _ = stop.send(());
    server.await??;

    // Raw SQL phase: the same transfer as plain SQL, on as many connections.
    let pool = PgPoolOptions::new()
        .max_connections(clients as u32)
        .connect(database_url)
        .await?;
    sqlx::query("CREATE TABLE bench_raw_entries (id bigserial PRIMARY KEY, source uuid NOT NULL, destination uuid NOT NULL, amount_micros bigint NOT NULL, posted_at timestamptz NOT NULL DEFAULT now())")
        .execute(&pool)
        .await?;
    let ids: Vec<uuid::Uuid> = accounts
        .iter()
        .map(|(_, wallet)| wallet.parse().expect("uuid"))
        .collect();
    let ids = Arc::new(ids);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let pool = pool.clone();
        let ids = ids.clone();
        tasks.spawn(async move {
            let mut random = StdRng::from_rng(&mut rand::rng());
            let (mut completed, mut errors, mut latencies) = (0usize, 0usize, Vec::new());
            while Instant::now() < deadline {
                let from = ids[random.random_range(0..ids.len())];
                let to = ids[random.random_range(0..ids.len())];
                if from == to {
                    continue;
                }
                let amount: i64 = random.random_range(1..1_000_000);
                let sent = Instant::now();
                let result: Result<(), sqlx::Error> = async {
                    let mut transaction = pool.begin().await?;
                    // Lock both rows in id order, as the ledger does.
                    sqlx::query("SELECT id FROM wallets WHERE id = ANY($1) ORDER BY id FOR UPDATE")
                        .bind(vec![from, to])
                        .fetch_all(&mut *transaction)
                        .await?;
                    sqlx::query("UPDATE wallets SET available_micros = available_micros - $2 WHERE id = $1")
                        .bind(from)
                        .bind(amount)
                        .execute(&mut *transaction)
                        .await?;
                    sqlx::query("UPDATE wallets SET available_micros = available_micros + $2 WHERE id = $1")
                        .bind(to)
                        .bind(amount)
                        .execute(&mut *transaction)
                        .await?;
                    sqlx::query("INSERT INTO bench_raw_entries (source, destination, amount_micros) VALUES ($1, $2, $3)")
                        .bind(from)
                        .bind(to)
                        .bind(amount)
                        .execute(&mut *transaction)
                        .await?;
                    transaction.commit().await
                }
                .await;
                match result {
                    Ok(()) => {
                        completed += 1;
                        latencies.push(sent.elapsed().as_micros() as u32);
                    }
                    Err(_) => errors += 1,
                }
            }
            (completed, errors, latencies)
        });
    }
    let raw = merge(tasks.join_all().await, started.elapsed());
    pool.close().await;

    println!(
        "azora-bench transfers: {clients} clients, {} s per phase, {wallet_count} wallets, PostgreSQL",
        duration.as_secs_f64()
    );
    println!("{}", grpc.describe("gRPC Transfer"));
    println!("{}", raw.describe("raw SQL transfer"));
    println!(
        "ratio gRPC/raw: {:.2} (target >= 0.80); gRPC p99 {:.2} ms (target < 15 ms)",
        grpc.rate() / raw.rate(),
        grpc.percentile_ms(0.99)
    );
    println!(
        "command: cargo run --release --bin azora-bench -- transfers --clients {clients} --duration {}s --wallets {wallet_count}",
        duration.as_secs()
    );
    Ok(())
}

/// Runs `call` from `clients` concurrent clients over `channels` for
/// `duration`; `call(channel, client, iteration)` says whether it succeeded.
async fn drive<F, Fut>(clients: usize, duration: Duration, channels: &[Channel], call: F) -> Phase
where
    F: Fn(Channel, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let channel = channels[client % channels.len()].clone();
        let call = call.clone();
        tasks.spawn(async move {
            let (mut completed, mut errors, mut latencies) = (0usize, 0usize, Vec::new());
            let mut iteration = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                if call(channel.clone(), client, iteration).await {
                    completed += 1;
                    latencies.push(sent.elapsed().as_micros() as u32);
                } else {
                    errors += 1;
                }
                iteration += 1;
            }
            (completed, errors, latencies)
        });
    }
    merge(tasks.join_all().await, started.elapsed())
}

/// Phases run in slices, as one phase.
fn combine(slices: Vec<Phase>) -> Phase {
    let elapsed = slices.iter().map(|phase| phase.elapsed).sum();
    merge(
        slices
            .into_iter()
            .map(|phase| (phase.completed, phase.errors, phase.latencies_us))
            .collect(),
        elapsed,
    )
}

/// A private redis-server without persistence on a free port, killed on drop.
struct PrivateRedis {
    url: String,
    process: std::process::Child,
}

impl PrivateRedis {
    fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let process = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed?)")?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            url: format!("redis://127.0.0.1:{port}"),
            process,
        })
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

async fn connect_channels(
    address: std::net::SocketAddr,
    count: usize,
) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for _ in 0..count.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{address}"))?
                .connect()
                .await?,
        );
    }
    Ok(channels)
}

async fn reads(
    clients: usize,
    duration: Duration,
    wallet_count: usize,
    channel_count: usize,
    database_url: &str,
) -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let redis = PrivateRedis::start()?;
    // Both servers on one database: one without a cache, one with Redis.
    // Rate limits off, so the figures are the cache's and not the limiter's.
    let (plain_address, admin_key, stop_plain, plain_server) =
        start_configured(database_url, None, |settings| {
            settings.rate_limit = String::new()
        })
        .await?;
    let redis_url = redis.url.clone();
    let (cached_address, _, stop_cached, cached_server) =
        start_configured(database_url, Some(admin_key.clone()), move |settings| {
            settings.rate_limit = String::new();
            settings.redis_url = Some(azora::config::Secret::new(redis_url));
        })
        .await?;

    eprintln!("setting up {wallet_count} wallets with owners and member keys…");
    let channel = Channel::from_shared(format!("http://{plain_address}"))?
        .connect()
        .await?;
    let mut identity = IdentityServiceClient::new(channel.clone());
    let mut treasury = TreasuryServiceClient::new(channel);
    let mut accounts = Vec::with_capacity(wallet_count);
    for index in 0..wallet_count {
        let (key, wallet) = create_holder(
            &mut identity,
            &admin_key,
            &format!("reader{index:05}"),
            ipb::Role::Member,
            index,
        )
        .await?;
        treasury
            .deposit(authed(
                &admin_key,
                tpb::DepositRequest {
                    request_id: format!("fund-{index}"),
                    to_wallet_id: wallet.clone(),
                    amount: Some(Decimal {
                        value: "1000".into(),
                    }),
                    ..Default::default()
                },
            ))
            .await?;
        accounts.push((key, wallet));
    }
    let accounts = Arc::new(accounts);

    let get_balance = {
        let accounts = accounts.clone();
        move |channel: Channel, client: usize, iteration: usize| {
            let (key, wallet) = accounts[(client * 7919 + iteration) % accounts.len()].clone();
            async move {
                TreasuryServiceClient::new(channel)
                    .get_balance(authed(
                        &key,
                        tpb::GetBalanceRequest {
                            wallet_id: wallet,
                            as_of_time: None,
                        },
                    ))
                    .await
                    .is_ok()
            }
        }
    };
    // Through authentication and the handler's parsing, then refused before
    // any I/O (the wallet id is not a UUID): what the gRPC layer and
    // authentication cost on their own.
    let authenticated = {
        let accounts = accounts.clone();
        move |channel: Channel, client: usize, iteration: usize| {
            let key = accounts[(client * 7919 + iteration) % accounts.len()]
                .0
                .clone();
            async move {
                let refused = TreasuryServiceClient::new(channel)
                    .get_balance(authed(
                        &key,
                        tpb::GetBalanceRequest {
                            wallet_id: "not-a-uuid".into(),
                            as_of_time: None,
                        },
                    ))
                    .await;
                matches!(refused, Err(status) if status.code() == tonic::Code::InvalidArgument)
            }
        }
    };
    let empty = |channel: Channel, _: usize, _: usize| async move {
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
    };

    let cached_channels = connect_channels(cached_address, channel_count).await?;
    let plain_channels = connect_channels(plain_address, channel_count).await?;
    // Warm the authentication caches and the Redis cache.
    drive(
        clients,
        Duration::from_secs(1),
        &cached_channels,
        get_balance.clone(),
    )
    .await;
    drive(
        clients,
        Duration::from_secs(1),
        &plain_channels,
        get_balance.clone(),
    )
    .await;

    // The phases alternate in five slices each, so that whatever else the
    // machine does weighs on all three alike.
    const SLICES: u32 = 5;
    let slice = duration / SLICES;
    let (mut ceiling, mut uncached, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    let mut refused = Vec::new();
    for _ in 0..SLICES {
        ceiling.push(drive(clients, slice, &cached_channels, empty).await);
        refused.push(drive(clients, slice, &cached_channels, authenticated.clone()).await);
        uncached.push(drive(clients, slice, &plain_channels, get_balance.clone()).await);
        cached.push(drive(clients, slice, &cached_channels, get_balance.clone()).await);
    }
    let (ceiling, uncached, cached) = (combine(ceiling), combine(uncached), combine(cached));
    let refused = combine(refused);

    let _ = stop_plain.send(());
    let _ = stop_cached.send(());
    plain_server.await??;
    cached_server.await??;
    drop(redis);

    println!(
        "azora-bench reads: {clients} clients over {channel_count} channels, {} s per phase (alternating slices), {wallet_count} wallets, PostgreSQL + Redis",
        duration.as_secs_f64()
    );
    println!("{}", ceiling.describe("empty RPC (Check)"));
    println!("{}", refused.describe("authed, no I/O"));
    println!("{}", uncached.describe("GetBalance uncached"));
    println!("{}", cached.describe("GetBalance cached"));
    println!(
        "ratios: cached/empty {:.2} (target >= 0.50); uncached/empty {:.2}; cached/uncached {:.2}; cached/authed-no-I/O {:.2}",
        cached.rate() / ceiling.rate(),
        uncached.rate() / ceiling.rate(),
        cached.rate() / uncached.rate(),
        cached.rate() / refused.rate()
    );
    println!(
        "command: cargo run --release --bin azora-bench -- reads --clients {clients} --duration {}s --wallets {wallet_count} --channels {channel_count}",
        duration.as_secs()
    );
    Ok(())
}
