//! Compliance reports are safe to retry: each report may carry the
//! `request_id` its caller chose, unique per caller (`generated_by`), stored
//! in the same transaction as the report. Reports from before this have none
//! (NULLs never collide in a unique index, on either backend).

use sea_orm_migration::prelude::*;

use crate::sql::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    "ALTER TABLE compliance_reports ADD COLUMN request_id text \
        CONSTRAINT compliance_reports_request_id_length CHECK (length(request_id) BETWEEN 1 AND 128)",
    "CREATE UNIQUE INDEX compliance_reports_request_id_key ON compliance_reports (generated_by, request_id)",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP INDEX compliance_reports_request_id_key",
    "ALTER TABLE compliance_reports DROP COLUMN request_id",
];

const SQLITE_UP: &[&str] = &[
    "ALTER TABLE compliance_reports ADD COLUMN request_id TEXT \
        CHECK (request_id IS NULL OR length(request_id) BETWEEN 1 AND 128)",
    "CREATE UNIQUE INDEX compliance_reports_request_id_key ON compliance_reports (generated_by, request_id)",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP INDEX compliance_reports_request_id_key",
    "ALTER TABLE compliance_reports DROP COLUMN request_id",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
