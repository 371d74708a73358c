//! Mining sessions and their samples, and the provenance link from ledger
//! transactions back to the session whose earnings they minted.
//!
//! Measurements (hashrate, power, temperature, difficulty) are physical
//! quantities and stored as floating point; earnings are money and stored as
//! BIGINT micro-USD. A session keeps running totals so ending it needs no scan.

use sea_orm_migration::prelude::*;

use crate::sql::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    r#"CREATE TABLE mining_sessions (
        id uuid PRIMARY KEY,
        miner_id uuid NOT NULL REFERENCES users (id),
        wallet_id uuid NOT NULL REFERENCES wallets (id),
        algorithm text NOT NULL CHECK (algorithm ~ '^[a-z0-9_-]{1,32}$'),
        pool_name text NOT NULL CHECK (length(pool_name) BETWEEN 1 AND 64),
        pool_url text NOT NULL DEFAULT '',
        worker_name text NOT NULL DEFAULT '',
        status text NOT NULL CHECK (status IN ('active','ended')),
        started_at timestamptz NOT NULL,
        ended_at timestamptz,
        last_sample_at timestamptz,
        sample_count bigint NOT NULL DEFAULT 0 CHECK (sample_count >= 0),
        hashrate_sum double precision NOT NULL DEFAULT 0 CHECK (hashrate_sum >= 0),
        power_sum double precision NOT NULL DEFAULT 0 CHECK (power_sum >= 0),
        shares_accepted bigint NOT NULL DEFAULT 0 CHECK (shares_accepted >= 0),
        shares_rejected bigint NOT NULL DEFAULT 0 CHECK (shares_rejected >= 0),
        earnings_micros bigint NOT NULL DEFAULT 0 CHECK (earnings_micros >= 0),
        mint_transaction_id uuid REFERENCES ledger_transactions (id),
        CONSTRAINT mining_sessions_ended_has_time CHECK ((status = 'ended') = (ended_at IS NOT NULL)),
        CONSTRAINT mining_sessions_mint_when_ended CHECK (mint_transaction_id IS NULL OR status = 'ended')
    )"#,
    "CREATE INDEX mining_sessions_miner_idx ON mining_sessions (miner_id, id)",
    "CREATE UNIQUE INDEX mining_sessions_mint_transaction_id_key ON mining_sessions (mint_transaction_id)",
    r#"CREATE TABLE mining_samples (
        id bigserial PRIMARY KEY,
        session_id uuid NOT NULL REFERENCES mining_sessions (id),
        sampled_at timestamptz NOT NULL,
        hashrate_mhs double precision NOT NULL CHECK (hashrate_mhs >= 0),
        power_watts double precision NOT NULL CHECK (power_watts >= 0),
        temperature_celsius double precision NOT NULL CHECK (temperature_celsius BETWEEN -50 AND 150),
        shares_accepted bigint NOT NULL CHECK (shares_accepted >= 0),
        shares_rejected bigint NOT NULL CHECK (shares_rejected >= 0),
        difficulty double precision NOT NULL CHECK (difficulty >= 0),
        network_hashrate_mhs double precision NOT NULL CHECK (network_hashrate_mhs >= 0),
        earnings_micros bigint NOT NULL CHECK (earnings_micros >= 0)
    )"#,
    "CREATE INDEX mining_samples_session_idx ON mining_samples (session_id, id)",
    "CREATE INDEX mining_samples_sampled_at_idx ON mining_samples (sampled_at)",
    "ALTER TABLE ledger_transactions ADD COLUMN mining_session_id uuid REFERENCES mining_sessions (id)",
    "CREATE UNIQUE INDEX ledger_transactions_mining_session_id_key ON ledger_transactions (mining_session_id)",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP INDEX ledger_transactions_mining_session_id_key",
    "ALTER TABLE ledger_transactions DROP COLUMN mining_session_id",
    "DROP TABLE mining_samples",
    "DROP TABLE mining_sessions",
];

const SQLITE_UP: &[&str] = &[
    r#"CREATE TABLE mining_sessions (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        miner_id BLOB NOT NULL REFERENCES users (id),
        wallet_id BLOB NOT NULL REFERENCES wallets (id),
        algorithm TEXT NOT NULL CHECK (length(algorithm) BETWEEN 1 AND 32 AND algorithm NOT GLOB '*[^a-z0-9_-]*'),
        pool_name TEXT NOT NULL CHECK (length(pool_name) BETWEEN 1 AND 64),
        pool_url TEXT NOT NULL DEFAULT '',
        worker_name TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('active','ended')),
        started_at TEXT NOT NULL,
        ended_at TEXT,
        last_sample_at TEXT,
        sample_count INTEGER NOT NULL DEFAULT 0 CHECK (sample_count >= 0),
        hashrate_sum REAL NOT NULL DEFAULT 0 CHECK (hashrate_sum >= 0),
        power_sum REAL NOT NULL DEFAULT 0 CHECK (power_sum >= 0),
        shares_accepted INTEGER NOT NULL DEFAULT 0 CHECK (shares_accepted >= 0),
        shares_rejected INTEGER NOT NULL DEFAULT 0 CHECK (shares_rejected >= 0),
        earnings_micros INTEGER NOT NULL DEFAULT 0 CHECK (typeof(earnings_micros) = 'integer' AND earnings_micros >= 0),
        mint_transaction_id BLOB REFERENCES ledger_transactions (id),
        CONSTRAINT mining_sessions_ended_has_time CHECK ((status = 'ended') = (ended_at IS NOT NULL)),
        CONSTRAINT mining_sessions_mint_when_ended CHECK (mint_transaction_id IS NULL OR status = 'ended')
    )"#,
    "CREATE INDEX mining_sessions_miner_idx ON mining_sessions (miner_id, id)",
    "CREATE UNIQUE INDEX mining_sessions_mint_transaction_id_key ON mining_sessions (mint_transaction_id)",
    r#"CREATE TABLE mining_samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id BLOB NOT NULL REFERENCES mining_sessions (id),
        sampled_at TEXT NOT NULL,
        hashrate_mhs REAL NOT NULL CHECK (hashrate_mhs >= 0),
        power_watts REAL NOT NULL CHECK (power_watts >= 0),
        temperature_celsius REAL NOT NULL CHECK (temperature_celsius BETWEEN -50 AND 150),
        shares_accepted INTEGER NOT NULL CHECK (shares_accepted >= 0),
        shares_rejected INTEGER NOT NULL CHECK (shares_rejected >= 0),
        difficulty REAL NOT NULL CHECK (difficulty >= 0),
        network_hashrate_mhs REAL NOT NULL CHECK (network_hashrate_mhs >= 0),
        earnings_micros INTEGER NOT NULL CHECK (typeof(earnings_micros) = 'integer' AND earnings_micros >= 0)
    )"#,
    "CREATE INDEX mining_samples_session_idx ON mining_samples (session_id, id)",
    "CREATE INDEX mining_samples_sampled_at_idx ON mining_samples (sampled_at)",
    // No REFERENCES here: SQLite cannot drop a column that has one.
    "ALTER TABLE ledger_transactions ADD COLUMN mining_session_id BLOB",
    "CREATE UNIQUE INDEX ledger_transactions_mining_session_id_key ON ledger_transactions (mining_session_id)",
];

const SQLITE_DOWN: &[&str] = POSTGRES_DOWN;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
