//! Identity's use cases: who may do what, and which changes happen together
//! in one transaction.

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::domain::{
    ApiKey, IssuedApiKey, KycUpdate, NewApiKey, NewUser, NewWallet, OwnedBy, RoleChange, User,
    UserFilter, UserType, UserUpdate, Username, Wallet,
};
use super::store;
use std::sync::Arc;

use crate::audit::{Audited, Begun, Change, Replay};
use crate::auth::{self, KeyCache, Principal, Role};
use crate::cache::{Cache, Entry, Generation, Invalidation};
use crate::error::Error;
use crate::idempotency::RequestKey;
use crate::pagination::{Page, PageQuery, PageRequest};

type Result<T> = std::result::Result<T, Error>;

/// Cached reads of a user that a change to it makes stale.
fn user_changed(id: Uuid) -> Invalidation {
    Invalidation::of([Generation::User(id)])
}

#[derive(Clone)]
pub struct Identity {
    db: DatabaseConnection,
    /// The authenticator's cache, emptied whenever a key may have died.
    key_cache: Option<Arc<KeyCache>>,
    /// Cached users and wallets, invalidated after every change to them.
    cache: Cache,
}

impl Identity {
    /// For the command line and tests: no authenticator to keep in step.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            key_cache: None,
            cache: Cache::disabled(),
        }
    }

    pub fn with_key_cache(db: DatabaseConnection, key_cache: Arc<KeyCache>, cache: Cache) -> Self {
        Self {
            db,
            key_cache: Some(key_cache),
            cache,
        }
    }

    /// Answers a retry with the user as it is now. The first call may have
    /// committed and died before its invalidation reached Redis: the retry
    /// invalidates again.
    async fn replay_user(&self, mut replay: Replay, caller: &Principal) -> Result<User> {
        let user = store::find_user(replay.transaction(), replay.resource_id()?)
            .await?
            .ok_or_else(|| Error::internal("a replayed user is gone"))?;
        replay.invalidate(user_changed(user.id));
        replay.answer(caller, "user", user).await
    }

    fn forget_cached_keys(&self) {
        if let Some(cache) = &self.key_cache {
            cache.clear();
        }
    }

    pub async fn create_user(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        new: NewUser,
    ) -> Result<User> {
        caller.require_role(&[Role::Admin])?;
        let transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(replay) => return self.replay_user(replay, caller).await,
            };
        let user = store::insert_user(&*transaction, new, Role::Member).await?;
        transaction
            .commit(caller, Change::new("user", user.id).new_values(&user))
            .await?;
        Ok(user)
    }

    pub async fn get_user(&self, caller: &Principal, id: Uuid) -> Result<User> {
        caller.require_read(id)?;
        self.cache
            .get_or_load(Entry::User(id), || store::find_user(&self.db, id))
            .await?
            .ok_or_else(|| Error::not_found("user", id))
    }

    pub async fn list_users(
        &self,
        caller: &Principal,
        PageQuery {
            mut filter,
            page_size,
            page_token,
        }: PageQuery<UserFilter>,
    ) -> Result<Page<User>> {
        if !caller.role.reads_everything() {
            filter.only_user = Some(caller.user_id);
        }
        let page = PageRequest::parse(page_size, &page_token, &filter.fingerprint())?;
        let mut users = store::list_users(&self.db, &filter, &page).await?;
        let next_page_token = page.finish(&mut users, |user| user.id);
        Ok(Page {
            items: users,
            next_page_token,
        })
    }

    pub async fn update_user(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        UserUpdate { id, changes }: UserUpdate,
    ) -> Result<User> {
        let allowed = caller.is_admin()
            || (caller.user_id == id
                && !caller.is_service_key()
                && !changes.touches_admin_fields());
        if !allowed {
            return Err(Error::PermissionDenied);
        }
        let mut transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(replay) => return self.replay_user(replay, caller).await,
            };
        let before = store::find_user(&*transaction, id)
            .await?
            .ok_or_else(|| Error::not_found("user", id))?;
        let after = store::update_user(&*transaction, id, changes)
            .await?
            .ok_or_else(|| Error::not_found("user", id))?;
        transaction.invalidate(user_changed(id));
        transaction
            .commit(
                caller,
                Change::new("user", id).old(&before).new_values(&after),
            )
            .await?;
        Ok(after)
    }

    pub async fn set_user_role(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        RoleChange { user: id, role }: RoleChange,
    ) -> Result<User> {
        caller.require_role(&[Role::Admin])?;
        let mut transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(replay) => return self.replay_user(replay, caller).await,
            };
        let admins = store::lock_admin_ids(&*transaction).await?;
        let before = store::find_user(&*transaction, id)
            .await?
            .ok_or_else(|| Error::not_found("user", id))?;
        if before.role == Role::Admin && role != Role::Admin && admins.len() <= 1 {
            return Err(Error::FailedPrecondition {
                reason: "LAST_ADMIN",
                message: "the last admin cannot be demoted; promote another admin first".into(),
            });
        }
        let mut revoked = 0;
        if before.role != role {
            store::set_user_role(&*transaction, id, role).await?;
            // Keys carry the role they were issued with; keys of the old role
            // must not outlive it.
            revoked = store::revoke_api_keys_except(
                &*transaction,
                id,
                &[role, Role::Service],
                Utc::now(),
            )
            .await?;
        }
        let user = store::find_user(&*transaction, id)
            .await?
            .ok_or_else(|| Error::not_found("user", id))?;
        let new_values = serde_json::json!({ "user": &user, "revoked_api_keys": revoked });
        transaction.invalidate(user_changed(id));
        transaction
            .commit(
                caller,
                Change::new("user", id).old(&before).new_values(new_values),
            )
            .await?;
        self.forget_cached_keys();
        Ok(user)
    }

    pub async fn set_kyc_status(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        KycUpdate { user: id, change }: KycUpdate,
    ) -> Result<User> {
        caller.require_role(&[Role::Admin, Role::Auditor])?;
        let mut transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(replay) => return self.replay_user(replay, caller).await,
            };
        let before = store::find_user(&*transaction, id)
            .await?
            .ok_or_else(|| Error::not_found("user", id))?;
        store::set_kyc_status(&*transaction, id, &change, Utc::now()).await?;
        let user = store::find_user(&*transaction, id)
            .await?
            .ok_or_else(|| Error::not_found("user", id))?;
        transaction.invalidate(user_changed(id));
        transaction
            .commit(
                caller,
                Change::new("user", id).old(&before).new_values(&user),
            )
            .await?;
        Ok(user)
    }

    pub async fn create_wallet(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        new: NewWallet,
    ) -> Result<Wallet> {
        let allowed =
            caller.is_admin() || (caller.user_id == new.owner_id && !caller.is_service_key());
        if !allowed {
            return Err(Error::PermissionDenied);
        }
        let transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(replay) => {
                    let wallet = store::find_wallet(replay.transaction(), replay.resource_id()?)
                        .await?
                        .ok_or_else(|| Error::internal("a replayed wallet is gone"))?;
                    return replay.answer(caller, "wallet", wallet).await;
                }
            };
        if store::find_user(&*transaction, new.owner_id)
            .await?
            .is_none()
        {
            return Err(Error::not_found("user", new.owner_id));
        }
        let wallet = store::insert_wallet(&*transaction, new).await?;
        transaction
            .commit(caller, Change::new("wallet", wallet.id).new_values(&wallet))
            .await?;
        Ok(wallet)
    }

    pub async fn get_wallet(&self, caller: &Principal, id: Uuid) -> Result<Wallet> {
        // The cached row carries the owner: the same check runs on it.
        let found = self
            .cache
            .get_or_load(Entry::Wallet(id), || store::find_wallet(&self.db, id))
            .await?;
        caller.readable(
            found,
            |wallet| wallet.owner_id,
            || Error::not_found("wallet", id),
        )
    }

    pub async fn list_wallets(
        &self,
        caller: &Principal,
        PageQuery {
            filter: OwnedBy(owner),
            page_size,
            page_token,
        }: PageQuery<OwnedBy>,
    ) -> Result<Page<Wallet>> {
        let owner = caller.visible_owner(owner)?;
        let page = PageRequest::parse(page_size, &page_token, &format!("wallets|{owner:?}"))?;
        let mut wallets = store::list_wallets(&self.db, owner, &page).await?;
        let next_page_token = page.finish(&mut wallets, |wallet| wallet.id);
        Ok(Page {
            items: wallets,
            next_page_token,
        })
    }

    /// Issues a key. The secret exists only in this answer, so a retry with
    /// the same request id gets the key's record without it (`replayed`).
    pub async fn create_api_key(
        &self,
        caller: &Principal,
        key: Option<RequestKey>,
        new: NewApiKey,
    ) -> Result<IssuedApiKey> {
        let allowed =
            caller.is_admin() || (caller.user_id == new.user_id && !caller.is_service_key());
        if !allowed {
            return Err(Error::PermissionDenied);
        }
        let transaction =
            match Audited::begin_once(&self.db, &self.cache, caller, key.as_ref()).await? {
                Begun::Fresh(transaction) => transaction,
                Begun::Replay(replay) => {
                    let key = replay_api_key(replay, caller).await?;
                    return Ok(IssuedApiKey {
                        key,
                        secret: String::new(),
                        replayed: true,
                    });
                }
            };
        let issued = issue_api_key(&transaction, new, Utc::now()).await?;
        // The record only: the secret never reaches the audit trail.
        transaction
            .commit(
                caller,
                Change::new("api_key", issued.key.id).new_values(&issued.key),
            )
            .await?;
        Ok(issued)
    }

    pub async fn list_api_keys(
        &self,
        caller: &Principal,
        PageQuery {
            filter: OwnedBy(user),
            page_size,
            page_token,
        }: PageQuery<OwnedBy>,
    ) -> Result<Page<ApiKey>> {
        let user = caller.visible_owner(user)?;
        let page = PageRequest::parse(page_size, &page_token, &format!("api_keys|{user:?}"))?;
        let mut keys = store::list_api_keys(&self.db, user, &page).await?;
        let next_page_token = page.finish(&mut keys, |key| key.id);
        Ok(Page {
            items: keys,
            next_page_token,
        })
    }

    pub async fn revoke_api_key(
        &self,
        caller: &Principal,
        request_key: Option<RequestKey>,
        id: Uuid,
    ) -> Result<ApiKey> {
        let key = store::find_api_key(&self.db, id).await?;
        let allowed = |key: &ApiKey| {
            caller.is_admin() || (caller.user_id == key.user_id && !caller.is_service_key())
        };
        match key {
            Some(key) if allowed(&key) => {
                let begun =
                    Audited::begin_once(&self.db, &self.cache, caller, request_key.as_ref())
                        .await?;
                let transaction = match begun {
                    Begun::Fresh(transaction) => transaction,
                    Begun::Replay(replay) => return replay_api_key(replay, caller).await,
                };
                store::revoke_api_key(&*transaction, id, Utc::now()).await?;
                let revoked = store::find_api_key(&*transaction, id)
                    .await?
                    .ok_or_else(|| Error::not_found("api key", id))?;
                transaction
                    .commit(
                        caller,
                        Change::new("api_key", id).old(&key).new_values(&revoked),
                    )
                    .await?;
                self.forget_cached_keys();
                Ok(revoked)
            }
            None if caller.is_admin() => Err(Error::not_found("api key", id)),
            _ => Err(Error::PermissionDenied),
        }
    }

    /// Creates the first admin user and its key on a database that has no
    /// admin yet; refuses otherwise, so it cannot be used to take over.
    pub async fn bootstrap_admin(
        &self,
        username: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(User, IssuedApiKey)> {
        let username = Username::parse("username", username)?;
        let transaction = Audited::begin(&self.db, &self.cache).await?;
        if store::any_admin_exists(&*transaction).await? {
            return Err(Error::FailedPrecondition {
                reason: "ADMIN_EXISTS",
                message: "an admin already exists; create keys with `azora keys create --user`"
                    .into(),
            });
        }
        let new_user = NewUser {
            username,
            email: None,
            user_type: UserType::Staff,
            wallet_address: None,
            jurisdiction: None,
            country: None,
            language: Default::default(),
            metadata: Default::default(),
        };
        let user = store::insert_user(&*transaction, new_user, Role::Admin).await?;
        let issued = issue_api_key(
            &transaction,
            NewApiKey {
                user_id: user.id,
                name: "bootstrap".into(),
                role: Role::Admin,
                expires_at,
            },
            Utc::now(),
        )
        .await?;
        let change = Change::new("user", user.id)
            .new_values(serde_json::json!({ "user": &user, "api_key": &issued.key }));
        transaction
            .commit(
                &Principal::command_line("azora keys create --bootstrap-admin"),
                change,
            )
            .await?;
        Ok((user, issued))
    }

    /// Issues a key for a user named by id or username, from the command line
    /// (an operator with database access needs no caller key).
    pub async fn issue_api_key_for(
        &self,
        user: &str,
        name: String,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<IssuedApiKey> {
        let found = match Uuid::parse_str(user) {
            Ok(id) => store::find_user(&self.db, id).await?,
            Err(_) => store::find_user_by_username(&self.db, user).await?,
        };
        let user = found.ok_or_else(|| Error::not_found("user", user))?;
        let transaction = Audited::begin(&self.db, &self.cache).await?;
        let issued = issue_api_key(
            &transaction,
            NewApiKey {
                user_id: user.id,
                name,
                role,
                expires_at,
            },
            Utc::now(),
        )
        .await?;
        let change = Change::new("api_key", issued.key.id).new_values(&issued.key);
        transaction
            .commit(&Principal::command_line("azora keys create"), change)
            .await?;
        Ok(issued)
    }
}

async fn issue_api_key(
    db: &sea_orm::DatabaseTransaction,
    new: NewApiKey,
    now: DateTime<Utc>,
) -> Result<IssuedApiKey> {
    let user = store::find_user(db, new.user_id)
        .await?
        .ok_or_else(|| Error::not_found("user", new.user_id))?;
    if new.role != user.role && new.role != Role::Service {
        return Err(Error::invalid(
            "role",
            format!(
                "must be the user's own role ({}) or service",
                user.role.as_str()
            ),
        ));
    }
    if new.expires_at.is_some_and(|expiry| expiry <= now) {
        return Err(Error::invalid("expire_time", "must be in the future"));
    }
    let secret = auth::generate_secret();
    let key = store::insert_api_key(
        db,
        new,
        auth::secret_prefix(&secret),
        auth::hash_secret(&secret),
    )
    .await?;
    Ok(IssuedApiKey {
        key,
        secret,
        replayed: false,
    })
}

async fn replay_api_key(replay: Replay, caller: &Principal) -> Result<ApiKey> {
    let key = store::find_api_key(replay.transaction(), replay.resource_id()?)
        .await?
        .ok_or_else(|| Error::internal("a replayed api key is gone"))?;
    replay.answer(caller, "api_key", key).await
}
