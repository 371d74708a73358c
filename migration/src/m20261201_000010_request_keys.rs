//! Retry safety for every mutating RPC outside the ledger (whose own
//! `idempotency_keys` point at transactions): a caller's `request_id`, the
//! fingerprint of the request it came with, and the resource the call
//! produced. A row is inserted first thing in the call's transaction — a
//! concurrent twin waits on the primary key and then sees the committed row —
//! and commits with the change, so a rejected call leaves its id unused.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[r#"CREATE TABLE request_keys (
        user_id uuid NOT NULL REFERENCES users (id),
        request_id text NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
        method text NOT NULL,
        fingerprint text NOT NULL,
        resource_type text NOT NULL,
        resource_id text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (user_id, request_id)
    )"#];

const SQLITE_UP: &[&str] = &[r#"CREATE TABLE request_keys (
        user_id BLOB NOT NULL REFERENCES users (id),
        request_id TEXT NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
        method TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        resource_type TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (user_id, request_id)
    )"#];

const DOWN: &[&str] = &["DROP TABLE request_keys"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::sql::run(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::sql::run(manager, DOWN, DOWN).await
    }
}
