//! Retry safety for every mutating RPC outside the ledger.
//!
//! A caller may send a `request_id` with any mutating call; the ledger's
//! commands keep theirs in `idempotency_keys`, every other call here, in
//! `request_keys`, with the Treasury semantics:
//!
//! - same caller, same id, same request → the original result (the resource
//!   the first call produced, as it is now) and nothing changes;
//! - same id with a different request (another method, or other fields) →
//!   INVALID_ARGUMENT on `request_id`;
//! - a request that was rejected leaves its id unused: the key commits with
//!   the change or not at all.
//!
//! "The same request" is the request message's protobuf encoding (with the
//! method): deterministic for equal messages, since no request has a map
//! field and `Struct` keeps its keys ordered.
//!
//! Concurrency: [`claim`] inserts the key first thing in the call's write
//! transaction. On PostgreSQL a concurrent twin blocks on the primary key
//! until the first commits (then it sees the row and replays) or rolls back
//! (then it proceeds as the first); on SQLite write transactions are
//! serialised already.

use prost::Message;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, TryInsertResult};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::classify;
use crate::error::{Error, FieldViolation};
use crate::money::RequestId;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "request_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        pub method: String,
        pub fingerprint: String,
        pub resource_type: String,
        pub resource_id: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A call's request id and the fingerprint of what it asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestKey {
    request_id: RequestId,
    fingerprint: String,
}

impl RequestKey {
    /// The key of a unary call: `None` when the caller sent no request id
    /// (then a retry is not recognised).
    pub fn of(
        field: &str,
        request_id: &str,
        message: &impl Message,
    ) -> Result<Option<Self>, FieldViolation> {
        let mut fingerprint = Fingerprint::default();
        fingerprint.add(message);
        fingerprint.key(field, request_id)
    }

    pub fn request_id(&self) -> &str {
        self.request_id.as_str()
    }
}

/// The fingerprint of a request, message by message (a client stream's
/// messages in order, each length-prefixed so their bounds count too).
#[derive(Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn add(&mut self, message: &impl Message) {
        let encoded = message.encode_to_vec();
        self.0.update((encoded.len() as u64).to_be_bytes());
        self.0.update(&encoded);
    }

    /// The request's key under `request_id`; `None` when it is empty.
    pub fn key(self, field: &str, request_id: &str) -> Result<Option<RequestKey>, FieldViolation> {
        if request_id.is_empty() {
            return Ok(None);
        }
        Ok(Some(RequestKey {
            request_id: RequestId::parse(field, request_id)?,
            fingerprint: hex::encode(self.0.finalize()),
        }))
    }
}

/// What [`claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The id is new (now held by this transaction): do the work.
    Fresh,
    /// The id was used before for the same request: answer with this
    /// resource.
    Replay { resource_id: String },
}

/// Claims `key` for `user` calling `method` inside the call's write
/// transaction `db`, or finds its earlier use.
pub async fn claim(
    db: &impl ConnectionTrait,
    user: Uuid,
    method: &str,
    key: &RequestKey,
) -> Result<Claim, Error> {
    let row = entity::ActiveModel {
        user_id: Set(user),
        request_id: Set(key.request_id().to_owned()),
        method: Set(method.to_owned()),
        fingerprint: Set(key.fingerprint.clone()),
        resource_type: Set(String::new()),
        resource_id: Set(String::new()),
        created_at: Set(chrono::Utc::now()),
    };
    let inserted = entity::Entity::insert(row)
        .on_conflict_do_nothing_on([entity::Column::UserId, entity::Column::RequestId])
        .exec_without_returning(db)
        .await
        .map_err(classify)?;
    // Row counts, not insert ids: a conflict is 0 rows (or `Conflicted`).
    if matches!(inserted, TryInsertResult::Inserted(rows) if rows > 0) {
        return Ok(Claim::Fresh);
    }
    let earlier = entity::Entity::find()
        .filter(entity::Column::UserId.eq(user))
        .filter(entity::Column::RequestId.eq(key.request_id()))
        .one(db)
        .await
        .map_err(classify)?
        .ok_or_else(|| Error::internal("a conflicting request key vanished"))?;
    if earlier.method != method || earlier.fingerprint != key.fingerprint {
        return Err(Error::invalid(
            "request_id",
            "was already used for a different request",
        ));
    }
    Ok(Claim::Replay {
        resource_id: earlier.resource_id,
    })
}

/// Records what the claimed call produced, in its transaction.
pub async fn settle(
    db: &impl ConnectionTrait,
    user: Uuid,
    key: &RequestKey,
    resource_type: &str,
    resource_id: &str,
) -> Result<(), Error> {
    entity::Entity::update_many()
        .col_expr(entity::Column::ResourceType, Expr::value(resource_type))
        .col_expr(entity::Column::ResourceId, Expr::value(resource_id))
        .filter(entity::Column::UserId.eq(user))
        .filter(entity::Column::RequestId.eq(key.request_id()))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::identity as pb;

    #[test]
    fn equal_requests_have_equal_keys_and_any_field_changes_it() {
        let request = pb::CreateWalletRequest {
            request_id: "r-1".into(),
            owner_id: "a".into(),
            address: "0x1".into(),
            label: "main".into(),
        };
        let key = RequestKey::of("request_id", "r-1", &request)
            .unwrap()
            .unwrap();
        assert_eq!(
            Some(key.clone()),
            RequestKey::of("request_id", "r-1", &request.clone()).unwrap()
        );
        let other = pb::CreateWalletRequest {
            label: "savings".into(),
            ..request
        };
        assert_ne!(
            Some(key),
            RequestKey::of("request_id", "r-1", &other).unwrap()
        );
        assert_eq!(RequestKey::of("request_id", "", &other).unwrap(), None);
        assert!(RequestKey::of("request_id", "has space", &other).is_err());
    }
}
