//! A rig may number its samples; the session keeps the highest number it
//! stored, so a resent sample (a stream retried after a lost answer) is
//! skipped instead of counted twice.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    "ALTER TABLE mining_sessions ADD COLUMN last_rig_sequence bigint CHECK (last_rig_sequence > 0)",
];
const SQLITE_UP: &[&str] = &[
    "ALTER TABLE mining_sessions ADD COLUMN last_rig_sequence INTEGER CHECK (last_rig_sequence > 0)",
];
const DOWN: &[&str] = &["ALTER TABLE mining_sessions DROP COLUMN last_rig_sequence"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::sql::run(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::sql::run(manager, DOWN, DOWN).await
    }
}
