//! A long history for `azora-bench transfers --preload N`: N confirmed
//! transfers of one micro-AZR, loaded by bulk SQL with the ledger's own
//! invariants (each a transaction row and its balanced entry, in pairs that
//! go there and back, so every balance still equals its entries), the
//! first 100,000 of them between the first wallet and the others; then the
//! latency of the reads that must not grow with it.

use std::time::{Duration, Instant};

use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use azora_testkit::authed;
use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, PgPool};
use tonic::transport::Channel;
use uuid::Uuid;

/// Transfers between the first wallet and the others, so that one wallet
/// has a long history of its own.
const ON_THE_FIRST_WALLET: u64 = 100_000;
const CHUNK: u64 = 20_000;

/// Loads `count` (rounded down to even) historical transfers among
/// `wallets`, dated in the second before now, older than anything the
/// server writes next.
pub(crate) async fn preload(pool: &PgPool, wallets: &[Uuid], count: u64) -> anyhow::Result<()> {
    let count = count - count % 2;
    let started = Instant::now();
    let loaded_at = Utc::now();
    let mut next = 0;
    while next < count {
        let end = (next + CHUNK).min(count);
        let (mut ids, mut sources, mut destinations, mut times) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for g in next..end {
            let (source, destination) = pair(wallets, g);
            let at = loaded_at - chrono::Duration::microseconds((count - g) as i64 + 1_000_000);
            ids.push(history_id(at, g));
            sources.push(source);
            destinations.push(destination);
            times.push(at);
        }
        sqlx::query(PRELOAD)
            .bind(&ids)
            .bind(&sources)
            .bind(&destinations)
            .bind(&times)
            .execute(pool)
            .await?;
        next = end;
    }
    sqlx::query("VACUUM ANALYZE ledger_transactions, ledger_entries")
        .execute(pool)
        .await?;
    eprintln!(
        "loaded {count} historical transfers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Transfer `g`: there and back in pairs, so each pair nets to zero.
fn pair(wallets: &[Uuid], g: u64) -> (Uuid, Uuid) {
    let n = wallets.len() as u64;
    let index = g / 2;
    let (a, b) = if g < ON_THE_FIRST_WALLET {
        (0, 1 + index % (n - 1))
    } else {
        (index % n, (index + 1) % n)
    };
    let (a, b) = (wallets[a as usize], wallets[b as usize]);
    if g.is_multiple_of(2) { (a, b) } else { (b, a) }
}

/// A version-7 UUID at `at` whose random bits are the sequence number, so
/// ids order as the history does.
fn history_id(at: DateTime<Utc>, g: u64) -> Uuid {
    let millis = at.timestamp_millis() as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    bytes[10..].copy_from_slice(&g.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

const PRELOAD: &str = "\
WITH t AS (
    INSERT INTO ledger_transactions (id, kind, status, tx_hash, amount_azr_micros, amount_usd_micros,
        from_wallet_id, to_wallet_id, request_id, requested_by, created_at, processed_at)
    SELECT v.id, 'transfer', 'confirmed', 'history-' || v.id, 1, 1, v.source, v.destination,
        'history-' || v.id, w.owner_id, v.at, v.at
    FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[]) AS v(id, source, destination, at)
    JOIN wallets AS w ON w.id = v.source
    RETURNING id, from_wallet_id, to_wallet_id, created_at
)
INSERT INTO ledger_entries (transaction_id, source_wallet_id, source_bucket, destination_wallet_id,
    destination_bucket, amount_micros, posted_at)
SELECT id, from_wallet_id, 'available', to_wallet_id, 'available', 1, created_at FROM t";

/// p50 and p99 of `calls` sequential calls, in ms.
async fn latencies<F, Fut>(calls: usize, mut call: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut taken: Vec<Duration> = Vec::with_capacity(calls);
    for _ in 0..calls {
        let sent = Instant::now();
        if call().await {
            taken.push(sent.elapsed());
        }
    }
    taken.sort_unstable();
    let at = |percentile: f64| {
        taken
            .get(((taken.len().max(1) - 1) as f64 * percentile).round() as usize)
            .map_or(f64::NAN, |taken| taken.as_secs_f64() * 1000.0)
    };
    (at(0.50), at(0.99))
}

/// The reads the issue asks to stay flat, each called 200 times one after
/// another: the first wallet's balance as of a second ago (its 100,000
/// entries), the first page of its transactions and of everyone's, and
/// the treasury summary (this server has no cache).
pub(crate) async fn read_latencies(
    channel: &Channel,
    admin_key: &str,
    owner_key: &str,
    wallet: &str,
) -> Vec<(&'static str, (f64, f64))> {
    let treasury = TreasuryServiceClient::new(channel.clone());
    let as_of = || azora_testkit::timestamp(Utc::now() - chrono::Duration::seconds(1));
    let balance = latencies(200, || {
        let mut treasury = treasury.clone();
        let request = authed(
            owner_key,
            tpb::GetBalanceRequest {
                wallet_id: wallet.to_owned(),
                as_of_time: Some(as_of()),
            },
        );
        async move { treasury.get_balance(request).await.is_ok() }
    })
    .await;
    let wallet_page = latencies(200, || {
        let mut treasury = treasury.clone();
        let request = authed(
            owner_key,
            tpb::ListTransactionsRequest {
                page_size: 50,
                wallet_id: wallet.to_owned(),
                ..Default::default()
            },
        );
        async move { treasury.list_transactions(request).await.is_ok() }
    })
    .await;
    let first_page = latencies(200, || {
        let mut treasury = treasury.clone();
        let request = authed(
            admin_key,
            tpb::ListTransactionsRequest {
                page_size: 50,
                ..Default::default()
            },
        );
        async move { treasury.list_transactions(request).await.is_ok() }
    })
    .await;
    let summary = latencies(200, || {
        let mut treasury = treasury.clone();
        let request = authed(admin_key, tpb::GetTreasurySummaryRequest::default());
        async move { treasury.get_treasury_summary(request).await.is_ok() }
    })
    .await;
    vec![
        ("GetBalance as_of (first wallet)", balance),
        ("ListTransactions, its first page", wallet_page),
        ("ListTransactions, first page", first_page),
        ("GetTreasurySummary (uncached)", summary),
    ]
}
