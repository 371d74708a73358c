//! The audit trail, compliance reports, system health snapshots and alerts.
//!
//! Audit events are written in the same transaction as the change they
//! describe, with a row in `audit_pending`; a background chainer then gives
//! them gap-free sequence numbers and hashes in `audit_chain`, serialised on
//! `audit_chain_head`, so business writes never wait on the chain. Links are
//! inserted into a narrow table rather than updated into the wide event rows:
//! updating every event a second time halved the transfer benchmark. `old_values` and `new_values` are
//! canonical JSON text, so the bytes a hash covers are exactly the bytes
//! stored, on both backends.

use sea_orm_migration::prelude::*;

use crate::sql::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    r#"CREATE TABLE audit_events (
        id uuid PRIMARY KEY,
        recorded_at timestamptz NOT NULL,
        actor_user_id uuid,
        actor_key_id uuid,
        action text NOT NULL,
        resource_type text NOT NULL,
        resource_id text NOT NULL,
        old_values text,
        new_values text,
        peer_address text NOT NULL DEFAULT '',
        user_agent text NOT NULL DEFAULT '',
        request_id text NOT NULL DEFAULT '',
        outcome text NOT NULL CHECK (outcome IN ('ok','permission_denied','unauthenticated'))
    )"#,
    "CREATE INDEX audit_events_actor_idx ON audit_events (actor_user_id, id)",
    "CREATE INDEX audit_events_resource_idx ON audit_events (resource_type, resource_id, id)",
    r#"CREATE TABLE audit_pending (
        event_id uuid PRIMARY KEY REFERENCES audit_events (id),
        recorded_at timestamptz NOT NULL
    )"#,
    r#"CREATE TABLE audit_chain (
        sequence bigint PRIMARY KEY CHECK (sequence > 0),
        event_id uuid NOT NULL REFERENCES audit_events (id),
        previous_hash text NOT NULL,
        hash text NOT NULL
    )"#,
    "CREATE UNIQUE INDEX audit_chain_event_id_key ON audit_chain (event_id)",
    r#"CREATE TABLE audit_chain_head (
        id integer PRIMARY KEY CHECK (id = 1),
        sequence bigint NOT NULL,
        hash text NOT NULL
    )"#,
    "INSERT INTO audit_chain_head (id, sequence, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000')",
    r#"CREATE TABLE compliance_reports (
        id uuid PRIMARY KEY,
        report_type text NOT NULL CHECK (report_type IN ('daily','monthly','ad_hoc')),
        period_start timestamptz NOT NULL,
        period_end timestamptz NOT NULL,
        status text NOT NULL CHECK (status IN ('compliant','warning','non_compliant')),
        total_transactions bigint NOT NULL,
        volume_azr_micros bigint NOT NULL,
        volume_usd_micros bigint NOT NULL,
        treasury_balance_micros bigint NOT NULL,
        checks text NOT NULL,
        recommendations text NOT NULL,
        generated_by uuid NOT NULL REFERENCES users (id),
        generated_at timestamptz NOT NULL,
        CONSTRAINT compliance_reports_period CHECK (period_start < period_end),
        CONSTRAINT compliance_reports_peg CHECK (volume_usd_micros = volume_azr_micros)
    )"#,
    r#"CREATE TABLE system_health (
        id bigserial PRIMARY KEY,
        component text NOT NULL,
        status text NOT NULL CHECK (status IN ('up','down')),
        latency_micros bigint,
        recorded_at timestamptz NOT NULL
    )"#,
    "CREATE INDEX system_health_component_idx ON system_health (component, recorded_at)",
    r#"CREATE TABLE alerts (
        id uuid PRIMARY KEY,
        severity text NOT NULL CHECK (severity IN ('info','warning','critical')),
        source text NOT NULL,
        message text NOT NULL,
        created_at timestamptz NOT NULL,
        acknowledged_by uuid REFERENCES users (id),
        acknowledged_at timestamptz,
        CONSTRAINT alerts_acknowledged_together CHECK ((acknowledged_by IS NULL) = (acknowledged_at IS NULL))
    )"#,
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TABLE alerts",
    "DROP TABLE system_health",
    "DROP TABLE compliance_reports",
    "DROP TABLE audit_chain_head",
    "DROP TABLE audit_chain",
    "DROP TABLE audit_pending",
    "DROP TABLE audit_events",
];

const SQLITE_UP: &[&str] = &[
    r#"CREATE TABLE audit_events (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        recorded_at TEXT NOT NULL,
        actor_user_id BLOB,
        actor_key_id BLOB,
        action TEXT NOT NULL,
        resource_type TEXT NOT NULL,
        resource_id TEXT NOT NULL,
        old_values TEXT,
        new_values TEXT,
        peer_address TEXT NOT NULL DEFAULT '',
        user_agent TEXT NOT NULL DEFAULT '',
        request_id TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL CHECK (outcome IN ('ok','permission_denied','unauthenticated'))
    )"#,
    "CREATE INDEX audit_events_actor_idx ON audit_events (actor_user_id, id)",
    "CREATE INDEX audit_events_resource_idx ON audit_events (resource_type, resource_id, id)",
    r#"CREATE TABLE audit_pending (
        event_id BLOB PRIMARY KEY NOT NULL REFERENCES audit_events (id),
        recorded_at TEXT NOT NULL
    )"#,
    r#"CREATE TABLE audit_chain (
        sequence INTEGER PRIMARY KEY NOT NULL CHECK (sequence > 0),
        event_id BLOB NOT NULL REFERENCES audit_events (id),
        previous_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )"#,
    "CREATE UNIQUE INDEX audit_chain_event_id_key ON audit_chain (event_id)",
    r#"CREATE TABLE audit_chain_head (
        id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
        sequence INTEGER NOT NULL,
        hash TEXT NOT NULL
    )"#,
    "INSERT INTO audit_chain_head (id, sequence, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000')",
    r#"CREATE TABLE compliance_reports (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        report_type TEXT NOT NULL CHECK (report_type IN ('daily','monthly','ad_hoc')),
        period_start TEXT NOT NULL,
        period_end TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('compliant','warning','non_compliant')),
        total_transactions INTEGER NOT NULL,
        volume_azr_micros INTEGER NOT NULL,
        volume_usd_micros INTEGER NOT NULL,
        treasury_balance_micros INTEGER NOT NULL,
        checks TEXT NOT NULL,
        recommendations TEXT NOT NULL,
        generated_by BLOB NOT NULL REFERENCES users (id),
        generated_at TEXT NOT NULL,
        CONSTRAINT compliance_reports_period CHECK (period_start < period_end),
        CONSTRAINT compliance_reports_peg CHECK (volume_usd_micros = volume_azr_micros)
    )"#,
    r#"CREATE TABLE system_health (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        component TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('up','down')),
        latency_micros INTEGER,
        recorded_at TEXT NOT NULL
    )"#,
    "CREATE INDEX system_health_component_idx ON system_health (component, recorded_at)",
    r#"CREATE TABLE alerts (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        severity TEXT NOT NULL CHECK (severity IN ('info','warning','critical')),
        source TEXT NOT NULL,
        message TEXT NOT NULL,
        created_at TEXT NOT NULL,
        acknowledged_by BLOB REFERENCES users (id),
        acknowledged_at TEXT,
        CONSTRAINT alerts_acknowledged_together CHECK ((acknowledged_by IS NULL) = (acknowledged_at IS NULL))
    )"#,
];

const SQLITE_DOWN: &[&str] = POSTGRES_DOWN;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
