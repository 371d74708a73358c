//! Benchmarks of azora over real gRPC against real PostgreSQL.
//!
//! `azora-bench transfers` starts the server (the same `Application` that
//! `azora serve` runs) on a fresh PostgreSQL database, or drives one already
//! running (`--server-addr`), creates wallets with owners and keys, and
//! drives Transfer RPCs from concurrent clients. Alternating with it, in
//! rounds, it drives the equivalent plain transfer SQL (lock and update two
//! wallet rows, insert one entry row, commit) straight against the same
//! PostgreSQL with as many connections, as the ceiling, and prints the
//! medians with the ratio.
//!
//! `azora-bench reads` measures, in one run, `GetBalance` served from the
//! Redis cache, the same without a cache (from PostgreSQL), and an empty RPC
//! (`grpc.health.v1.Health/Check`) as the ceiling of the gRPC layer, plus an
//! authenticated call refused before any I/O, to separate authentication
//! from the cache.
//!
//! `azora-bench batches` drives CreateTransfers: batches of transfers from
//! concurrent clients, reporting transfers and batches per second.
//!
//! `azora-bench samples` streams mining samples (RecordStatistics) from
//! concurrent rigs, each with its own session; with `--preload-samples N`
//! it first loads a history of N samples by bulk SQL and times
//! GetMiningPerformance over it, against the statements it ran before the
//! hourly rollups.
//!
//! The database, the in-process server and the setup calls are the
//! `azora-testkit` crate's, which the integration tests use too.

mod batches;
mod history;
mod mining_history;
mod phase;
mod reads;
mod samples;
mod setup;
mod transfers;

use std::time::Duration;

use azora_testkit::TestDatabase;
use clap::{Parser, Subcommand};

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
        /// Rounds; each runs both phases, in alternating order.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Historical transfers to load by bulk SQL first (e.g. 1000000),
        /// then measure the reads that must stay flat, then the rounds.
        #[arg(long, default_value_t = 0)]
        preload: u64,
        /// Concurrent ledger writers in the server (in-process only).
        #[arg(long, default_value_t = 2)]
        writers: usize,
        /// PostgreSQL server; the bench creates its own database on it.
        #[arg(
            long,
            env = "AZORA_BENCH_POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432"
        )]
        postgres_url: String,
        /// Drive an already running server (`azora serve`) instead of one in
        /// this process; needs `--admin-key` and `--database-url`.
        #[arg(long, requires_all = ["admin_key", "database_url"])]
        server_addr: Option<std::net::SocketAddr>,
        /// An admin key of that server.
        #[arg(long, env = "AZORA_KEY", hide_env_values = true)]
        admin_key: Option<String>,
        /// That server's PostgreSQL database, where the raw phase makes
        /// tables of its own (`bench_raw_*`, dropped at the end).
        #[arg(long)]
        database_url: Option<String>,
        /// That server's process id, to report its memory.
        #[arg(long)]
        server_pid: Option<u32>,
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
        /// Historical samples to load by bulk SQL first (e.g. 1000000),
        /// then time GetMiningPerformance over them, then stream.
        #[arg(long, default_value_t = 0)]
        preload_samples: u64,
        /// Sessions the preloaded samples are spread over.
        #[arg(long, default_value_t = 1000)]
        preload_sessions: usize,
        /// PostgreSQL server; the bench creates its own database on it.
        #[arg(
            long,
            env = "AZORA_BENCH_POSTGRES_URL",
            default_value = "postgres://postgres@127.0.0.1:5432"
        )]
        postgres_url: String,
    },
    /// CreateTransfers: batches of transfers from concurrent clients.
    Batches {
        /// Concurrent clients, each with one batch in flight.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Transfers per batch (1 to 1000).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// INDEPENDENT batches instead of ATOMIC ones.
        #[arg(long)]
        independent: bool,
        /// How long to run, e.g. `10s`.
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    if let Bench::Transfers {
        clients,
        duration,
        rounds,
        preload,
        wallets,
        channels,
        server_addr: Some(address),
        admin_key: Some(admin_key),
        database_url: Some(database_url),
        server_pid,
        ..
    } = command
    {
        let options = transfers::Options {
            clients,
            duration,
            rounds,
            wallets,
            channels,
            preload,
        };
        let target = transfers::Target::External {
            address,
            admin_key,
            pid: server_pid,
        };
        return transfers::run(options, target, &database_url).await;
    }
    let postgres_url = match &command {
        Bench::Transfers { postgres_url, .. }
        | Bench::Samples { postgres_url, .. }
        | Bench::Reads { postgres_url, .. }
        | Bench::Batches { postgres_url, .. } => postgres_url.clone(),
    };
    let database = TestDatabase::create_postgres(&postgres_url, "azora_bench").await?;
    let database_url = database.url.clone();
    let outcome = match command {
        Bench::Transfers {
            clients,
            duration,
            rounds,
            preload,
            wallets,
            channels,
            writers,
            ..
        } => {
            let options = transfers::Options {
                clients,
                duration,
                rounds,
                wallets,
                channels,
                preload,
            };
            let target = transfers::Target::InProcess { writers };
            transfers::run(options, target, &database_url).await
        }
        Bench::Samples {
            rigs,
            duration,
            stream,
            batch,
            preload_samples,
            preload_sessions,
            ..
        } => {
            let options = samples::Options {
                rigs,
                duration,
                stream_size: stream,
                batch,
                preload_samples,
                preload_sessions: preload_sessions.max(1),
            };
            samples::run(options, &database_url).await
        }
        Bench::Reads {
            clients,
            duration,
            wallets,
            channels,
            ..
        } => reads::run(clients, duration, wallets, channels, &database_url).await,
        Bench::Batches {
            clients,
            batch,
            independent,
            duration,
            wallets,
            channels,
            writers,
            ..
        } => {
            batches::run(
                clients,
                batch,
                !independent,
                duration,
                wallets,
                channels,
                writers,
                &database_url,
            )
            .await
        }
    };
    database.remove().await.ok();
    outcome
}
