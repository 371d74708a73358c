//! Subscriptions and their invoices. Tier prices live in a table (seeded
//! here, changed by SQL); a subscription keeps the price it was sold at.
//! Invoices are numbered by period from the subscription's start, unique per
//! (subscription, period), so every replica's issuer can run and a period is
//! still invoiced once. An invoice moves only open -> paid, and a paid one
//! carries its ledger transfer and is never changed again.

use sea_orm_migration::prelude::*;

use crate::sql::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    r#"CREATE TABLE subscription_tiers (
        code text PRIMARY KEY CHECK (code IN ('basic','pro','enterprise')),
        monthly_price_micros bigint NOT NULL CHECK (monthly_price_micros > 0)
    )"#,
    "INSERT INTO subscription_tiers (code, monthly_price_micros) VALUES ('basic', 9990000), ('pro', 29990000), ('enterprise', 99990000)",
    r#"CREATE TABLE subscriptions (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users (id),
        tier text NOT NULL REFERENCES subscription_tiers (code),
        status text NOT NULL CHECK (status IN ('active','cancelled')),
        price_micros bigint NOT NULL CHECK (price_micros > 0),
        currency text NOT NULL CHECK (currency IN ('AZR','USD')),
        start_at timestamptz NOT NULL,
        periods_invoiced integer NOT NULL CHECK (periods_invoiced >= 1),
        current_period_end timestamptz NOT NULL,
        request_id text NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
        fingerprint text NOT NULL,
        created_by uuid NOT NULL REFERENCES users (id),
        created_at timestamptz NOT NULL,
        cancelled_by uuid REFERENCES users (id),
        cancelled_at timestamptz,
        cancel_reason text,
        CONSTRAINT subscriptions_cancelled_has_time CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL AND cancelled_by IS NOT NULL))
    )"#,
    "CREATE UNIQUE INDEX subscriptions_request_id_key ON subscriptions (created_by, request_id)",
    "CREATE INDEX subscriptions_user_idx ON subscriptions (user_id, id)",
    "CREATE INDEX subscriptions_due_idx ON subscriptions (status, current_period_end)",
    r#"CREATE TABLE invoices (
        id uuid PRIMARY KEY,
        subscription_id uuid NOT NULL REFERENCES subscriptions (id),
        user_id uuid NOT NULL REFERENCES users (id),
        period_index integer NOT NULL CHECK (period_index >= 0),
        amount_micros bigint NOT NULL CHECK (amount_micros > 0),
        currency text NOT NULL CHECK (currency IN ('AZR','USD')),
        status text NOT NULL CHECK (status IN ('open','paid')),
        period_start timestamptz NOT NULL,
        period_end timestamptz NOT NULL,
        due_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL,
        paid_at timestamptz,
        paid_by uuid REFERENCES users (id),
        wallet_id uuid REFERENCES wallets (id),
        transaction_id uuid REFERENCES ledger_transactions (id),
        CONSTRAINT invoices_period_is_forward CHECK (period_end > period_start AND due_at >= period_start),
        CONSTRAINT invoices_paid_has_transfer CHECK ((status = 'paid') = (paid_at IS NOT NULL AND paid_by IS NOT NULL AND wallet_id IS NOT NULL AND transaction_id IS NOT NULL))
    )"#,
    "CREATE UNIQUE INDEX invoices_period_key ON invoices (subscription_id, period_index)",
    "CREATE UNIQUE INDEX invoices_transaction_id_key ON invoices (transaction_id)",
    "CREATE INDEX invoices_user_idx ON invoices (user_id, id)",
    "CREATE INDEX invoices_subscription_idx ON invoices (subscription_id, id)",
    r#"CREATE FUNCTION azora_invoice_transition() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.status = 'paid' OR NEW.amount_micros <> OLD.amount_micros OR NEW.currency <> OLD.currency
            OR NEW.user_id <> OLD.user_id OR NEW.subscription_id <> OLD.subscription_id
            OR NEW.period_index <> OLD.period_index THEN
            RAISE EXCEPTION 'illegal invoice change: % -> %', OLD.status, NEW.status USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$"#,
    "CREATE TRIGGER invoices_transition BEFORE UPDATE ON invoices FOR EACH ROW EXECUTE FUNCTION azora_invoice_transition()",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TABLE invoices",
    "DROP FUNCTION azora_invoice_transition()",
    "DROP TABLE subscriptions",
    "DROP TABLE subscription_tiers",
];

