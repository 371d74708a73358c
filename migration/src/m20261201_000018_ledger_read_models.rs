//! What the ledger keeps so that its reads cost the same at a million rows
//! as at ten: each is written in the batch that changes it, and the
//! compliance report recomputes each from the rows as a check.
//!
//! - **Running balances on entries.** Each entry that moves a wallet carries
//!   that wallet's three buckets once the entry's posting (its transaction's
//!   entries of one batch) was applied: `source_*_after` for the source
//!   wallet, `destination_*_after` for the destination. A balance as of a
//!   time is then the newest entry of the wallet posted by then, found
//!   through `(wallet, posted_at, id)` indexes (replacing the `(wallet,
//!   posted_at)` ones, under new names: SQLite refuses to re-create an index
//!   under the name just dropped while another pooled connection still
//!   sees it), instead of a sum over its
//!   whole history. Existing entries are backfilled by a running sum in
//!   entry order.
//! - **The wallets a transaction moves besides the two it names.** A
//!   multi-transfer names only its payer, and its reversal only the payer
//!   as the destination; its payees are in `ledger_transaction_wallets`, so
//!   a wallet's transactions are three index range scans (from, to, other)
//!   instead of a search through every entry. Transfers, mints and the rest
//!   move only the wallets they name and write no row here.
//! - **Totals per kind and status, and what wallets hold.** The summary read
//!   every wallet and grouped every transaction on each call;
//!   `ledger_kind_totals` and `ledger_wallet_totals` hold the same sums, kept
//!   as deltas by each batch. A batch adds to the rows of one *slot* of
//!   several, so that concurrent batches rarely wait on the same rows; a
//!   slot's rows alone mean nothing (a transaction may be created in one
//!   slot and confirmed in another), only their sum over slots does.
//!
//! On PostgreSQL a constraint requires the running balances wherever a
//! wallet is moved (after the backfill, so every row has them); SQLite
//! checks only that they are non-negative integers, as `ALTER TABLE` there
//! cannot add a constraint that the backfill would then satisfy.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The running sum of each wallet's buckets, per posting (a transaction's
/// entries posted at one time), in entry order. `{wallet}` is the side
/// being filled. Written once for both backends: both have window
/// functions and `UPDATE … FROM`.
fn backfill(side: &str) -> String {
    format!(
        "WITH moves AS ( \
            SELECT id, transaction_id, posted_at, source_wallet_id AS wallet_id, \
                CASE source_bucket WHEN 'available' THEN -amount_micros ELSE 0 END AS available, \
                CASE source_bucket WHEN 'pending' THEN -amount_micros ELSE 0 END AS pending, \
                CASE source_bucket WHEN 'staked' THEN -amount_micros ELSE 0 END AS staked \
            FROM ledger_entries WHERE source_wallet_id IS NOT NULL \
            UNION ALL \
            SELECT id, transaction_id, posted_at, destination_wallet_id, \
                CASE destination_bucket WHEN 'available' THEN amount_micros ELSE 0 END, \
                CASE destination_bucket WHEN 'pending' THEN amount_micros ELSE 0 END, \
                CASE destination_bucket WHEN 'staked' THEN amount_micros ELSE 0 END \
            FROM ledger_entries WHERE destination_wallet_id IS NOT NULL \
        ), postings AS ( \
            SELECT wallet_id, transaction_id, posted_at, MAX(id) AS last_id, \
                SUM(available) AS available, SUM(pending) AS pending, SUM(staked) AS staked \
            FROM moves GROUP BY wallet_id, transaction_id, posted_at \
        ), running AS ( \
            SELECT wallet_id, transaction_id, posted_at, \
                SUM(available) OVER w AS available, SUM(pending) OVER w AS pending, SUM(staked) OVER w AS staked \
            FROM postings WINDOW w AS (PARTITION BY wallet_id ORDER BY last_id ROWS UNBOUNDED PRECEDING) \
        ) \
        UPDATE ledger_entries SET {side}_available_after = running.available, \
            {side}_pending_after = running.pending, {side}_staked_after = running.staked \
        FROM running WHERE running.wallet_id = ledger_entries.{side}_wallet_id \
            AND running.transaction_id = ledger_entries.transaction_id \
            AND running.posted_at = ledger_entries.posted_at"
    )
}

