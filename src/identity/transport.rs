//! IdentityService over gRPC: each handler parses the request into domain
//! types, calls one operation and converts the result back.

use tonic::{Request, Response, Status};

use super::domain::{
    ApiKey, CountryCode, Email, KycChange, KycStatus, KycUpdate, LanguageTag, Metadata, NewApiKey,
    NewUser, NewWallet, OwnedBy, ReputationScore, RoleChange, User, UserChanges, UserFilter,
    UserType, UserUpdate, Username, Wallet, parse_label,
};
use super::operations::Identity;
use crate::address::{Address, display_address};
use crate::auth::{Role, principal};
use crate::error::{Error, FieldViolation};
use crate::fixed::format_units;
use crate::money::AZR_SCALE;
use crate::pagination::PageQuery;
use crate::proto::identity::{self as pb, identity_service_server::IdentityService};
use crate::proto::types::Decimal;
use crate::transport::parse_id;
use crate::transport::{
    Violations, json_object, json_to_struct, optional, optional_time, request_key, timestamp,
};

pub struct IdentityApi {
    identity: Identity,
}

impl IdentityApi {
    pub fn new(identity: Identity) -> Self {
        Self { identity }
    }
}

/// An optional enum filter: unspecified (0) means "any".
fn filter_enum<T>(
    field: &str,
    value: i32,
    parse: impl FnOnce(&str, i32) -> Result<T, FieldViolation>,
) -> Result<Option<T>, FieldViolation> {
    if value == 0 {
        Ok(None)
    } else {
        parse(field, value).map(Some)
    }
}

fn metadata_from(
    field: &str,
    value: Option<prost_types::Struct>,
) -> Result<Metadata, FieldViolation> {
    Metadata::new(field, json_object(field, value)?)
}

fn user_to_proto(user: User) -> pb::User {
    let User {
        id,
        username,
        email,
        user_type,
        role,
        wallet_address,
        jurisdiction,
        country,
        language,
        kyc_status,
        kyc_reason,
        kyc_updated_at,
        reputation_score_units,
        metadata,
        created_at,
        updated_at,
    } = user;
    pb::User {
        id: id.to_string(),
        username,
        email: email.unwrap_or_default(),
        user_type: user_type.to_wire(),
        role: role.to_wire(),
        wallet_address: wallet_address
            .as_deref()
            .map(display_address)
            .unwrap_or_default(),
        jurisdiction: jurisdiction.unwrap_or_default(),
        country: country.unwrap_or_default(),
        language,
        kyc_status: kyc_status.to_wire(),
        kyc_reason: kyc_reason.unwrap_or_default(),
        kyc_update_time: kyc_updated_at.map(timestamp),
        reputation_score: Some(Decimal {
            value: format_units(reputation_score_units, ReputationScore::SCALE),
        }),
        metadata: match metadata {
            serde_json::Value::Object(object) => Some(json_to_struct(object)),
            _ => Some(prost_types::Struct::default()),
        },
        create_time: Some(timestamp(created_at)),
        update_time: Some(timestamp(updated_at)),
    }
}

fn wallet_to_proto(wallet: Wallet) -> pb::Wallet {
    let Wallet {
        id,
        owner_id,
        address,
        label,
        available_micros,
        pending_micros,
        staked_micros,
        created_at,
    } = wallet;
    let amount = |units| {
        Some(Decimal {
            value: format_units(units, AZR_SCALE),
        })
    };
    pb::Wallet {
        id: id.to_string(),
        owner_id: owner_id.to_string(),
        address: display_address(&address),
        label,
        balance: amount(available_micros),
        pending_balance: amount(pending_micros),
        staked_balance: amount(staked_micros),
        create_time: Some(timestamp(created_at)),
    }
}

fn api_key_to_proto(key: ApiKey) -> pb::ApiKey {
    let ApiKey {
        id,
        user_id,
        name,
        role,
        prefix,
        created_at,
        expires_at,
        revoked_at,
    } = key;
    pb::ApiKey {
        id: id.to_string(),
        user_id: user_id.to_string(),
        name,
        role: role.to_wire(),
        prefix,
        create_time: Some(timestamp(created_at)),
        expire_time: expires_at.map(timestamp),
        revoke_time: revoked_at.map(timestamp),
    }
}

