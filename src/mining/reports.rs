//! What Mining tells an auditor about its derived figures: read-only checks
//! of `mining_sample_rollups` against `mining_samples`, and of the
//! sessions' running totals against their rollups. Compliance reports are
//! built from these; nothing here writes.
//!
//! Every function takes any connection, so a caller reading inside one
//! snapshot transaction (as a report does) gets figures that agree with each
//! other.

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult};
use uuid::Uuid;

use super::domain::{HourTotals, hour_of, hour_start};
use crate::db::{classify, statement};
use crate::error::Error;

type Result<T> = std::result::Result<T, Error>;

/// Buckets listed per question at most.
const MAX_BUCKETS: i64 = 100;

/// How far two sums of the same measurements may differ and still agree:
/// the rollup adds a stream's sums to the row's, the check sums the samples
/// at once, and floating-point addition depends on the order. Counts,
/// shares and earnings are integers and must be equal.
const RELATIVE_TOLERANCE: f64 = 1e-9;

/// A session-hour whose rollup row differs from its samples: `stored` is
/// the row (none if missing), `recomputed` what the samples add up to (none
/// if the hour has no samples).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RollupMismatch {
    pub session: Uuid,
    pub hour_start: DateTime<Utc>,
    pub stored: Option<HourTotals>,
    pub recomputed: Option<HourTotals>,
}

/// The hour of a stored sample time in SQL. On SQLite the time is RFC 3339
/// text in UTC (as sqlx writes it); its first 19 characters are cut off
/// before `strftime`, which would round a fraction of .9995 s or more up
/// into the next hour. Migration 000019 backfilled the rollups with the
/// same expressions.
fn hour_of_sample(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "floor(extract(epoch FROM sampled_at) / 3600)::bigint",
        _ => "CAST(strftime('%s', substr(sampled_at, 1, 19)) AS INTEGER) / 3600",
    }
}

/// The rollup buckets of the hours that overlap `[start, end)` which differ
/// from the samples of those hours recomputed from scratch: a row missing,
/// a row without samples, or any count or sum that differs.
pub async fn rollups_not_matching_samples(
    db: &impl ConnectionTrait,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<RollupMismatch>> {
    let first = hour_of(start);
    let last = hour_of(end) + i64::from(hour_start(hour_of(end)) != end);
    let hour = hour_of_sample(db.get_database_backend());
    let differs = |column: &str| {
        format!(
            "ABS(s.{column} - r.{column}) > {RELATIVE_TOLERANCE:e} * (ABS(s.{column}) + ABS(r.{column}))"
        )
    };
    let sql = format!(
        "WITH recomputed AS (\
             SELECT session_id, {hour} AS hour, CAST(COUNT(*) AS BIGINT) AS sample_count, \
             SUM(hashrate_mhs) AS hashrate_sum, SUM(power_watts) AS power_sum, \
             CAST(SUM(shares_accepted) AS BIGINT) AS shares_accepted, \
             CAST(SUM(shares_rejected) AS BIGINT) AS shares_rejected, \
             CAST(SUM(earnings_micros) AS BIGINT) AS earnings_micros \
             FROM mining_samples WHERE sampled_at >= ? AND sampled_at < ? \
             GROUP BY session_id, {hour}\
         ), stored AS (\
             SELECT * FROM mining_sample_rollups WHERE hour >= ? AND hour < ?\
         ) \
         SELECT COALESCE(s.session_id, r.session_id) AS session_id, COALESCE(s.hour, r.hour) AS hour, \
         s.sample_count AS s_samples, s.hashrate_sum AS s_hashrate, s.power_sum AS s_power, \
         s.shares_accepted AS s_accepted, s.shares_rejected AS s_rejected, s.earnings_micros AS s_earnings, \
         r.sample_count AS r_samples, r.hashrate_sum AS r_hashrate, r.power_sum AS r_power, \
         r.shares_accepted AS r_accepted, r.shares_rejected AS r_rejected, r.earnings_micros AS r_earnings \
         FROM stored s FULL OUTER JOIN recomputed r ON r.session_id = s.session_id AND r.hour = s.hour \
         WHERE s.session_id IS NULL OR r.session_id IS NULL \
         OR s.sample_count <> r.sample_count OR s.shares_accepted <> r.shares_accepted \
         OR s.shares_rejected <> r.shares_rejected OR s.earnings_micros <> r.earnings_micros \
         OR {} OR {} \
         ORDER BY 2, 1 LIMIT ?",
        differs("hashrate_sum"),
        differs("power_sum"),
    );
    let values = vec![
        hour_start(first).into(),
        hour_start(last).into(),
        first.into(),
        last.into(),
        MAX_BUCKETS.into(),
    ];
    db.query_all_raw(statement(db, &sql, values))
        .await
        .map_err(classify)?
        .iter()
        .map(mismatch)
        .collect()
}

/// A session whose running totals differ from the sum of its rollups (the
/// performance figures read a session held whole by a window from its
/// totals): what each says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TotalsMismatch {
    pub session: Uuid,
    pub totals: HourTotals,
    pub rollups: HourTotals,
}

