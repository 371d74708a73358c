//! A compliance report counts the mining claims still pending at its
//! period's end (mints awaiting their backing): not spendable, not in any
//! balance, but AZR that may yet come into being.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    "ALTER TABLE compliance_reports ADD COLUMN pending_claims bigint NOT NULL DEFAULT 0 CHECK (pending_claims >= 0)",
    "ALTER TABLE compliance_reports ADD COLUMN pending_claims_micros bigint NOT NULL DEFAULT 0 CHECK (pending_claims_micros >= 0)",
];
const SQLITE_UP: &[&str] = &[
    "ALTER TABLE compliance_reports ADD COLUMN pending_claims INTEGER NOT NULL DEFAULT 0 CHECK (pending_claims >= 0)",
    "ALTER TABLE compliance_reports ADD COLUMN pending_claims_micros INTEGER NOT NULL DEFAULT 0 CHECK (pending_claims_micros >= 0)",
];
const DOWN: &[&str] = &[
    "ALTER TABLE compliance_reports DROP COLUMN pending_claims_micros",
    "ALTER TABLE compliance_reports DROP COLUMN pending_claims",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::sql::run(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::sql::run(manager, DOWN, DOWN).await
    }
}
