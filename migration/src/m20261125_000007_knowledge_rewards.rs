//! Knowledge rewards: verified proofs of knowledge and the rewards paid for
//! them. `source_transaction_id` is unique on both tables, so one source id
//! pays at most once whatever races; each reward points at its ledger
//! transfer, and nobody verifies their own proof.

use sea_orm_migration::prelude::*;

use crate::sql::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    r#"CREATE TABLE proofs_of_knowledge (
        id uuid PRIMARY KEY,
        student_id uuid NOT NULL REFERENCES users (id),
        kind text NOT NULL CHECK (kind IN ('course','achievement')),
        subject text NOT NULL CHECK (length(subject) BETWEEN 1 AND 128),
        score_hundredths integer NOT NULL CHECK (score_hundredths BETWEEN 0 AND 10000),
        evidence_hash text NOT NULL CHECK (evidence_hash ~ '^[0-9a-f]{64}$'),
        verified_by uuid NOT NULL REFERENCES users (id),
        verified_at timestamptz NOT NULL,
        source_transaction_id text NOT NULL CHECK (length(source_transaction_id) BETWEEN 1 AND 128),
        fingerprint text NOT NULL,
        CONSTRAINT proofs_of_knowledge_not_self_verified CHECK (verified_by <> student_id)
    )"#,
    "CREATE UNIQUE INDEX proofs_of_knowledge_source_transaction_id_key ON proofs_of_knowledge (source_transaction_id)",
    "CREATE INDEX proofs_of_knowledge_student_idx ON proofs_of_knowledge (student_id, id)",
    r#"CREATE TABLE student_earnings (
        id uuid PRIMARY KEY,
        student_id uuid NOT NULL REFERENCES users (id),
        proof_id uuid NOT NULL REFERENCES proofs_of_knowledge (id),
        source_transaction_id text NOT NULL,
        wallet_id uuid NOT NULL REFERENCES wallets (id),
        amount_azr_micros bigint NOT NULL CHECK (amount_azr_micros > 0),
        amount_usd_micros bigint NOT NULL,
        transaction_id uuid NOT NULL REFERENCES ledger_transactions (id),
        created_at timestamptz NOT NULL,
        CONSTRAINT student_earnings_peg CHECK (amount_usd_micros = amount_azr_micros)
    )"#,
    "CREATE UNIQUE INDEX student_earnings_proof_id_key ON student_earnings (proof_id)",
    "CREATE UNIQUE INDEX student_earnings_source_transaction_id_key ON student_earnings (source_transaction_id)",
    "CREATE UNIQUE INDEX student_earnings_transaction_id_key ON student_earnings (transaction_id)",
    "CREATE INDEX student_earnings_student_idx ON student_earnings (student_id, id)",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TABLE student_earnings",
    "DROP TABLE proofs_of_knowledge",
];

const SQLITE_UP: &[&str] = &[
    r#"CREATE TABLE proofs_of_knowledge (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        student_id BLOB NOT NULL REFERENCES users (id),
        kind TEXT NOT NULL CHECK (kind IN ('course','achievement')),
        subject TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 128),
        score_hundredths INTEGER NOT NULL CHECK (typeof(score_hundredths) = 'integer' AND score_hundredths BETWEEN 0 AND 10000),
        evidence_hash TEXT NOT NULL CHECK (length(evidence_hash) = 64 AND evidence_hash NOT GLOB '*[^0-9a-f]*'),
        verified_by BLOB NOT NULL REFERENCES users (id),
        verified_at TEXT NOT NULL,
        source_transaction_id TEXT NOT NULL CHECK (length(source_transaction_id) BETWEEN 1 AND 128),
        fingerprint TEXT NOT NULL,
        CONSTRAINT proofs_of_knowledge_not_self_verified CHECK (verified_by <> student_id)
    )"#,
    "CREATE UNIQUE INDEX proofs_of_knowledge_source_transaction_id_key ON proofs_of_knowledge (source_transaction_id)",
    "CREATE INDEX proofs_of_knowledge_student_idx ON proofs_of_knowledge (student_id, id)",
    r#"CREATE TABLE student_earnings (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        student_id BLOB NOT NULL REFERENCES users (id),
        proof_id BLOB NOT NULL REFERENCES proofs_of_knowledge (id),
        source_transaction_id TEXT NOT NULL,
        wallet_id BLOB NOT NULL REFERENCES wallets (id),
        amount_azr_micros INTEGER NOT NULL CHECK (typeof(amount_azr_micros) = 'integer' AND amount_azr_micros > 0),
        amount_usd_micros INTEGER NOT NULL CHECK (typeof(amount_usd_micros) = 'integer'),
        transaction_id BLOB NOT NULL REFERENCES ledger_transactions (id),
        created_at TEXT NOT NULL,
        CONSTRAINT student_earnings_peg CHECK (amount_usd_micros = amount_azr_micros)
    )"#,
    "CREATE UNIQUE INDEX student_earnings_proof_id_key ON student_earnings (proof_id)",
    "CREATE UNIQUE INDEX student_earnings_source_transaction_id_key ON student_earnings (source_transaction_id)",
    "CREATE UNIQUE INDEX student_earnings_transaction_id_key ON student_earnings (transaction_id)",
    "CREATE INDEX student_earnings_student_idx ON student_earnings (student_id, id)",
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
