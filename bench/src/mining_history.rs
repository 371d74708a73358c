//! A long mining history for `azora-bench samples --preload-samples N`:
//! sessions with one sample a minute each, loaded by bulk SQL with Mining's
//! own invariants (each session's running totals equal the sums of its
//! samples, each hourly rollup the sums of its hour's samples); then the
//! latency of GetMiningPerformance, which must not grow with it, against
//! the statements it ran before the rollups, straight on PostgreSQL.

use std::time::{Duration, Instant};

use azora::proto::mining as mpb;
use azora::proto::mining::mining_service_client::MiningServiceClient;
use azora_testkit::{authed, timestamp};
use chrono::{DateTime, Utc};
use sea_orm::sqlx::{self, PgPool, Row};
use tonic::transport::Channel;
use uuid::Uuid;

/// How far back the history reaches; sessions start staggered over it.
const HISTORY: chrono::Duration = chrono::Duration::days(30);
const ALGORITHMS: &[&str] = &["sha256", "ethash", "scrypt", "randomx"];
const POOLS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];
/// Sessions per bulk statement.
const SESSIONS_PER_CHUNK: usize = 50;
/// Calls timed per window.
const CALLS: usize = 200;

/// Loads `sessions` active sessions of the holders of `wallets` (round
/// robin) with `samples / sessions` samples each, a minute apart, the
/// sessions' starts spread over the 30 days before now; then their rollups
/// and running totals from those samples.
pub(crate) async fn preload(
    pool: &PgPool,
    wallets: &[Uuid],
    sessions: usize,
    samples: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let per_session = (samples / sessions as u64).max(1) as i64;
    let span = chrono::Duration::minutes(per_session);
    let step = (HISTORY - span).max(chrono::Duration::zero()) / sessions as i32;
    let first = Utc::now() - HISTORY - chrono::Duration::minutes(1);
    let all: Vec<(Uuid, Uuid, &str, &str, DateTime<Utc>)> = (0..sessions)
        .map(|k| {
            (
                Uuid::now_v7(),
                wallets[k % wallets.len()],
                ALGORITHMS[k % ALGORITHMS.len()],
                POOLS[(k / ALGORITHMS.len()) % POOLS.len()],
                first + step * k as i32,
            )
        })
        .collect();
    for chunk in all.chunks(SESSIONS_PER_CHUNK) {
        let ids: Vec<Uuid> = chunk.iter().map(|session| session.0).collect();
        let wallets: Vec<Uuid> = chunk.iter().map(|session| session.1).collect();
        let algorithms: Vec<&str> = chunk.iter().map(|session| session.2).collect();
        let pools: Vec<&str> = chunk.iter().map(|session| session.3).collect();
        let starts: Vec<DateTime<Utc>> = chunk.iter().map(|session| session.4).collect();
        let mut transaction = pool.begin().await?;
        sqlx::query(SESSIONS)
            .bind(&ids)
            .bind(&wallets)
            .bind(&algorithms)
            .bind(&pools)
            .bind(&starts)
            .execute(&mut *transaction)
            .await?;
        sqlx::query(SAMPLES)
            .bind(&ids)
            .bind(per_session)
            .execute(&mut *transaction)
            .await?;
        for statement in [ROLLUPS, TOTALS] {
            sqlx::query(statement)
                .bind(&ids)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
    }
    sqlx::query("VACUUM ANALYZE mining_sessions, mining_samples, mining_sample_rollups")
        .execute(pool)
        .await?;
    eprintln!(
        "loaded {} samples over {sessions} sessions in {:.1} s",
        per_session * sessions as i64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

const SESSIONS: &str = "\
INSERT INTO mining_sessions (id, miner_id, wallet_id, algorithm, pool_name, pool_url, worker_name,
    status, started_at)
SELECT v.id, w.owner_id, v.wallet, v.algorithm, v.pool, 'stratum+tcp://bench:3333', 'history',
    'active', v.started_at
FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
    AS v(id, wallet, algorithm, pool, started_at)
JOIN wallets AS w ON w.id = v.wallet";

/// `$2` samples per session, one a minute from its start.
const SAMPLES: &str = "\
INSERT INTO mining_samples (session_id, sampled_at, hashrate_mhs, power_watts, temperature_celsius,
    shares_accepted, shares_rejected, difficulty, network_hashrate_mhs, earnings_micros)
SELECT s.id, s.started_at + make_interval(mins => g::int), 90 + (g % 20) * 0.5, 1200 + (g % 7) * 10,
    60 + (g % 10), 3 + g % 5, g % 2, 1.5e12, 4.2e11, 100 + g % 50
FROM mining_sessions AS s CROSS JOIN generate_series(0, $2::bigint - 1) AS g
WHERE s.id = ANY($1::uuid[])";

/// The rollups, as RecordStatistics keeps them and migration 000019
/// backfills them.
const ROLLUPS: &str = "\
INSERT INTO mining_sample_rollups (session_id, hour, sample_count, hashrate_sum, power_sum,
    shares_accepted, shares_rejected, earnings_micros)
