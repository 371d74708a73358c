//! Founder compensation: one record per founder, month and type, moving only
//! pending -> approved -> paid or pending/approved -> cancelled. The CHECKs
//! tie each status to the fields it needs (paid has its ledger transfer),
//! forbid the founder approving or paying themselves, and a trigger refuses
//! every other transition and any change to what was agreed.

use sea_orm_migration::prelude::*;

use crate::sql::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    r#"CREATE TABLE founder_compensations (
        id uuid PRIMARY KEY,
        founder_id uuid NOT NULL REFERENCES users (id),
        wallet_id uuid NOT NULL REFERENCES wallets (id),
        month text NOT NULL CHECK (month ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
        compensation_type text NOT NULL CHECK (compensation_type IN ('salary','bonus','token_grant','reimbursement')),
        status text NOT NULL CHECK (status IN ('pending','approved','paid','cancelled')),
        amount_azr_micros bigint NOT NULL CHECK (amount_azr_micros > 0),
        amount_usd_micros bigint NOT NULL,
        notes text NOT NULL DEFAULT '',
        request_id text NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
        fingerprint text NOT NULL,
        created_by uuid NOT NULL REFERENCES users (id),
        created_at timestamptz NOT NULL,
        approved_by uuid REFERENCES users (id),
        approved_at timestamptz,
        paid_by uuid REFERENCES users (id),
        transaction_id uuid REFERENCES ledger_transactions (id),
        tx_hash text,
        paid_at timestamptz,
        cancelled_by uuid REFERENCES users (id),
        cancelled_at timestamptz,
        cancel_reason text,
        CONSTRAINT founder_compensations_peg CHECK (amount_usd_micros = amount_azr_micros),
        CONSTRAINT founder_compensations_pending_unapproved CHECK (status <> 'pending' OR (approved_by IS NULL AND approved_at IS NULL)),
        CONSTRAINT founder_compensations_approved_has_approver CHECK (status NOT IN ('approved','paid') OR (approved_by IS NOT NULL AND approved_at IS NOT NULL)),
        CONSTRAINT founder_compensations_paid_has_transfer CHECK ((status = 'paid') = (paid_by IS NOT NULL AND transaction_id IS NOT NULL AND tx_hash IS NOT NULL AND paid_at IS NOT NULL)),
        CONSTRAINT founder_compensations_cancelled_has_canceller CHECK ((status = 'cancelled') = (cancelled_by IS NOT NULL AND cancelled_at IS NOT NULL)),
        CONSTRAINT founder_compensations_four_eyes CHECK (approved_by IS DISTINCT FROM founder_id AND paid_by IS DISTINCT FROM founder_id)
    )"#,
    "CREATE UNIQUE INDEX founder_compensations_month_key ON founder_compensations (founder_id, month, compensation_type) WHERE status <> 'cancelled'",
    "CREATE UNIQUE INDEX founder_compensations_request_id_key ON founder_compensations (created_by, request_id)",
    "CREATE UNIQUE INDEX founder_compensations_transaction_id_key ON founder_compensations (transaction_id)",
    "CREATE INDEX founder_compensations_founder_idx ON founder_compensations (founder_id, id)",
    r#"CREATE FUNCTION azora_founder_compensation_transition() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.status IN ('paid','cancelled')
            OR NEW.founder_id <> OLD.founder_id OR NEW.wallet_id <> OLD.wallet_id OR NEW.month <> OLD.month
            OR NEW.compensation_type <> OLD.compensation_type OR NEW.amount_azr_micros <> OLD.amount_azr_micros
            OR NEW.created_by <> OLD.created_by OR NEW.request_id <> OLD.request_id
            OR (NEW.status <> OLD.status AND NOT (
                (OLD.status = 'pending' AND NEW.status IN ('approved','cancelled'))
                OR (OLD.status = 'approved' AND NEW.status IN ('paid','cancelled')))) THEN
            RAISE EXCEPTION 'illegal founder compensation change: % -> %', OLD.status, NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$"#,
    "CREATE TRIGGER founder_compensations_transition BEFORE UPDATE ON founder_compensations FOR EACH ROW EXECUTE FUNCTION azora_founder_compensation_transition()",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TABLE founder_compensations",
    "DROP FUNCTION azora_founder_compensation_transition()",
];

