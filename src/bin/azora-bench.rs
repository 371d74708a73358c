//! Benchmarks of azora over real gRPC against real PostgreSQL.
//!
//! `azora-bench transfers` starts the server (the same `Application` that
//! `azora serve` runs) on a fresh PostgreSQL database, creates wallets with
//! owners and keys, and drives Transfer RPCs from concurrent clients for a
//! fixed time. In the same run it drives the equivalent plain transfer SQL
//! (lock and update two wallet rows, insert one entry row, commit) straight
//! against the same PostgreSQL with as many connections, as the ceiling, and
//! prints both with the ratio.

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
        Bench::Transfers { postgres_url, .. } | Bench::Samples { postgres_url, .. } => {
            postgres_url.clone()
        }
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
    let mut settings = Settings::with_database(database_url);
    settings.ledger_writers = writers;
    settings.log = "warn".into();
    let application = Application::build(settings, true).await?;
    let address = application.local_addr();
    let (_, issued) = Identity::new(application.database().clone())
        .bootstrap_admin("bench-admin", None)
        .await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Ok((address, issued.secret, stop, server))
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
                            })
                            .collect(),
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
