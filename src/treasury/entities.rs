//! SeaORM entities of the ledger tables (see the treasury migration for the
//! constraints that hold them sound), and the Treasury's narrow view of the
//! wallet rows whose balances it keeps.

/// The wallet columns the Treasury reads and writes: the key, the owner (who
/// may spend), the three balances and when the wallet was opened (the
/// earliest time a balance can be asked for). Identity creates wallet rows
/// and owns the rest of them; their balance columns are written only by the
/// ledger, through this entity. Same table, no schema of its own.
pub mod wallet_balance {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "wallets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub owner_id: Uuid,
        pub available_micros: i64,
        pub pending_micros: i64,
        pub staked_micros: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod system_account {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "system_accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub code: String,
        pub balance_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod allocation_policy {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "allocation_policies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        pub treasury_bp: i32,
        pub founder_bp: i32,
        pub burn_bp: i32,
        pub circulation_bp: i32,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ledger_transaction {
    use sea_orm::entity::prelude::*;

    /// Serialize: PostgreSQL batches insert rows as one JSON document of
    /// them (`json_populate_recordset`), whose fields are these names.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "ledger_transactions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub kind: String,
        pub status: String,
        pub tx_hash: String,
        pub amount_azr_micros: i64,
        pub amount_usd_micros: i64,
        pub allocation_policy_version: Option<i32>,
        pub alloc_treasury_micros: Option<i64>,
        pub alloc_founder_micros: Option<i64>,
        pub alloc_burn_micros: Option<i64>,
        pub alloc_circulation_micros: Option<i64>,
        pub from_wallet_id: Option<Uuid>,
        pub to_wallet_id: Option<Uuid>,
        pub from_system_account: Option<String>,
        pub to_system_account: Option<String>,
        pub destination_address: Option<String>,
        pub gas_used: Option<i64>,
        pub gas_price_wei: Option<i64>,
        pub reason: String,
        pub metadata: Json,
        pub request_id: String,
        pub requested_by: Uuid,
        pub created_at: DateTimeUtc,
        pub confirmed_at: Option<DateTimeUtc>,
        pub processed_at: Option<DateTimeUtc>,
        pub mining_session_id: Option<Uuid>,
        pub backing_reference: Option<String>,
        pub reverses_transaction_id: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod ledger_entry {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_entries")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub transaction_id: Uuid,
        pub source_wallet_id: Option<Uuid>,
        pub source_system: Option<String>,
        pub source_bucket: String,
        pub destination_wallet_id: Option<Uuid>,
        pub destination_system: Option<String>,
        pub destination_bucket: String,
        pub amount_micros: i64,
        pub posted_at: DateTimeUtc,
        /// The source wallet's buckets once this entry's posting applied
        /// (`None` on a system side).
        pub source_available_after: Option<i64>,
        pub source_pending_after: Option<i64>,
        pub source_staked_after: Option<i64>,
        /// The destination wallet's, likewise.
        pub destination_available_after: Option<i64>,
        pub destination_pending_after: Option<i64>,
        pub destination_staked_after: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The wallets a transaction moves besides its `from_wallet_id` and
/// `to_wallet_id` (a multi-transfer's payees): what lists a wallet's
/// transactions through an index.
pub mod ledger_transaction_wallet {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ledger_transaction_wallets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub wallet_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub transaction_id: Uuid,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod idempotency_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub caller_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        pub operation: String,
        pub fingerprint: String,
        pub transaction_id: Uuid,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A batch of transfers that was applied, with each item's result, so that
/// its retry answers the same.
pub mod transfer_batch {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "transfer_batches")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub caller_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        pub mode: String,
        pub fingerprint: String,
        pub item_count: i64,
        pub results: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
