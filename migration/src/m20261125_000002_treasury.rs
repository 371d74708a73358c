//! The Treasury ledger: system accounts, allocation policies, transactions,
//! balanced entries and idempotency keys.
//!
//! Double entry is structural: an entry row moves a positive amount from one
//! account (and bucket) to another, so the entries of any transaction sum to
//! zero by construction. Balances kept on the account rows carry CHECKs that
//! no holding account goes below zero; only `issuance` (minus everything ever
//! minted) and `external` (minus the net AZR bridged in from the chain) are
//! contra accounts that may be negative.

use sea_orm_migration::prelude::*;

use crate::sql::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    r#"CREATE TABLE system_accounts (
        code text PRIMARY KEY CHECK (code IN ('issuance','external','burned','treasury_reserve','founder_pool','circulation_pool')),
        balance_micros bigint NOT NULL DEFAULT 0,
        CONSTRAINT system_accounts_no_negative_holding CHECK (code IN ('issuance','external') OR balance_micros >= 0)
    )"#,
    "INSERT INTO system_accounts (code) VALUES ('issuance'),('external'),('burned'),('treasury_reserve'),('founder_pool'),('circulation_pool')",
    r#"CREATE TABLE allocation_policies (
        version integer PRIMARY KEY CHECK (version > 0),
        treasury_bp integer NOT NULL CHECK (treasury_bp >= 0),
        founder_bp integer NOT NULL CHECK (founder_bp >= 0),
        burn_bp integer NOT NULL CHECK (burn_bp >= 0),
        circulation_bp integer NOT NULL CHECK (circulation_bp >= 0),
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT allocation_policies_sum_to_100_percent CHECK (treasury_bp + founder_bp + burn_bp + circulation_bp = 10000)
    )"#,
    "INSERT INTO allocation_policies (version, treasury_bp, founder_bp, burn_bp, circulation_bp) VALUES (1, 7000, 1100, 500, 1400)",
    r#"CREATE TABLE ledger_transactions (
        id uuid PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('mint','burn','transfer','deposit','withdrawal')),
        status text NOT NULL CHECK (status IN ('pending','confirmed','failed')),
        tx_hash text NOT NULL,
        amount_azr_micros bigint NOT NULL CHECK (amount_azr_micros > 0),
        amount_usd_micros bigint NOT NULL,
        allocation_policy_version integer REFERENCES allocation_policies (version),
        alloc_treasury_micros bigint,
        alloc_founder_micros bigint,
        alloc_burn_micros bigint,
        alloc_circulation_micros bigint,
        from_wallet_id uuid REFERENCES wallets (id),
        to_wallet_id uuid REFERENCES wallets (id),
        from_system_account text REFERENCES system_accounts (code),
        destination_address text,
        gas_used bigint CHECK (gas_used >= 0),
        gas_price_wei bigint CHECK (gas_price_wei >= 0),
        reason text NOT NULL DEFAULT '',
        metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
        request_id text NOT NULL,
        requested_by uuid NOT NULL REFERENCES users (id),
        created_at timestamptz NOT NULL,
        confirmed_at timestamptz,
        processed_at timestamptz,
        CONSTRAINT ledger_transactions_peg CHECK (amount_usd_micros = amount_azr_micros),
        CONSTRAINT ledger_transactions_allocation_only_on_mints CHECK (
            (kind = 'mint') = (allocation_policy_version IS NOT NULL AND alloc_treasury_micros IS NOT NULL
                AND alloc_founder_micros IS NOT NULL AND alloc_burn_micros IS NOT NULL AND alloc_circulation_micros IS NOT NULL)),
        CONSTRAINT ledger_transactions_allocation_sum CHECK (kind <> 'mint' OR (
            alloc_treasury_micros >= 0 AND alloc_founder_micros >= 0 AND alloc_burn_micros >= 0 AND alloc_circulation_micros >= 0
            AND alloc_treasury_micros + alloc_founder_micros + alloc_burn_micros + alloc_circulation_micros = amount_azr_micros)),
        CONSTRAINT ledger_transactions_shape CHECK (
            (kind = 'mint' AND from_wallet_id IS NULL AND from_system_account IS NULL)
            OR (kind = 'burn' AND to_wallet_id IS NULL AND (from_wallet_id IS NULL) <> (from_system_account IS NULL))
            OR (kind = 'transfer' AND from_wallet_id IS NOT NULL AND to_wallet_id IS NOT NULL AND from_wallet_id <> to_wallet_id AND from_system_account IS NULL)
            OR (kind = 'deposit' AND to_wallet_id IS NOT NULL AND from_wallet_id IS NULL AND from_system_account IS NULL)
            OR (kind = 'withdrawal' AND from_wallet_id IS NOT NULL AND to_wallet_id IS NULL AND from_system_account IS NULL AND destination_address IS NOT NULL)),
        CONSTRAINT ledger_transactions_pending_only_on_chain CHECK (status <> 'pending' OR kind IN ('deposit','withdrawal')),
        CONSTRAINT ledger_transactions_resolved_is_processed CHECK ((status = 'pending') = (processed_at IS NULL))
    )"#,
    "CREATE UNIQUE INDEX ledger_transactions_tx_hash_key ON ledger_transactions (tx_hash)",
    "CREATE INDEX ledger_transactions_from_wallet_idx ON ledger_transactions (from_wallet_id, id)",
    "CREATE INDEX ledger_transactions_to_wallet_idx ON ledger_transactions (to_wallet_id, id)",
    "CREATE INDEX ledger_transactions_kind_status_idx ON ledger_transactions (kind, status)",
    r#"CREATE TABLE ledger_entries (
        id bigserial PRIMARY KEY,
        transaction_id uuid NOT NULL REFERENCES ledger_transactions (id),
        source_wallet_id uuid REFERENCES wallets (id),
        source_system text REFERENCES system_accounts (code),
        source_bucket text NOT NULL CHECK (source_bucket IN ('available','pending','staked')),
        destination_wallet_id uuid REFERENCES wallets (id),
        destination_system text REFERENCES system_accounts (code),
        destination_bucket text NOT NULL CHECK (destination_bucket IN ('available','pending','staked')),
        amount_micros bigint NOT NULL CHECK (amount_micros > 0),
        posted_at timestamptz NOT NULL,
        CONSTRAINT ledger_entries_one_source CHECK ((source_wallet_id IS NULL) <> (source_system IS NULL)),
        CONSTRAINT ledger_entries_one_destination CHECK ((destination_wallet_id IS NULL) <> (destination_system IS NULL)),
        CONSTRAINT ledger_entries_system_is_available CHECK ((source_system IS NULL OR source_bucket = 'available') AND (destination_system IS NULL OR destination_bucket = 'available')),
        CONSTRAINT ledger_entries_moves_something CHECK (NOT (source_wallet_id IS NOT DISTINCT FROM destination_wallet_id
            AND source_system IS NOT DISTINCT FROM destination_system AND source_bucket = destination_bucket))
    )"#,
    "CREATE INDEX ledger_entries_transaction_idx ON ledger_entries (transaction_id)",
    "CREATE INDEX ledger_entries_source_wallet_idx ON ledger_entries (source_wallet_id, posted_at)",
    "CREATE INDEX ledger_entries_destination_wallet_idx ON ledger_entries (destination_wallet_id, posted_at)",
    r#"CREATE TABLE idempotency_keys (
        caller_id uuid NOT NULL REFERENCES users (id),
        request_id text NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
        operation text NOT NULL,
        fingerprint text NOT NULL,
        transaction_id uuid NOT NULL REFERENCES ledger_transactions (id),
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (caller_id, request_id)
    )"#,
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TABLE idempotency_keys",
    "DROP TABLE ledger_entries",
    "DROP TABLE ledger_transactions",
    "DROP TABLE allocation_policies",
    "DROP TABLE system_accounts",
];

