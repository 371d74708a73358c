//! `azora-bench transfers`: random Transfer RPCs against the same transfer
//! as plain SQL on as many connections, the ceiling.
//!
//! The two phases alternate in rounds (gRPC then SQL, SQL then gRPC, …) so
//! that whatever else the machine does weighs on both alike; each phase's
//! rate is the median of its rounds and the ratio is the median of the
//! rounds' ratios. The server runs in this process (on a fresh database), or
//! is one already running elsewhere (`--server-addr`), as deployed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use azora_testkit::{authed, azr};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::sqlx::{self, PgPool, postgres::PgPoolOptions};
use tonic::transport::Channel;

use crate::history;
use crate::phase::{ClientTally, Phase, combine, median, merge};
use crate::setup::{connect_channels, funded_members_at, start_server};

/// (key, wallet id) of each funded member.
type Accounts = Arc<Vec<(String, String)>>;

/// Which server the gRPC phase drives.
pub(crate) enum Target {
    /// Started here, on the bench's fresh database.
    InProcess { writers: usize },
    /// Already running; the raw phase uses `database_url`, the server's
    /// database, in tables of its own.
    External {
        address: SocketAddr,
        admin_key: String,
        /// Its memory is reported when given.
        pid: Option<u32>,
    },
}

pub(crate) struct Options {
    pub clients: usize,
    /// Per phase per round.
    pub duration: Duration,
    pub rounds: usize,
    pub wallets: usize,
    pub channels: usize,
    /// Historical transfers loaded before measuring (see `history`).
    pub preload: u64,
}

pub(crate) async fn run(
    options: Options,
    target: Target,
    database_url: &str,
) -> anyhow::Result<()> {
    let Options {
        clients,
        duration,
        rounds,
        wallets,
        channels,
        preload,
    } = options;
    let (server, address, admin_key, pid) = match &target {
        Target::InProcess { writers } => {
            let writers = *writers;
            let server = start_server(database_url, None, move |settings| {
                settings.ledger_writers = writers;
                // The figures are the ledger's, not the per-key limiter's.
                settings.rate_limit = String::new();
            })
            .await?;
            let (address, key) = (server.address, server.admin_key.clone());
            (Some(server), address, key, Some(std::process::id()))
        }
        Target::External {
            address,
            admin_key,
            pid,
        } => (None, *address, admin_key.clone(), *pid),
    };
    let prefix = format!("bench{:08x}-", rand::rng().random::<u32>());
    eprintln!("setting up {wallets} wallets with owners and keys…");
    let accounts =
        Arc::new(funded_members_at(address, &admin_key, &prefix, wallets, "1000000").await?);
    let wallet_ids: Arc<Vec<uuid::Uuid>> = Arc::new(
        accounts
            .iter()
            .map(|(_, wallet)| wallet.parse())
            .collect::<Result<_, _>>()?,
    );
    let channels = connect_channels(address, channels).await?;
    let pool = PgPoolOptions::new()
        .max_connections(clients as u32)
        // As the server connects: TLS only when the URL asks for it.
        .connect(&azora::db::with_explicit_ssl_mode(database_url))
        .await?;
    create_raw_tables(&pool, &wallet_ids).await?;
    let reads = if preload > 0 {
        eprintln!("loading {preload} historical transfers…");
        history::preload(&pool, &wallet_ids, preload).await?;
        Some(
            history::read_latencies(&channels[0], &admin_key, &accounts[0].0, &accounts[0].1).await,
        )
    } else {
        None
    };

    // Warm the key caches and both connection pools.
    grpc_transfers(clients, Duration::from_secs(1), &channels, &accounts).await;
    raw_sql_transfers(clients, Duration::from_secs(1), &pool, &wallet_ids).await;

    let (mut grpc, mut raw) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let grpc_first = round % 2 == 0;
        for phase in [grpc_first, !grpc_first] {
            if phase {
                eprintln!("round {}: gRPC", round + 1);
                grpc.push(grpc_transfers(clients, duration, &channels, &accounts).await);
            } else {
                eprintln!("round {}: raw SQL", round + 1);
                raw.push(raw_sql_transfers(clients, duration, &pool, &wallet_ids).await);
            }
        }
    }
    eprintln!("done");
    let memory = pid.and_then(memory_of);
    drop_raw_tables(&pool).await?;
    pool.close().await;
    if let Some(server) = server {
        server.stop().await?;
    }

    let ratios: Vec<f64> = grpc
        .iter()
        .zip(&raw)
        .map(|(grpc, raw)| grpc.rate() / raw.rate())
        .collect();
    let grpc_rates: Vec<f64> = grpc.iter().map(Phase::rate).collect();
    let raw_rates: Vec<f64> = raw.iter().map(Phase::rate).collect();
    let (grpc, raw) = (combine(grpc), combine(raw));
    let server_mode = match &target {
        Target::InProcess { writers } => {
            format!("server in this process, {writers} ledger writers")
        }
        Target::External { address, .. } => format!("server at {address}"),
    };
    println!(
        "azora-bench transfers: {clients} clients, {rounds} rounds of {} s per phase, alternating, {wallets} wallets, PostgreSQL, {server_mode}",
        duration.as_secs_f64()
    );
    println!(
        "{}   median of rounds {:.0}/s",
        grpc.describe("gRPC Transfer"),
        median(&grpc_rates)
    );
    println!(
        "{}   median of rounds {:.0}/s",
        raw.describe("raw SQL transfer"),
        median(&raw_rates)
    );
    println!(
        "ratio gRPC/raw: median {:.2} (rounds: {}; target >= 1.00); p99 gRPC {:.2} ms vs raw {:.2} ms (target: no worse)",
        median(&ratios),
        ratios
            .iter()
            .map(|ratio| format!("{ratio:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        grpc.percentile_ms(0.99),
        raw.percentile_ms(0.99),
    );
    for (read, (p50, p99)) in reads.iter().flatten() {
        println!(
            "after {preload} historical transfers: {read:<34} p50 {p50:>7.2} ms   p99 {p99:>7.2} ms"
        );
    }
    if let Some((rss, peak)) = memory {
        let whose = match target {
            Target::InProcess { .. } => "this process (server and clients)",
            Target::External { .. } => "the server",
        };
        println!("memory of {whose}: RSS {rss} MiB now, peak {peak} MiB");
    }
    let addressing = match &target {
        Target::InProcess { writers } => format!(" --writers {writers}"),
        Target::External { address, pid, .. } => format!(
            " --server-addr {address} --admin-key $AZORA_KEY --database-url <the server's database>{}",
            pid.map(|pid| format!(" --server-pid {pid}"))
                .unwrap_or_default()
        ),
    };
    println!(
        "command: cargo run --release -p azora-bench -- transfers --clients {clients} --duration {}s --rounds {rounds} --wallets {wallets} --preload {preload}{addressing}",
        duration.as_secs()
    );
    Ok(())
}

/// (RSS, peak RSS) in MiB of a process, from `/proc`.
fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib / 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Each client transfers a random amount between two random wallets, with
/// the payer's key, until the phase ends.
async fn grpc_transfers(
    clients: usize,
    duration: Duration,
    channels: &[Channel],
    accounts: &Accounts,
) -> Phase {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let treasury = TreasuryServiceClient::new(channels[client % channels.len()].clone());
        tasks.spawn(grpc_client(treasury, accounts.clone(), deadline));
    }
    merge(tasks.join_all().await, started.elapsed())
}

