//! Transfers between a wallet and a system pool: founder pay and knowledge
//! rewards leave a pool for a wallet, invoice payments go from a wallet to the
//! treasury reserve. A `transfer` now has exactly one source (a wallet or a
//! system account) and exactly one destination (a wallet or the new
//! `to_system_account`), and at least one side is a wallet.
//!
//! SQLite cannot alter a CHECK constraint; it documents rewriting the table's
//! stored SQL under `writable_schema` in one transaction, with a schema
//! version bump, as the way to loosen one
//! (<https://sqlite.org/lang_altertable.html#otheralter>). The new shape
//! admits every row the old one did, so existing rows stay valid.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

const OLD_TRANSFER_SHAPE: &str = "(kind = 'transfer' AND from_wallet_id IS NOT NULL AND to_wallet_id IS NOT NULL AND from_wallet_id <> to_wallet_id AND from_system_account IS NULL)";

const SQLITE_TRANSFER_SHAPE: &str = "(kind = 'transfer' AND (from_wallet_id IS NULL) <> (from_system_account IS NULL) AND (to_wallet_id IS NULL) <> (to_system_account IS NULL) AND (from_wallet_id IS NOT NULL OR to_wallet_id IS NOT NULL) AND from_wallet_id IS NOT to_wallet_id)";

const POSTGRES_UP: &[&str] = &[
    "ALTER TABLE ledger_transactions ADD COLUMN to_system_account text REFERENCES system_accounts (code) \
        CONSTRAINT ledger_transactions_to_system_only_on_transfers CHECK (to_system_account IS NULL OR kind = 'transfer')",
    r#"ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_shape,
        ADD CONSTRAINT ledger_transactions_shape CHECK (
            (kind = 'mint' AND from_wallet_id IS NULL AND from_system_account IS NULL)
            OR (kind = 'burn' AND to_wallet_id IS NULL AND (from_wallet_id IS NULL) <> (from_system_account IS NULL))
            OR (kind = 'transfer' AND (from_wallet_id IS NULL) <> (from_system_account IS NULL)
                AND (to_wallet_id IS NULL) <> (to_system_account IS NULL)
                AND (from_wallet_id IS NOT NULL OR to_wallet_id IS NOT NULL)
                AND from_wallet_id IS DISTINCT FROM to_wallet_id)
            OR (kind = 'deposit' AND to_wallet_id IS NOT NULL AND from_wallet_id IS NULL AND from_system_account IS NULL)
            OR (kind = 'withdrawal' AND from_wallet_id IS NOT NULL AND to_wallet_id IS NULL AND from_system_account IS NULL AND destination_address IS NOT NULL))"#,
];

const POSTGRES_DOWN: &[&str] = &[
    r#"ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_shape,
        ADD CONSTRAINT ledger_transactions_shape CHECK (
            (kind = 'mint' AND from_wallet_id IS NULL AND from_system_account IS NULL)
            OR (kind = 'burn' AND to_wallet_id IS NULL AND (from_wallet_id IS NULL) <> (from_system_account IS NULL))
            OR (kind = 'transfer' AND from_wallet_id IS NOT NULL AND to_wallet_id IS NOT NULL AND from_wallet_id <> to_wallet_id AND from_system_account IS NULL)
            OR (kind = 'deposit' AND to_wallet_id IS NOT NULL AND from_wallet_id IS NULL AND from_system_account IS NULL)
            OR (kind = 'withdrawal' AND from_wallet_id IS NOT NULL AND to_wallet_id IS NULL AND from_system_account IS NULL AND destination_address IS NOT NULL))"#,
    "ALTER TABLE ledger_transactions DROP COLUMN to_system_account",
];

/// Rewrites the transfer clause of the stored `ledger_transactions` SQL in
/// one transaction and checks that the rewrite happened.
pub(crate) async fn rewrite_sqlite_shape(
    manager: &SchemaManager<'_>,
    from: &str,
    to: &str,
) -> Result<(), DbErr> {
    let transaction = manager.begin().await?;
    let connection = transaction.get_connection();
    let version = connection
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA schema_version",
        ))
        .await?
        .ok_or_else(|| DbErr::Migration("PRAGMA schema_version returned nothing".into()))?
        .try_get_by_index::<i64>(0)?;
    connection
        .execute_unprepared("PRAGMA writable_schema = ON")
        .await?;
    connection
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "UPDATE sqlite_schema SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = 'ledger_transactions'",
            [from.into(), to.into()],
        ))
        .await?;
    connection
        .execute_unprepared(&format!("PRAGMA schema_version = {}", version + 1))
        .await?;
    connection
        .execute_unprepared("PRAGMA writable_schema = OFF")
        .await?;
    let rewritten = connection
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "SELECT instr(sql, ?) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'ledger_transactions'",
            [to.into()],
        ))
        .await?
        .map(|row| row.try_get_by_index::<bool>(0))
        .transpose()?
        .unwrap_or(false);
    if !rewritten {
        return Err(DbErr::Migration(
            "the ledger_transactions shape constraint was not where expected".into(),
        ));
    }
    transaction.commit().await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                // No foreign key on SQLite, so `down` can drop the column; the
                // CHECK keeps it to real system accounts.
                manager
                    .get_connection()
                    .execute_unprepared(
                        "ALTER TABLE ledger_transactions ADD COLUMN to_system_account TEXT \
                         CHECK (to_system_account IS NULL OR (kind = 'transfer' AND to_system_account IN \
                         ('issuance','external','burned','treasury_reserve','founder_pool','circulation_pool')))",
                    )
                    .await?;
                rewrite_sqlite_shape(manager, OLD_TRANSFER_SHAPE, SQLITE_TRANSFER_SHAPE).await
            }
            _ => crate::sql::run(manager, POSTGRES_UP, &[]).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                // The rewrite does not re-check rows, so refuse while any
                // transfer has a system side (PostgreSQL refuses by itself).
                let pool_transfers = manager
                    .get_connection()
                    .query_one_raw(Statement::from_string(
                        DbBackend::Sqlite,
                        "SELECT count(*) FROM ledger_transactions WHERE kind = 'transfer' \
                         AND (from_system_account IS NOT NULL OR to_system_account IS NOT NULL)",
                    ))
                    .await?
                    .map(|row| row.try_get_by_index::<i64>(0))
                    .transpose()?
                    .unwrap_or(0);
                if pool_transfers > 0 {
                    return Err(DbErr::Migration(format!(
                        "{pool_transfers} transfers to or from a system account exist; the old shape cannot hold them"
                    )));
                }
                rewrite_sqlite_shape(manager, SQLITE_TRANSFER_SHAPE, OLD_TRANSFER_SHAPE).await?;
                manager
                    .get_connection()
                    .execute_unprepared(
                        "ALTER TABLE ledger_transactions DROP COLUMN to_system_account",
                    )
                    .await
                    .map(|_| ())
            }
            _ => crate::sql::run(manager, POSTGRES_DOWN, &[]).await,
        }
    }
}
