//! SeaORM entities of the billing tables.

pub mod tier {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscription_tiers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub code: String,
        pub monthly_price_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod subscription {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "subscriptions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        pub tier: String,
        pub status: String,
        pub price_micros: i64,
        pub currency: String,
        pub start_at: DateTimeUtc,
        pub periods_invoiced: i32,
        pub current_period_end: DateTimeUtc,
        pub request_id: String,
        pub fingerprint: String,
        pub created_by: Uuid,
        pub created_at: DateTimeUtc,
        pub cancelled_by: Option<Uuid>,
        pub cancelled_at: Option<DateTimeUtc>,
        pub cancel_reason: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod invoice {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "invoices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub subscription_id: Uuid,
        pub user_id: Uuid,
        pub period_index: i32,
        pub amount_micros: i64,
        pub currency: String,
        pub status: String,
        pub period_start: DateTimeUtc,
        pub period_end: DateTimeUtc,
        pub due_at: DateTimeUtc,
        pub created_at: DateTimeUtc,
        pub paid_at: Option<DateTimeUtc>,
        pub paid_by: Option<Uuid>,
        pub wallet_id: Option<Uuid>,
        pub transaction_id: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
