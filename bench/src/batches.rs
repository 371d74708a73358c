//! `azora-bench batches`: CreateTransfers from concurrent clients, each call
//! a batch of transfers from one random payer to random payees.

use std::sync::Arc;
use std::time::Duration;

use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use azora_testkit::{authed, azr};
use rand::{Rng, SeedableRng};

use crate::phase::drive;
use crate::setup::{connect_channels, funded_members, start_server};

#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    clients: usize,
    batch: usize,
    atomic: bool,
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
    let mode = if atomic {
        tpb::BatchMode::Atomic
    } else {
        tpb::BatchMode::Independent
    };
    eprintln!("measuring");
    let phase = drive(clients, duration, &channels, move |channel, _, _| {
        let accounts = accounts.clone();
        async move {
            let request = {
                let mut random = rand::rngs::StdRng::from_rng(&mut rand::rng());
                let from = random.random_range(0..accounts.len());
                let transfers = (0..batch)
                    .map(|_| {
                        let mut to = random.random_range(0..accounts.len() - 1);
                        if to >= from {
                            to += 1;
                        }
                        tpb::TransferRequest {
                            request_id: uuid::Uuid::new_v4().to_string(),
                            from_wallet_id: accounts[from].1.clone(),
                            to_wallet_id: accounts[to].1.clone(),
                            amount: azr(&format!("0.{:06}", random.random_range(1..1_000_000))),
                            ..Default::default()
                        }
                    })
                    .collect();
                authed(
                    &accounts[from].0,
                    tpb::CreateTransfersRequest {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        mode: mode as i32,
                        transfers,
                    },
                )
            };
            TreasuryServiceClient::new(channel)
                .create_transfers(request)
                .await
                .is_ok_and(|answer| {
                    answer.into_inner().results.iter().all(|result| {
                        matches!(
                            result.outcome,
                            Some(tpb::transfer_result::Outcome::Transaction(_))
                        )
                    })
                })
        }
    })
    .await;
    server.stop().await?;
    println!(
        "azora-bench batches: {clients} clients, batches of {batch} ({}), {} s, {wallet_count} wallets, PostgreSQL",
        mode.as_str_name(),
        duration.as_secs_f64()
    );
    println!(
        "transfers/s {:>8.0}   batches/s {:>6.0}   per batch p50 {:>6.2} ms   p99 {:>6.2} ms   failed batches {}",
        phase.rate() * batch as f64,
        phase.rate(),
        phase.percentile_ms(0.50),
        phase.percentile_ms(0.99),
        phase.errors
    );
    println!(
        "command: cargo run --release -p azora-bench -- batches --clients {clients} --batch {batch} --duration {}s --wallets {wallet_count}{}",
        duration.as_secs(),
        if atomic { "" } else { " --independent" }
    );
    Ok(())
}
