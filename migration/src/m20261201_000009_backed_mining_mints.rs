//! Minted AZR is backed: a mining session's earnings are a claim until the
//! USD arrives. Ending a session now creates its mint `pending`, with no
//! entries; a treasurer confirms it with the reference of the inflow that
//! backs it (the pool payout) — only then are the allocation's entries
//! posted — or rejects it. So:
//!
//! - `pending` is allowed on a mint only when it is a mining claim;
//! - a confirmed mining mint must name its backing reference, and one
//!   reference backs at most one mint (a unique index), so one payout cannot
//!   be counted twice;
//! - mining mints confirmed before this migration had no backing to name:
//!   they get `unbacked-before-000009:<id>`, so they stay visible as such.
//!
//! SQLite cannot alter a CHECK: the constraint's stored SQL is rewritten as
//! in migration 000005 (existing rows were made valid first).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::m20261125_000005_ledger_pool_transfers::rewrite_sqlite_shape;

#[derive(DeriveMigrationName)]
pub struct Migration;

const OLD_PENDING: &str = "CONSTRAINT ledger_transactions_pending_only_on_chain CHECK (status <> 'pending' OR kind IN ('deposit','withdrawal'))";

const NEW_PENDING: &str = "CONSTRAINT ledger_transactions_pending_only_on_chain_or_claims CHECK (status <> 'pending' OR kind IN ('deposit','withdrawal') OR (kind = 'mint' AND mining_session_id IS NOT NULL)),\n        CONSTRAINT ledger_transactions_mining_mints_backed CHECK (kind <> 'mint' OR mining_session_id IS NULL OR status <> 'confirmed' OR backing_reference IS NOT NULL)";

const BACKFILL: &str = "UPDATE ledger_transactions SET backing_reference = 'unbacked-before-000009:' || {id} \
     WHERE kind = 'mint' AND mining_session_id IS NOT NULL AND status = 'confirmed'";

const POSTGRES_UP: &[&str] = &[
    "ALTER TABLE ledger_transactions ADD COLUMN backing_reference text \
        CONSTRAINT ledger_transactions_backing_reference_on_mints CHECK (backing_reference IS NULL OR (kind = 'mint' AND length(backing_reference) BETWEEN 1 AND 200))",
    "CREATE UNIQUE INDEX ledger_transactions_backing_reference_key ON ledger_transactions (backing_reference)",
    r#"ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_pending_only_on_chain,
        ADD CONSTRAINT ledger_transactions_pending_only_on_chain_or_claims CHECK (status <> 'pending' OR kind IN ('deposit','withdrawal') OR (kind = 'mint' AND mining_session_id IS NOT NULL)),
        ADD CONSTRAINT ledger_transactions_mining_mints_backed CHECK (kind <> 'mint' OR mining_session_id IS NULL OR status <> 'confirmed' OR backing_reference IS NOT NULL)"#,
];

const POSTGRES_DOWN: &[&str] = &[
    r#"ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_mining_mints_backed,
        DROP CONSTRAINT ledger_transactions_pending_only_on_chain_or_claims,
        ADD CONSTRAINT ledger_transactions_pending_only_on_chain CHECK (status <> 'pending' OR kind IN ('deposit','withdrawal'))"#,
    "DROP INDEX ledger_transactions_backing_reference_key",
    "ALTER TABLE ledger_transactions DROP COLUMN backing_reference",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        match manager.get_database_backend() {
            DbBackend::Sqlite => {
                connection
                    .execute_unprepared(
                        "ALTER TABLE ledger_transactions ADD COLUMN backing_reference TEXT \
                         CHECK (backing_reference IS NULL OR (kind = 'mint' AND length(backing_reference) BETWEEN 1 AND 200))",
                    )
                    .await?;
                connection
                    .execute_unprepared(
                        "CREATE UNIQUE INDEX ledger_transactions_backing_reference_key ON ledger_transactions (backing_reference)",
                    )
                    .await?;
                connection
                    .execute_unprepared(&BACKFILL.replace("{id}", "lower(hex(id))"))
                    .await?;
                rewrite_sqlite_shape(manager, OLD_PENDING, NEW_PENDING).await
            }
            _ => {
                crate::sql::run(manager, &POSTGRES_UP[..2], &[]).await?;
                connection
                    .execute_unprepared(&BACKFILL.replace("{id}", "id::text"))
                    .await?;
                crate::sql::run(manager, &POSTGRES_UP[2..], &[]).await
            }
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let connection = manager.get_connection();
        match manager.get_database_backend() {
            // A pending claim cannot exist under the old constraint
            // (PostgreSQL refuses by itself; the SQLite rewrite checks nothing).
            DbBackend::Sqlite => {
                let pending = connection
                    .query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
                        DbBackend::Sqlite,
                        "SELECT count(*) FROM ledger_transactions WHERE kind = 'mint' AND status = 'pending'",
                    ))
                    .await?
                    .map(|row| row.try_get_by_index::<i64>(0))
                    .transpose()?
                    .unwrap_or(0);
                if pending > 0 {
                    return Err(DbErr::Migration(format!(
                        "{pending} mining mints are pending; confirm or reject them first"
                    )));
                }
                rewrite_sqlite_shape(manager, NEW_PENDING, OLD_PENDING).await?;
                connection
                    .execute_unprepared("DROP INDEX ledger_transactions_backing_reference_key")
                    .await?;
                connection
                    .execute_unprepared(
                        "ALTER TABLE ledger_transactions DROP COLUMN backing_reference",
                    )
                    .await
                    .map(|_| ())
            }
            _ => crate::sql::run(manager, POSTGRES_DOWN, &[]).await,
        }
    }
}
