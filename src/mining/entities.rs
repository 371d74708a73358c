//! SeaORM entities of the mining tables.

pub mod session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "mining_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub miner_id: Uuid,
        pub wallet_id: Uuid,
        pub algorithm: String,
        pub pool_name: String,
        pub pool_url: String,
        pub worker_name: String,
        pub status: String,
        pub started_at: DateTimeUtc,
        pub ended_at: Option<DateTimeUtc>,
        pub last_sample_at: Option<DateTimeUtc>,
        pub sample_count: i64,
        pub hashrate_sum: f64,
        pub power_sum: f64,
        pub shares_accepted: i64,
        pub shares_rejected: i64,
        pub earnings_micros: i64,
        pub mint_transaction_id: Option<Uuid>,
        pub last_rig_sequence: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sample {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "mining_samples")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub session_id: Uuid,
        pub sampled_at: DateTimeUtc,
        pub hashrate_mhs: f64,
        pub power_watts: f64,
        pub temperature_celsius: f64,
        pub shares_accepted: i64,
        pub shares_rejected: i64,
        pub difficulty: f64,
        pub network_hashrate_mhs: f64,
        pub earnings_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A session's samples of one hour, added up (see migration 000019).
pub mod rollup {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "mining_sample_rollups")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub session_id: Uuid,
        /// Whole hours since 1970-01-01T00:00Z.
        #[sea_orm(primary_key, auto_increment = false)]
        pub hour: i64,
        pub sample_count: i64,
        pub hashrate_sum: f64,
        pub power_sum: f64,
        pub shares_accepted: i64,
        pub shares_rejected: i64,
        pub earnings_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