SELECT session_id, floor(extract(epoch FROM sampled_at) / 3600)::bigint, COUNT(*), SUM(hashrate_mhs),
    SUM(power_watts), SUM(shares_accepted), SUM(shares_rejected), SUM(earnings_micros)
FROM mining_samples WHERE session_id = ANY($1::uuid[])
GROUP BY 1, 2";

/// The sessions' running totals.
const TOTALS: &str = "\
UPDATE mining_sessions AS s SET sample_count = t.n, hashrate_sum = t.hashrate, power_sum = t.power,
    shares_accepted = t.accepted, shares_rejected = t.rejected, earnings_micros = t.earnings,
    last_sample_at = t.last
FROM (SELECT session_id, COUNT(*) AS n, SUM(hashrate_mhs) AS hashrate, SUM(power_watts) AS power,
        SUM(shares_accepted) AS accepted, SUM(shares_rejected) AS rejected,
        SUM(earnings_micros) AS earnings, MAX(sampled_at) AS last
    FROM mining_samples WHERE session_id = ANY($1::uuid[]) GROUP BY session_id) AS t
WHERE s.id = t.session_id";

/// What GetMiningPerformance ran before the rollups, once per grouping:
/// every sample of the window, summed per session.
fn old_statement(group: &str) -> String {
    format!(
        "SELECT s.{group} AS key, CAST(COUNT(*) AS BIGINT) AS samples, \
         SUM(m.hashrate_mhs) AS hashrate, SUM(m.power_watts) AS power, \
         CAST(SUM(m.shares_accepted) AS BIGINT) AS shares_accepted, CAST(SUM(m.shares_rejected) AS BIGINT) AS shares_rejected, \
         CAST(SUM(m.earnings_micros) AS BIGINT) AS earnings_micros \
         FROM mining_samples m JOIN mining_sessions s ON s.id = m.session_id \
         WHERE m.sampled_at >= $1 AND m.sampled_at < $2 \
         GROUP BY s.{group}, s.id ORDER BY s.{group}"
    )
}

/// p50 and p99 of `CALLS` sequential calls, in ms; `call(i)` says whether
/// call `i` succeeded.
async fn latencies<F, Fut>(mut call: F) -> (f64, f64)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut taken: Vec<Duration> = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let sent = Instant::now();
        if call(i).await {
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

/// One timed window: both ways of answering it, and how many samples it
/// holds.
pub(crate) struct Timed {
    pub name: &'static str,
    /// GetMiningPerformance over gRPC (rollups and edge samples).
    pub rollups: (f64, f64),
    /// The two former statements over the raw samples, on PostgreSQL.
    pub raw: (f64, f64),
    pub samples_in_window: i64,
}

/// GetMiningPerformance as the admin over the last day, week and whole
/// history, each call ending a millisecond earlier than the one before (a
/// window nobody asked for before, so no cache could answer it, and off
/// the hour at both ends); the same windows through the former statements.
pub(crate) async fn performance_latencies(
    channel: &Channel,
    pool: &PgPool,
    admin_key: &str,
) -> anyhow::Result<Vec<Timed>> {
    let mining = MiningServiceClient::new(channel.clone());
    let now = Utc::now();
    let window = |length: chrono::Duration, i: usize| {
        let end = now - chrono::Duration::milliseconds(i as i64 + 1);
        (end - length, end)
    };
    let mut timed = Vec::new();
    for (name, length) in [
        ("last 24 hours", chrono::Duration::hours(24)),
        ("last 7 days", chrono::Duration::days(7)),
        (
            "whole history (31 days)",
            HISTORY + chrono::Duration::days(1),
        ),
    ] {
        let rollups = latencies(|i| {
            let mut mining = mining.clone();
            let (start, end) = window(length, i);
            let request = authed(
                admin_key,
                mpb::GetMiningPerformanceRequest {
                    start_time: Some(timestamp(start)),
                    end_time: Some(timestamp(end)),
                    miner_id: String::new(),
                },
            );
            async move { mining.get_mining_performance(request).await.is_ok() }
        })
        .await;
        let raw = latencies(|i| {
            let (start, end) = window(length, i + CALLS);
            async move {
                for group in ["algorithm", "pool_name"] {
                    // `group` is one of the two column names above.
                    let sql = sqlx::AssertSqlSafe(old_statement(group));
                    let rows = sqlx::query(sql).bind(start).bind(end).fetch_all(pool).await;
                    if rows.is_err() {
                        return false;
                    }
                }
                true
            }
        })
        .await;
        let (start, end) = window(length, 0);
        let samples_in_window: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM mining_samples WHERE sampled_at >= $1 AND sampled_at < $2",
        )
        .bind(start)
        .bind(end)
        .fetch_one(pool)
        .await?
        .try_get("n")?;
        timed.push(Timed {
            name,
            rollups,
            raw,
            samples_in_window,
        });
    }
    Ok(timed)
}