const SQLITE_UP: &[&str] = &[
    r#"CREATE TABLE founder_compensations (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        founder_id BLOB NOT NULL REFERENCES users (id),
        wallet_id BLOB NOT NULL REFERENCES wallets (id),
        month TEXT NOT NULL CHECK (length(month) = 7 AND month GLOB '[0-9][0-9][0-9][0-9]-[01][0-9]' AND substr(month, 6, 2) BETWEEN '01' AND '12'),
        compensation_type TEXT NOT NULL CHECK (compensation_type IN ('salary','bonus','token_grant','reimbursement')),
        status TEXT NOT NULL CHECK (status IN ('pending','approved','paid','cancelled')),
        amount_azr_micros INTEGER NOT NULL CHECK (typeof(amount_azr_micros) = 'integer' AND amount_azr_micros > 0),
        amount_usd_micros INTEGER NOT NULL CHECK (typeof(amount_usd_micros) = 'integer'),
        notes TEXT NOT NULL DEFAULT '',
        request_id TEXT NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
        fingerprint TEXT NOT NULL,
        created_by BLOB NOT NULL REFERENCES users (id),
        created_at TEXT NOT NULL,
        approved_by BLOB REFERENCES users (id),
        approved_at TEXT,
        paid_by BLOB REFERENCES users (id),
        transaction_id BLOB REFERENCES ledger_transactions (id),
        tx_hash TEXT,
        paid_at TEXT,
        cancelled_by BLOB REFERENCES users (id),
        cancelled_at TEXT,
        cancel_reason TEXT,
        CONSTRAINT founder_compensations_peg CHECK (amount_usd_micros = amount_azr_micros),
        CONSTRAINT founder_compensations_pending_unapproved CHECK (status <> 'pending' OR (approved_by IS NULL AND approved_at IS NULL)),
        CONSTRAINT founder_compensations_approved_has_approver CHECK (status NOT IN ('approved','paid') OR (approved_by IS NOT NULL AND approved_at IS NOT NULL)),
        CONSTRAINT founder_compensations_paid_has_transfer CHECK ((status = 'paid') = (paid_by IS NOT NULL AND transaction_id IS NOT NULL AND tx_hash IS NOT NULL AND paid_at IS NOT NULL)),
        CONSTRAINT founder_compensations_cancelled_has_canceller CHECK ((status = 'cancelled') = (cancelled_by IS NOT NULL AND cancelled_at IS NOT NULL)),
        CONSTRAINT founder_compensations_four_eyes CHECK (approved_by IS NOT founder_id AND paid_by IS NOT founder_id)
    )"#,
    "CREATE UNIQUE INDEX founder_compensations_month_key ON founder_compensations (founder_id, month, compensation_type) WHERE status <> 'cancelled'",
    "CREATE UNIQUE INDEX founder_compensations_request_id_key ON founder_compensations (created_by, request_id)",
    "CREATE UNIQUE INDEX founder_compensations_transaction_id_key ON founder_compensations (transaction_id)",
    "CREATE INDEX founder_compensations_founder_idx ON founder_compensations (founder_id, id)",
    r#"CREATE TRIGGER founder_compensations_transition BEFORE UPDATE ON founder_compensations FOR EACH ROW
       WHEN OLD.status IN ('paid','cancelled')
            OR NEW.founder_id IS NOT OLD.founder_id OR NEW.wallet_id IS NOT OLD.wallet_id OR NEW.month IS NOT OLD.month
            OR NEW.compensation_type IS NOT OLD.compensation_type OR NEW.amount_azr_micros IS NOT OLD.amount_azr_micros
            OR NEW.created_by IS NOT OLD.created_by OR NEW.request_id IS NOT OLD.request_id
            OR (NEW.status <> OLD.status AND NOT (
                (OLD.status = 'pending' AND NEW.status IN ('approved','cancelled'))
                OR (OLD.status = 'approved' AND NEW.status IN ('paid','cancelled'))))
       BEGIN SELECT RAISE(ABORT, 'illegal founder compensation change'); END"#,
];

const SQLITE_DOWN: &[&str] = &["DROP TABLE founder_compensations"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_UP, SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_DOWN, SQLITE_DOWN).await
    }
}
