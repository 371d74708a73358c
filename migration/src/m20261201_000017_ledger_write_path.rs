//! Less work per ledger row on PostgreSQL, with the same rules.
//!
//! - **The wallets' `updated_at` trigger fires only when the update left
//!   the column alone**, as SQLite's twin always did (`WHEN NEW.updated_at =
//!   OLD.updated_at`). The ledger sets `updated_at` in its own balance
//!   update, so a batch no longer calls a PL/pgSQL function per wallet;
//!   every other update still gets the time from the trigger.
//! - **The unique columns that most transactions leave empty are unique
//!   where set.** `backing_reference`, `mining_session_id` and
//!   `reverses_transaction_id` were full unique indexes, so every transfer
//!   inserted a NULL into each of them. NULLs never conflicted, so a partial
//!   unique index (`WHERE … IS NOT NULL`) refuses exactly what the full one
//!   did, under the same name (which is what errors are classified by).
//!
//! SQLite is unchanged: its trigger already had the condition, and its
//! index entries cost no round trip worth the table rewrite.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    "DROP TRIGGER wallets_touch_updated_at ON wallets",
    "CREATE TRIGGER wallets_touch_updated_at BEFORE UPDATE ON wallets FOR EACH ROW \
     WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at) EXECUTE FUNCTION azora_touch_updated_at()",
    "DROP INDEX ledger_transactions_backing_reference_key",
    "CREATE UNIQUE INDEX ledger_transactions_backing_reference_key ON ledger_transactions (backing_reference) \
     WHERE backing_reference IS NOT NULL",
    "DROP INDEX ledger_transactions_mining_session_id_key",
    "CREATE UNIQUE INDEX ledger_transactions_mining_session_id_key ON ledger_transactions (mining_session_id) \
     WHERE mining_session_id IS NOT NULL",
    "DROP INDEX ledger_transactions_reverses_key",
    "CREATE UNIQUE INDEX ledger_transactions_reverses_key ON ledger_transactions (reverses_transaction_id) \
     WHERE reverses_transaction_id IS NOT NULL",
];
const POSTGRES_DOWN: &[&str] = &[
    "DROP INDEX ledger_transactions_reverses_key",
    "CREATE UNIQUE INDEX ledger_transactions_reverses_key ON ledger_transactions (reverses_transaction_id)",
    "DROP INDEX ledger_transactions_mining_session_id_key",
    "CREATE UNIQUE INDEX ledger_transactions_mining_session_id_key ON ledger_transactions (mining_session_id)",
    "DROP INDEX ledger_transactions_backing_reference_key",
    "CREATE UNIQUE INDEX ledger_transactions_backing_reference_key ON ledger_transactions (backing_reference)",
    "DROP TRIGGER wallets_touch_updated_at ON wallets",
    "CREATE TRIGGER wallets_touch_updated_at BEFORE UPDATE ON wallets FOR EACH ROW EXECUTE FUNCTION azora_touch_updated_at()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::sql::run(manager, POSTGRES_UP, &[]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::sql::run(manager, POSTGRES_DOWN, &[]).await
    }
}
