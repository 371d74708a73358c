//! `azora-bench transfers`: random Transfer RPCs against the same transfer
//! as plain SQL on as many connections, the ceiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use azora_testkit::{authed, azr};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::sqlx::{self, PgPool, postgres::PgPoolOptions};
use tonic::transport::Channel;

use crate::phase::{ClientTally, Phase, merge};
use crate::setup::{connect_channels, funded_members, start_server};

/// (key, wallet id) of each funded member.
type Accounts = Arc<Vec<(String, String)>>;

pub(crate) async fn run(
    clients: usize,
    duration: Duration,
    wallet_count: usize,
    channel_count: usize,
    writers: usize,
    database_url: &str,
) -> anyhow::Result<()> {
    let server = start_server(database_url, None, |settings| {
        settings.ledger_writers = writers
    })
    .await?;
    eprintln!("setting up {wallet_count} wallets with owners and keys…");
    let accounts = Arc::new(funded_members(&server, "bench", wallet_count, "1000000").await?);

    let channels = connect_channels(server.address, channel_count).await?;
    let grpc = grpc_transfers(clients, duration, &channels, &accounts).await;
    server.stop().await?;

    let raw = raw_sql_transfers(clients, duration, database_url, &accounts).await?;

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
        "command: cargo run --release -p azora-bench -- transfers --clients {clients} --duration {}s --wallets {wallet_count}",
        duration.as_secs()
    );
    Ok(())
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

/// The same transfers as plain SQL, straight against PostgreSQL, on as many
/// connections as there were clients.
async fn raw_sql_transfers(
    clients: usize,
    duration: Duration,
    database_url: &str,
    accounts: &Accounts,
) -> anyhow::Result<Phase> {
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
        tasks.spawn(raw_sql_client(pool.clone(), ids.clone(), deadline));
    }
    let raw = merge(tasks.join_all().await, started.elapsed());
    pool.close().await;
    Ok(raw)
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
