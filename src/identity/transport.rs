//! IdentityService over gRPC: each handler parses the request into domain
//! types, calls one operation and converts the result back.

use tonic::{Request, Response, Status};

use super::domain::{
    ApiKey, CountryCode, Email, KycChange, KycStatus, LanguageTag, Metadata, NewApiKey, NewUser,
    NewWallet, ReputationScore, User, UserChanges, UserFilter, UserType, Username, Wallet,
    parse_label,
};
use super::operations::Identity;
use crate::address::{Address, display_address};
use crate::auth::{Role, principal};
use crate::error::{Error, FieldViolation};
use crate::fixed::format_units;
use crate::proto::identity::{self as pb, identity_service_server::IdentityService};
use crate::proto::types::Decimal;
use crate::transport::parse_id;
use crate::transport::{
    Violations, datetime_from, json_object, json_to_struct, optional, request_key, timestamp,
};

/// Scale of AZR amounts: 6 fractional digits (micro-AZR), as USDC.
const AZR_SCALE: u32 = 6;

pub struct IdentityApi {
    identity: Identity,
}

impl IdentityApi {
    pub fn new(identity: Identity) -> Self {
        Self { identity }
    }
}

fn user_type_from(field: &str, value: i32) -> Result<UserType, FieldViolation> {
    match pb::UserType::try_from(value) {
        Ok(pb::UserType::Student) => Ok(UserType::Student),
        Ok(pb::UserType::Teacher) => Ok(UserType::Teacher),
        Ok(pb::UserType::Founder) => Ok(UserType::Founder),
        Ok(pb::UserType::Partner) => Ok(UserType::Partner),
        Ok(pb::UserType::Investor) => Ok(UserType::Investor),
        Ok(pb::UserType::Staff) => Ok(UserType::Staff),
        Ok(pb::UserType::Unspecified) | Err(_) => Err(FieldViolation::new(
            field,
            "must be a user type other than USER_TYPE_UNSPECIFIED",
        )),
    }
}

fn user_type_to(value: UserType) -> pb::UserType {
    match value {
        UserType::Student => pb::UserType::Student,
        UserType::Teacher => pb::UserType::Teacher,
        UserType::Founder => pb::UserType::Founder,
        UserType::Partner => pb::UserType::Partner,
        UserType::Investor => pb::UserType::Investor,
        UserType::Staff => pb::UserType::Staff,
    }
}

fn role_from(field: &str, value: i32) -> Result<Role, FieldViolation> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Admin) => Ok(Role::Admin),
        Ok(pb::Role::Treasurer) => Ok(Role::Treasurer),
        Ok(pb::Role::Auditor) => Ok(Role::Auditor),
        Ok(pb::Role::Member) => Ok(Role::Member),
        Ok(pb::Role::Service) => Ok(Role::Service),
        Ok(pb::Role::Unspecified) | Err(_) => Err(FieldViolation::new(
            field,
            "must be a role other than ROLE_UNSPECIFIED",
        )),
    }
}

fn role_to(value: Role) -> pb::Role {
    match value {
        Role::Admin => pb::Role::Admin,
        Role::Treasurer => pb::Role::Treasurer,
        Role::Auditor => pb::Role::Auditor,
        Role::Member => pb::Role::Member,
        Role::Service => pb::Role::Service,
    }
}

fn kyc_from(field: &str, value: i32) -> Result<KycStatus, FieldViolation> {
    match pb::KycStatus::try_from(value) {
        Ok(pb::KycStatus::Pending) => Ok(KycStatus::Pending),
        Ok(pb::KycStatus::InReview) => Ok(KycStatus::InReview),
        Ok(pb::KycStatus::Verified) => Ok(KycStatus::Verified),
        Ok(pb::KycStatus::Rejected) => Ok(KycStatus::Rejected),
        Ok(pb::KycStatus::Expired) => Ok(KycStatus::Expired),
        Ok(pb::KycStatus::Unspecified) | Err(_) => Err(FieldViolation::new(
            field,
            "must be a KYC status other than KYC_STATUS_UNSPECIFIED",
        )),
    }
}