impl TryFrom<pb::CreateUserRequest> for NewUser {
    type Error = Error;
    fn try_from(request: pb::CreateUserRequest) -> Result<Self, Error> {
        let pb::CreateUserRequest {
            username,
            email,
            user_type,
            wallet_address,
            jurisdiction,
            country,
            language,
            metadata,
            request_id: _,
        } = request;
        let mut v = Violations::default();
        let username = v.check(Username::parse("username", &username));
        let email = v.check(optional(&email, |text| Email::parse("email", text)));
        let user_type = v.check(UserType::require_wire("user_type", user_type));
        let wallet_address = v.check(optional(&wallet_address, |text| {
            Address::parse("wallet_address", text)
        }));
        let jurisdiction = v.check(optional(&jurisdiction, |text| {
            CountryCode::parse("jurisdiction", text)
        }));
        let country = v.check(optional(&country, |text| {
            CountryCode::parse("country", text)
        }));
        let language = v.check(optional(&language, |text| {
            LanguageTag::parse("language", text)
        }));
        let metadata = v.check(metadata_from("metadata", metadata));
        v.finish(|| {
            Some(NewUser {
                username: username?,
                email: email?,
                user_type: user_type?,
                wallet_address: wallet_address?,
                jurisdiction: jurisdiction?,
                country: country?,
                language: language?.unwrap_or_default(),
                metadata: metadata?,
            })
        })
    }
}

/// UpdateUser: the user's id and the changes its mask names; unknown and
/// read-only paths are rejected.
impl TryFrom<pb::UpdateUserRequest> for UserUpdate {
    type Error = Error;

    fn try_from(request: pb::UpdateUserRequest) -> Result<Self, Error> {
        let pb::UpdateUserRequest {
            user,
            update_mask,
            request_id: _,
        } = request;
        let Some(user) = user else {
            return Err(Error::invalid("user", "is required"));
        };
        let mut v = Violations::default();
        let id = v.check(parse_id("user.id", &user.id));
        let paths = update_mask.map(|mask| mask.paths).unwrap_or_default();
        if paths.is_empty() {
            v.0.push(FieldViolation::new(
                "update_mask",
                "must name at least one field to change",
            ));
        }
        let mut changes = UserChanges::default();
        for path in &paths {
            change_one(&mut v, &mut changes, path, &user);
        }
        v.finish(|| Some(UserUpdate { id: id?, changes }))
    }
}

/// Parses the one field of `user` that `path` names into `changes`.
fn change_one(v: &mut Violations, changes: &mut UserChanges, path: &str, user: &pb::User) {
    let field = format!("user.{path}");
    match path {
        "email" => {
            changes.email = v.check(optional(&user.email, |text| Email::parse(&field, text)))
        }
        "user_type" => changes.user_type = v.check(UserType::require_wire(&field, user.user_type)),
        "wallet_address" => {
            changes.wallet_address = v.check(optional(&user.wallet_address, |text| {
                Address::parse(&field, text)
            }))
        }
        "jurisdiction" => {
            changes.jurisdiction = v.check(optional(&user.jurisdiction, |text| {
                CountryCode::parse(&field, text)
            }))
        }
        "country" => {
            changes.country = v.check(optional(&user.country, |text| {
                CountryCode::parse(&field, text)
            }))
        }
        "language" => changes.language = v.check(LanguageTag::parse(&field, &user.language)),
        "metadata" => changes.metadata = v.check(metadata_from(&field, user.metadata.clone())),
        "reputation_score" => {
            let text = user
                .reputation_score
                .as_ref()
                .map(|decimal| decimal.value.as_str())
                .unwrap_or_default();
            changes.reputation_score = v.check(ReputationScore::parse(&field, text));
        }
        "role" => v.0.push(FieldViolation::new(
            "update_mask",
            "role is changed with SetUserRole",
        )),
        "kyc_status" | "kyc_reason" => v.0.push(FieldViolation::new(
            "update_mask",
            "KYC status is changed with SetKycStatus",
        )),
        other => v.0.push(FieldViolation::new(
            "update_mask",
            format!("{other:?} is not an updatable field"),
        )),
    }
}

impl TryFrom<pb::ListUsersRequest> for PageQuery<UserFilter> {
    type Error = Error;

