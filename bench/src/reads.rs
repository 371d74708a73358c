//! `azora-bench reads`: GetBalance from the Redis cache and without a cache,
//! against an empty RPC (the ceiling of the gRPC layer) and an authenticated
//! call refused before any I/O.

use std::sync::Arc;
use std::time::Duration;

use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use azora_testkit::{RedisServer, RunningServer, authed};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::phase::{Phase, combine, drive};
use crate::setup::{connect_channels, funded_members, start_server};

/// (key, wallet id) of each funded member.
type Accounts = Arc<Vec<(String, String)>>;

/// The four phases, each over all its slices.
struct Reads {
    ceiling: Phase,
    refused: Phase,
    uncached: Phase,
    cached: Phase,
}

pub(crate) async fn run(
    clients: usize,
    duration: Duration,
    wallet_count: usize,
    channel_count: usize,
    database_url: &str,
) -> anyhow::Result<()> {
    let redis = RedisServer::try_start()?;
    let (plain, cached) = start_plain_and_cached(database_url, &redis).await?;
    eprintln!("setting up {wallet_count} wallets with owners and member keys…");
    let accounts = Arc::new(funded_members(&plain, "reader", wallet_count, "1000").await?);
    let cached_channels = connect_channels(cached.address, channel_count).await?;
    let plain_channels = connect_channels(plain.address, channel_count).await?;
    let reads = measure(
        clients,
        duration,
        &accounts,
        &plain_channels,
        &cached_channels,
    )
    .await;
    let (plain_stopped, cached_stopped) = tokio::join!(plain.stop(), cached.stop());
    plain_stopped?;
    cached_stopped?;
    drop(redis);
    reads.print(clients, duration, wallet_count, channel_count);
    Ok(())
}

/// Both servers on one database: one without a cache, one with Redis. Rate
/// limits off, so the figures are the cache's and not the limiter's.
async fn start_plain_and_cached(
    database_url: &str,
    redis: &RedisServer,
) -> anyhow::Result<(RunningServer, RunningServer)> {
    let plain = start_server(database_url, None, |settings| {
        settings.rate_limit = String::new()
    })
    .await?;
    let redis_url = redis.url();
    let cached = start_server(database_url, Some(plain.admin()), move |settings| {
        settings.rate_limit = String::new();
        settings.redis_url = Some(azora::config::Secret::new(redis_url));
    })
    .await?;
    Ok((plain, cached))
}

/// Warms the caches, then runs the four phases alternating in five slices
/// each, so that whatever else the machine does weighs on all alike.
async fn measure(
    clients: usize,
    duration: Duration,
    accounts: &Accounts,
    plain_channels: &[Channel],
    cached_channels: &[Channel],
) -> Reads {
    let get_balance = {
        let accounts = accounts.clone();
        move |channel: Channel, client: usize, iteration: usize| {
            let (key, wallet) = accounts[(client * 7919 + iteration) % accounts.len()].clone();
            balance(channel, key, wallet)
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
            refused_before_io(channel, key)
        }
    };
    let empty = |channel: Channel, _: usize, _: usize| health_check(channel);

    // Warm the authentication caches and the Redis cache.
    let warm_up = Duration::from_secs(1);
    drive(clients, warm_up, cached_channels, get_balance.clone()).await;
    drive(clients, warm_up, plain_channels, get_balance.clone()).await;

    const SLICES: u32 = 5;
    let slice = duration / SLICES;
    let (mut ceiling, mut uncached, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    let mut refused = Vec::new();
    for _ in 0..SLICES {
        ceiling.push(drive(clients, slice, cached_channels, empty).await);
        refused.push(drive(clients, slice, cached_channels, authenticated.clone()).await);
        uncached.push(drive(clients, slice, plain_channels, get_balance.clone()).await);
        cached.push(drive(clients, slice, cached_channels, get_balance.clone()).await);
    }
    Reads {
        ceiling: combine(ceiling),
        refused: combine(refused),
        uncached: combine(uncached),
        cached: combine(cached),
    }
}

async fn balance(channel: Channel, key: String, wallet: String) -> bool {
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

async fn refused_before_io(channel: Channel, key: String) -> bool {
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

async fn health_check(channel: Channel) -> bool {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok()
}

impl Reads {
    fn print(&self, clients: usize, duration: Duration, wallet_count: usize, channel_count: usize) {
        let Self {
            ceiling,
            refused,
            uncached,
            cached,
        } = self;
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
            "command: cargo run --release -p azora-bench -- reads --clients {clients} --duration {}s --wallets {wallet_count} --channels {channel_count}",
            duration.as_secs()
        );
    }
}