const SQLITE_UP: &[&str] = &[
    r#"CREATE TABLE subscription_tiers (
        code TEXT PRIMARY KEY NOT NULL CHECK (code IN ('basic','pro','enterprise')),
        monthly_price_micros INTEGER NOT NULL CHECK (typeof(monthly_price_micros) = 'integer' AND monthly_price_micros > 0)
    )"#,
    "INSERT INTO subscription_tiers (code, monthly_price_micros) VALUES ('basic', 9990000), ('pro', 29990000), ('enterprise', 99990000)",
    r#"CREATE TABLE subscriptions (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        user_id BLOB NOT NULL REFERENCES users (id),
        tier TEXT NOT NULL REFERENCES subscription_tiers (code),
        status TEXT NOT NULL CHECK (status IN ('active','cancelled')),
        price_micros INTEGER NOT NULL CHECK (typeof(price_micros) = 'integer' AND price_micros > 0),
        currency TEXT NOT NULL CHECK (currency IN ('AZR','USD')),
        start_at TEXT NOT NULL,
        periods_invoiced INTEGER NOT NULL CHECK (periods_invoiced >= 1),
        current_period_end TEXT NOT NULL,
        request_id TEXT NOT NULL CHECK (length(request_id) BETWEEN 1 AND 128),
        fingerprint TEXT NOT NULL,
        created_by BLOB NOT NULL REFERENCES users (id),
        created_at TEXT NOT NULL,
        cancelled_by BLOB REFERENCES users (id),
        cancelled_at TEXT,
        cancel_reason TEXT,
        CONSTRAINT subscriptions_cancelled_has_time CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL AND cancelled_by IS NOT NULL))
    )"#,
    "CREATE UNIQUE INDEX subscriptions_request_id_key ON subscriptions (created_by, request_id)",
    "CREATE INDEX subscriptions_user_idx ON subscriptions (user_id, id)",
    "CREATE INDEX subscriptions_due_idx ON subscriptions (status, current_period_end)",
    r#"CREATE TABLE invoices (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        subscription_id BLOB NOT NULL REFERENCES subscriptions (id),
        user_id BLOB NOT NULL REFERENCES users (id),
        period_index INTEGER NOT NULL CHECK (period_index >= 0),
        amount_micros INTEGER NOT NULL CHECK (typeof(amount_micros) = 'integer' AND amount_micros > 0),
        currency TEXT NOT NULL CHECK (currency IN ('AZR','USD')),
        status TEXT NOT NULL CHECK (status IN ('open','paid')),
        period_start TEXT NOT NULL,
        period_end TEXT NOT NULL,
        due_at TEXT NOT NULL,
        created_at TEXT NOT NULL,
        paid_at TEXT,
        paid_by BLOB REFERENCES users (id),
        wallet_id BLOB REFERENCES wallets (id),
        transaction_id BLOB REFERENCES ledger_transactions (id),
        CONSTRAINT invoices_paid_has_transfer CHECK ((status = 'paid') = (paid_at IS NOT NULL AND paid_by IS NOT NULL AND wallet_id IS NOT NULL AND transaction_id IS NOT NULL))
    )"#,
    "CREATE UNIQUE INDEX invoices_period_key ON invoices (subscription_id, period_index)",
    "CREATE UNIQUE INDEX invoices_transaction_id_key ON invoices (transaction_id)",
    "CREATE INDEX invoices_user_idx ON invoices (user_id, id)",
    "CREATE INDEX invoices_subscription_idx ON invoices (subscription_id, id)",
    r#"CREATE TRIGGER invoices_transition BEFORE UPDATE ON invoices FOR EACH ROW
       WHEN OLD.status = 'paid' OR NEW.amount_micros IS NOT OLD.amount_micros OR NEW.currency IS NOT OLD.currency
            OR NEW.user_id IS NOT OLD.user_id OR NEW.subscription_id IS NOT OLD.subscription_id
            OR NEW.period_index IS NOT OLD.period_index
       BEGIN SELECT RAISE(ABORT, 'illegal invoice change'); END"#,
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TABLE invoices",
    "DROP TABLE subscriptions",
    "DROP TABLE subscription_tiers",
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
