//! SeaORM entities of the knowledge reward tables.

pub mod proof {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "proofs_of_knowledge")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub student_id: Uuid,
        pub kind: String,
        pub subject: String,
        pub score_hundredths: i32,
        pub evidence_hash: String,
        pub verified_by: Uuid,
        pub verified_at: DateTimeUtc,
        pub source_transaction_id: String,
        pub fingerprint: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod earning {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "student_earnings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub student_id: Uuid,
        pub proof_id: Uuid,
        pub source_transaction_id: String,
        pub wallet_id: Uuid,
        pub amount_azr_micros: i64,
        pub amount_usd_micros: i64,
        pub transaction_id: Uuid,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
