//! Users, wallets and API keys.

use sea_orm_migration::prelude::*;

use crate::sql::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &[&str] = &[
    r#"CREATE OR REPLACE FUNCTION azora_touch_updated_at() RETURNS trigger AS $$
       BEGIN NEW.updated_at = now(); RETURN NEW; END
       $$ LANGUAGE plpgsql"#,
    r#"CREATE TABLE users (
        id uuid PRIMARY KEY,
        username text NOT NULL CHECK (username = lower(username) AND length(username) BETWEEN 3 AND 32),
        email text CHECK (email = lower(email)),
        user_type text NOT NULL CHECK (user_type IN ('student','teacher','founder','partner','investor','staff')),
        role text NOT NULL CHECK (role IN ('admin','treasurer','auditor','member','service')),
        wallet_address text CHECK (wallet_address ~ '^0x[0-9a-f]{40}$'),
        jurisdiction text CHECK (jurisdiction ~ '^[A-Z]{2}$'),
        country text CHECK (country ~ '^[A-Z]{2}$'),
        language text NOT NULL,
        kyc_status text NOT NULL CHECK (kyc_status IN ('pending','in_review','verified','rejected','expired')),
        kyc_reason text,
        kyc_updated_at timestamptz,
        reputation_score_e4 bigint NOT NULL DEFAULT 0 CHECK (reputation_score_e4 BETWEEN 0 AND 10000000000),
        metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )"#,
    "CREATE UNIQUE INDEX users_username_key ON users (username)",
    "CREATE UNIQUE INDEX users_email_key ON users (email)",
    "CREATE UNIQUE INDEX users_wallet_address_key ON users (wallet_address)",
    "CREATE INDEX users_role_idx ON users (role)",
    "CREATE TRIGGER users_touch_updated_at BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION azora_touch_updated_at()",
    r#"CREATE TABLE wallets (
        id uuid PRIMARY KEY,
        owner_id uuid NOT NULL REFERENCES users (id),
        address text NOT NULL CHECK (address ~ '^0x[0-9a-f]{40}$'),
        label text NOT NULL DEFAULT '',
        available_micros bigint NOT NULL DEFAULT 0 CHECK (available_micros >= 0),
        pending_micros bigint NOT NULL DEFAULT 0 CHECK (pending_micros >= 0),
        staked_micros bigint NOT NULL DEFAULT 0 CHECK (staked_micros >= 0),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )"#,
    "CREATE UNIQUE INDEX wallets_address_key ON wallets (address)",
    "CREATE INDEX wallets_owner_id_idx ON wallets (owner_id, id)",
    "CREATE TRIGGER wallets_touch_updated_at BEFORE UPDATE ON wallets FOR EACH ROW EXECUTE FUNCTION azora_touch_updated_at()",
    r#"CREATE TABLE api_keys (
        id uuid PRIMARY KEY,
        user_id uuid NOT NULL REFERENCES users (id),
        name text NOT NULL DEFAULT '',
        role text NOT NULL CHECK (role IN ('admin','treasurer','auditor','member','service')),
        key_prefix text NOT NULL,
        key_hash text NOT NULL CHECK (key_hash ~ '^[0-9a-f]{64}$'),
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz,
        revoked_at timestamptz
    )"#,
    "CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash)",
    "CREATE INDEX api_keys_user_id_idx ON api_keys (user_id, id)",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TABLE api_keys",
    "DROP TABLE wallets",
    "DROP TABLE users",
    "DROP FUNCTION azora_touch_updated_at()",
];

// SQLite has no regular expressions: GLOB character classes stand in, and
// `length` pins the size. Timestamps default to RFC 3339 UTC text.
const SQLITE_UP: &[&str] = &[
    r#"CREATE TABLE users (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        username TEXT NOT NULL CHECK (username = lower(username) AND length(username) BETWEEN 3 AND 32),
        email TEXT CHECK (email = lower(email)),
        user_type TEXT NOT NULL CHECK (user_type IN ('student','teacher','founder','partner','investor','staff')),
        role TEXT NOT NULL CHECK (role IN ('admin','treasurer','auditor','member','service')),
        wallet_address TEXT CHECK (length(wallet_address) = 42 AND wallet_address GLOB '0x*' AND substr(wallet_address, 3) NOT GLOB '*[^0-9a-f]*'),
        jurisdiction TEXT CHECK (length(jurisdiction) = 2 AND jurisdiction NOT GLOB '*[^A-Z]*'),
        country TEXT CHECK (length(country) = 2 AND country NOT GLOB '*[^A-Z]*'),
        language TEXT NOT NULL,
        kyc_status TEXT NOT NULL CHECK (kyc_status IN ('pending','in_review','verified','rejected','expired')),
        kyc_reason TEXT,
        kyc_updated_at TEXT,
        reputation_score_e4 INTEGER NOT NULL DEFAULT 0 CHECK (typeof(reputation_score_e4) = 'integer' AND reputation_score_e4 BETWEEN 0 AND 10000000000),
        metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    )"#,
    "CREATE UNIQUE INDEX users_username_key ON users (username)",
    "CREATE UNIQUE INDEX users_email_key ON users (email)",
    "CREATE UNIQUE INDEX users_wallet_address_key ON users (wallet_address)",
    "CREATE INDEX users_role_idx ON users (role)",
    r#"CREATE TRIGGER users_touch_updated_at AFTER UPDATE ON users FOR EACH ROW
       WHEN NEW.updated_at = OLD.updated_at
       BEGIN UPDATE users SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.id; END"#,
    r#"CREATE TABLE wallets (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        owner_id BLOB NOT NULL REFERENCES users (id),
        address TEXT NOT NULL CHECK (length(address) = 42 AND address GLOB '0x*' AND substr(address, 3) NOT GLOB '*[^0-9a-f]*'),
        label TEXT NOT NULL DEFAULT '',
        available_micros INTEGER NOT NULL DEFAULT 0 CHECK (typeof(available_micros) = 'integer' AND available_micros >= 0),
        pending_micros INTEGER NOT NULL DEFAULT 0 CHECK (typeof(pending_micros) = 'integer' AND pending_micros >= 0),
        staked_micros INTEGER NOT NULL DEFAULT 0 CHECK (typeof(staked_micros) = 'integer' AND staked_micros >= 0),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    )"#,
    "CREATE UNIQUE INDEX wallets_address_key ON wallets (address)",
    "CREATE INDEX wallets_owner_id_idx ON wallets (owner_id, id)",
    r#"CREATE TRIGGER wallets_touch_updated_at AFTER UPDATE ON wallets FOR EACH ROW
       WHEN NEW.updated_at = OLD.updated_at
       BEGIN UPDATE wallets SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.id; END"#,
    r#"CREATE TABLE api_keys (
        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        user_id BLOB NOT NULL REFERENCES users (id),
        name TEXT NOT NULL DEFAULT '',
        role TEXT NOT NULL CHECK (role IN ('admin','treasurer','auditor','member','service')),
        key_prefix TEXT NOT NULL,
        key_hash TEXT NOT NULL CHECK (length(key_hash) = 64 AND key_hash NOT GLOB '*[^0-9a-f]*'),
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        expires_at TEXT,
        revoked_at TEXT
    )"#,
    "CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash)",
    "CREATE INDEX api_keys_user_id_idx ON api_keys (user_id, id)",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TABLE api_keys",
    "DROP TABLE wallets",
    "DROP TABLE users",
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
