//! Two ledger features.
//!
//! Batches of transfers (`CreateTransfers`): one row per batch that was
//! applied, keyed by the caller and the batch's own request id, with the
//! fingerprint of the request and each item's result (its transaction, or
//! why it was refused), so that a retry of the batch returns exactly what
//! the first call returned. The items' own keys stay in `idempotency_keys`.
//! An atomic batch that failed wrote nothing, this row included, so its id
//! stays unused.
//!
//! Multi-transfers: a new transaction kind, `multi_transfer`, one wallet
//! paying several wallets (and a fee) in one transaction. Its row names only
//! its source (`from_wallet_id`); its payees are in its entries. The kind
//! CHECK and the shape CHECK admit it; SQLite cannot alter a CHECK, so their
//! stored SQL is rewritten as in migration 000005 (the new constraints admit
//! every existing row).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::m20261125_000005_ledger_pool_transfers::rewrite_sqlite_shape;
use crate::sql::{Dialect, one_of, run_each};

const OLD_KINDS: &str = "CHECK (kind IN ('mint','burn','transfer','deposit','withdrawal'))";
const NEW_KINDS: &str =
    "CHECK (kind IN ('mint','burn','transfer','deposit','withdrawal','multi_transfer'))";

const WITHDRAWAL_SHAPE: &str = "OR (kind = 'withdrawal' AND from_wallet_id IS NOT NULL AND to_wallet_id IS NULL AND from_system_account IS NULL AND destination_address IS NOT NULL)";
const MULTI_TRANSFER_SHAPE: &str = "OR (kind = 'multi_transfer' AND from_wallet_id IS NOT NULL AND to_wallet_id IS NULL AND from_system_account IS NULL AND to_system_account IS NULL AND destination_address IS NULL)";

/// The shape of migration 000005, on PostgreSQL, with `extra` clauses.
fn postgres_shape(extra: &str) -> String {
    format!(
        "ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_shape,
        ADD CONSTRAINT ledger_transactions_shape CHECK (
            (kind = 'mint' AND from_wallet_id IS NULL AND from_system_account IS NULL)
            OR (kind = 'burn' AND to_wallet_id IS NULL AND (from_wallet_id IS NULL) <> (from_system_account IS NULL))
            OR (kind = 'transfer' AND (from_wallet_id IS NULL) <> (from_system_account IS NULL)
                AND (to_wallet_id IS NULL) <> (to_system_account IS NULL)
                AND (from_wallet_id IS NOT NULL OR to_wallet_id IS NOT NULL)
                AND from_wallet_id IS DISTINCT FROM to_wallet_id)
            OR (kind = 'deposit' AND to_wallet_id IS NOT NULL AND from_wallet_id IS NULL AND from_system_account IS NULL)
            {WITHDRAWAL_SHAPE}{extra})"
    )
}

fn postgres_kinds(check: &str) -> String {
    format!(
        "ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_kind_check, \
         ADD CONSTRAINT ledger_transactions_kind_check {check}"
    )
}

#[derive(DeriveMigrationName)]
pub struct Migration;

fn up(d: Dialect) -> Vec<String> {
    let uuid = match d {
        Dialect::Postgres => "uuid",
        Dialect::Sqlite => "BLOB",
    };
    let now = match d {
        Dialect::Postgres => "now()",
        Dialect::Sqlite => "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    };
    vec![format!(
        "CREATE TABLE transfer_batches (
            caller_id {uuid} NOT NULL REFERENCES users (id),
            request_id {text} NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
            mode {text} NOT NULL CHECK (mode IN {modes}),
            fingerprint {text} NOT NULL,
            item_count {bigint} NOT NULL CHECK (item_count BETWEEN 1 AND 1000),
            results {text} NOT NULL,
            created_at {timestamp} NOT NULL DEFAULT {now},
            PRIMARY KEY (caller_id, request_id)
        )",
        text = d.text(),
        bigint = d.bigint(),
        timestamp = d.timestamp(),
        modes = one_of(&["atomic", "independent"]),
    )]
}

fn down(_: Dialect) -> Vec<String> {
    vec!["DROP TABLE transfer_batches".to_owned()]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_each(manager, up).await?;
        let with_multi = format!("{WITHDRAWAL_SHAPE} {MULTI_TRANSFER_SHAPE}");
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                rewrite_sqlite_shape(manager, OLD_KINDS, NEW_KINDS).await?;
                rewrite_sqlite_shape(manager, WITHDRAWAL_SHAPE, &with_multi).await
            }
            _ => {
                let statements = [
                    postgres_kinds(NEW_KINDS),
                    postgres_shape(&format!(" {MULTI_TRANSFER_SHAPE}")),
                ];
                for statement in statements {
                    manager
                        .get_connection()
                        .execute_unprepared(&statement)
                        .await?;
                }
                Ok(())
            }
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // PostgreSQL refuses while a multi-transfer exists; the SQLite
        // rewrite checks no rows, so it refuses first.
        let connection = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                let multi = connection
                    .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
                        DbBackend::Sqlite,
                        "SELECT count(*) FROM ledger_transactions WHERE kind = 'multi_transfer'",
                    ))
                    .await?
                    .map(|row| row.try_get_by_index::<i64>(0))
                    .transpose()?
                    .unwrap_or(0);
                if multi > 0 {
                    return Err(DbErr::Migration(format!(
                        "{multi} multi-transfers exist; the old kinds cannot hold them"
                    )));
                }
                let with_multi = format!("{WITHDRAWAL_SHAPE} {MULTI_TRANSFER_SHAPE}");
                rewrite_sqlite_shape(manager, &with_multi, WITHDRAWAL_SHAPE).await?;
                rewrite_sqlite_shape(manager, NEW_KINDS, OLD_KINDS).await?;
            }
            _ => {
                for statement in [postgres_shape(""), postgres_kinds(OLD_KINDS)] {
                    connection.execute_unprepared(&statement).await?;
                }
            }
        }
        run_each(manager, down).await
    }
}
