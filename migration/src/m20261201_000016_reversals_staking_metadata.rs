//! Three ledger features that need the schema to know of them:
//!
//! - **Reversals.** A `reversal` transaction posts the entries of a confirmed
//!   transaction negated. It names the original in `reverses_transaction_id`,
//!   and a unique index on that column is what makes a transaction reversed
//!   at most once, whatever the application does (the original's
//!   `reversed_by` is read back through the same column: one source of
//!   truth). Only reversals carry the link, a reversal is always confirmed,
//!   and it may name a system account as its destination (the reversal of a
//!   payment from a pool).
//! - **Staking.** `stake` and `unstake` move AZR inside one wallet between
//!   its `available` and `staked` buckets: `from_wallet_id = to_wallet_id`,
//!   no system account, always confirmed.
//! - **Metadata queries.** `ListTransactions` filters by metadata pairs with
//!   `metadata @> '{...}'`, which a GIN index (`jsonb_path_ops`) answers on
//!   PostgreSQL. SQLite filters through `json_extract`, unindexed: an
//!   expression index there needs a fixed key, and keys are the caller's.
//!
//! The kind list, the shape rule and the "system destination only on
//! transfers" rule are **widened**, never rewritten whole: another migration
//! (multi-leg transactions) widens the same constraints, and each must keep
//! what the other added, in either order. On PostgreSQL each constraint
//! becomes `(what this migration allows) OR (its definition as found)`, and
//! the definition as found is kept as the constraint's comment so that
//! `down` restores it exactly. On SQLite the stored table SQL is rewritten at
//! fixed anchors (the start of each constraint), as in migrations 000005 and
//! 000009; the rewrite admits every row the old text did.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::m20261125_000005_ledger_pool_transfers::rewrite_sqlite_shape;

#[derive(DeriveMigrationName)]
pub struct Migration;

const NEW_KINDS: &str = "('reversal','stake','unstake')";

/// What this migration allows, per widened PostgreSQL constraint.
const POSTGRES_WIDENINGS: &[(&str, &str)] = &[
    (
        "ledger_transactions_kind_check",
        "kind IN ('reversal','stake','unstake')",
    ),
    (
        "ledger_transactions_shape",
        "(kind = 'reversal' AND status = 'confirmed' AND reverses_transaction_id IS NOT NULL) \
         OR (kind IN ('stake','unstake') AND status = 'confirmed' AND from_wallet_id IS NOT NULL \
             AND to_wallet_id = from_wallet_id AND from_system_account IS NULL \
             AND to_system_account IS NULL AND destination_address IS NULL)",
    ),
    (
        "ledger_transactions_to_system_only_on_transfers",
        "kind = 'reversal'",
    ),
];

const POSTGRES_UP: &[&str] = &[
    "ALTER TABLE ledger_transactions ADD COLUMN reverses_transaction_id uuid REFERENCES ledger_transactions (id) \
        CONSTRAINT ledger_transactions_reversal_link CHECK ((kind = 'reversal') = (reverses_transaction_id IS NOT NULL) \
        AND reverses_transaction_id IS DISTINCT FROM id)",
    "CREATE UNIQUE INDEX ledger_transactions_reverses_key ON ledger_transactions (reverses_transaction_id)",
    "CREATE INDEX ledger_transactions_metadata_idx ON ledger_transactions USING GIN (metadata jsonb_path_ops)",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP INDEX ledger_transactions_metadata_idx",
    "DROP INDEX ledger_transactions_reverses_key",
    "ALTER TABLE ledger_transactions DROP COLUMN reverses_transaction_id",
];

/// (anchor as found, anchor widened) in the stored SQLite table SQL.
const SQLITE_REWRITES: &[(&str, &str)] = &[
    (
        "kind TEXT NOT NULL CHECK (kind IN (",
        "kind TEXT NOT NULL CHECK (kind IN ('reversal','stake','unstake',",
    ),
    (
        "CONSTRAINT ledger_transactions_shape CHECK (",
        "CONSTRAINT ledger_transactions_shape CHECK ((kind = 'reversal' AND status = 'confirmed' AND reverses_transaction_id IS NOT NULL) \
         OR (kind IN ('stake','unstake') AND status = 'confirmed' AND from_wallet_id IS NOT NULL \
         AND to_wallet_id = from_wallet_id AND from_system_account IS NULL \
         AND to_system_account IS NULL AND destination_address IS NULL) OR ",
    ),
    (
        "to_system_account IS NULL OR (kind = 'transfer' AND",
        "to_system_account IS NULL OR (kind IN ('transfer','reversal') AND",
    ),
];

