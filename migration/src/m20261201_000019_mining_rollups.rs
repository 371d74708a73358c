//! Hourly rollups of mining samples, so that `GetMiningPerformance` no
//! longer costs the number of samples in its window.
//!
//! One row per session and hour (`hour`: whole hours since 1970-01-01T00:00Z,
//! the hour a sample's time falls in) holds the count and the sums of that
//! hour's samples. Mining adds a stream's samples to their rows in the same
//! transaction that inserts them (`INSERT … ON CONFLICT DO UPDATE` adding the
//! deltas), so the rollups always equal the samples; the compliance report
//! recomputes them from the samples as a check (`mining_rollups_match_samples`).
//! An integer hour rather than a timestamp because it compares the same on
//! both backends, where SQLite timestamps are text.
//!
//! A window answers the sessions it holds whole from their running totals
//! (one row each), so only the sessions across its start or end read
//! rollups; an index on `mining_sessions.last_sample_at` finds the sessions
//! sampled since a window's start.
//!
//! `up` backfills the rows from the samples already stored. The SQLite hour
//! comes from the first 19 characters of the stored time (RFC 3339 in UTC,
//! as sqlx writes it): `strftime` would round a fraction of .9995 s or more
//! up into the next hour. `down` drops the table; the samples keep
//! everything it held.

use sea_orm_migration::prelude::*;

use crate::sql::Dialect;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn up_statements(d: Dialect) -> Vec<String> {
    let (float, integers, hour_of_sample) = match d {
        Dialect::Postgres => (
            "double precision",
            "",
            "floor(extract(epoch FROM sampled_at) / 3600)::bigint",
        ),
        // SQLite's type affinity would store a text or real value in an
        // INTEGER column: the hour, the counts and the money are integers.
        Dialect::Sqlite => (
            "REAL",
            ",\n                CONSTRAINT mining_sample_rollups_integers CHECK (typeof(hour) = 'integer' \
             AND typeof(sample_count) = 'integer' AND typeof(shares_accepted) = 'integer' \
             AND typeof(shares_rejected) = 'integer' AND typeof(earnings_micros) = 'integer')",
            "CAST(strftime('%s', substr(sampled_at, 1, 19)) AS INTEGER) / 3600",
        ),
    };
    let bigint = d.bigint();
    let uuid = match d {
        Dialect::Postgres => "uuid",
        Dialect::Sqlite => "BLOB",
    };
    vec![
        format!(
            "CREATE TABLE mining_sample_rollups (
                session_id {uuid} NOT NULL REFERENCES mining_sessions (id),
                hour {bigint} NOT NULL CHECK (hour >= 0),
                sample_count {bigint} NOT NULL CHECK (sample_count > 0),
                hashrate_sum {float} NOT NULL CHECK (hashrate_sum >= 0),
                power_sum {float} NOT NULL CHECK (power_sum >= 0),
                shares_accepted {bigint} NOT NULL CHECK (shares_accepted >= 0),
                shares_rejected {bigint} NOT NULL CHECK (shares_rejected >= 0),
                earnings_micros {bigint} NOT NULL CHECK (earnings_micros >= 0),
                PRIMARY KEY (session_id, hour){integers}
            )"
        ),
        // The compliance check reads a range of hours across sessions.
        "CREATE INDEX mining_sample_rollups_hour_idx ON mining_sample_rollups (hour, session_id)"
            .to_owned(),
        // The performance window starts from the sessions sampled since its
        // start.
        "CREATE INDEX mining_sessions_last_sample_at_idx ON mining_sessions (last_sample_at)"
            .to_owned(),
        format!(
            "INSERT INTO mining_sample_rollups (session_id, hour, sample_count, hashrate_sum, \
                 power_sum, shares_accepted, shares_rejected, earnings_micros) \
             SELECT session_id, {hour_of_sample}, COUNT(*), SUM(hashrate_mhs), SUM(power_watts), \
                 SUM(shares_accepted), SUM(shares_rejected), SUM(earnings_micros) \
             FROM mining_samples GROUP BY session_id, {hour_of_sample}"
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::sql::run_each(manager, up_statements).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let down = &[
            "DROP INDEX mining_sessions_last_sample_at_idx",
            "DROP TABLE mining_sample_rollups",
        ];
        crate::sql::run(manager, down, down).await
    }
}
