//! SeaORM entity of the founder compensation table.

pub mod founder_compensation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "founder_compensations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub founder_id: Uuid,
        pub wallet_id: Uuid,
        pub month: String,
        pub compensation_type: String,
        pub status: String,
        pub amount_azr_micros: i64,
        pub amount_usd_micros: i64,
        pub notes: String,
        pub request_id: String,
        pub fingerprint: String,
        pub created_by: Uuid,
        pub created_at: DateTimeUtc,
        pub approved_by: Option<Uuid>,
        pub approved_at: Option<DateTimeUtc>,
        pub paid_by: Option<Uuid>,
        pub transaction_id: Option<Uuid>,
        pub tx_hash: Option<String>,
        pub paid_at: Option<DateTimeUtc>,
        pub cancelled_by: Option<Uuid>,
        pub cancelled_at: Option<DateTimeUtc>,
        pub cancel_reason: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
