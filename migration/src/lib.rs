//! azora's schema history. Append-only: a landed migration is never edited;
//! every change is a new file. The server, the CLI and the tests all run the
//! same `Migrator::up`.
//!
//! Each migration writes plain SQL for each backend, because what matters is
//! backend-specific: CHECK constraints, triggers that keep `updated_at`, and
//! column types (PostgreSQL `uuid`/`timestamptz`/`jsonb`; SQLite BLOB uuids as
//! sqlx encodes them, RFC 3339 text timestamps). Amounts are BIGINT counts of
//! their smallest unit on both backends, so they are exact everywhere.

// Each migration declares `pub struct Migration` in its private module, and a
// landed migration is never edited, not even for its visibility.
#![allow(unreachable_pub)]

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_identity;
mod m20261125_000002_treasury;
mod m20261125_000003_mining;
mod m20261125_000004_compliance;
mod m20261125_000005_ledger_pool_transfers;
mod m20261125_000006_founder_compensation;
mod m20261125_000007_knowledge_rewards;
mod m20261125_000008_billing;
mod m20261201_000009_backed_mining_mints;
mod m20261201_000010_request_keys;
mod m20261201_000011_mining_rig_sequences;
mod m20261201_000012_alert_sequence;
mod m20261201_000013_compliance_report_request_ids;
mod m20261201_000014_report_pending_claims;
mod m20261201_000015_batches_and_multi_transfers;
mod m20261201_000016_reversals_staking_metadata;
mod m20261201_000017_ledger_write_path;
mod m20261201_000018_ledger_read_models;
mod m20261201_000019_mining_rollups;
pub mod sql;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_identity::Migration),
            Box::new(m20261125_000002_treasury::Migration),
            Box::new(m20261125_000003_mining::Migration),
            Box::new(m20261125_000004_compliance::Migration),
            Box::new(m20261125_000005_ledger_pool_transfers::Migration),
            Box::new(m20261125_000006_founder_compensation::Migration),
            Box::new(m20261125_000007_knowledge_rewards::Migration),
            Box::new(m20261125_000008_billing::Migration),
            Box::new(m20261201_000009_backed_mining_mints::Migration),
            Box::new(m20261201_000010_request_keys::Migration),
            Box::new(m20261201_000011_mining_rig_sequences::Migration),
            Box::new(m20261201_000012_alert_sequence::Migration),
            Box::new(m20261201_000013_compliance_report_request_ids::Migration),
            Box::new(m20261201_000014_report_pending_claims::Migration),
            Box::new(m20261201_000015_batches_and_multi_transfers::Migration),
            Box::new(m20261201_000016_reversals_staking_metadata::Migration),
            Box::new(m20261201_000017_ledger_write_path::Migration),
            Box::new(m20261201_000018_ledger_read_models::Migration),
            Box::new(m20261201_000019_mining_rollups::Migration),
        ]
    }
}