const OTHER_WALLETS_BACKFILL: &str = "\
    INSERT INTO ledger_transaction_wallets (transaction_id, wallet_id) \
    SELECT DISTINCT e.transaction_id, e.wallet_id FROM ( \
        SELECT transaction_id, source_wallet_id AS wallet_id FROM ledger_entries WHERE source_wallet_id IS NOT NULL \
        UNION SELECT transaction_id, destination_wallet_id FROM ledger_entries WHERE destination_wallet_id IS NOT NULL \
    ) AS e JOIN ledger_transactions AS t ON t.id = e.transaction_id \
    WHERE (t.from_wallet_id IS NULL OR t.from_wallet_id <> e.wallet_id) \
        AND (t.to_wallet_id IS NULL OR t.to_wallet_id <> e.wallet_id)";

const KIND_TOTALS_BACKFILL: &str = "\
    INSERT INTO ledger_kind_totals (slot, kind, status, transactions, micros) \
    SELECT 0, kind, status, COUNT(*), COALESCE(SUM(amount_azr_micros), 0) \
    FROM ledger_transactions GROUP BY kind, status";

const WALLET_TOTALS_BACKFILL: &str = "\
    INSERT INTO ledger_wallet_totals (slot, held_micros, staked_micros) \
    SELECT 0, COALESCE(SUM(available_micros + pending_micros + staked_micros), 0), \
        COALESCE(SUM(staked_micros), 0) FROM wallets";

/// Every wallet side has its three running balances, never negative; a
/// system side has none.
fn postgres_running_balance_check(side: &str) -> String {
    format!(
        "ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_{side}_balance_after CHECK ( \
            ({side}_wallet_id IS NULL AND {side}_available_after IS NULL \
                AND {side}_pending_after IS NULL AND {side}_staked_after IS NULL) \
            OR ({side}_wallet_id IS NOT NULL AND {side}_available_after IS NOT NULL \
                AND {side}_pending_after IS NOT NULL AND {side}_staked_after IS NOT NULL \
                AND {side}_available_after >= 0 AND {side}_pending_after >= 0 AND {side}_staked_after >= 0))"
    )
}

fn postgres_up() -> Vec<String> {
    let mut up: Vec<String> = ["source", "destination"]
        .iter()
        .flat_map(|side| {
            ["available", "pending", "staked"].map(|bucket| {
                format!("ALTER TABLE ledger_entries ADD COLUMN {side}_{bucket}_after bigint")
            })
        })
        .collect();
    up.push(backfill("source"));
    up.push(backfill("destination"));
    up.push(postgres_running_balance_check("source"));
    up.push(postgres_running_balance_check("destination"));
    up.extend(
        [
            "CREATE INDEX ledger_entries_source_posting_idx ON ledger_entries (source_wallet_id, posted_at, id)",
            "DROP INDEX ledger_entries_source_wallet_idx",
            "CREATE INDEX ledger_entries_destination_posting_idx ON ledger_entries (destination_wallet_id, posted_at, id)",
            "DROP INDEX ledger_entries_destination_wallet_idx",
            "CREATE TABLE ledger_transaction_wallets ( \
                wallet_id uuid NOT NULL REFERENCES wallets (id), \
                transaction_id uuid NOT NULL REFERENCES ledger_transactions (id), \
                PRIMARY KEY (wallet_id, transaction_id))",
            OTHER_WALLETS_BACKFILL,
            "CREATE TABLE ledger_kind_totals ( \
                slot smallint NOT NULL CHECK (slot >= 0), \
                kind text NOT NULL, \
                status text NOT NULL CHECK (status IN ('pending','confirmed','failed')), \
                transactions bigint NOT NULL, \
                micros bigint NOT NULL, \
                PRIMARY KEY (slot, kind, status))",
            KIND_TOTALS_BACKFILL,
            "CREATE TABLE ledger_wallet_totals ( \
                slot smallint PRIMARY KEY CHECK (slot >= 0), \
                held_micros bigint NOT NULL, \
                staked_micros bigint NOT NULL)",
            WALLET_TOTALS_BACKFILL,
        ]
        .map(str::to_owned),
    );
    up
}