async fn grpc_client(
    mut treasury: TreasuryServiceClient<Channel>,
    accounts: Accounts,
    deadline: Instant,
) -> ClientTally {
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
                amount: azr(&format!("0.{:06}", random.random_range(1..1_000_000))),
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
}

/// The raw phase's own copy of the wallets (same columns, constraints and
/// indexes, same rows), so that it never touches the ledger's balances, and
/// its entries table.
async fn create_raw_tables(pool: &PgPool, wallet_ids: &[uuid::Uuid]) -> anyhow::Result<()> {
    drop_raw_tables(pool).await?;
    sqlx::query("CREATE TABLE bench_raw_wallets (LIKE wallets INCLUDING ALL)")
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO bench_raw_wallets SELECT * FROM wallets WHERE id = ANY($1)")
        .bind(wallet_ids)
        .execute(pool)
        .await?;
    sqlx::query("CREATE TABLE bench_raw_entries (id bigserial PRIMARY KEY, source uuid NOT NULL, destination uuid NOT NULL, amount_micros bigint NOT NULL, posted_at timestamptz NOT NULL DEFAULT now())")
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE bench_raw_wallets")
        .execute(pool)
        .await?;
    Ok(())
}

async fn drop_raw_tables(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("DROP TABLE IF EXISTS bench_raw_wallets, bench_raw_entries")
        .execute(pool)
        .await?;
    Ok(())
}

/// The same transfers as plain SQL, straight against PostgreSQL, on as many
/// connections as there are clients.
async fn raw_sql_transfers(
    clients: usize,
    duration: Duration,
    pool: &PgPool,
    ids: &Arc<Vec<uuid::Uuid>>,
) -> Phase {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        tasks.spawn(raw_sql_client(pool.clone(), ids.clone(), deadline));
    }
    merge(tasks.join_all().await, started.elapsed())
}

async fn raw_sql_client(pool: PgPool, ids: Arc<Vec<uuid::Uuid>>, deadline: Instant) -> ClientTally {
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
        match raw_transfer(&pool, from, to, amount).await {
            Ok(()) => {
                completed += 1;
                latencies.push(sent.elapsed().as_micros() as u32);
            }
            Err(_) => errors += 1,
        }
    }
    (completed, errors, latencies)
}

/// One transfer as plain SQL: lock both rows in id order (as the ledger
/// does), move the amount, record one entry, commit.
async fn raw_transfer(
    pool: &PgPool,
    from: uuid::Uuid,
    to: uuid::Uuid,
    amount: i64,
) -> Result<(), sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query("SELECT id FROM bench_raw_wallets WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(vec![from, to])
        .fetch_all(&mut *transaction)
        .await?;
    sqlx::query(
        "UPDATE bench_raw_wallets SET available_micros = available_micros - $2 WHERE id = $1",
    )
    .bind(from)
    .bind(amount)
    .execute(&mut *transaction)
    .await?;
    sqlx::query(
        "UPDATE bench_raw_wallets SET available_micros = available_micros + $2 WHERE id = $1",
    )
    .bind(to)
    .bind(amount)
    .execute(&mut *transaction)
    .await?;
    sqlx::query(
        "INSERT INTO bench_raw_entries (source, destination, amount_micros) VALUES ($1, $2, $3)",
    )
    .bind(from)
    .bind(to)
    .bind(amount)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await
}
