//! SeaORM entities of the compliance tables.

pub mod report {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "compliance_reports")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub report_type: String,
        pub period_start: DateTimeUtc,
        pub period_end: DateTimeUtc,
        pub status: String,
        pub total_transactions: i64,
        pub volume_azr_micros: i64,
        pub volume_usd_micros: i64,
        pub treasury_balance_micros: i64,
        /// JSON array of checks.
        pub checks: String,
        /// JSON array of strings.
        pub recommendations: String,
        pub generated_by: Uuid,
        pub generated_at: DateTimeUtc,
        /// The caller's idempotency key, unique per `generated_by`; none on
        /// reports from before request ids.
        pub request_id: Option<String>,
        /// Mining claims pending at the period's end, and their AZR.
        pub pending_claims: i64,
        pub pending_claims_micros: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod alert {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "alerts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub severity: String,
        pub source: String,
        pub message: String,
        pub created_at: DateTimeUtc,
        pub acknowledged_by: Option<Uuid>,
        pub acknowledged_at: Option<DateTimeUtc>,
        /// Position in commit order (see `store::raise_alert_in`); what
        /// WatchAlerts resumes from.
        pub sequence: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod system_health {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "system_health")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub component: String,
        pub status: String,
        pub latency_micros: Option<i64>,
        pub recorded_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
