//! The admin calls that set up a run: users, their roles and keys, wallets,
//! and money in them. Each takes the client to call it on, so a caller
//! decides which connection it uses, and fails with the call's status.

use azora::proto::identity as ipb;
use azora::proto::identity::identity_service_client::IdentityServiceClient;
use azora::proto::treasury as tpb;
use azora::proto::treasury::treasury_service_client::TreasuryServiceClient;
use tonic::Status;
use tonic::transport::Channel;

use crate::{authed, azr};

/// Creates a user of `user_type` (a member until given a role).
pub async fn create_user(
    identity: &mut IdentityServiceClient<Channel>,
    admin_key: &str,
    username: &str,
    user_type: ipb::UserType,
) -> Result<ipb::User, Status> {
    identity
        .create_user(authed(
            admin_key,
            ipb::CreateUserRequest {
                username: username.into(),
                user_type: user_type as i32,
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .user
        .ok_or_else(|| Status::internal("CreateUser answered without a user"))
}

pub async fn set_user_role(
    identity: &mut IdentityServiceClient<Channel>,
    admin_key: &str,
    user_id: &str,
    role: ipb::Role,
) -> Result<(), Status> {
    identity
        .set_user_role(authed(
            admin_key,
            ipb::SetUserRoleRequest {
                user_id: user_id.into(),
                role: role as i32,
                ..Default::default()
            },
        ))
        .await?;
    Ok(())
}

/// Issues a key of `role` for a user; returns its secret.
pub async fn create_api_key(
    identity: &mut IdentityServiceClient<Channel>,
    admin_key: &str,
    user_id: &str,
    role: ipb::Role,
) -> Result<String, Status> {
    Ok(identity
        .create_api_key(authed(
            admin_key,
            ipb::CreateApiKeyRequest {
                user_id: user_id.into(),
                role: role as i32,
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .secret)
}

/// Creates a wallet at `address` for `owner_id`; returns its id.
pub async fn create_wallet(
    identity: &mut IdentityServiceClient<Channel>,
    admin_key: &str,
    owner_id: &str,
    address: String,
) -> Result<String, Status> {
    Ok(identity
        .create_wallet(authed(
            admin_key,
            ipb::CreateWalletRequest {
                owner_id: owner_id.into(),
                address,
                label: String::new(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .wallet
        .ok_or_else(|| Status::internal("CreateWallet answered without a wallet"))?
        .id)
}

/// Puts exactly `amount` AZR into a wallet, by a confirmed deposit.
pub async fn deposit(
    treasury: &mut TreasuryServiceClient<Channel>,
    admin_key: &str,
    request_id: String,
    wallet_id: &str,
    amount: &str,
) -> Result<tpb::Transaction, Status> {
    treasury
        .deposit(authed(
            admin_key,
            tpb::DepositRequest {
                request_id,
                to_wallet_id: wallet_id.into(),
                amount: azr(amount),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .transaction
        .ok_or_else(|| Status::internal("Deposit answered without a transaction"))
}