const SQLITE_UP: &[&str] = &[
    "ALTER TABLE ledger_transactions ADD COLUMN reverses_transaction_id BLOB REFERENCES ledger_transactions (id) \
        CHECK ((kind = 'reversal') = (reverses_transaction_id IS NOT NULL) \
        AND (reverses_transaction_id IS NULL OR (length(reverses_transaction_id) = 16 AND reverses_transaction_id <> id)))",
    "CREATE UNIQUE INDEX ledger_transactions_reverses_key ON ledger_transactions (reverses_transaction_id)",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP INDEX ledger_transactions_reverses_key",
    "ALTER TABLE ledger_transactions DROP COLUMN reverses_transaction_id",
];

async fn new_kind_rows(manager: &SchemaManager<'_>) -> Result<i64, DbErr> {
    let backend = manager.get_database_backend();
    Ok(manager
        .get_connection()
        .query_one_raw(Statement::from_string(
            backend,
            format!(
                "SELECT CAST(count(*) AS BIGINT) FROM ledger_transactions WHERE kind IN {NEW_KINDS}"
            ),
        ))
        .await?
        .map(|row| row.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}

/// The definition of a CHECK constraint of `ledger_transactions`, and its
/// comment.
async fn postgres_constraint(
    manager: &SchemaManager<'_>,
    name: &str,
) -> Result<(String, Option<String>), DbErr> {
    let row = manager
        .get_connection()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_get_constraintdef(oid) AS definition, obj_description(oid, 'pg_constraint') AS comment \
             FROM pg_constraint WHERE conrelid = 'ledger_transactions'::regclass AND contype = 'c' AND conname = $1",
            [name.into()],
        ))
        .await?
        .ok_or_else(|| {
            DbErr::Migration(format!(
                "the check constraint {name} of ledger_transactions was not found"
            ))
        })?;
    Ok((row.try_get("", "definition")?, row.try_get("", "comment")?))
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                crate::sql::run(manager, &[], SQLITE_UP).await?;
                for (from, to) in SQLITE_REWRITES {
                    rewrite_sqlite_shape(manager, from, to).await?;
                }
                Ok(())
            }
            _ => {
                crate::sql::run(manager, POSTGRES_UP, &[]).await?;
                for (name, allowed) in POSTGRES_WIDENINGS {
                    let (definition, _) = postgres_constraint(manager, name).await?;
                    let expression = definition
                        .strip_prefix("CHECK ")
                        .ok_or_else(|| {
                            DbErr::Migration(format!("{name} is not a CHECK: {definition}"))
                        })?
                        .to_owned();
                    connection
                        .execute_unprepared(&format!(
                            "ALTER TABLE ledger_transactions DROP CONSTRAINT {name}, \
                             ADD CONSTRAINT {name} CHECK (({allowed}) OR {expression})"
                        ))
                        .await?;
                    connection
                        .execute_unprepared(&format!(
                            "COMMENT ON CONSTRAINT {name} ON ledger_transactions IS {}",
                            quoted(&definition)
                        ))
                        .await?;
                }
                Ok(())
            }
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The narrower constraints cannot hold the new kinds (and the SQLite
        // rewrite re-checks no row), so refuse while any exist.
        let rows = new_kind_rows(manager).await?;
        if rows > 0 {
            return Err(DbErr::Migration(format!(
                "{rows} reversal, stake or unstake transactions exist; the old constraints cannot hold them"
            )));
        }
        let connection = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                for (from, to) in SQLITE_REWRITES.iter().rev() {
                    rewrite_sqlite_shape(manager, to, from).await?;
                }
                crate::sql::run(manager, &[], SQLITE_DOWN).await
            }
            _ => {
                for (name, _) in POSTGRES_WIDENINGS {
                    let (_, comment) = postgres_constraint(manager, name).await?;
                    let original = comment.ok_or_else(|| {
                        DbErr::Migration(format!("{name} has lost the definition it had"))
                    })?;
                    connection
                        .execute_unprepared(&format!(
                            "ALTER TABLE ledger_transactions DROP CONSTRAINT {name}, ADD CONSTRAINT {name} {original}"
                        ))
                        .await?;
                }
                crate::sql::run(manager, POSTGRES_DOWN, &[]).await
            }
        }
    }
}
