//! Mining's SQL: sessions, samples in bulk with their hourly rollups, and
//! the performance aggregates.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QueryResult, QuerySelect, QueryTrait, Set, Statement, Value,
};
use uuid::Uuid;

use super::domain::{
    HourTotals, Performance, Sample, Session, SessionFilter, SessionStatus, WindowParts,
};
use super::entities::{rollup, sample, session};
use crate::db::{classify, statement};
use crate::error::Error;
use crate::pagination::PageRequest;

type Result<T> = std::result::Result<T, Error>;

/// Rows per INSERT: 1000 samples × 10 columns stays well under both
/// backends' limits on bound parameters.
const SAMPLES_PER_INSERT: usize = 1000;
/// Rollup rows per upsert: 1000 × 8 columns, likewise.
const HOURS_PER_INSERT: usize = 1000;

fn session_from_row(row: session::Model) -> Result<Session> {
    Ok(Session {
        status: SessionStatus::parse(&row.status).ok_or_else(|| {
            Error::internal(format!("unexpected session status {:?}", row.status))
        })?,
        id: row.id,
        miner: row.miner_id,
        wallet: row.wallet_id,
        algorithm: row.algorithm,
        pool_name: row.pool_name,
        pool_url: row.pool_url,
        worker_name: row.worker_name,
        started_at: row.started_at,
        ended_at: row.ended_at,
        last_sample_at: row.last_sample_at,
        sample_count: row.sample_count,
        hashrate_sum: row.hashrate_sum,
        power_sum: row.power_sum,
        shares_accepted: row.shares_accepted,
        shares_rejected: row.shares_rejected,
        earnings_micros: row.earnings_micros,
        mint_transaction: row.mint_transaction_id,
        last_rig_sequence: row.last_rig_sequence,
    })
}

fn sample_from_row(row: &sample::Model) -> Sample {
    Sample {
        at: row.sampled_at,
        hashrate_mhs: row.hashrate_mhs,
        power_watts: row.power_watts,
        temperature_celsius: row.temperature_celsius,
        shares_accepted: row.shares_accepted,
        shares_rejected: row.shares_rejected,
        difficulty: row.difficulty,
        network_hashrate_mhs: row.network_hashrate_mhs,
        earnings_micros: row.earnings_micros,
        rig_sequence: None,
    }
}

pub(super) async fn insert_session(db: &impl ConnectionTrait, session: &Session) -> Result<()> {
    session::Entity::insert(session::ActiveModel {
        id: Set(session.id),
        miner_id: Set(session.miner),
        wallet_id: Set(session.wallet),
        algorithm: Set(session.algorithm.clone()),
        pool_name: Set(session.pool_name.clone()),
        pool_url: Set(session.pool_url.clone()),
        worker_name: Set(session.worker_name.clone()),
        status: Set(session.status.as_str().to_owned()),
        started_at: Set(session.started_at),
        ended_at: Set(None),
        last_sample_at: Set(None),
        sample_count: Set(0),
        hashrate_sum: Set(0.0),
        power_sum: Set(0.0),
        shares_accepted: Set(0),
        shares_rejected: Set(0),
        earnings_micros: Set(0),
        mint_transaction_id: Set(None),
        last_rig_sequence: Set(None),
    })
    .exec_without_returning(db)
    .await
    .map_err(classify)?;
    Ok(())
}

pub(super) async fn find_session(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Session>> {
    session::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)?
        .map(session_from_row)
        .transpose()
}

