//! A long history for `azora-bench transfers --preload N`: N confirmed
//! transfers of one micro-AZR, loaded by bulk SQL with the ledger's own
//! invariants (each a transaction row and its balanced entry, in pairs that
//! go there and back, so every balance still equals its entries), the
//! first 100,000 of them between the first wallet and the others; then the
//! latency of the reads that must not grow with it.

use std::time::{Duration, Instant};

use azora::proto::compliance as cpb;
use azora::proto::compliance::compliance_service_client::ComplianceServiceClient;
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
    // Dated after everything already posted (the wallets' funding), one
    // microsecond apart, so that point-in-time reads see the history where
    // its entries' ids put it.
    let (after,): (DateTime<Utc>,) =
        sqlx::query_as("SELECT COALESCE(max(posted_at), now()) FROM ledger_entries")
            .fetch_one(pool)
            .await?;
    let mut next = 0;
    while next < count {
        let end = (next + CHUNK).min(count);
        let (mut ids, mut sources, mut destinations, mut times) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut there = Vec::new();
        for g in next..end {
            let (source, destination) = pair(wallets, g);
            let at = after + chrono::Duration::microseconds(g as i64 + 1);
            ids.push(history_id(at, g));
            sources.push(source);
            destinations.push(destination);
            times.push(at);
            there.push(g % 2 == 0);
        }
        sqlx::query(PRELOAD)
            .bind(&ids)
            .bind(&sources)
            .bind(&destinations)
            .bind(&times)
            .bind(&there)
            .execute(pool)
            .await?;
        next = end;
    }
    // What the summary reads: `count` more confirmed transfers of one
    // micro-AZR each (they net to nothing in the wallets).
    sqlx::query(
        "INSERT INTO ledger_kind_totals (slot, kind, status, transactions, micros) \
         VALUES (0, 'transfer', 'confirmed', $1, $1) ON CONFLICT (slot, kind, status) DO UPDATE \
         SET transactions = ledger_kind_totals.transactions + $1, micros = ledger_kind_totals.micros + $1",
    )
    .bind(count as i64)
    .execute(pool)
    .await?;
    sqlx::query("VACUUM ANALYZE ledger_transactions, ledger_entries")
        .execute(pool)
        .await?;
    // The server's next writes must come after the history.
    let last = after + chrono::Duration::microseconds(count as i64 + 1);
    if let Ok(wait) = (last - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
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

/// A pair goes there (`$5` true) and back: each wallet's balance is its
/// funding, less or plus the one micro-AZR in flight, which is what the
/// running balances on the entries say. The entries are inserted in the
/// history's order, so that their ids (which order a wallet's postings)
/// follow it: a join's output has no order of its own.
const PRELOAD: &str = "\
WITH v AS (
    SELECT v.*, s.available_micros AS source_available, d.available_micros AS destination_available,
        s.pending_micros AS source_pending, s.staked_micros AS source_staked,
        d.pending_micros AS destination_pending, d.staked_micros AS destination_staked,
        s.owner_id
    FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[], $5::bool[])
        AS v(id, source, destination, at, there)
    JOIN wallets AS s ON s.id = v.source JOIN wallets AS d ON d.id = v.destination
), t AS (
    INSERT INTO ledger_transactions (id, kind, status, tx_hash, amount_azr_micros, amount_usd_micros,
        from_wallet_id, to_wallet_id, request_id, requested_by, created_at, processed_at)
    SELECT v.id, 'transfer', 'confirmed', 'history-' || v.id, 1, 1, v.source, v.destination,
        'history-' || v.id, v.owner_id, v.at, v.at
    FROM v
    RETURNING id
)
INSERT INTO ledger_entries (transaction_id, source_wallet_id, source_bucket, destination_wallet_id,
    destination_bucket, amount_micros, posted_at,
    source_available_after, source_pending_after, source_staked_after,
    destination_available_after, destination_pending_after, destination_staked_after)
SELECT v.id, v.source, 'available', v.destination, 'available', 1, v.at,
    CASE WHEN v.there THEN v.source_available - 1 ELSE v.source_available END,
    v.source_pending, v.source_staked,
    CASE WHEN v.there THEN v.destination_available + 1 ELSE v.destination_available END,
    v.destination_pending, v.destination_staked
FROM v JOIN t ON t.id = v.id
ORDER BY v.at";

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
    // Once: the whole books are read, so it is the slowest call there is.
    let mut compliance = ComplianceServiceClient::new(channel.clone());
    let started = Instant::now();
    let report = compliance
        .generate_compliance_report(authed(
            admin_key,
            cpb::GenerateComplianceReportRequest {
                report_type: cpb::ReportType::AdHoc as i32,
                period_start: Some(azora_testkit::timestamp(
                    Utc::now() - chrono::Duration::days(1),
                )),
                period_end: Some(azora_testkit::timestamp(Utc::now())),
                request_id: Uuid::new_v4().to_string(),
            },
        ))
        .await;
    let report_ms = started.elapsed().as_secs_f64() * 1000.0;
    match report {
        Ok(report) => {
            let report = report.into_inner().report.unwrap_or_default();
            let failed: Vec<_> = report
                .checks
                .iter()
                .filter(|check| !check.passed)
                .map(|check| check.name.as_str())
                .collect();
            eprintln!(
                "compliance report over the history: {report_ms:.0} ms, failed checks {failed:?}"
            );
        }
        Err(status) => {
            eprintln!("compliance report over the history failed after {report_ms:.0} ms: {status}")
        }
    }
    vec![
        ("GetBalance as_of (first wallet)", balance),
        ("ListTransactions, its first page", wallet_page),
        ("ListTransactions, first page", first_page),
        ("GetTreasurySummary (uncached)", summary),
    ]
}