    fn try_from(request: pb::ListUsersRequest) -> Result<Self, Error> {
        let pb::ListUsersRequest {
            page_size,
            page_token,
            user_type,
            kyc_status,
            jurisdiction,
        } = request;
        let mut v = Violations::default();
        let user_type = v.check(filter_enum("user_type", user_type, UserType::require_wire));
        let kyc_status = v.check(filter_enum(
            "kyc_status",
            kyc_status,
            KycStatus::require_wire,
        ));
        let jurisdiction = v.check(optional(&jurisdiction, |text| {
            CountryCode::parse("jurisdiction", text)
        }));
        let filter = v.finish(|| {
            Some(UserFilter {
                user_type: user_type?,
                kyc_status: kyc_status?,
                jurisdiction: jurisdiction?.map(|code| code.as_str().to_owned()),
                only_user: None,
            })
        })?;
        Ok(PageQuery {
            filter,
            page_size,
            page_token,
        })
    }
}

impl TryFrom<pb::SetUserRoleRequest> for RoleChange {
    type Error = Error;

    fn try_from(request: pb::SetUserRoleRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let user = v.check(parse_id("user_id", &request.user_id));
        let role = v.check(Role::require_wire("role", request.role));
        v.finish(|| {
            Some(RoleChange {
                user: user?,
                role: role?,
            })
        })
    }
}

impl TryFrom<pb::SetKycStatusRequest> for KycUpdate {
    type Error = Error;

    fn try_from(request: pb::SetKycStatusRequest) -> Result<Self, Error> {
        let pb::SetKycStatusRequest {
            user_id,
            kyc_status,
            reason,
            request_id: _,
        } = request;
        let mut v = Violations::default();
        let user = v.check(parse_id("user_id", &user_id));
        let status = v.check(KycStatus::require_wire("kyc_status", kyc_status));
        if reason.chars().count() > KycChange::MAX_REASON {
            v.0.push(FieldViolation::new(
                "reason",
                format!("must be at most {} characters", KycChange::MAX_REASON),
            ));
        }
        if status == Some(KycStatus::Rejected) && reason.trim().is_empty() {
            v.0.push(FieldViolation::new("reason", "is required when rejecting"));
        }
        v.finish(|| {
            let reason = (!reason.trim().is_empty()).then_some(reason);
            Some(KycUpdate {
                user: user?,
                change: KycChange {
                    status: status?,
                    reason,
                },
            })
        })
    }
}

impl TryFrom<pb::CreateWalletRequest> for NewWallet {
    type Error = Error;

    fn try_from(request: pb::CreateWalletRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let owner_id = v.check(parse_id("owner_id", &request.owner_id));
        let address = v.check(Address::parse("address", &request.address));
        let label = v.check(parse_label("label", &request.label));
        v.finish(|| {
            Some(NewWallet {
                owner_id: owner_id?,
                address: address?,
                label: label?,
            })
        })
    }
}

impl TryFrom<pb::ListWalletsRequest> for PageQuery<OwnedBy> {
    type Error = Error;

    fn try_from(request: pb::ListWalletsRequest) -> Result<Self, Error> {
        let owner = optional(&request.owner_id, |text| parse_id("owner_id", text))?;
        Ok(PageQuery {
            filter: OwnedBy(owner),
            page_size: request.page_size,
            page_token: request.page_token,
        })
    }
}

impl TryFrom<pb::CreateApiKeyRequest> for NewApiKey {
    type Error = Error;

    fn try_from(request: pb::CreateApiKeyRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let user_id = v.check(parse_id("user_id", &request.user_id));
        let name = v.check(parse_label("name", &request.name));
        let role = v.check(Role::require_wire("role", request.role));
        let expires_at = v.check(optional_time("expire_time", request.expire_time.as_ref()));
        v.finish(|| {
            Some(NewApiKey {
                user_id: user_id?,
                name: name?,
                role: role?,
                expires_at: expires_at?,
            })
        })
    }
}

impl TryFrom<pb::ListApiKeysRequest> for PageQuery<OwnedBy> {
    type Error = Error;

    fn try_from(request: pb::ListApiKeysRequest) -> Result<Self, Error> {
        let user = optional(&request.user_id, |text| parse_id("user_id", text))?;
        Ok(PageQuery {
            filter: OwnedBy(user),
            page_size: request.page_size,
            page_token: request.page_token,
        })
    }
}