/// The session, locked until the transaction ends: recording samples and
/// ending the session serialise on this row.
pub(super) async fn lock_session(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Session>> {
    session::Entity::find_by_id(id)
        .lock_exclusive()
        .one(db)
        .await
        .map_err(classify)?
        .map(session_from_row)
        .transpose()
}

pub(super) async fn insert_samples(
    db: &impl ConnectionTrait,
    session_id: Uuid,
    samples: &[Sample],
) -> Result<()> {
    for chunk in samples.chunks(SAMPLES_PER_INSERT) {
        sample::Entity::insert_many(chunk.iter().map(|sample| sample::ActiveModel {
            id: NotSet,
            session_id: Set(session_id),
            sampled_at: Set(sample.at),
            hashrate_mhs: Set(sample.hashrate_mhs),
            power_watts: Set(sample.power_watts),
            temperature_celsius: Set(sample.temperature_celsius),
            shares_accepted: Set(sample.shares_accepted),
            shares_rejected: Set(sample.shares_rejected),
            difficulty: Set(sample.difficulty),
            network_hashrate_mhs: Set(sample.network_hashrate_mhs),
            earnings_micros: Set(sample.earnings_micros),
        }))
        .exec_without_returning(db)
        .await
        .map_err(classify)?;
    }
    Ok(())
}

/// Writes a session's running totals, status, end and mint.
pub(super) async fn update_session(db: &impl ConnectionTrait, session: &Session) -> Result<()> {
    use session::Column;
    session::Entity::update_many()
        .col_expr(Column::Status, Expr::value(session.status.as_str()))
        .col_expr(Column::EndedAt, Expr::value(session.ended_at))
        .col_expr(Column::LastSampleAt, Expr::value(session.last_sample_at))
        .col_expr(Column::SampleCount, Expr::value(session.sample_count))
        .col_expr(Column::HashrateSum, Expr::value(session.hashrate_sum))
        .col_expr(Column::PowerSum, Expr::value(session.power_sum))
        .col_expr(Column::SharesAccepted, Expr::value(session.shares_accepted))
        .col_expr(Column::SharesRejected, Expr::value(session.shares_rejected))
        .col_expr(Column::EarningsMicros, Expr::value(session.earnings_micros))
        .col_expr(
            Column::MintTransactionId,
            Expr::value(session.mint_transaction),
        )
        .col_expr(
            Column::LastRigSequence,
            Expr::value(session.last_rig_sequence),
        )
        .filter(Column::Id.eq(session.id))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Newest first (ids are UUIDv7).
pub(super) async fn list_sessions(
    db: &impl ConnectionTrait,
    filter: &SessionFilter,
    page: &PageRequest,
) -> Result<Vec<Session>> {
    use session::Column;
    session::Entity::find()
        .apply_if(filter.miner, |query, miner| {
            query.filter(Column::MinerId.eq(miner))
        })
        .apply_if(filter.status, |query, status| {
            query.filter(Column::Status.eq(status.as_str()))
        })
        .apply_if(filter.algorithm.clone(), |query, algorithm| {
            query.filter(Column::Algorithm.eq(algorithm))
        })
        .apply_if(filter.start, |query, start| {
            query.filter(Column::StartedAt.gte(start))
        })
        .apply_if(filter.end, |query, end| {
            query.filter(Column::StartedAt.lt(end))
        })
        .apply_if(page.after, |query, after| {
            query.filter(Column::Id.lt(after))
        })
        .order_by_desc(Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(session_from_row)
        .collect()
}

/// Samples of a session stored after sequence `after`, in order.
pub(super) async fn samples_after(
    db: &impl ConnectionTrait,
    session_id: Uuid,
    after: i64,
    limit: u64,
) -> Result<Vec<(i64, Sample)>> {
    Ok(sample::Entity::find()
        .filter(sample::Column::SessionId.eq(session_id))
        .filter(sample::Column::Id.gt(after))
        .order_by_asc(sample::Column::Id)
        .limit(limit)
        .all(db)
        .await
        .map_err(classify)?
        .iter()
        .map(|row| (row.id, sample_from_row(row)))
        .collect())
}

/// Adds a stream's samples to their sessions' hourly rollups, in the
/// transaction that inserts them (under the session's row lock, so two
/// streams of one session never race on a row).
pub(super) async fn add_to_rollups(
    db: &impl ConnectionTrait,
    session_id: Uuid,
    hours: &[HourTotals],
) -> Result<()> {
    use rollup::Column;
    // Each column adds the stream's delta to what the row holds.
    let add = |column: Column| {
        (
            column,
            Expr::col((rollup::Entity, column)).add(Expr::col((Alias::new("excluded"), column))),
        )
    };
    for chunk in hours.chunks(HOURS_PER_INSERT) {
        let on_conflict = OnConflict::columns([Column::SessionId, Column::Hour])
            .values([
                add(Column::SampleCount),
                add(Column::HashrateSum),
                add(Column::PowerSum),
                add(Column::SharesAccepted),
                add(Column::SharesRejected),
                add(Column::EarningsMicros),
            ])
            .to_owned();
        rollup::Entity::insert_many(chunk.iter().map(|hour| rollup::ActiveModel {
            session_id: Set(session_id),
            hour: Set(hour.hour),
            sample_count: Set(hour.samples),
            hashrate_sum: Set(hour.hashrate_sum),
            power_sum: Set(hour.power_sum),
            shares_accepted: Set(hour.shares_accepted),
            shares_rejected: Set(hour.shares_rejected),
            earnings_micros: Set(hour.earnings_micros),
        }))
        .on_conflict(on_conflict)
        .exec_without_returning(db)
        .await
        .map_err(classify)?;
    }
    Ok(())
}

/// Aggregates the samples in `[start, end)` per algorithm and per pool (the
/// columns of `mining_sessions`), both from one read whose cost follows the
/// number of sessions in the window, not the number of samples: a session
/// whose samples all lie inside (it started at or after `start`, its last
/// sample is before `end`) from its running totals; a session across either
/// end of the window from its hourly rollups of the window's whole hours and
/// its raw samples of the partial hours at the edges ([`WindowParts`]).
pub(super) async fn performance(
    db: &impl ConnectionTrait,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    miner: Option<Uuid>,
) -> Result<(Vec<Performance>, Vec<Performance>)> {
    let rows = db
        .query_all_raw(performance_statement(db, start, end, miner))
        .await
        .map_err(classify)?;
    let mut by_algorithm = Vec::with_capacity(rows.len());
    let mut by_pool = Vec::with_capacity(rows.len());
    for row in &rows {
        let (algorithm, pool) = session_sums(row)?;
        by_algorithm.push(algorithm);
        by_pool.push(pool);
    }
    // Stable sorts by the database's order of the keys, as the former
    // `ORDER BY` of each grouping gave it (PostgreSQL's collation, not
    // Rust's byte order).
    by_algorithm.sort_by_key(|(rank, _)| *rank);
    by_pool.sort_by_key(|(rank, _)| *rank);
    let grouped = |sessions: Vec<(i64, SessionSums)>| {
        group_sessions(sessions.into_iter().map(|(_, sums)| sums).collect())
    };
    Ok((grouped(by_algorithm), grouped(by_pool)))
}

/// One session's sums over its samples in the window, and its group.
#[derive(Clone)]
struct SessionSums {
    key: String,
    samples: i64,
    hashrate: f64,
    power: f64,
    shares_accepted: i64,
    shares_rejected: i64,
    earnings_micros: i64,
}

/// Sums per session, which each fit an i64 (a session's totals are checked
/// as samples arrive), with the rank of its algorithm and of its pool in
/// the database's order; [`group_sessions`] adds them up in i128, so no
/// number of sessions can overflow them in SQL.
///
/// `overlapping` holds the sessions that may have samples in the window: a
/// session's samples are never before its start (RecordStatistics refuses
/// them), so one with a sample in the window started before `end` and was
/// last sampled at or after `start`. A session's totals, rollups and
/// samples are written in one transaction, so this one statement sees them
/// agree.
fn performance_statement(
    db: &impl ConnectionTrait,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    miner: Option<Uuid>,
) -> Statement {
    let WindowParts {
        whole_hours: (first_hour, last_hour),
        edges: [(left_from, left_to), (right_from, right_to)],
    } = WindowParts::of(start, end);
    let mut values: Vec<Value> = vec![start.into(), end.into(), start.into(), end.into()];
    let miner_clause = match miner {
        Some(miner) => {
            values.push(miner.into());
            "AND miner_id = ?"
        }
        None => "",
    };
    values.extend([
        first_hour.into(),
        last_hour.into(),
        left_from.into(),
        left_to.into(),
        right_from.into(),
        right_to.into(),
    ]);
    let edge = "SELECT m.session_id, 1, m.hashrate_mhs, m.power_watts, m.shares_accepted, \
                m.shares_rejected, m.earnings_micros \
                FROM mining_samples m JOIN overlapping o ON o.id = m.session_id \
                WHERE o.inside = 0 AND m.sampled_at >= ? AND m.sampled_at < ?";
    let sql = format!(
        "WITH overlapping AS (\
             SELECT id, algorithm, pool_name, \
             CASE WHEN started_at >= ? AND last_sample_at < ? THEN 1 ELSE 0 END AS inside, \
             sample_count, hashrate_sum, power_sum, shares_accepted, shares_rejected, earnings_micros \
             FROM mining_sessions WHERE last_sample_at >= ? AND started_at < ? {miner_clause}\
         ), sums (session_id, samples, hashrate, power, shares_accepted, shares_rejected, earnings_micros) AS (\
             SELECT id, sample_count, hashrate_sum, power_sum, shares_accepted, shares_rejected, \
             earnings_micros FROM overlapping WHERE inside = 1 \
             UNION ALL \
             SELECT r.session_id, r.sample_count, r.hashrate_sum, r.power_sum, r.shares_accepted, \
             r.shares_rejected, r.earnings_micros \
             FROM overlapping o JOIN mining_sample_rollups r ON r.session_id = o.id \
             WHERE o.inside = 0 AND r.hour >= ? AND r.hour < ? \
             UNION ALL {edge} UNION ALL {edge}\
         ) \
         SELECT o.algorithm AS algorithm, o.pool_name AS pool_name, \
         DENSE_RANK() OVER (ORDER BY o.algorithm) AS algorithm_rank, \
         DENSE_RANK() OVER (ORDER BY o.pool_name) AS pool_rank, \
         CAST(SUM(w.samples) AS BIGINT) AS samples, \
         SUM(w.hashrate) AS hashrate, SUM(w.power) AS power, \
         CAST(SUM(w.shares_accepted) AS BIGINT) AS shares_accepted, \
         CAST(SUM(w.shares_rejected) AS BIGINT) AS shares_rejected, \
         CAST(SUM(w.earnings_micros) AS BIGINT) AS earnings_micros \
         FROM sums w JOIN overlapping o ON o.id = w.session_id \
         GROUP BY o.id, o.algorithm, o.pool_name"
    );
    statement(db, &sql, values)
}

/// A row of [`performance_statement`]: the session's sums keyed by its
/// algorithm and by its pool, each with its rank.
fn session_sums(row: &QueryResult) -> Result<((i64, SessionSums), (i64, SessionSums))> {
    let sums = SessionSums {
        key: row.try_get("", "algorithm").map_err(classify)?,
        samples: row.try_get("", "samples").map_err(classify)?,
        hashrate: row.try_get("", "hashrate").map_err(classify)?,
        power: row.try_get("", "power").map_err(classify)?,
        shares_accepted: row.try_get("", "shares_accepted").map_err(classify)?,
        shares_rejected: row.try_get("", "shares_rejected").map_err(classify)?,
        earnings_micros: row.try_get("", "earnings_micros").map_err(classify)?,
    };
    let by_pool = SessionSums {
        key: row.try_get("", "pool_name").map_err(classify)?,
        ..sums.clone()
    };
    Ok((
        (row.try_get("", "algorithm_rank").map_err(classify)?, sums),
        (row.try_get("", "pool_rank").map_err(classify)?, by_pool),
    ))
}

/// Adds up sessions (ordered by group) into one figure per group, the
/// averages over all of the group's samples.
fn group_sessions(sessions: Vec<SessionSums>) -> Vec<Performance> {
    let mut groups: Vec<(Performance, f64, f64)> = Vec::new();
    for session in sessions {
        if groups
            .last()
            .is_none_or(|(last, _, _)| last.key != session.key)
        {
            let empty = Performance {
                key: session.key.clone(),
                sessions: 0,
                samples: 0,
                average_hashrate: 0.0,
                average_power: 0.0,
                shares_accepted: 0,
                shares_rejected: 0,
                earnings_micros: 0,
            };
            groups.push((empty, 0.0, 0.0));
        }
        let Some((group, hashrate_sum, power_sum)) = groups.last_mut() else {
            continue;
        };
        group.sessions += 1;
        group.samples += session.samples;
        *hashrate_sum += session.hashrate;
        *power_sum += session.power;
        group.shares_accepted += i128::from(session.shares_accepted);
        group.shares_rejected += i128::from(session.shares_rejected);
        group.earnings_micros += i128::from(session.earnings_micros);
    }
    groups
        .into_iter()
        .map(|(mut group, hashrate_sum, power_sum)| {
            if group.samples > 0 {
                group.average_hashrate = hashrate_sum / group.samples as f64;
                group.average_power = power_sum / group.samples as f64;
            }
            group
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(key: &str, samples: i64, hashrate: f64, earnings_micros: i64) -> SessionSums {
        SessionSums {
            key: key.to_owned(),
            samples,
            hashrate,
            power: 0.0,
            shares_accepted: i64::MAX,
            shares_rejected: 0,
            earnings_micros,
        }
    }

    #[test]
    fn sessions_add_up_per_group_in_i128_and_average_over_every_sample() {
        let groups = group_sessions(vec![
            sums("ethash", 1, 10.0, i64::MAX),
            sums("ethash", 3, 30.0, i64::MAX),
            sums("sha256", 2, 8.0, 5),
        ]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].key, "ethash");
        assert_eq!(groups[0].sessions, 2);
        assert_eq!(groups[0].samples, 4);
        assert_eq!(groups[0].average_hashrate, 10.0);
        assert_eq!(groups[0].earnings_micros, 2 * i128::from(i64::MAX));
        assert_eq!(groups[0].shares_accepted, 2 * i128::from(i64::MAX));
        assert_eq!(groups[1].average_hashrate, 4.0);
        assert_eq!(groups[1].earnings_micros, 5);
    }
}
