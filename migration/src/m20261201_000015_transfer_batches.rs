//! Batches of transfers (`CreateTransfers`): one row per batch that was
//! applied, keyed by the caller and the batch's own request id, with the
//! fingerprint of the request and each item's result (its transaction, or
//! why it was refused), so that a retry of the batch returns exactly what
//! the first call returned. The items' own keys stay in `idempotency_keys`.
//! An atomic batch that failed wrote nothing, this row included, so its id
//! stays unused.

use sea_orm_migration::prelude::*;

use crate::sql::{Dialect, one_of, run_each};

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
        run_each(manager, up).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_each(manager, down).await
    }
}
