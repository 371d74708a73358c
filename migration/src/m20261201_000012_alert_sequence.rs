//! Alerts get a sequence number in commit order, so a WatchAlerts client can
//! resume after the last alert it saw and miss nothing.
//!
//! Ids (UUIDv7) are not enough: two transactions can take ids in one order
//! and commit in the other, and a watcher that already moved past the later
//! id never sees the earlier one. Instead every alert takes the next number
//! from the one-row `alert_sequence`, whose row stays locked until the alert's
//! transaction ends: the next alert can only be numbered after this one has
//! committed (or rolled back, leaving a harmless gap). Alerts are rare, so
//! serialising their writers costs nothing that matters. Existing alerts are
//! numbered in id order.
//!
//! SQLite cannot add a NOT NULL column without a default; a trigger refuses
//! an alert without a sequence instead.

use sea_orm_migration::prelude::*;

use crate::sql::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    r#"CREATE TABLE alert_sequence (
        id integer PRIMARY KEY CHECK (id = 1),
        last bigint NOT NULL CHECK (last >= 0)
    )"#,
    "ALTER TABLE alerts ADD COLUMN sequence bigint CONSTRAINT alerts_sequence_positive CHECK (sequence > 0)",
    "UPDATE alerts SET sequence = numbered.n \
        FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM alerts) AS numbered \
        WHERE alerts.id = numbered.id",
    "INSERT INTO alert_sequence (id, last) SELECT 1, COALESCE(MAX(sequence), 0) FROM alerts",
    "ALTER TABLE alerts ALTER COLUMN sequence SET NOT NULL",
    "CREATE UNIQUE INDEX alerts_sequence_key ON alerts (sequence)",
];

const POSTGRES_DOWN: &[&str] = &[
    "ALTER TABLE alerts DROP COLUMN sequence",
    "DROP TABLE alert_sequence",
];

const SQLITE_UP: &[&str] = &[
    r#"CREATE TABLE alert_sequence (
        id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
        last INTEGER NOT NULL CHECK (last >= 0)
    )"#,
    "ALTER TABLE alerts ADD COLUMN sequence INTEGER CHECK (sequence IS NULL OR sequence > 0)",
    "UPDATE alerts SET sequence = (SELECT COUNT(*) FROM alerts AS earlier WHERE earlier.id <= alerts.id)",
    "INSERT INTO alert_sequence (id, last) SELECT 1, COALESCE(MAX(sequence), 0) FROM alerts",
    "CREATE UNIQUE INDEX alerts_sequence_key ON alerts (sequence)",
    r#"CREATE TRIGGER alerts_sequence_required BEFORE INSERT ON alerts FOR EACH ROW
       WHEN NEW.sequence IS NULL
       BEGIN SELECT RAISE(ABORT, 'an alert needs a sequence'); END"#,
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER alerts_sequence_required",
    "DROP INDEX alerts_sequence_key",
    "ALTER TABLE alerts DROP COLUMN sequence",
    "DROP TABLE alert_sequence",
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