const SQLITE_UP: &[&str] = &[
    r#"CREATE TABLE system_accounts (
        code TEXT PRIMARY KEY NOT NULL CHECK (code IN ('issuance','external','burned','treasury_reserve','founder_pool','circulation_pool')),
        balance_micros INTEGER NOT NULL DEFAULT 0 CHECK (typeof(balance_micros) = 'integer'),
        CONSTRAINT system_accounts_no_negative_holding CHECK (code IN ('issuance','external') OR balance_micros >= 0)
    )"#,
    "INSERT INTO system_accounts (code) VALUES ('issuance'),('external'),('burned'),('treasury_reserve'),('founder_pool'),('circulation_pool')",
    r#"CREATE TABLE allocation_policies (
        version INTEGER PRIMARY KEY NOT NULL CHECK (version > 0),
        treasury_bp INTEGER NOT NULL CHECK (treasury_bp >= 0),
        founder_bp INTEGER NOT NULL CHECK (founder_bp >= 0),
        burn_bp INTEGER NOT NULL CHECK (burn_bp >= 0),
        circulation_bp INTEGER NOT NULL CHECK (circulation_bp >= 0),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        CONSTRAINT allocation_policies_sum_to_100_percent CHECK (treasury_bp + founder_bp + burn_bp + circulation_bp = 10000)
    )"#,
    "INSERT INTO allocation_policies (version, treasury_bp, founder_bp, burn_bp, circulation_bp) VALUES (1, 7000, 1100, 500, 1400)",
    r#"CREATE TABLE ledger_transactions (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        kind TEXT NOT NULL CHECK (kind IN ('mint','burn','transfer','deposit','withdrawal')),
        status TEXT NOT NULL CHECK (status IN ('pending','confirmed','failed')),
        tx_hash TEXT NOT NULL,
        amount_azr_micros INTEGER NOT NULL CHECK (typeof(amount_azr_micros) = 'integer' AND amount_azr_micros > 0),
        amount_usd_micros INTEGER NOT NULL CHECK (typeof(amount_usd_micros) = 'integer'),
        allocation_policy_version INTEGER REFERENCES allocation_policies (version),
        alloc_treasury_micros INTEGER,
        alloc_founder_micros INTEGER,
        alloc_burn_micros INTEGER,
        alloc_circulation_micros INTEGER,
        from_wallet_id BLOB REFERENCES wallets (id),
        to_wallet_id BLOB REFERENCES wallets (id),
        from_system_account TEXT REFERENCES system_accounts (code),
        destination_address TEXT,
        gas_used INTEGER CHECK (gas_used >= 0),
        gas_price_wei INTEGER CHECK (gas_price_wei >= 0),
        reason TEXT NOT NULL DEFAULT '',
        metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
        request_id TEXT NOT NULL,
        requested_by BLOB NOT NULL REFERENCES users (id),
        created_at TEXT NOT NULL,
        confirmed_at TEXT,
        processed_at TEXT,
        CONSTRAINT ledger_transactions_peg CHECK (amount_usd_micros = amount_azr_micros),
        CONSTRAINT ledger_transactions_allocation_only_on_mints CHECK (
            (kind = 'mint') = (allocation_policy_version IS NOT NULL AND alloc_treasury_micros IS NOT NULL
                AND alloc_founder_micros IS NOT NULL AND alloc_burn_micros IS NOT NULL AND alloc_circulation_micros IS NOT NULL)),
        CONSTRAINT ledger_transactions_allocation_sum CHECK (kind <> 'mint' OR (
            alloc_treasury_micros >= 0 AND alloc_founder_micros >= 0 AND alloc_burn_micros >= 0 AND alloc_circulation_micros >= 0
            AND alloc_treasury_micros + alloc_founder_micros + alloc_burn_micros + alloc_circulation_micros = amount_azr_micros)),
        CONSTRAINT ledger_transactions_shape CHECK (
            (kind = 'mint' AND from_wallet_id IS NULL AND from_system_account IS NULL)
            OR (kind = 'burn' AND to_wallet_id IS NULL AND (from_wallet_id IS NULL) <> (from_system_account IS NULL))
            OR (kind = 'transfer' AND from_wallet_id IS NOT NULL AND to_wallet_id IS NOT NULL AND from_wallet_id <> to_wallet_id AND from_system_account IS NULL)
            OR (kind = 'deposit' AND to_wallet_id IS NOT NULL AND from_wallet_id IS NULL AND from_system_account IS NULL)
            OR (kind = 'withdrawal' AND from_wallet_id IS NOT NULL AND to_wallet_id IS NULL AND from_system_account IS NULL AND destination_address IS NOT NULL)),
        CONSTRAINT ledger_transactions_pending_only_on_chain CHECK (status <> 'pending' OR kind IN ('deposit','withdrawal')),
        CONSTRAINT ledger_transactions_resolved_is_processed CHECK ((status = 'pending') = (processed_at IS NULL))
    )"#,
    "CREATE UNIQUE INDEX ledger_transactions_tx_hash_key ON ledger_transactions (tx_hash)",
    "CREATE INDEX ledger_transactions_from_wallet_idx ON ledger_transactions (from_wallet_id, id)",
    "CREATE INDEX ledger_transactions_to_wallet_idx ON ledger_transactions (to_wallet_id, id)",
    "CREATE INDEX ledger_transactions_kind_status_idx ON ledger_transactions (kind, status)",
    r#"CREATE TABLE ledger_entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        transaction_id BLOB NOT NULL REFERENCES ledger_transactions (id),
        source_wallet_id BLOB REFERENCES wallets (id),
        source_system TEXT REFERENCES system_accounts (code),
        source_bucket TEXT NOT NULL CHECK (source_bucket IN ('available','pending','staked')),
        destination_wallet_id BLOB REFERENCES wallets (id),
        destination_system TEXT REFERENCES system_accounts (code),
        destination_bucket TEXT NOT NULL CHECK (destination_bucket IN ('available','pending','staked')),
        amount_micros INTEGER NOT NULL CHECK (typeof(amount_micros) = 'integer' AND amount_micros > 0),
        posted_at TEXT NOT NULL,
        CONSTRAINT ledger_entries_one_source CHECK ((source_wallet_id IS NULL) <> (source_system IS NULL)),
        CONSTRAINT ledger_entries_one_destination CHECK ((destination_wallet_id IS NULL) <> (destination_system IS NULL)),
        CONSTRAINT ledger_entries_system_is_available CHECK ((source_system IS NULL OR source_bucket = 'available') AND (destination_system IS NULL OR destination_bucket = 'available')),
        CONSTRAINT ledger_entries_moves_something CHECK (NOT (source_wallet_id IS destination_wallet_id
            AND source_system IS destination_system AND source_bucket = destination_bucket))
    )"#,
    "CREATE INDEX ledger_entries_transaction_idx ON ledger_entries (transaction_id)",
    "CREATE INDEX ledger_entries_source_wallet_idx ON ledger_entries (source_wallet_id, posted_at)",
    "CREATE INDEX ledger_entries_destination_wallet_idx ON ledger_entries (destination_wallet_id, posted_at)",
    r#"CREATE TABLE idempotency_keys (
        caller_id BLOB NOT NULL REFERENCES users (id),
        request_id TEXT NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
        operation TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        transaction_id BLOB NOT NULL REFERENCES ledger_transactions (id),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (caller_id, request_id)
    )"#,
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
