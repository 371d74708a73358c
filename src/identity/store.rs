//! Identity's SQL: every query on `users`, `wallets` and `api_keys`, and the
//! conversion of rows into domain types. Database errors are classified here.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait,
    FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Set,
};
use uuid::Uuid;

use super::domain::{
    ApiKey, KycChange, KycStatus, NewApiKey, NewUser, NewWallet, User, UserChanges, UserFilter,
    UserType, Wallet,
};
use super::entities::{api_key, user, wallet};
use crate::auth::Role;
use crate::db::classify;
use crate::error::Error;
use crate::pagination::PageRequest;

type Result<T> = std::result::Result<T, Error>;

fn corrupt(column: &str, value: &str) -> Error {
    Error::internal(format!("unexpected {column} {value:?} in the database"))
}

fn user_from_row(row: user::Model) -> Result<User> {
    Ok(User {
        id: row.id,
        user_type: UserType::parse(&row.user_type)
            .ok_or_else(|| corrupt("user_type", &row.user_type))?,
        role: Role::parse(&row.role).ok_or_else(|| corrupt("role", &row.role))?,
        kyc_status: KycStatus::parse(&row.kyc_status)
            .ok_or_else(|| corrupt("kyc_status", &row.kyc_status))?,
        username: row.username,
        email: row.email,
        wallet_address: row.wallet_address,
        jurisdiction: row.jurisdiction,
        country: row.country,
        language: row.language,
        kyc_reason: row.kyc_reason,
        kyc_updated_at: row.kyc_updated_at,
        reputation_score_units: row.reputation_score_e4,
        metadata: row.metadata,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn wallet_from_row(row: wallet::Model) -> Wallet {
    Wallet {
        id: row.id,
        owner_id: row.owner_id,
        address: row.address,
        label: row.label,
        available_micros: row.available_micros,
        pending_micros: row.pending_micros,
        staked_micros: row.staked_micros,
        created_at: row.created_at,
    }
}

fn api_key_from_row(row: api_key::Model) -> Result<ApiKey> {
    Ok(ApiKey {
        id: row.id,
        user_id: row.user_id,
        role: Role::parse(&row.role).ok_or_else(|| corrupt("role", &row.role))?,
        name: row.name,
        prefix: row.key_prefix,
        created_at: row.created_at,
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
    })
}

pub(super) async fn insert_user(
    db: &impl ConnectionTrait,
    new: NewUser,
    role: Role,
) -> Result<User> {
    let row = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        username: Set(new.username.as_str().to_owned()),
        email: Set(new.email.map(|email| email.as_str().to_owned())),
        user_type: Set(new.user_type.as_str().to_owned()),
        role: Set(role.as_str().to_owned()),
        wallet_address: Set(new
            .wallet_address
            .map(|address| address.as_str().to_owned())),
        jurisdiction: Set(new.jurisdiction.map(|code| code.as_str().to_owned())),
        country: Set(new.country.map(|code| code.as_str().to_owned())),
        language: Set(new.language.as_str().to_owned()),
        kyc_status: Set(KycStatus::Pending.as_str().to_owned()),
        kyc_reason: Set(None),
        kyc_updated_at: Set(None),
        reputation_score_e4: Set(0),
        metadata: Set(new.metadata.into_json()),
        created_at: NotSet,
        updated_at: NotSet,
    }
    .insert(db)
    .await
    .map_err(classify)?;
    user_from_row(row)
}

pub(super) async fn find_user(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<User>> {
    user::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)?
        .map(user_from_row)
        .transpose()
}

pub(super) async fn find_user_by_username(
    db: &impl ConnectionTrait,
    username: &str,
) -> Result<Option<User>> {
    user::Entity::find()
        .filter(user::Column::Username.eq(username.to_ascii_lowercase()))
        .one(db)
        .await
        .map_err(classify)?
        .map(user_from_row)
        .transpose()
}

pub(super) async fn list_users(
    db: &impl ConnectionTrait,
    filter: &UserFilter,
    page: &PageRequest,
) -> Result<Vec<User>> {
    user::Entity::find()
        .apply_if(filter.user_type, |query, value| {
            query.filter(user::Column::UserType.eq(value.as_str()))
        })
        .apply_if(filter.kyc_status, |query, value| {
            query.filter(user::Column::KycStatus.eq(value.as_str()))
        })
        .apply_if(filter.jurisdiction.clone(), |query, value| {
            query.filter(user::Column::Jurisdiction.eq(value))
        })
        .apply_if(filter.only_user, |query, id| {
            query.filter(user::Column::Id.eq(id))
        })
        .apply_if(page.after, |query, after| {
            query.filter(user::Column::Id.gt(after))
        })
        .order_by_asc(user::Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(user_from_row)
        .collect()
}

/// Applies `changes` and returns the user as the database now has it
/// (`updated_at` is set by a trigger, so the row is read back).
pub(super) async fn update_user(
    db: &impl ConnectionTrait,
    id: Uuid,
    changes: UserChanges,
) -> Result<Option<User>> {
    let mut row = user::ActiveModel {
        id: sea_orm::ActiveValue::Unchanged(id),
        ..Default::default()
    };
    let UserChanges {
        email,
        user_type,
        wallet_address,
        jurisdiction,
        country,
        language,
        metadata,
        reputation_score,
    } = changes;
    if let Some(email) = email {
        row.email = Set(email.map(|email| email.as_str().to_owned()));
    }
    if let Some(user_type) = user_type {
        row.user_type = Set(user_type.as_str().to_owned());
    }
    if let Some(address) = wallet_address {
        row.wallet_address = Set(address.map(|address| address.as_str().to_owned()));
    }
    if let Some(code) = jurisdiction {
        row.jurisdiction = Set(code.map(|code| code.as_str().to_owned()));
    }
    if let Some(code) = country {
        row.country = Set(code.map(|code| code.as_str().to_owned()));
    }
    if let Some(language) = language {
        row.language = Set(language.as_str().to_owned());
    }
    if let Some(metadata) = metadata {
        row.metadata = Set(metadata.into_json());
    }
    if let Some(score) = reputation_score {
        row.reputation_score_e4 = Set(score.units());
    }
    if row.is_changed() {
        let result = user::Entity::update_many()
            .set(row)
            .filter(user::Column::Id.eq(id))
            .exec(db)
            .await
            .map_err(classify)?;
        if result.rows_affected == 0 {
            return Ok(None);
        }
    }
    find_user(db, id).await
}

pub(super) async fn set_user_role(db: &impl ConnectionTrait, id: Uuid, role: Role) -> Result<()> {
    user::Entity::update_many()
        .col_expr(user::Column::Role, Expr::value(role.as_str()))
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Ids of all admins, locked until the transaction ends (PostgreSQL; on
/// SQLite the IMMEDIATE transaction already serialises writers), so two
/// concurrent demotions cannot both see "another admin remains".
pub(super) async fn lock_admin_ids(db: &impl ConnectionTrait) -> Result<Vec<Uuid>> {
    let mut query = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .filter(user::Column::Role.eq(Role::Admin.as_str()))
        .order_by_asc(user::Column::Id);
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        QuerySelect::query(&mut query).lock(sea_orm::sea_query::LockType::Update);
    }
    query.into_tuple::<Uuid>().all(db).await.map_err(classify)
}

pub(super) async fn any_admin_exists(db: &impl ConnectionTrait) -> Result<bool> {
    let count = user::Entity::find()
        .filter(user::Column::Role.eq(Role::Admin.as_str()))
        .count(db)
        .await
        .map_err(classify)?;
    Ok(count > 0)
}

pub(super) async fn set_kyc_status(
    db: &impl ConnectionTrait,
    id: Uuid,
    change: &KycChange,
    at: DateTime<Utc>,
) -> Result<()> {
    user::Entity::update_many()
        .col_expr(user::Column::KycStatus, Expr::value(change.status.as_str()))
        .col_expr(user::Column::KycReason, Expr::value(change.reason.clone()))
        .col_expr(user::Column::KycUpdatedAt, Expr::value(at))
        .filter(user::Column::Id.eq(id))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

pub(super) async fn insert_wallet(db: &impl ConnectionTrait, new: NewWallet) -> Result<Wallet> {
    let row = wallet::ActiveModel {
        id: Set(Uuid::now_v7()),
        owner_id: Set(new.owner_id),
        address: Set(new.address.as_str().to_owned()),
        label: Set(new.label),
        available_micros: Set(0),
        pending_micros: Set(0),
        staked_micros: Set(0),
        created_at: NotSet,
        updated_at: NotSet,
    }
    .insert(db)
    .await
    .map_err(classify)?;
    Ok(wallet_from_row(row))
}

pub(super) async fn find_wallet(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Wallet>> {
    Ok(wallet::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)?
        .map(wallet_from_row))
}

pub(super) async fn list_wallets(
    db: &impl ConnectionTrait,
    owner: Option<Uuid>,
    page: &PageRequest,
) -> Result<Vec<Wallet>> {
    Ok(wallet::Entity::find()
        .apply_if(owner, |query, owner| {
            query.filter(wallet::Column::OwnerId.eq(owner))
        })
        .apply_if(page.after, |query, after| {
            query.filter(wallet::Column::Id.gt(after))
        })
        .order_by_asc(wallet::Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(wallet_from_row)
        .collect())
}

pub(super) async fn insert_api_key(
    db: &impl ConnectionTrait,
    new: NewApiKey,
    prefix: String,
    hash: String,
) -> Result<ApiKey> {
    let row = api_key::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(new.user_id),
        name: Set(new.name),
        role: Set(new.role.as_str().to_owned()),
        key_prefix: Set(prefix),
        key_hash: Set(hash),
        created_at: NotSet,
        expires_at: Set(new.expires_at),
        revoked_at: Set(None),
    }
    .insert(db)
    .await
    .map_err(classify)?;
    api_key_from_row(row)
}

pub(super) async fn find_api_key(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<ApiKey>> {
    api_key::Entity::find_by_id(id)
        .one(db)
        .await
        .map_err(classify)?
        .map(api_key_from_row)
        .transpose()
}

/// A key by its hash, with its user's role now (which bounds what the key
/// may do), in one query: authentication runs it on every key-cache miss.
pub(super) async fn find_key_holder_by_hash(
    db: &impl ConnectionTrait,
    hash: &str,
) -> Result<Option<(ApiKey, Role)>> {
    let row = db
        .query_one_raw(crate::db::statement(
            db,
            "SELECT k.id, k.user_id, k.name, k.role, k.key_prefix, k.key_hash, k.created_at, \
             k.expires_at, k.revoked_at, u.role AS user_role \
             FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = ?",
            vec![hash.into()],
        ))
        .await
        .map_err(classify)?;
    let Some(row) = row else { return Ok(None) };
    let key = api_key::Model::from_query_result(&row, "").map_err(classify)?;
    let user_role: String = row.try_get("", "user_role").map_err(classify)?;
    let user_role = Role::parse(&user_role).ok_or_else(|| corrupt("role", &user_role))?;
    Ok(Some((api_key_from_row(key)?, user_role)))
}

pub(super) async fn list_api_keys(
    db: &impl ConnectionTrait,
    user: Option<Uuid>,
    page: &PageRequest,
) -> Result<Vec<ApiKey>> {
    api_key::Entity::find()
        .apply_if(user, |query, user| {
            query.filter(api_key::Column::UserId.eq(user))
        })
        .apply_if(page.after, |query, after| {
            query.filter(api_key::Column::Id.gt(after))
        })
        .order_by_asc(api_key::Column::Id)
        .limit(page.fetch_limit())
        .all(db)
        .await
        .map_err(classify)?
        .into_iter()
        .map(api_key_from_row)
        .collect()
}

/// Revokes the key if it is not revoked yet; a revoked key keeps its time.
pub(super) async fn revoke_api_key(
    db: &impl ConnectionTrait,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<()> {
    api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, Expr::value(at))
        .filter(api_key::Column::Id.eq(id))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Revokes every live key of `user` whose role is not one of `keep`.
pub(super) async fn revoke_api_keys_except(
    db: &impl ConnectionTrait,
    user: Uuid,
    keep: &[Role],
    at: DateTime<Utc>,
) -> Result<u64> {
    let result = api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, Expr::value(at))
        .filter(api_key::Column::UserId.eq(user))
        .filter(api_key::Column::RevokedAt.is_null())
        .filter(api_key::Column::Role.is_not_in(keep.iter().map(|role| role.as_str())))
        .exec(db)
        .await
        .map_err(classify)?;
    Ok(result.rows_affected)
}

/// The owners of `wallets` with their KYC status: (wallet, username, KYC),
/// one row per wallet found.
pub(super) async fn wallet_holders(
    db: &impl ConnectionTrait,
    wallets: &[Uuid],
) -> Result<Vec<(Uuid, String, KycStatus)>> {
    if wallets.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = vec!["?"; wallets.len()].join(", ");
    let sql = format!(
        "SELECT w.id AS wallet, u.username AS username, u.kyc_status AS kyc \
         FROM wallets w JOIN users u ON u.id = w.owner_id WHERE w.id IN ({placeholders})"
    );
    let values = wallets.iter().map(|id| (*id).into()).collect();
    db.query_all_raw(crate::db::statement(db, &sql, values))
        .await
        .map_err(classify)?
        .into_iter()
        .map(|row| {
            let kyc: String = row.try_get("", "kyc").map_err(classify)?;
            Ok((
                row.try_get("", "wallet").map_err(classify)?,
                row.try_get("", "username").map_err(classify)?,
                KycStatus::parse(&kyc).ok_or_else(|| corrupt("kyc_status", &kyc))?,
            ))
        })
        .collect()
}