fn sqlite_up() -> Vec<String> {
    let mut up: Vec<String> = ["source", "destination"]
        .iter()
        .flat_map(|side| {
            ["available", "pending", "staked"].map(|bucket| {
                let column = format!("{side}_{bucket}_after");
                format!(
                    "ALTER TABLE ledger_entries ADD COLUMN {column} INTEGER \
                     CHECK ({column} IS NULL OR (typeof({column}) = 'integer' AND {column} >= 0))"
                )
            })
        })
        .collect();
    up.push(backfill("source"));
    up.push(backfill("destination"));
    up.extend(
        [
            "CREATE INDEX ledger_entries_source_posting_idx ON ledger_entries (source_wallet_id, posted_at, id)",
            "DROP INDEX ledger_entries_source_wallet_idx",
            "CREATE INDEX ledger_entries_destination_posting_idx ON ledger_entries (destination_wallet_id, posted_at, id)",
            "DROP INDEX ledger_entries_destination_wallet_idx",
            "CREATE TABLE ledger_transaction_wallets ( \
                wallet_id BLOB NOT NULL REFERENCES wallets (id), \
                transaction_id BLOB NOT NULL REFERENCES ledger_transactions (id), \
                PRIMARY KEY (wallet_id, transaction_id)) WITHOUT ROWID",
            OTHER_WALLETS_BACKFILL,
            "CREATE TABLE ledger_kind_totals ( \
                slot INTEGER NOT NULL CHECK (slot >= 0), \
                kind TEXT NOT NULL, \
                status TEXT NOT NULL CHECK (status IN ('pending','confirmed','failed')), \
                transactions INTEGER NOT NULL CHECK (typeof(transactions) = 'integer'), \
                micros INTEGER NOT NULL CHECK (typeof(micros) = 'integer'), \
                PRIMARY KEY (slot, kind, status))",
            KIND_TOTALS_BACKFILL,
            "CREATE TABLE ledger_wallet_totals ( \
                slot INTEGER PRIMARY KEY NOT NULL CHECK (slot >= 0), \
                held_micros INTEGER NOT NULL CHECK (typeof(held_micros) = 'integer'), \
                staked_micros INTEGER NOT NULL CHECK (typeof(staked_micros) = 'integer'))",
            WALLET_TOTALS_BACKFILL,
        ]
        .map(str::to_owned),
    );
    up
}

fn down(postgres: bool) -> Vec<String> {
    let mut down: Vec<String> = [
        "DROP TABLE ledger_wallet_totals",
        "DROP TABLE ledger_kind_totals",
        "DROP TABLE ledger_transaction_wallets",
        "CREATE INDEX ledger_entries_destination_wallet_idx ON ledger_entries (destination_wallet_id, posted_at)",
        "DROP INDEX ledger_entries_destination_posting_idx",
        "CREATE INDEX ledger_entries_source_wallet_idx ON ledger_entries (source_wallet_id, posted_at)",
        "DROP INDEX ledger_entries_source_posting_idx",
    ]
    .map(str::to_owned)
    .to_vec();
    if postgres {
        down.push(
            "ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_destination_balance_after"
                .into(),
        );
        down.push(
            "ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_source_balance_after".into(),
        );
    }
    for side in ["destination", "source"] {
        for bucket in ["staked", "pending", "available"] {
            down.push(format!(
                "ALTER TABLE ledger_entries DROP COLUMN {side}_{bucket}_after"
            ));
        }
    }
    down
}

fn strs(statements: &[String]) -> Vec<&str> {
    statements.iter().map(String::as_str).collect()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (postgres, sqlite) = (postgres_up(), sqlite_up());
        crate::sql::run(manager, &strs(&postgres), &strs(&sqlite)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (postgres, sqlite) = (down(true), down(false));
        crate::sql::run(manager, &strs(&postgres), &strs(&sqlite)).await
    }
}