/// The sessions sampled during `[start, end)` whose running totals differ
/// from the sums of all their rollups. `hour` in the figures is 0.
pub async fn session_totals_not_matching_rollups(
    db: &impl ConnectionTrait,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<TotalsMismatch>> {
    let differs = |column: &str| {
        format!(
            "ABS(s.{column} - r.{column}) > {RELATIVE_TOLERANCE:e} * (ABS(s.{column}) + ABS(r.{column}))"
        )
    };
    let sql = format!(
        "SELECT s.id AS session_id, \
         s.sample_count AS s_samples, s.hashrate_sum AS s_hashrate, s.power_sum AS s_power, \
         s.shares_accepted AS s_accepted, s.shares_rejected AS s_rejected, s.earnings_micros AS s_earnings, \
         r.sample_count AS r_samples, r.hashrate_sum AS r_hashrate, r.power_sum AS r_power, \
         r.shares_accepted AS r_accepted, r.shares_rejected AS r_rejected, r.earnings_micros AS r_earnings \
         FROM mining_sessions s JOIN (\
             SELECT session_id, CAST(SUM(sample_count) AS BIGINT) AS sample_count, \
             SUM(hashrate_sum) AS hashrate_sum, SUM(power_sum) AS power_sum, \
             CAST(SUM(shares_accepted) AS BIGINT) AS shares_accepted, \
             CAST(SUM(shares_rejected) AS BIGINT) AS shares_rejected, \
             CAST(SUM(earnings_micros) AS BIGINT) AS earnings_micros \
             FROM mining_sample_rollups WHERE session_id IN (\
                 SELECT id FROM mining_sessions WHERE last_sample_at >= ? AND started_at < ?) \
             GROUP BY session_id\
         ) r ON r.session_id = s.id \
         WHERE s.sample_count <> r.sample_count OR s.shares_accepted <> r.shares_accepted \
         OR s.shares_rejected <> r.shares_rejected OR s.earnings_micros <> r.earnings_micros \
         OR {} OR {} \
         ORDER BY s.id LIMIT ?",
        differs("hashrate_sum"),
        differs("power_sum"),
    );
    let values = vec![start.into(), end.into(), MAX_BUCKETS.into()];
    db.query_all_raw(statement(db, &sql, values))
        .await
        .map_err(classify)?
        .iter()
        .map(|row| {
            let figures = |prefix| -> Result<HourTotals> {
                totals(row, prefix, 0)?
                    .ok_or_else(|| Error::internal("a session's totals are missing"))
            };
            Ok(TotalsMismatch {
                session: row.try_get("", "session_id").map_err(classify)?,
                totals: figures("s")?,
                rollups: figures("r")?,
            })
        })
        .collect()
}

/// The figures of one side of a comparison (`s_…` or `r_…` columns), none
/// when its sample count is NULL (the side has no row).
fn totals(row: &QueryResult, prefix: &str, hour: i64) -> Result<Option<HourTotals>> {
    let column = |name: &str| format!("{prefix}_{name}");
    let Some(samples) = row
        .try_get::<Option<i64>>("", &column("samples"))
        .map_err(classify)?
    else {
        return Ok(None);
    };
    Ok(Some(HourTotals {
        hour,
        samples,
        hashrate_sum: row.try_get("", &column("hashrate")).map_err(classify)?,
        power_sum: row.try_get("", &column("power")).map_err(classify)?,
        shares_accepted: row.try_get("", &column("accepted")).map_err(classify)?,
        shares_rejected: row.try_get("", &column("rejected")).map_err(classify)?,
        earnings_micros: row.try_get("", &column("earnings")).map_err(classify)?,
    }))
}

fn mismatch(row: &QueryResult) -> Result<RollupMismatch> {
    let hour: i64 = row.try_get("", "hour").map_err(classify)?;
    Ok(RollupMismatch {
        session: row.try_get("", "session_id").map_err(classify)?,
        hour_start: hour_start(hour),
        stored: totals(row, "s", hour)?,
        recomputed: totals(row, "r", hour)?,
    })
}
