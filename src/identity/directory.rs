//! What other services and the authentication layer may ask Identity: plain
//! lookups by id (or by key hash), never a write. They take any connection,
//! so a caller inside a transaction reads what that transaction sees.
//!
//! This is Identity's whole read surface for the rest of the crate; its
//! store is private to the `identity` module, so nothing else can reach past
//! these functions into its tables.

use sea_orm::ConnectionTrait;
use uuid::Uuid;

use super::domain::{ApiKey, KycStatus, User, Wallet};
use super::store;
use crate::auth::Role;
use crate::error::Error;

type Result<T> = std::result::Result<T, Error>;

/// A user by id.
pub async fn find_user(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<User>> {
    store::find_user(db, id).await
}

/// A wallet by id.
pub async fn find_wallet(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Wallet>> {
    store::find_wallet(db, id).await
}

/// An API key by id (a long-lived stream re-checks its caller's key).
pub async fn find_api_key(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<ApiKey>> {
    store::find_api_key(db, id).await
}

/// A key by the hash of its secret, with its user's current role, in one
/// query (authentication runs it on every key-cache miss).
pub async fn find_key_holder_by_hash(
    db: &impl ConnectionTrait,
    hash: &str,
) -> Result<Option<(ApiKey, Role)>> {
    store::find_key_holder_by_hash(db, hash).await
}

/// Who holds a wallet, as far as compliance checks need to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletHolder {
    pub wallet: Uuid,
    pub username: String,
    pub kyc_status: KycStatus,
}

/// The holders of `wallets` (those that exist), in no particular order.
pub async fn wallet_holders(
    db: &impl ConnectionTrait,
    wallets: &[Uuid],
) -> Result<Vec<WalletHolder>> {
    Ok(store::wallet_holders(db, wallets)
        .await?
        .into_iter()
        .map(|(wallet, username, kyc_status)| WalletHolder {
            wallet,
            username,
            kyc_status,
        })
        .collect())
}