#[tonic::async_trait]
impl IdentityService for IdentityApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let new = NewUser::try_from(message)?;
        let user = self.identity.create_user(&caller, key, new).await?;
        Ok(Response::new(pb::CreateUserResponse {
            user: Some(user_to_proto(user)),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let caller = principal(&request)?;
        let pb::GetUserRequest { user_id } = request.into_inner();
        let id = parse_id("user_id", &user_id).map_err(Error::from)?;
        let user = self.identity.get_user(&caller, id).await?;
        Ok(Response::new(pb::GetUserResponse {
            user: Some(user_to_proto(user)),
        }))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = principal(&request)?;
        let query = PageQuery::try_from(request.into_inner())?;
        let page = self.identity.list_users(&caller, query).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: page.items.into_iter().map(user_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_user(
        &self,
        request: Request<pb::UpdateUserRequest>,
    ) -> Result<Response<pb::UpdateUserResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let update = UserUpdate::try_from(message)?;
        let user = self.identity.update_user(&caller, key, update).await?;
        Ok(Response::new(pb::UpdateUserResponse {
            user: Some(user_to_proto(user)),
        }))
    }

    async fn set_user_role(
        &self,
        request: Request<pb::SetUserRoleRequest>,
    ) -> Result<Response<pb::SetUserRoleResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let change = RoleChange::try_from(message)?;
        let user = self.identity.set_user_role(&caller, key, change).await?;
        Ok(Response::new(pb::SetUserRoleResponse {
            user: Some(user_to_proto(user)),
        }))
    }

    async fn set_kyc_status(
        &self,
        request: Request<pb::SetKycStatusRequest>,
    ) -> Result<Response<pb::SetKycStatusResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let update = KycUpdate::try_from(message)?;
        let user = self.identity.set_kyc_status(&caller, key, update).await?;
        Ok(Response::new(pb::SetKycStatusResponse {
            user: Some(user_to_proto(user)),
        }))
    }

    async fn create_wallet(
        &self,
        request: Request<pb::CreateWalletRequest>,
    ) -> Result<Response<pb::CreateWalletResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let new = NewWallet::try_from(message)?;
        let wallet = self.identity.create_wallet(&caller, key, new).await?;
        Ok(Response::new(pb::CreateWalletResponse {
            wallet: Some(wallet_to_proto(wallet)),
        }))
    }

    async fn get_wallet(
        &self,
        request: Request<pb::GetWalletRequest>,
    ) -> Result<Response<pb::GetWalletResponse>, Status> {
        let caller = principal(&request)?;
        let pb::GetWalletRequest { wallet_id } = request.into_inner();
        let id = parse_id("wallet_id", &wallet_id).map_err(Error::from)?;
        let wallet = self.identity.get_wallet(&caller, id).await?;
        Ok(Response::new(pb::GetWalletResponse {
            wallet: Some(wallet_to_proto(wallet)),
        }))
    }

    async fn list_wallets(
        &self,
        request: Request<pb::ListWalletsRequest>,
    ) -> Result<Response<pb::ListWalletsResponse>, Status> {
        let caller = principal(&request)?;
        let query = PageQuery::try_from(request.into_inner())?;
        let page = self.identity.list_wallets(&caller, query).await?;
        Ok(Response::new(pb::ListWalletsResponse {
            wallets: page.items.into_iter().map(wallet_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let key = request_key(&message, &message.request_id)?;
        let new = NewApiKey::try_from(message)?;
        let issued = self.identity.create_api_key(&caller, key, new).await?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(api_key_to_proto(issued.key)),
            secret: issued.secret,
            replayed: issued.replayed,
        }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let caller = principal(&request)?;
        let query = PageQuery::try_from(request.into_inner())?;
        let page = self.identity.list_api_keys(&caller, query).await?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: page.items.into_iter().map(api_key_to_proto).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let caller = principal(&request)?;
        let message = request.into_inner();
        let request_key = request_key(&message, &message.request_id)?;
        let pb::RevokeApiKeyRequest {
            api_key_id,
            request_id: _,
        } = message;
        let id = parse_id("api_key_id", &api_key_id).map_err(Error::from)?;
        let key = self
            .identity
            .revoke_api_key(&caller, request_key, id)
            .await?;
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(api_key_to_proto(key)),
        }))
    }
}