fn kyc_to(value: KycStatus) -> pb::KycStatus {
    match value {
        KycStatus::Pending => pb::KycStatus::Pending,
        KycStatus::InReview => pb::KycStatus::InReview,
        KycStatus::Verified => pb::KycStatus::Verified,
        KycStatus::Rejected => pb::KycStatus::Rejected,
        KycStatus::Expired => pb::KycStatus::Expired,
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
        user_type: user_type_to(user_type) as i32,
        role: role_to(role) as i32,
        wallet_address: wallet_address
            .as_deref()
            .map(display_address)
            .unwrap_or_default(),
        jurisdiction: jurisdiction.unwrap_or_default(),
        country: country.unwrap_or_default(),
        language,
        kyc_status: kyc_to(kyc_status) as i32,
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
        role: role_to(role) as i32,
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
        let user_type = v.check(user_type_from("user_type", user_type));
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

/// Parses an UpdateUser request into the user's id and the changes its mask
/// names; unknown and read-only paths are rejected.
fn parse_update(request: pb::UpdateUserRequest) -> Result<(uuid::Uuid, UserChanges), Error> {
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
        let field = format!("user.{path}");
        match path.as_str() {
            "email" => {
                changes.email = v.check(optional(&user.email, |text| Email::parse(&field, text)))
            }
            "user_type" => changes.user_type = v.check(user_type_from(&field, user.user_type)),
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
    v.finish(|| Some((id?, changes)))
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
        let pb::ListUsersRequest {
            page_size,
            page_token,
            user_type,
            kyc_status,
            jurisdiction,
        } = request.into_inner();
        let mut v = Violations::default();
        let user_type = v.check(filter_enum("user_type", user_type, user_type_from));
        let kyc_status = v.check(filter_enum("kyc_status", kyc_status, kyc_from));
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
        let page = self
            .identity
            .list_users(&caller, filter, page_size, &page_token)
            .await?;
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
        let (id, changes) = parse_update(message)?;
        let user = self.identity.update_user(&caller, key, id, changes).await?;
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
        let pb::SetUserRoleRequest {
            user_id,
            role,
            request_id: _,
        } = message;
        let mut v = Violations::default();
        let id = v.check(parse_id("user_id", &user_id));
        let role = v.check(role_from("role", role));
        let (id, role) = v.finish(|| Some((id?, role?)))?;
        let user = self.identity.set_user_role(&caller, key, id, role).await?;
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
        let pb::SetKycStatusRequest {
            user_id,
            kyc_status,
            reason,
            request_id: _,
        } = message;
        let mut v = Violations::default();
        let id = v.check(parse_id("user_id", &user_id));
        let status = v.check(kyc_from("kyc_status", kyc_status));
        if reason.chars().count() > KycChange::MAX_REASON {
            v.0.push(FieldViolation::new(
                "reason",
                format!("must be at most {} characters", KycChange::MAX_REASON),
            ));
        }
        if status == Some(KycStatus::Rejected) && reason.trim().is_empty() {
            v.0.push(FieldViolation::new("reason", "is required when rejecting"));
        }
        let (id, change) = v.finish(|| {
            let reason = (!reason.trim().is_empty()).then_some(reason);
            Some((
                id?,
                KycChange {
                    status: status?,
                    reason,
                },
            ))
        })?;
        let user = self
            .identity
            .set_kyc_status(&caller, key, id, change)
            .await?;
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
        let pb::CreateWalletRequest {
            owner_id,
            address,
            label,
            request_id: _,
        } = message;
        let mut v = Violations::default();
        let owner_id = v.check(parse_id("owner_id", &owner_id));
        let address = v.check(Address::parse("address", &address));
        let label = v.check(parse_label("label", &label));
        let new = v.finish(|| {
            Some(NewWallet {
                owner_id: owner_id?,
                address: address?,
                label: label?,
            })
        })?;
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
        let pb::ListWalletsRequest {
            page_size,
            page_token,
            owner_id,
        } = request.into_inner();
        let owner = optional(&owner_id, |text| parse_id("owner_id", text)).map_err(Error::from)?;
        let page = self
            .identity
            .list_wallets(&caller, owner, page_size, &page_token)
            .await?;
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
        let pb::CreateApiKeyRequest {
            user_id,
            name,
            role,
            expire_time,
            request_id: _,
        } = message;
        let mut v = Violations::default();
        let user_id = v.check(parse_id("user_id", &user_id));
        let name = v.check(parse_label("name", &name));
        let role = v.check(role_from("role", role));
        let expires_at = v.check(
            expire_time
                .as_ref()
                .map(|at| datetime_from("expire_time", at))
                .transpose(),
        );
        let new = v.finish(|| {
            Some(NewApiKey {
                user_id: user_id?,
                name: name?,
                role: role?,
                expires_at: expires_at?,
            })
        })?;
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
        let pb::ListApiKeysRequest {
            page_size,
            page_token,
            user_id,
        } = request.into_inner();
        let user = optional(&user_id, |text| parse_id("user_id", text)).map_err(Error::from)?;
        let page = self
            .identity
            .list_api_keys(&caller, user, page_size, &page_token)
            .await?;
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
